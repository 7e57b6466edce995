"""A decode step's attention as a Pallas GPU (Triton) kernel that reads only the live slots of
the cache and honours its slot mask exactly.

JAX's own ``pallas.ops.gpu.decode_attention`` attends to a range of slots per row; o1jax's
caches can hold padding between real slots (a search row that waited while others decoded), so
this kernel reads the mask too (one int32 per slot, beside 2 x KVH x Dh cache values). The
algorithm is split-K flash decoding: each (row, KV head) is cut into parts (``split_size``)
read by programs of their own, each keeping a running max, sum and weighted values in f32 over
``block`` slots at a time and stopping at the live length; the parts are merged after.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

SLOT_MULTIPLE = 256      # cache slots: a multiple of this, so a part of 16-256 slots divides it
MAX_SPLIT = 256          # slots per part (a power of two: Triton's blocks are), at least 16 parts
MAX_BLOCK = 128
QUERY_ROWS = 16          # the query heads of a KV head, padded: Triton's dot needs 16 rows
MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)   # finite: exp(MASKED - m) is 0, never NaN


def _split_kernel(q_ref, k_ref, v_ref, mask_ref, end_ref, o_ref, m_ref, l_ref, *,
                  block: int, scale: float):
    """One program: q_ref [16, Dh]; k_ref, v_ref [split, Dh]; mask_ref [split] int32 (1 = real
    slot); end_ref [] int32 (slots at or past it are not live). Writes the part's unnormalised
    output o [16, Dh], running max m [16] and sum l [16], all f32."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    split = k_ref.shape[0]
    first = pl.program_id(0) * split
    q = q_ref[...]
    live = jnp.clip(end_ref[()] - first, 0, split)
    blocks = (live + block - 1) // block

    def add_block(i, carry):
        o, m, total = carry
        at = pl.ds(i * block, block)
        scores = plgpu.dot(q, k_ref[at, :], trans_b=True).astype(jnp.float32) * scale
        slots = i * block + jnp.arange(block)
        real = (mask_ref[at] != 0) & (slots < live)
        scores = jnp.where(real[None, :], scores, MASKED)
        m_new = jnp.maximum(m, jnp.max(scores, axis=1))
        p = jnp.exp(scores - m_new[:, None])
        decay = jnp.exp(m - m_new)
        o = o * decay[:, None] + plgpu.dot(p.astype(v_ref.dtype), v_ref[at, :]).astype(jnp.float32)
        return o, m_new, total * decay + jnp.sum(p, axis=1)

    rows, dh = q.shape
    o, m, total = jax.lax.fori_loop(
        0, blocks, add_block, (jnp.zeros((rows, dh), jnp.float32),
                               jnp.full((rows,), MASKED, jnp.float32),
                               jnp.zeros((rows,), jnp.float32)))
    o_ref[...] = o
    m_ref[...] = m
    l_ref[...] = total


def split_size(slots: int) -> int:
    """Slots per part of a cache of ``slots`` (a multiple of SLOT_MULTIPLE): the largest power
    of two up to MAX_SPLIT that leaves at least 16 parts."""
    return max(16, min(MAX_SPLIT, 1 << ((slots // 16).bit_length() - 1)))


def _one_head(q, k, v, mask, end, interpret: bool):
    """q [16, Dh]; k, v [S, Dh]; mask [S] int32; end [] -> (o [P, 16, Dh], m, l [P, 16]) f32 of
    the P parts, for one row and KV head (vmapped over both by ``decode_attention``)."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    s, dh = k.shape
    split = split_size(s)
    n = s // split
    block = min(MAX_BLOCK, split)
    parts = lambda a: a.reshape((n, split) + a.shape[1:])  # noqa: E731
    kernel = functools.partial(_split_kernel, block=block, scale=dh ** -0.5)
    return pl.pallas_call(
        kernel, grid=(n,),
        in_specs=[pl.BlockSpec((QUERY_ROWS, dh), lambda j: (0, 0)),
                  pl.BlockSpec((None, split, dh), lambda j: (j, 0, 0)),
                  pl.BlockSpec((None, split, dh), lambda j: (j, 0, 0)),
                  pl.BlockSpec((None, split), lambda j: (j, 0)),
                  pl.BlockSpec((), lambda j: ())],
        out_specs=[pl.BlockSpec((None, QUERY_ROWS, dh), lambda j: (j, 0, 0)),
                   pl.BlockSpec((None, QUERY_ROWS), lambda j: (j, 0)),
                   pl.BlockSpec((None, QUERY_ROWS), lambda j: (j, 0))],
        out_shape=[jax.ShapeDtypeStruct((n, QUERY_ROWS, dh), jnp.float32),
                   jax.ShapeDtypeStruct((n, QUERY_ROWS), jnp.float32),
                   jax.ShapeDtypeStruct((n, QUERY_ROWS), jnp.float32)],
        compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=2),
        interpret=interpret, name="o1jax_decode_attention",
    )(q, parts(k), parts(v), parts(mask), end)


def decode_attention(q: jax.Array, k: jax.Array, v: jax.Array, kv_mask: jax.Array, end,
                     interpret: bool = False) -> jax.Array:
    """q [B, H, Dh] (one query per row), k, v [B, KVH, S, Dh] (S a multiple of SLOT_MULTIPLE),
    kv_mask [B, S] bool, end [] int32: query h of a row reads the real slots (kv_mask) below
    ``end`` of KV head h // (H / KVH). Returns [B, H, Dh] f32; a row with no real slot below
    ``end`` gets zeros."""
    b, h, dh = q.shape
    kvh, s = k.shape[1], k.shape[2]
    g = h // kvh
    if g > QUERY_ROWS or s % SLOT_MULTIPLE:
        raise ValueError(f"decode kernel: {g} query heads per KV head (at most {QUERY_ROWS}) and "
                         f"{s} cache slots (a multiple of {SLOT_MULTIPLE}) needed")
    qg = jnp.pad(q.reshape(b, kvh, g, dh), ((0, 0), (0, 0), (0, QUERY_ROWS - g), (0, 0)))
    run = functools.partial(_one_head, interpret=interpret)
    per_head = jax.vmap(run, in_axes=(0, 0, 0, None, None))
    o, m, total = jax.vmap(per_head, in_axes=(0, 0, 0, 0, None))(
        qg.astype(k.dtype), k, v, kv_mask.astype(jnp.int32), jnp.asarray(end, jnp.int32))
    weight = jnp.exp(m - jnp.max(m, axis=2, keepdims=True))             # [B, KVH, P, 16]
    out = jnp.sum(o * weight[..., None], axis=2) / jnp.maximum(
        jnp.sum(total * weight, axis=2), 1e-30)[..., None]
    return out[:, :, :g].reshape(b, h, dh)
