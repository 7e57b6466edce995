"""The rollout engine: KV-cache sampling as one compiled function, built from ``prefill`` and
``decode_step`` (o1jax/rollout/decoding.py).

Layout of a rollout row (length P + N, P = padded prompt length, N = max_new_tokens)::

    [ left padding | prompt | response (ends with a stop token if finished) | right padding ]

Prompts are left-padded so that every row writes its next token into the same cache slot; the
position ids count real tokens only (``positions_from_mask``), so padding changes nothing.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from o1jax import sharding
from o1jax.models import patches
from o1jax.models.cache import cache_slots
from o1jax.models.transformer import Params, Transformer
from o1jax.models.vision import check_placeholders
from o1jax.rollout.decoding import (SamplingConfig, choose_tokens, decode_params, decode_step,
                                    grow_cache, next_token_logprobs, pad_slots, prefill,
                                    repeat_cache)
from o1jax.rollout.forcing import force_tokens, init_forcing
from o1jax.rollout import tools as tools_lib

# A rollout of an unrolled decode (``Transformer.scans_decode`` off) runs SEGMENTS decode loops
# of about equal length, none under SEGMENT_STEPS steps, each over a cache only as long as its own
# last step needs: a decode step's attention reads the whole cache, and on CPU it is bound by that
# read. A first loop of at least 2 * FIRST_STEPS steps (a long thinking budget) is split into
# loops ending at FIRST_STEPS, 2 * FIRST_STEPS, ..., so that a response that ends early never
# decodes over a cache of more than twice its length or 2 * FIRST_STEPS slots (the prompt's
# aside). The empty slots a loop skips add exact zeros, so only the order of the reductions'
# terms can change (log-probs within an ulp or so). A scanned (deep) model keeps one loop: each
# loop compiles apart.
SEGMENTS, SEGMENT_STEPS, FIRST_STEPS = 4, 32, 256


class Rollout(NamedTuple):
    """Fixed-shape result of ``sample``; R = B * G rows, T = P + N columns.

    tokens:        [R, T] int32  prompt + response, pad_id elsewhere
    mask:          [R, T] bool   real tokens (prompt and response)
    response_mask: [R, T] bool   response tokens the policy wrote, the stop token included (its
                                 actions: a tool call's output is in ``mask``, not here)
    logprobs:      [R, T] f32    log p(token | prefix) of each response token under
                                 softmax(logits / temperature), *without* top-k/top-p filtering
                                 (temperature 1 when greedy); 0 outside the response. This is
                                 what the trainer recomputes, so PPO ratios start at exactly 1.
    lengths:       [R] int32     response lengths (stop token and tool outputs included)
    finished:      [R] bool      the response ended with a stop token (False: truncated at N)
    num_steps:     [] int32      tokens sampled per row by the loop (= the longest response)
    experts:       [R, T, L, k] int32, a mixture of experts' routing of each token it fed (the
                                 last column's, never fed, is 0), or None (a dense model):
                                 what routing replay has the trainer reuse
    tool_calls:    [R] int32     tool calls each row made (o1jax/rollout/tools.py), or None
                                 (sampled without tools)
    """
    tokens: jax.Array
    mask: jax.Array
    response_mask: jax.Array
    logprobs: jax.Array
    lengths: jax.Array
    finished: jax.Array
    num_steps: jax.Array
    experts: jax.Array | None = None
    tool_calls: jax.Array | None = None


def sample(model: Transformer, params: Params, prompt_tokens: jax.Array, prompt_mask: jax.Array,
           key: jax.Array, cfg: SamplingConfig, images: jax.Array | None = None) -> Rollout:
    """Samples G responses per prompt with a KV cache; stops as soon as every row is done.

    prompt_tokens, prompt_mask: [B, P], left-padded. Pure and jittable (``cfg`` and ``model``
    static); deterministic given ``key``. Returns a Rollout of B * G rows, the G samples of a
    prompt adjacent. The B distinct prompts are prefilled once and each row's cache copied G
    times; the prefill gives the first token's logits, so a batch whose longest response has k
    tokens runs k - 1 ``decode_step`` calls. ``images`` [B, S, S, 3] uint8: one per prompt,
    encoded once in the prefill (decode steps never see them).
    """
    b, p = prompt_tokens.shape
    g, n = cfg.num_samples, cfg.max_new_tokens
    r = b * g
    prompt_mask = prompt_mask.astype(bool)
    params = decode_params(model, params)
    ends = [n] if model.scans_decode else segment_ends(n)
    cache, logits = prefill(model, params, prompt_tokens, prompt_mask, p + ends[0], images)
    cache = repeat_cache(model, cache, g)
    rep = lambda a: jnp.repeat(a, g, axis=0) if g > 1 else a  # noqa: E731
    stop_ids = jnp.asarray(cfg.stop_ids or (-1,), jnp.int32)

    def record(s, logp, tok):
        """Writes the token chosen at column ``s["step"]`` (pad_id for rows already done), after
        budget forcing when it is on."""
        live = ~s["done"]
        if cfg.forcing is not None:
            tok, forcing = force_tokens(cfg.forcing, s["forcing"], s["step"], tok, stop_ids)
            s = dict(s, forcing=forcing)
        wrote = live
        if cfg.tools is not None:     # a pending tool output is written, not sampled
            tok, forced, tool_state = tools_lib.force_output(s["tools"], tok)
            wrote = live & ~forced
            s = dict(s, tools=tool_state)
        tok = jnp.where(live, tok, cfg.pad_id)
        lp = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
        step = s["step"]
        s = dict(s, done=s["done"] | (wrote & jnp.isin(tok, stop_ids)), step=step + 1,
                 last=tok, live=live, tokens=s["tokens"].at[:, step].set(tok),
                 logprobs=s["logprobs"].at[:, step].set(jnp.where(wrote, lp, 0.0)),
                 active=s["active"].at[:, step].set(live))
        if cfg.tools is not None:
            s["written"] = s["written"].at[:, step].set(wrote)
            s["tools"] = tools_lib.call_closed(cfg.tools, s["tools"], s["tokens"], s["written"],
                                               step, wrote, model.mesh)
        return s

    def body(s):
        key, sub = jax.random.split(s["key"])
        cache, logp, tok = decode_step(model, params, s["cache"], s["last"], sub, cfg,
                                       live=s["live"])
        return record(dict(s, key=key, cache=cache), logp, tok)

    key, sub = jax.random.split(key)
    state = dict(
        step=jnp.zeros((), jnp.int32), key=key, cache=cache, done=jnp.zeros((r,), bool),
        last=jnp.zeros((r,), jnp.int32), live=jnp.ones((r,), bool),
        tokens=jnp.full((r, n), cfg.pad_id, jnp.int32), logprobs=jnp.zeros((r, n), jnp.float32),
        active=jnp.zeros((r, n), bool))
    if cfg.forcing is not None:
        state["forcing"] = init_forcing(cfg.forcing, r)
    if cfg.tools is not None:
        state["tools"] = tools_lib.init_state(cfg.tools, r)
        state["written"] = jnp.zeros((r, n), bool)

    def finish(s):
        """The loop state without the cache (of each loop's own length), a mixture of experts'
        routing record padded to the last loop's cache length."""
        out = {k: v for k, v in s.items() if k != "cache"}
        if "experts" in s["cache"]:
            out["experts"] = pad_slots(s["cache"]["experts"], 1,
                                       cache_slots(p + n, model.attention))
        return out

    def loops_from(i, s):
        """Decode loop i and the ones after it; once every row is done, none of the later
        loops' caches is grown (a copy of every layer's cache)."""
        if i:
            s = dict(s, cache=grow_cache(model, s["cache"], p + ends[i]))
        s = jax.lax.while_loop(lambda s: (s["step"] < ends[i]) & ~jnp.all(s["done"]), body, s)
        if i + 1 == len(ends):
            return finish(s)
        return jax.lax.cond(jnp.all(s["done"]), finish, functools.partial(loops_from, i + 1), s)

    first = next_token_logprobs(rep(logits), cfg)
    s = loops_from(0, record(state, first, choose_tokens(first, sub, cfg)))
    tokens = jnp.concatenate([rep(prompt_tokens.astype(jnp.int32)), s["tokens"]], axis=1)
    written = s["written"] if cfg.tools is not None else s["active"]
    response_mask = jnp.concatenate([jnp.zeros((r, p), bool), written], axis=1)
    mask = jnp.concatenate([rep(prompt_mask), s["active"]], axis=1)
    logprobs = jnp.concatenate([jnp.zeros((r, p), jnp.float32), s["logprobs"]], axis=1)
    return Rollout(tokens=tokens, mask=mask, response_mask=response_mask, logprobs=logprobs,
                   lengths=jnp.sum(s["active"], axis=1).astype(jnp.int32),
                   finished=s["done"], num_steps=s["step"], experts=s.get("experts"),
                   tool_calls=s["tools"]["calls"] if cfg.tools is not None else None)


def segment_ends(n: int) -> list[int]:
    """The response column each decode loop of ``sample`` stops before (its cache holds the
    prompt and that many columns) for n = max_new_tokens: up to SEGMENTS loops of about equal
    length, none under SEGMENT_STEPS steps, the last ending at n; before them, where the first
    would be at least 2 * FIRST_STEPS long, loops ending at FIRST_STEPS, 2 * FIRST_STEPS, ...
    below its end (n = 4,064: 256, 512, 1,016, 2,032, 3,048, 4,064)."""
    k = max(1, min(SEGMENTS, n // SEGMENT_STEPS))
    equal = [-(-n * j // k) for j in range(1, k + 1)]
    first = []
    while equal[0] >= 2 * FIRST_STEPS and FIRST_STEPS << len(first) < equal[0]:
        first.append(FIRST_STEPS << len(first))
    return first + equal


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


def make_sampler(model: Transformer, cfg: SamplingConfig, gather: bool = False):
    """A compiled ``(params, prompt_tokens, prompt_mask, key, images=None) -> Rollout``
    (``images`` [B, S, S, 3] uint8 or ``Patches``, one per prompt, for a vision model).

    With ``model.mesh`` set, inputs and outputs carry explicit shardings: params as the model's
    rules say, the batch over the data axes. Inputs are checked on the host before compiling.
    With ``gather`` (evaluation, generate) the prompts are host arrays every process holds in
    full: each process puts only its own devices' rows, and the whole rollout comes back as host
    numpy arrays on every process (a batch the data axes do not divide is replicated, as
    ``sharding.batch_sharding`` says).
    """
    def fn(params, tokens, mask, key, images=None):
        return sample(model, params, tokens, mask, key, cfg, images)
    mesh = model.mesh

    @functools.lru_cache(maxsize=8)
    def compiled(batch_shape, native: bool):
        if mesh is None:
            return jax.jit(fn)
        batch = sharding.batch_sharding(mesh, 2, batch_shape)
        out_rows = sharding.batch_sharding(mesh, 2, (batch_shape[0] * cfg.num_samples, 1))
        row = sharding.batch_sharding(mesh, 1, (batch_shape[0] * cfg.num_samples,))
        routes = sharding.batch_sharding(mesh, 4, (batch_shape[0] * cfg.num_samples, 1, 1, 1))
        out = Rollout(tokens=out_rows, mask=out_rows, response_mask=out_rows, logprobs=out_rows,
                      lengths=row, finished=row, num_steps=sharding.replicated(mesh),
                      experts=routes if model.cfg.num_experts else None,
                      tool_calls=row if cfg.tools is not None else None)
        images = patches.batch_shardings(mesh, native, batch_shape[0])
        return jax.jit(fn, in_shardings=(model.shardings(), batch, batch,
                                         sharding.replicated(mesh), images),
                       out_shardings=out)

    def run(params, prompt_tokens, prompt_mask, key, images=None) -> Rollout:
        check_prompts(prompt_mask, model, cfg)
        if (images is None) != (model.cfg.vision is None):
            raise ValueError("a vision model samples with one image per prompt, a text model "
                             "without images")
        native = isinstance(images, patches.Patches)
        if images is not None:
            check_placeholders(prompt_tokens, prompt_mask, model.cfg.image_token_id,
                               np.prod(patches.merged_grid(model.cfg.vision, images), axis=1)
                               if native else model.cfg.vision.num_tokens)
        fn = compiled(tuple(np.shape(prompt_tokens)), native)
        if not gather:
            return fn(params, prompt_tokens, prompt_mask, key, images)
        if mesh is None or jax.process_count() == 1:
            return jax.tree.map(np.asarray, fn(params, prompt_tokens, prompt_mask, key, images))
        host = (prompt_tokens, prompt_mask) + tuple(jax.tree.leaves(images))
        tokens, mask, *im = sharding.global_batch_from_host(mesh, host)
        im = jax.tree.unflatten(jax.tree.structure(images), im)
        roll = fn(params, tokens, mask, key, im)
        return jax.tree.map(
            lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), roll)

    return run


@functools.lru_cache(maxsize=8)
def gathering_sampler(model: Transformer, cfg: SamplingConfig):
    """``make_sampler(model, cfg, gather=True)``, one per (model, cfg) for the process's life:
    evaluation during training (every curve point), each budget of a strategy and the GenRM's
    checks reuse one compiled sampler instead of tracing and compiling it again."""
    return make_sampler(model, cfg, gather=True)
