"""A decode step's attention as a Pallas TPU (Mosaic) kernel that reads only the live blocks of
the cache, in ``xla``'s layout, and honours its slot mask exactly.

JAX's TPU ``paged_attention`` and ``ragged_paged_attention`` attend to slots [0, length) of a
row; o1jax's rows are left-padded and a search row can hold padding between real slots, so this
kernel reads the slot mask too. Every row of a decode step writes the same slot, so one ``end``
(that slot + 1) bounds them all: it is prefetched into scalar memory, and the key and value
blocks at or past it are neither computed on nor copied (their block index stays at the last
live block, which Pallas does not fetch again). One program per (row, KV head, block of
512, 256 or 128 slots, the largest that divides the cache): the KV head's query heads (padded
to a multiple of 8 rows) against keys [Dh, block], ``xla``'s key layout ([B, KVH, Dh, S]), so
neither the cache nor a block is transposed; a running max, sum and weighted values in f32 in
VMEM across the blocks, written at the last.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

BLOCK = 128              # a cache's slots are a multiple of this (the TPU's lane width)
BLOCKS = (512, 256, BLOCK)   # slots a program reads: the largest that divides the cache
SUBLANES = 8             # query rows are padded to a multiple of this
MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)   # finite: no inf - inf anywhere


def _kernel(end_ref, q_ref, k_ref, v_ref, mask_ref, o_ref, m_ref, l_ref, acc_ref, *,
            block: int, scale: float):
    """end_ref [1] int32 (SMEM); q_ref [G8, Dh]; k_ref [Dh, block]; v_ref [block, Dh]; mask_ref
    [1, block] int32; o_ref [G8, Dh] f32; scratch m_ref, l_ref [G8, 128], acc_ref [G8, Dh] f32."""
    from jax.experimental import pallas as pl

    j = pl.program_id(2)
    end = end_ref[0]

    @pl.when(j == 0)
    def _start():
        m_ref[...] = jnp.full(m_ref.shape, MASKED, jnp.float32)
        l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
        acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

    @pl.when(j * block < end)
    def _block():
        scores = jax.lax.dot_general(q_ref[...], k_ref[...], (((1,), (0,)), ((), ())),
                                     preferred_element_type=jnp.float32) * scale
        slots = j * block + jax.lax.broadcasted_iota(jnp.int32, (1, block), 1)
        real = (mask_ref[...] != 0) & (slots < end)                      # [1, block]
        scores = jnp.where(real, scores, MASKED)
        m_old = m_ref[...][:, :1]
        m_new = jnp.maximum(m_old, jnp.max(scores, axis=1, keepdims=True))
        p = jnp.where(real, jnp.exp(scores - m_new), 0.0)
        decay = jnp.exp(m_old - m_new)
        l_new = l_ref[...][:, :1] * decay + jnp.sum(p, axis=1, keepdims=True)
        acc_ref[...] = acc_ref[...] * decay + jax.lax.dot_general(
            p.astype(v_ref.dtype), v_ref[...], (((1,), (0,)), ((), ())),
            preferred_element_type=jnp.float32)
        m_ref[...] = jnp.broadcast_to(m_new, m_ref.shape)
        l_ref[...] = jnp.broadcast_to(l_new, l_ref.shape)

    @pl.when(j == pl.num_programs(2) - 1)
    def _finish():
        o_ref[...] = acc_ref[...] / jnp.maximum(l_ref[...][:, :1], 1e-30)


def decode_attention(q: jax.Array, k: jax.Array, v: jax.Array, kv_mask: jax.Array, end
                     ) -> jax.Array:
    """q [B, H, Dh] (one query per row), k [B, KVH, Dh, S], v [B, KVH, S, Dh] (S a multiple of
    BLOCK), kv_mask [B, S] bool, end [] int32 (>= 1): query h of a row reads the real slots
    (kv_mask) below ``end`` of KV head h // (H / KVH). Returns [B, H, Dh] f32; a row with no
    real slot below ``end`` gets zeros. On a CPU it runs under Pallas's TPU interpret mode
    (``jax.experimental.pallas.tpu.force_tpu_interpret_mode``, held by the caller)."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import tpu as pltpu

    b, h, dh = q.shape
    kvh, s = k.shape[1], k.shape[3]
    g = h // kvh
    if s % BLOCK:
        raise ValueError(f"TPU decode kernel: {s} cache slots, a multiple of {BLOCK} needed")
    block = next(n for n in BLOCKS if s % n == 0)
    rows = -(-g // SUBLANES) * SUBLANES
    qg = jnp.pad(q.reshape(b, kvh, g, dh), ((0, 0), (0, 0), (0, rows - g), (0, 0)))

    def live(j, end_ref):        # blocks past the last live one stay at it: not fetched again
        # why lax.div: end >= 1, and ``//``'s sign handling asks for the TPU's generation
        return jnp.minimum(j, jax.lax.div(end_ref[0] - 1, block))

    head = lambda i, kv, j, e: (i, kv, 0, 0)  # noqa: E731
    spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=1, grid=(b, kvh, s // block),
        in_specs=[pl.BlockSpec((None, None, rows, dh), head),
                  pl.BlockSpec((None, None, dh, block), lambda i, kv, j, e: (i, kv, 0, live(j, e))),
                  pl.BlockSpec((None, None, block, dh), lambda i, kv, j, e: (i, kv, live(j, e), 0)),
                  pl.BlockSpec((None, 1, block), lambda i, kv, j, e: (i, 0, live(j, e)))],
        out_specs=pl.BlockSpec((None, None, rows, dh), head),
        scratch_shapes=[pltpu.VMEM((rows, 128), jnp.float32),
                        pltpu.VMEM((rows, 128), jnp.float32),
                        pltpu.VMEM((rows, dh), jnp.float32)])
    out = pl.pallas_call(
        functools.partial(_kernel, block=block, scale=dh ** -0.5), grid_spec=spec,
        out_shape=jax.ShapeDtypeStruct((b, kvh, rows, dh), jnp.float32),
        compiler_params=pltpu.CompilerParams(
            dimension_semantics=("parallel", "parallel", "arbitrary")),
        name="o1jax_tpu_decode_attention",
    )(jnp.reshape(jnp.asarray(end, jnp.int32), (1,)), qg.astype(k.dtype), k, v,
      kv_mask.astype(jnp.int32)[:, None, :])
    return out[:, :, :g].reshape(b, h, dh)
