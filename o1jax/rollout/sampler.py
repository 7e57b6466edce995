"""The rollout engine: KV-cache sampling as one compiled function.

Layout of a rollout row (length P + N, P = padded prompt length, N = max_new_tokens)::

    [ left padding | prompt | response (ends with a stop token if finished) | right padding ]

Prompts are left-padded so that every row writes its next token into the same cache slot; the
position ids count real tokens only (``positions_from_mask``), so padding changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from o1jax import sharding
from o1jax.models.transformer import Params, Transformer, positions_from_mask, unstack_layers


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample. ``top_k=0`` and ``top_p=1`` switch those filters off; ``greedy`` takes the
    argmax and ignores temperature, top-k and top-p. ``num_samples`` (G) responses per prompt."""
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    num_samples: int = 1
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0

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

    @property
    def logprob_temperature(self) -> float:
        return 1.0 if self.greedy else self.temperature


class Rollout(NamedTuple):
    """Fixed-shape result of ``sample``; R = B * G rows, T = P + N columns.

    tokens:        [R, T] int32  prompt + response, pad_id elsewhere
    mask:          [R, T] bool   real tokens (prompt and response)
    response_mask: [R, T] bool   response tokens, the stop token included (the policy's actions)
    logprobs:      [R, T] f32    log p(token | prefix) of each response token under
                                 softmax(logits / temperature), *without* top-k/top-p filtering
                                 (temperature 1 when greedy); 0 outside the response. This is
                                 what the trainer recomputes, so PPO ratios start at exactly 1.
    lengths:       [R] int32     response lengths (stop token included)
    finished:      [R] bool      the response ended with a stop token (False: truncated at N)
    num_steps:     [] int32      tokens sampled per row by the loop (= the longest response)
    """
    tokens: jax.Array
    mask: jax.Array
    response_mask: jax.Array
    logprobs: jax.Array
    lengths: jax.Array
    finished: jax.Array
    num_steps: jax.Array

    @property
    def positions(self) -> jax.Array:
        return positions_from_mask(self.mask)


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


def choose_tokens(logp: jax.Array, key: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """One token per row from logp = log_softmax(logits / temperature): [B, V] f32."""
    if cfg.greedy:
        return jnp.argmax(logp, axis=-1).astype(jnp.int32)
    return inverse_cdf_sample(jnp.exp(filter_logits(logp, cfg.top_k, cfg.top_p)), key)


def sample(model: Transformer, params: Params, prompt_tokens: jax.Array, prompt_mask: jax.Array,
           key: jax.Array, cfg: SamplingConfig) -> Rollout:
    """Samples G responses per prompt with a KV cache; stops as soon as every row is done.

    prompt_tokens, prompt_mask: [B, P], left-padded. Pure and jittable (``cfg`` and ``model``
    static); deterministic given ``key``. Returns a Rollout of B * G rows, the G samples of a
    prompt adjacent. The loop runs one model call per token after the first (the prefill gives
    the first token's logits), so a batch whose longest response has k tokens runs k - 1 decode
    calls.
    """
    b, p = prompt_tokens.shape
    g, n = cfg.num_samples, cfg.max_new_tokens
    r = b * g
    mesh = model.mesh
    prompt_mask = prompt_mask.astype(bool)
    # Decode layout, built once per rollout. Fusing q/k/v would mix head shards under tensor
    # parallelism, so it is only done when heads are not split.
    params = unstack_layers(params, fuse=not sharding.splits_heads(mesh))

    # Prefill the B distinct prompts once, then copy each row's cache G times.
    cache = model.init_cache(b, p + n)
    x, cache = model.hidden(params, prompt_tokens, positions_from_mask(prompt_mask), prompt_mask,
                            cache)
    logits = model.head_out(params, x[:, -1:])[:, 0]
    rep = lambda a, axis=0: jnp.repeat(a, g, axis=axis) if g > 1 else a  # noqa: E731
    cache = dict(jax.tree.map(rep, {k: cache[k] for k in ("k", "v", "mask")}),
                 index=cache["index"])
    cache = jax.tree.map(lambda ax, c: sharding.constrain(c, mesh, ax), model.cache_axes(), cache,
                         is_leaf=sharding.is_axes)
    stop_ids = jnp.asarray(cfg.stop_ids or (-1,), jnp.int32)

    def emit(s, logits, key):
        """Samples the token at column ``s["step"]`` from logits [R, V]."""
        logp = jax.nn.log_softmax(logits / cfg.logprob_temperature, axis=-1)
        tok = choose_tokens(logp, key, cfg)
        lp = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
        live = ~s["done"]
        tok = jnp.where(live, tok, cfg.pad_id)
        hit_stop = live & jnp.isin(tok, stop_ids)
        step = s["step"]
        return dict(s, done=s["done"] | hit_stop, finished=s["finished"] | hit_stop,
                    step=step + 1, last=tok, live=live,
                    tokens=s["tokens"].at[:, step].set(tok),
                    logprobs=s["logprobs"].at[:, step].set(jnp.where(live, lp, 0.0)),
                    active=s["active"].at[:, step].set(live))

    def cond(s):
        return (s["step"] < n) & ~jnp.all(s["done"])

    def body(s):
        key, sub = jax.random.split(s["key"])
        logits, cache = model.apply(params, s["last"][:, None], s["positions"][:, None],
                                    s["live"][:, None], s["cache"])
        s = dict(s, key=key, cache=cache, positions=s["positions"] + 1)
        return emit(s, logits[:, 0], sub)

    key, sub = jax.random.split(key)
    state = dict(
        step=jnp.zeros((), jnp.int32), key=key, cache=cache,
        positions=rep(jnp.sum(prompt_mask, axis=1).astype(jnp.int32)),  # next position per row
        done=jnp.zeros((r,), bool), finished=jnp.zeros((r,), bool),
        last=jnp.zeros((r,), jnp.int32), live=jnp.ones((r,), bool),
        tokens=jnp.full((r, n), cfg.pad_id, jnp.int32), logprobs=jnp.zeros((r, n), jnp.float32),
        active=jnp.zeros((r, n), bool))
    s = jax.lax.while_loop(cond, body, emit(state, rep(logits), sub))

    tokens = jnp.concatenate([rep(prompt_tokens.astype(jnp.int32)), s["tokens"]], axis=1)
    response_mask = jnp.concatenate([jnp.zeros((r, p), bool), s["active"]], axis=1)
    mask = jnp.concatenate([rep(prompt_mask), s["active"]], axis=1)
    logprobs = jnp.concatenate([jnp.zeros((r, p), jnp.float32), s["logprobs"]], axis=1)
    return Rollout(tokens=tokens, mask=mask, response_mask=response_mask, logprobs=logprobs,
                   lengths=jnp.sum(s["active"], axis=1).astype(jnp.int32),
                   finished=s["finished"], num_steps=s["step"])


def check_prompts(prompt_mask: np.ndarray, model: Transformer, cfg: SamplingConfig) -> None:
    """Host-side checks before compiling: no empty prompt, prompt + response fits the model."""
    prompt_mask = np.asarray(prompt_mask)
    if prompt_mask.ndim != 2:
        raise ValueError(f"prompts must be a [batch, length] array, got shape {prompt_mask.shape}")
    empty = np.flatnonzero(prompt_mask.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"empty prompt(s) at row(s) {empty[:10].tolist()}")
    total = prompt_mask.shape[1] + cfg.max_new_tokens
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt length {prompt_mask.shape[1]} + max_new_tokens "
                         f"{cfg.max_new_tokens} = {total} exceeds the model's max_seq_len "
                         f"{model.cfg.max_seq_len}")


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, length: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token lists to ``length`` (default: the longest). Returns tokens, mask [B, P]."""
    if not prompts:
        raise ValueError("no prompts")
    for i, pr in enumerate(prompts):
        if len(pr) == 0:
            raise ValueError(f"prompt {i} is empty")
    longest = max(len(pr) for pr in prompts)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"prompt of {longest} tokens is longer than the maximum prompt length "
                         f"{length}")
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    mask = np.zeros((len(prompts), length), bool)
    for i, pr in enumerate(prompts):
        tokens[i, length - len(pr):] = pr
        mask[i, length - len(pr):] = True
    return tokens, mask


def make_sampler(model: Transformer, cfg: SamplingConfig):
    """A compiled ``(params, prompt_tokens, prompt_mask, key) -> Rollout``.

    With ``model.mesh`` set, inputs and outputs carry explicit shardings: params as the model's
    rules say, the batch over the data axes. Inputs are checked on the host before compiling.
    """
    fn = functools.partial(sample, model, cfg=cfg)
    mesh = model.mesh

    @functools.lru_cache(maxsize=8)
    def compiled(batch_shape):
        if mesh is None:
            return jax.jit(fn)
        batch = sharding.batch_sharding(mesh, 2, batch_shape)
        out_rows = sharding.batch_sharding(mesh, 2, (batch_shape[0] * cfg.num_samples, 1))
        row = sharding.batch_sharding(mesh, 1, (batch_shape[0] * cfg.num_samples,))
        out = Rollout(tokens=out_rows, mask=out_rows, response_mask=out_rows, logprobs=out_rows,
                      lengths=row, finished=row, num_steps=sharding.replicated(mesh))
        return jax.jit(fn, in_shardings=(model.shardings(), batch, batch,
                                         sharding.replicated(mesh)), out_shardings=out)

    def run(params, prompt_tokens, prompt_mask, key) -> Rollout:
        check_prompts(prompt_mask, model, cfg)
        return compiled(tuple(np.shape(prompt_tokens)))(params, prompt_tokens, prompt_mask, key)

    return run
