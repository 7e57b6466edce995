"""Grouped-query attention with an optional KV cache.

Keys are kept as [B, KVH, Dh, S] and values as [B, KVH, S, Dh]: in both attention matmuls the
output's free axis (S for scores, Dh for outputs) is then the contiguous one, which measured 5-7x
faster per decode step on CPU than the [B, KVH, S, Dh] layout for both, and a decode step reads
the cache in place (with [B, S, KVH, Dh] XLA transposed the whole cache of every layer at every
step). See benchmarks/rollout.py. A long cache is read in blocks of slots of the same layout
(``live_blocks_attend``); XLA on CPU copies each block out of the cache before reading it, so
where most of the cache is live one fused pass over all of it is cheaper (``cached_attend``).

Which form runs is ``causal_attention``'s choice: the single fused ``attend`` where [T, S] is
small, and where it would be large, blocked forms that never build it (a decode step over a long
cache reads only its live blocks; training attention over a long sequence runs in query blocks).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from o1jax import sharding
from o1jax.models.layers.low_rank import plus_low_rank
from o1jax.models.layers.norm import rms_norm
from o1jax.models.layers.rope import apply_rope

NEG_INF = -1e30  # finite, so a row with no valid key gives a uniform (not NaN) softmax
KEY_BLOCK = 64               # cache slots a cached step reads at a time
LIVE_BLOCKS_FROM = 512       # cache length from which a cached step may read live blocks only
# ... while they are at most this share of the cache: on CPU a block read costs about 2.5x the
# fused op's per slot (measured on small25m's attention, batch 64, 2 cores: XLA copies each
# block out of the cache before YNNPACK's reductions read it), so beyond it the fused op over
# the whole cache is cheaper.
LIVE_SHARE = 0.4
QUERY_BLOCK = 256            # queries per block of the blocked attention without a cache
QUERY_BLOCKS_FROM = 2048     # sequence length from which attention without a cache is blocked


def project_qkv(x: jax.Array, p: dict, rope: tuple[jax.Array, jax.Array], num_heads: int,
                mesh=None, norm_eps: float = 1e-6, slots_major: bool = False):
    """Projects x: [B, T, D] to rotated q: [B, T, H, Dh], k: [B, KVH, Dh, T] (with
    ``slots_major``: [B, KVH, T, Dh], the kernels' layout), v: [B, KVH, T, Dh].

    ``p`` holds wq/wk/wv (+ bq/bk/bv), or the fused decode layout wqkv [D, H + 2 KVH, Dh]
    (+ bqkv) that ``fuse_layers`` builds: one matmul instead of three; with ``p["lora"]``, LoRA
    adapters of wq/wk/wv (``low_rank.plus_low_rank``); with q_norm/k_norm [Dh]
    (Qwen3), q and k are RMS-normalised per head (epsilon ``norm_eps``) before the rotation.
    """
    dt = x.dtype
    if "wqkv" in p:
        qkv = jnp.einsum("btd,dhk->bthk", x, p["wqkv"].astype(dt))
        if "bqkv" in p:
            qkv = qkv + p["bqkv"].astype(dt)
        kvh = (qkv.shape[2] - num_heads) // 2
        q, k, v = jnp.split(qkv, [num_heads, num_heads + kvh], axis=2)
    else:
        q, k, v = (plus_low_rank(jnp.einsum("btd,dhk->bthk", x, p[w].astype(dt)), x,
                                 p.get("lora"), w) for w in ("wq", "wk", "wv"))
        if "bq" in p:
            q, k, v = q + p["bq"].astype(dt), k + p["bk"].astype(dt), v + p["bv"].astype(dt)
    if "q_norm" in p:
        q, k = rms_norm(q, p["q_norm"], norm_eps), rms_norm(k, p["k_norm"], norm_eps)
    q = sharding.constrain(q, mesh, ("act_batch", "act_length", "act_heads", None))
    k = sharding.constrain(k, mesh, ("act_batch", "act_length", "act_kv_heads", None))
    v = sharding.constrain(v, mesh, ("act_batch", "act_length", "act_kv_heads", None))
    k = apply_rope(k, *rope)
    k = k.transpose(0, 2, 1, 3) if slots_major else k.transpose(0, 2, 3, 1)
    return apply_rope(q, *rope), k, v.transpose(0, 2, 1, 3)


def attention_probs(q: jax.Array, k: jax.Array, key_mask: jax.Array) -> jax.Array:
    """The attention weights ``attend`` uses, [B, H, T, S] f32 (query head h reads KV head
    h // (H / KVH)), for looking inside a forward pass (o1jax/traces/reasoning.py)."""
    b, t, h, dh = q.shape
    kvh = k.shape[1]
    qg = q.reshape(b, t, kvh, h // kvh, dh).astype(jnp.float32)
    scores = jnp.einsum("btkgd,bkds->bkgts", qg, k, preferred_element_type=jnp.float32)
    scores = jnp.where(key_mask[:, None, None, :, :], scores * (dh ** -0.5), NEG_INF)
    return jax.nn.softmax(scores, axis=-1).reshape(b, h, t, k.shape[-1])


def causal_mask(kv_mask: jax.Array, start, t: int) -> jax.Array:
    """[B, T, S] bool: query i, at slot start + i, may read slot j iff kv_mask[b, j] (a real
    token) and j <= start + i."""
    slots = jnp.arange(kv_mask.shape[1])
    causal = slots[None, :] <= start + jnp.arange(t)[:, None]          # [T, S]
    return kv_mask[:, None, :] & causal[None]


def causal_attention(kv_mask: jax.Array, start, t: int, cached: bool
                     ) -> jax.Array | Callable[..., jax.Array]:
    """How T queries at slots start ... start + T - 1 attend causally to the slots kv_mask [B, S]
    marks real: ``causal_mask`` (the dense key mask ``attend`` reads) where [T, S] is small, else
    a function (q, k, v) -> [B, T, H, Dh]: ``cached_attend`` over a cache of at least
    LIVE_BLOCKS_FROM slots (``cached``), ``query_blocks_attend`` over at least QUERY_BLOCKS_FROM
    tokens without one (S = T, start 0)."""
    if cached and kv_mask.shape[1] >= LIVE_BLOCKS_FROM:
        return functools.partial(cached_attend, kv_mask=kv_mask, start=start)
    if not cached and t >= QUERY_BLOCKS_FROM:
        return functools.partial(query_blocks_attend, kv_mask=kv_mask)
    return causal_mask(kv_mask, start, t)


def _grouped(q: jax.Array, kvh: int) -> jax.Array:
    """q [B, T, H, Dh] -> [B, T, KVH, G, Dh] f32: query head h reads KV head h // G."""
    b, t, h, dh = q.shape
    return q.reshape(b, t, kvh, h // kvh, dh).astype(jnp.float32)


def _scores(qg: jax.Array, k: jax.Array, key_mask: jax.Array) -> jax.Array:
    """qg [B, T, KVH, G, Dh] f32, k [B, KVH, Dh, S], key_mask [B, T, S] -> scaled scores
    [B, KVH, G, T, S] f32, NEG_INF where the mask is False."""
    if qg.shape[1] == 1:
        # A decode step is a batched matrix-vector product: as a broadcast multiply reduced over
        # a major axis XLA streams the cache once (measured 4-7x faster on CPU than dot_general).
        scores = jnp.sum(qg[:, 0, :, :, :, None] * k[:, :, None].astype(jnp.float32), axis=3)
        scores = scores[:, :, :, None, :]                                # [B, KVH, G, 1, S]
    else:
        scores = jnp.einsum("btkgd,bkds->bkgts", qg, k, preferred_element_type=jnp.float32)
    scores = scores * (qg.shape[-1] ** -0.5)
    return jnp.where(key_mask[:, None, None, :, :], scores, NEG_INF)


def _mix(probs: jax.Array, v: jax.Array, dtype) -> jax.Array:
    """probs [B, KVH, G, T, S] f32, v [B, KVH, S, Dh] -> sum_s probs v: [B, T, KVH, G, Dh] (f32
    for a single query, else ``dtype``)."""
    if probs.shape[3] == 1:
        out = jnp.sum(probs[:, :, :, 0, :, None] * v[:, :, None].astype(jnp.float32), axis=3)
        return out[:, None]
    return jnp.einsum("bkgts,bksd->btkgd", probs.astype(v.dtype), v, preferred_element_type=dtype)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """Softmax attention.

    q: [B, T, H, Dh]; k: [B, KVH, Dh, S]; v: [B, KVH, S, Dh]; key_mask: [B, T, S] bool (True =
    may attend).
    Scores and softmax in f32; returns [B, T, H, Dh] in q's dtype.
    """
    probs = jax.nn.softmax(_scores(_grouped(q, k.shape[1]), k, key_mask), axis=-1)
    return _mix(probs, v, v.dtype).reshape(q.shape).astype(q.dtype)


def cached_attend(q: jax.Array, k: jax.Array, v: jax.Array, kv_mask: jax.Array, start
                  ) -> jax.Array:
    """Attention of T queries at slots start ... start + T - 1 over a long cache (shapes as in
    ``live_blocks_attend``): a decode step reads the live blocks while they are at most
    LIVE_SHARE of the cache and runs ``attend`` over the whole cache beyond; a chunk of T > 1
    queries (a prefill) always reads live blocks, where the block copies are small beside its
    compute, and never builds [B, H, T, S] scores."""
    t, s = q.shape[1], k.shape[-1]
    if t > 1:
        return live_blocks_attend(q, k, v, kv_mask, start)
    live = (start + t + KEY_BLOCK - 1) // KEY_BLOCK * KEY_BLOCK
    return jax.lax.cond(live <= LIVE_SHARE * s, live_blocks_attend, _attend_all, q, k, v,
                        kv_mask, start)


def _attend_all(q: jax.Array, k: jax.Array, v: jax.Array, kv_mask: jax.Array, start
                ) -> jax.Array:
    """``attend`` over every slot of the cache, its [B, T, S] key mask built here."""
    return attend(q, k, v, causal_mask(kv_mask, start, q.shape[1]))


def live_blocks_attend(q: jax.Array, k: jax.Array, v: jax.Array, kv_mask: jax.Array,
                       start) -> jax.Array:
    """``attend`` for T queries at slots start ... start + T - 1 of a cache, reading only the
    KEY_BLOCK-slot blocks below the live length start + T (the same for every row: prompts are
    left-padded) with an online softmax across them, so a step costs what the cache holds, not
    its capacity. A loop with a traced trip count: not differentiable, nor need it be.

    q: [B, T, H, Dh]; k: [B, KVH, Dh, S]; v: [B, KVH, S, Dh] (S >= KEY_BLOCK); kv_mask: [B, S]
    bool, real slots; start: [] int. Returns [B, T, H, Dh] in q's dtype. The last block ends at
    slot S and skips the slots the block before it read. A query with no real slot to read (a
    left-padding position, never read) averages the values of the blocks read, not of all S.
    """
    b, t, h, dh = q.shape
    kvh, s = k.shape[1], k.shape[-1]
    qg = _grouped(q, kvh)
    queries = start + jnp.arange(t)

    def add_block(j, carry):
        m, total, acc = carry     # running max score, sum of exp(score - m), weighted values
        at = jnp.minimum(j * KEY_BLOCK, s - KEY_BLOCK)
        slots = at + jnp.arange(KEY_BLOCK)
        fresh = (slots >= j * KEY_BLOCK) & (slots[None, :] <= queries[:, None])    # [T, KB]
        key_mask = jax.lax.dynamic_slice_in_dim(kv_mask, at, KEY_BLOCK, 1)[:, None] & fresh
        scores = _scores(qg, jax.lax.dynamic_slice_in_dim(k, at, KEY_BLOCK, 3), key_mask)
        m_new = jnp.maximum(m, jnp.max(scores, axis=-1))
        p = jnp.exp(scores - m_new[..., None])
        decay = jnp.exp(m - m_new)
        weighted = _mix(p, jax.lax.dynamic_slice_in_dim(v, at, KEY_BLOCK, 2), jnp.float32)
        acc = acc * jnp.moveaxis(decay, 3, 1)[..., None] + weighted
        return m_new, total * decay + jnp.sum(p, axis=-1), acc

    init = (jnp.full((b, kvh, h // kvh, t), NEG_INF, jnp.float32),
            jnp.zeros((b, kvh, h // kvh, t), jnp.float32),
            jnp.zeros((b, t, kvh, h // kvh, dh), jnp.float32))
    blocks = (start + t + KEY_BLOCK - 1) // KEY_BLOCK
    _, total, acc = jax.lax.fori_loop(0, blocks, add_block, init)
    return (acc / jnp.moveaxis(total, 3, 1)[..., None]).reshape(q.shape).astype(q.dtype)


def query_blocks_attend(q: jax.Array, k: jax.Array, v: jax.Array, kv_mask: jax.Array
                        ) -> jax.Array:
    """Causal ``attend`` of T tokens without a cache (S = T; token i at slot i), QUERY_BLOCK
    queries at a time: each block runs ``attend`` over all S keys with its own [B, QB, S] key
    mask, under ``jax.checkpoint``, so neither pass holds more than one block's [B, H, QB, S]
    scores (the backward recomputes them) where ``attend`` holds [B, H, T, S].

    Query blocks and JAX's own gradient rather than flash attention (key blocks, an online
    softmax and a hand-written backward): every row's softmax is ``attend``'s, so outputs match
    it to rounding and the gradient is autodiff's, with no backward pass of ours to get wrong.
    The price: the backward computes each block's scores twice and, as in ``attend``, every
    block also computes the scores of the future keys it masks.

    q: [B, T, H, Dh]; k: [B, KVH, Dh, T]; v: [B, KVH, T, Dh]; kv_mask: [B, T] bool, real
    tokens. Returns [B, T, H, Dh] in q's dtype.
    """
    b, t, h, dh = q.shape
    n = -(-t // QUERY_BLOCK)
    blocks = jnp.pad(q, ((0, 0), (0, n * QUERY_BLOCK - t), (0, 0), (0, 0)))
    blocks = jnp.moveaxis(blocks.reshape(b, n, QUERY_BLOCK, h, dh), 1, 0)
    # The key masks are the same in every layer: differentiating the layer scan would hoist
    # their computation out of it and hold all of them at once ([T, S] booleans and more). Tied
    # to this layer's queries, they stay inside, built one block at a time.
    firsts = jnp.arange(n) * QUERY_BLOCK
    kv_mask, blocks, firsts = jax.lax.optimization_barrier((kv_mask, blocks, firsts))

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def block(_, xs):
        qb, first = xs
        return None, attend(qb, k, v, causal_mask(kv_mask, first, QUERY_BLOCK))

    _, out = jax.lax.scan(block, None, (blocks, firsts))
    return jnp.moveaxis(out, 0, 1).reshape(b, n * QUERY_BLOCK, h, dh)[:, :t]


def output_projection(o: jax.Array, wo: jax.Array, adapters: dict | None = None) -> jax.Array:
    """o: [B, T, H, Dh], wo: [H, Dh, D] -> [B, T, D] (+ wo's LoRA path in ``adapters``)."""
    return plus_low_rank(jnp.einsum("bthk,hkd->btd", o, wo.astype(o.dtype)), o, adapters, "wo",
                         input_axes=2)
