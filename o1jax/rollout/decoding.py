"""The pieces every decoder of o1jax is built from: sampling settings, token choice, and the two
KV-cache steps ``prefill`` and ``decode_step``.

``sample`` (o1jax/rollout/sampler.py) is a ``lax.while_loop`` over ``decode_step``. They are
exported so that decoders still to come (test-time search: beam search, tree search; self-play)
advance any set of prefixes by one token or expand a search node through the same KV-cache code.

The cache is the model's (``Transformer.init_cache``) plus ``positions`` [B] int32, the position
id of the next token of each row, so a caller only hands over the token to feed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from o1jax import sharding
from o1jax.models.cache import ROW_LEAVES, batch_axis, cache_slots, slot_axes
from o1jax.models.layouts import fuse_layers, in_compute_dtype, unstack_layers
from o1jax.models.transformer import Params, Transformer, positions_from_mask
from o1jax.rollout.forcing import BudgetForcing

if TYPE_CHECKING:
    from o1jax.rollout.tools import ToolCalls


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample. ``top_k=0`` and ``top_p=1`` switch those filters off; ``greedy`` takes the
    argmax and ignores temperature, top-k and top-p. ``num_samples`` (G) responses per prompt;
    ``forcing``: budget forcing (``BudgetForcing``), off by default; ``tools``: tool calls
    (o1jax/rollout/tools.py ``ToolCalls``), off by default."""
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    num_samples: int = 1
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0
    forcing: BudgetForcing | None = None
    tools: "ToolCalls | None" = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples (G) must be >= 1, got {self.num_samples}")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got "
                             f"{self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        object.__setattr__(self, "stop_ids", tuple(int(i) for i in self.stop_ids))
        f = self.forcing
        if f is not None and self.tools is not None:
            raise ValueError("budget forcing and tool calls both write tokens the policy did "
                             "not choose; use one at a time")
        if f is not None and f.max_tokens + len(f.break_ids + f.marker_ids) > \
                self.max_new_tokens:
            raise ValueError(f"budget forcing writes the answer marker "
                             f"({len(f.break_ids + f.marker_ids)} tokens with its line break) "
                             f"at {f.max_tokens} tokens: max_new_tokens "
                             f"{self.max_new_tokens} leaves no room; lower the maximum thinking "
                             "length or raise max_new_tokens")

    @property
    def logprob_temperature(self) -> float:
        return 1.0 if self.greedy else self.temperature


def filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """Sets logits outside the top-k and outside the top-p nucleus to -inf. logits: [B, V]."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
        keep = before < top_p  # always keeps the most likely token
        threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return logits


def _last_positive(x: jax.Array) -> jax.Array:
    """Index of the last entry > 0 along the last axis."""
    return x.shape[-1] - 1 - jnp.argmax(x[..., ::-1] > 0, axis=-1)


def inverse_cdf_sample(probs: jax.Array, key: jax.Array, block: int = 128) -> jax.Array:
    """One index per row of unnormalised probabilities probs: [B, V], one uniform draw per row.

    Two-level inverse CDF: a cumulative sum over blocks of ``block`` entries picks the block, a
    cumulative sum inside it picks the entry. Exact, and on CPU far cheaper than
    ``jax.random.categorical`` (Gumbel noise over the whole vocabulary) or one long cumsum.
    Rounding can never select an entry of zero probability.
    """
    b, v = probs.shape
    nb = -(-v // block)
    blocks = jnp.pad(probs, ((0, 0), (0, nb * block - v))).reshape(b, nb, block)
    block_mass = jnp.sum(blocks, axis=-1)                                  # [B, nb]
    block_cdf = jnp.cumsum(block_mass, axis=-1)
    u = jax.random.uniform(key, (b, 1)) * block_cdf[:, -1:]
    j = jnp.minimum(jnp.sum(block_cdf <= u, axis=-1), _last_positive(block_mass))
    inside = jnp.take_along_axis(blocks, j[:, None, None], axis=1)[:, 0]   # [B, block]
    rest = u[:, 0] - jnp.take_along_axis(block_cdf - block_mass, j[:, None], axis=1)[:, 0]
    k = jnp.minimum(jnp.sum(jnp.cumsum(inside, axis=-1) <= rest[:, None], axis=-1),
                    _last_positive(inside))
    return (j * block + k).astype(jnp.int32)


def next_token_logprobs(logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """log_softmax(logits / temperature) over the vocabulary: [B, V] f32 (temperature 1 when
    greedy). The distribution tokens are drawn from before top-k/top-p, and the one whose
    log-probs a rollout records and the trainer recomputes."""
    return jax.nn.log_softmax(logits / cfg.logprob_temperature, axis=-1)


def choose_tokens(logp: jax.Array, key: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """One token per row from logp = ``next_token_logprobs``: [B, V] f32 -> [B] int32."""
    if cfg.greedy:
        return jnp.argmax(logp, axis=-1).astype(jnp.int32)
    return inverse_cdf_sample(jnp.exp(filter_logits(logp, cfg.top_k, cfg.top_p)), key)


def decode_params(model: Transformer, params: Params) -> Params:
    """The decode layout of ``params``, built once per rollout or search: the decoder's weights
    in the compute dtype (``in_compute_dtype``), stacked for a model that ``scans_decode``, else
    ``unstack_layers``. Fusing q/k/v (``fuse_layers``) would mix head shards under tensor
    parallelism, so it is only done when heads are not split."""
    fuse = not sharding.splits_heads(model.mesh)
    params = in_compute_dtype(params, model.cfg.compute_dtype)
    if not model.scans_decode:
        return unstack_layers(params, fuse=fuse)
    return dict(params, layers=fuse_layers(params["layers"])) if fuse else params


def prefill(model: Transformer, params: Params, tokens: jax.Array, mask: jax.Array,
            length: int, images: jax.Array | None = None) -> tuple[dict, jax.Array]:
    """Runs left-padded prompts tokens, mask: [B, P] through the model into a fresh cache of
    ``length`` slots (prompt plus everything that will be decoded). ``images`` [B, S, S, 3]
    uint8 or ``patches.Patches``: each prompt's image, encoded here once and read at its
    placeholder tokens.

    Returns (cache, logits [B, V] f32 of the token after each prompt). ``params`` in either
    layout; ``decode_params`` is the fast one.
    """
    mask = mask.astype(bool)
    cache = model.init_cache(tokens.shape[0], length)
    extra = {} if images is None else model.image_inputs(params, images)
    positions = positions_from_mask(mask)
    x, cache = model.hidden(params, tokens, positions, mask, cache, **extra)
    rope = model.rope_positions(tokens, positions, mask, images is not None,
                                extra.get("image_grid"))
    rope = rope.reshape(rope.shape[0], rope.shape[1], -1)               # [B, P, 1 or 3]
    # the next token's position: one past the largest so far (the row's length when text only)
    cache["positions"] = (jnp.max(jnp.where(mask[..., None], rope, -1), axis=(1, 2))
                          + 1).astype(jnp.int32)
    return cache, model.head_out(params, x[:, -1:])[:, 0]


def _constrain_cache(model: Transformer, cache: dict) -> dict:
    axes = dict(model.cache_axes(), positions=("act_batch",))
    return jax.tree.map(lambda ax, c: sharding.constrain(c, model.mesh, ax), axes, cache,
                        is_leaf=sharding.is_axes)


def repeat_cache(model: Transformer, cache: dict, g: int) -> dict:
    """Each row's cache copied ``g`` times (copies adjacent): [B, ...] -> [B * g, ...] (the
    batch axis of a stacked k/v [L, B, ...] is its second)."""
    if g > 1:
        rows = {k: cache[k] for k in ROW_LEAVES if k in cache}
        repeat = lambda a: jnp.repeat(a, g, axis=batch_axis(a))  # noqa: E731
        cache = dict(cache, **jax.tree.map(repeat, rows))
    return _constrain_cache(model, cache)


def pad_slots(a: jax.Array, axis: int, slots: int) -> jax.Array:
    """``a`` with zeros appended on ``axis`` up to ``slots``."""
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, slots - a.shape[axis])
    return jnp.pad(a, widths)


def grow_cache(model: Transformer, cache: dict, length: int) -> dict:
    """The cache with empty slots appended up to ``length`` slots (``init_cache``'s rounding) on
    each leaf's slot axis (``cache.slot_axes``); what it holds is unchanged."""
    n, axes = cache_slots(length, model.attention), slot_axes(model.key_slot_axis)
    cache = dict(cache, **{key: jax.tree.map(lambda a, ax=ax: pad_slots(a, ax, n), cache[key])
                           for key, ax in axes.items()})
    if "experts" in cache:       # a mixture of experts' record of its routing [B, S, L, k]
        cache["experts"] = pad_slots(cache["experts"], 1, n)
    return _constrain_cache(model, cache)


def decode_step(model: Transformer, params: Params, cache: dict, last_token: jax.Array,
                key: jax.Array, cfg: SamplingConfig, live: jax.Array | None = None
                ) -> tuple[dict, jax.Array, jax.Array]:
    """Feeds last_token [R] at each row's next slot and chooses the token after it.

    Returns (cache, logits, token): the cache one slot further, logits [R, V] f32 the
    normalised next-token logits ``next_token_logprobs`` (what search scores), and token [R]
    int32 drawn from them as ``cfg`` says. ``live`` [R] bool (default all): rows whose fed token
    is real; a finished row feeds padding that no later token attends to.
    """
    live = jnp.ones(last_token.shape, bool) if live is None else live
    logits, new = model.apply(params, last_token[:, None], cache["positions"][:, None],
                              live[:, None], {k: v for k, v in cache.items() if k != "positions"})
    new["positions"] = cache["positions"] + 1
    logp = next_token_logprobs(logits[:, 0], cfg)
    return new, logp, choose_tokens(logp, key, cfg)
