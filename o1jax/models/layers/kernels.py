"""Fused attention kernels behind ``ModelConfig.attention``, and the choice among backends.

``xla`` is o1jax's own attention (o1jax/models/layers/attention.py: blocked, cache-aware, the
reference every kernel is tested against). The kernel backends:

- ``gpu``: training, scoring and prefill through cuDNN's fused flash attention
  (``jax.nn.dot_product_attention(implementation="cudnn")``: no [B, H, T, S] scores in memory,
  causal blocks skipped); a decode step through a split-K Pallas kernel
  (o1jax/models/layers/decode_kernel.py) that reads only the live slots and the slot mask.
  The KV cache holds keys as [B, KVH, S, Dh] like the values (the layout both kernels read),
  its length rounded up to CACHE_SLOT_MULTIPLE slots. bf16/f16 compute only (cuDNN's rule).
- ``tpu``: training and scoring through Pallas's TPU flash attention
  (``jax.experimental.pallas.ops.tpu.flash_attention``; padding as segment ids); a decode step
  through a Pallas TPU kernel (o1jax/models/layers/tpu_decode_kernel.py) that reads the live
  blocks of the cache and the slot mask, in ``xla``'s layout (keys [B, KVH, Dh, S]), the
  cache's length rounded up to its BLOCK. JAX's TPU paged-attention kernels attend to slots
  [0, length) of a row, and o1jax's rows are left-padded (a search row can hold padding
  between real slots), so they would need right-aligned pages; this kernel needs none.
  A chunk into a cache (a prefill, a search step fed at once) stays ``xla``.

On a CPU (tests) the Pallas kernels run in Pallas's interpret mode (the TPU's under
``jax.experimental.pallas.tpu.force_tpu_interpret_mode()``, which the caller holds around
tracing, forward and backward), and cuDNN, which has no CPU
form, is replaced by XLA's implementation of the same ``dot_product_attention`` call (same
arguments, same layouts): the CPU tests check every argument o1jax builds, the GPU run
(benchmarks/accelerator.py) checks cuDNN itself against ``xla``.

Padding: cuDNN's masks are a causal triangle over a prefix of real tokens per row, so each row's
real tokens are first moved, in order, to the front (a stable sort of the slots by the mask)
and moved back after: exact for any mask (query i reads the real keys at or before slot i).
The decode kernel reads the mask itself: exact for any mask.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from o1jax import sharding
from o1jax.models.layers import attention, decode_kernel, tpu_decode_kernel

CACHE_SLOT_MULTIPLE = {"gpu": decode_kernel.SLOT_MULTIPLE,   # the decode kernels' blocks
                       "tpu": tpu_decode_kernel.BLOCK}         # divide a cache's slots
TPU_BLOCK = 128               # the TPU flash kernel's blocks; sequences are padded to a multiple


def resolve(cfg, platform: str) -> str:
    """The backend ``cfg.attention`` (a ``ModelConfig``'s) means on ``platform``: for ``auto``,
    ``gpu`` on a GPU where its kernels take the model (``gpu_misfit``), ``tpu`` on a TPU, else
    ``xla``; a named backend itself, or a clear error where it cannot run, before anything
    compiles. A CPU runs any backend (tests: Pallas in interpret mode)."""
    backend, misfit = cfg.attention, gpu_misfit(cfg)     # a known name: ModelConfig checks it
    if backend == "auto":
        return {"gpu": "xla" if misfit else "gpu", "tpu": "tpu"}.get(platform, "xla")
    if backend == "gpu" and misfit and platform != "cpu":
        raise ValueError(f"model.attention='gpu' cannot run this model: {misfit}; set "
                         "model.attention='xla'")
    if backend != "xla" and platform not in (backend, "cpu"):
        raise ValueError(f"model.attention={backend!r} cannot run on {platform}: use 'auto'")
    return backend


def gpu_misfit(cfg) -> str:
    """Why the ``gpu`` kernels cannot run a model ('' where they can): cuDNN's fused attention
    takes bf16/f16 with head_dim a multiple of 8 up to 256, the decode kernel up to 16 query
    heads per KV head."""
    if jnp.dtype(cfg.dtype) not in (jnp.bfloat16, jnp.float16):
        return f"model.dtype={cfg.dtype} (cuDNN's fused attention takes bfloat16 or float16)"
    if cfg.head_dim % 8 or cfg.head_dim > 256:
        return f"head_dim={cfg.head_dim} (cuDNN: a multiple of 8, at most 256)"
    if cfg.num_heads // cfg.num_kv_heads > decode_kernel.QUERY_ROWS:
        return (f"{cfg.num_heads // cfg.num_kv_heads} query heads per KV head (the decode "
                f"kernel: at most {decode_kernel.QUERY_ROWS})")
    return ""


def attention_for(backend: str, platform: str, kv_mask: jax.Array, start, t: int, cached: bool,
                  mesh=None):
    """What ``Transformer._layer`` attends with: ``attention.causal_attention``'s mask or
    function for ``xla`` (and for the TPU's cached steps), else a kernel function
    (q, k, v) -> [B, T, H, Dh] over keys and values both [B, KVH, S, Dh] (``gpu``'s cache layout;
    ``tpu`` gets keys as [B, KVH, Dh, S], ``xla``'s), run per device on a ``mesh``."""
    interpret = platform == "cpu"
    rows = ("act_batch", None)
    if backend == "gpu" and cached and t == 1:
        kernel, extra = functools.partial(decode_attend, interpret=interpret), (kv_mask, start)
        extra_axes = (rows, ())
    elif backend == "gpu" and cached:
        kernel = functools.partial(masked_attend, cudnn=not interpret)
        extra, extra_axes = (attention.causal_mask(kv_mask, start, t),), (rows + (None,),)
    elif backend == "gpu":
        kernel = functools.partial(causal_attend, cudnn=not interpret)
        extra, extra_axes = real_first(kv_mask), (rows, rows, ("act_batch",))
    elif backend == "tpu" and not cached:
        kernel, extra, extra_axes = tpu_flash_attend, (kv_mask,), (rows,)
    elif backend == "tpu" and t == 1:
        kernel, extra, extra_axes = tpu_decode_attend, (kv_mask, start), (rows, ())
    else:
        return attention.causal_attention(kv_mask, start, t, cached)
    return functools.partial(_per_device, kernel, mesh, extra, extra_axes)


def _per_device(kernel, mesh, extra: tuple, extra_axes: tuple, q, k, v) -> jax.Array:
    """``kernel(q, k, v, *extra)``, inside ``jax.shard_map`` on a mesh of several devices (a
    Mosaic or Triton kernel is not partitioned by XLA): rows split as ``act_batch``, heads as
    ``act_heads`` where the KV heads split the same way (else heads stay whole on every device,
    so each query head still finds its KV head)."""
    if mesh is None or mesh.size == 1:
        return kernel(q, k, v, *extra)
    q_axes, kv_axes = ("act_batch", None, "act_heads", None), ("act_batch", "act_kv_heads")
    q_spec = sharding.logical_to_spec(q_axes, q.shape, mesh)
    kv_spec = sharding.logical_to_spec(kv_axes + (None, None), k.shape, mesh)
    if q_spec[2] != kv_spec[1]:
        q_axes, kv_axes = q_axes[:2] + (None, None), kv_axes[:1] + (None,)
        q_spec = sharding.logical_to_spec(q_axes, q.shape, mesh)
        kv_spec = sharding.logical_to_spec(kv_axes + (None, None), k.shape, mesh)
    specs = (q_spec, kv_spec, kv_spec) + tuple(
        sharding.logical_to_spec(ax, jnp.shape(a), mesh) for ax, a in zip(extra_axes, extra))
    return jax.shard_map(kernel, mesh=mesh, in_specs=specs, out_specs=q_spec,
                         check_vma=False)(q, k, v, *extra)


def real_first(mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """mask [B, T] bool -> (order [B, T]: slot order with real slots first, in their order;
    inverse [B, T]: where each slot went; count [B] int32: real slots)."""
    order = jnp.argsort(~mask, axis=1, stable=True)
    inverse = jnp.argsort(order, axis=1)
    return order, inverse, jnp.sum(mask, axis=1, dtype=jnp.int32)


def _dot_product(q, k, v, cudnn: bool, **kw) -> jax.Array:
    """``jax.nn.dot_product_attention`` over q [B, T, H, Dh], k, v [B, KVH, S, Dh] (grouped
    heads: query head h reads KV head h // (H / KVH)); cuDNN, or XLA's form of the same call."""
    return jax.nn.dot_product_attention(q, k.swapaxes(1, 2), v.swapaxes(1, 2),
                                        implementation="cudnn" if cudnn else "xla", **kw)


def causal_attend(q, k, v, slots, inverse, count, cudnn: bool) -> jax.Array:
    """Causal attention of T tokens without a cache: q [B, T, H, Dh], k, v [B, KVH, T, Dh];
    slots, inverse, count from ``real_first`` (the mask's). Returns [B, T, H, Dh] in q's dtype
    (finite everywhere; rows at padding are never read by a real token)."""
    take = lambda a, axis: jnp.take_along_axis(  # noqa: E731
        a, jnp.expand_dims(slots, [d for d in range(a.ndim) if d not in (0, axis)]), axis=axis)
    # every query row stays a query (a padding one reads the real keys before it, as in
    # ``attend``): no row of cuDNN's output or gradient is left to its padding semantics; a row
    # of padding alone reads its first slot
    out = _dot_product(take(q, 1), take(k, 2), take(v, 2), cudnn, is_causal=True,
                       key_value_seq_lengths=jnp.maximum(count, 1))
    return jnp.take_along_axis(out, inverse[:, :, None, None], axis=1).astype(q.dtype)


def masked_attend(q, k, v, key_mask, cudnn: bool) -> jax.Array:
    """Attention under a general key mask [B, T, S] (a chunk of T tokens into a cache: a
    prefill), as an additive bias: q [B, T, H, Dh], k, v [B, KVH, S, Dh] -> [B, T, H, Dh]."""
    return _dot_product(q, k, v, cudnn, mask=key_mask[:, None]).astype(q.dtype)


def decode_attend(q, k, v, kv_mask, start, interpret: bool) -> jax.Array:
    """One decode step, q [B, 1, H, Dh] at slot ``start``, over a cache k, v [B, KVH, S, Dh]
    (S a multiple of CACHE_SLOT_MULTIPLE): ``decode_kernel``'s Pallas kernel reads the real
    slots up to ``start``. Returns [B, 1, H, Dh] in q's dtype."""
    return decode_kernel.decode_attention(q[:, 0], k, v, kv_mask, start + 1, interpret
                                          )[:, None].astype(q.dtype)


def tpu_decode_attend(q, k, v, kv_mask, start) -> jax.Array:
    """One decode step, q [B, 1, H, Dh] at slot ``start``, over a cache k [B, KVH, Dh, S]
    (``xla``'s layout), v [B, KVH, S, Dh] (S a multiple of its BLOCK): ``tpu_decode_kernel``'s
    Pallas kernel reads the real slots up to ``start``. Returns [B, 1, H, Dh] in q's dtype."""
    return tpu_decode_kernel.decode_attention(q[:, 0], k, v, kv_mask, start + 1
                                              )[:, None].astype(q.dtype)


def tpu_flash_attend(q, k, v, kv_mask) -> jax.Array:
    """Causal attention of T tokens without a cache through Pallas's TPU flash attention: q
    [B, T, H, Dh], k [B, KVH, Dh, T] (``xla``'s layout), v [B, KVH, T, Dh]; padding as segment
    ids (a real token reads real tokens, padding reads padding), each KV head repeated for its
    query heads, T padded to a multiple of TPU_BLOCK. Returns [B, T, H, Dh] in q's dtype."""
    from jax.experimental.pallas.ops.tpu import flash_attention as tpu_flash

    b, t, h, dh = q.shape
    g = h // k.shape[1]
    pad = -t % TPU_BLOCK

    def widen(a, axis):
        return jnp.pad(a, [(0, pad if d == axis else 0) for d in range(a.ndim)])

    qh = widen(q.transpose(0, 2, 1, 3), 2)
    kh = widen(jnp.repeat(k.swapaxes(2, 3), g, axis=1), 2)
    vh = widen(jnp.repeat(v, g, axis=1), 2)
    ids = widen(kv_mask.astype(jnp.int32), 1)
    blocks = tpu_flash.BlockSizes(**{f: TPU_BLOCK for f in (
        "block_q", "block_k_major", "block_k", "block_q_major_dkv", "block_k_major_dkv",
        "block_k_dkv", "block_q_dkv", "block_k_major_dq", "block_k_dq", "block_q_dq")},
        block_b=1)
    out = tpu_flash.flash_attention(qh, kh, vh, segment_ids=tpu_flash.SegmentIds(ids, ids),
                                    causal=True, sm_scale=dh ** -0.5, block_sizes=blocks)
    return out[:, :, :t].transpose(0, 2, 1, 3).astype(q.dtype)
