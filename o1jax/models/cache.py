"""The decoder's KV cache::

    k      L-tuple of [B, KVH, Dh, S] (``xla`` attention) or [B, KVH, S, Dh] (the ``gpu``
           kernels'; ``Transformer.key_slot_axis`` says which), compute dtype; stacked
           [L, B, ...] when the decode loop scans over layers (``ModelConfig.scan_decode_from``)
    v      L-tuple of [B, KVH, S, Dh], or stacked [L, B, KVH, S, Dh] (layouts chosen for the
           decode matmuls, see o1jax/models/layers/attention.py)
    mask   [B, S] bool          slot holds a real (non-padding) token
    index  [] int32             next slot to write; every row writes the same slot (left padding)
    experts [B, S, L, k] int32  a mixture of experts' routing at each slot (the rollout's record)
"""

from __future__ import annotations

import jax.numpy as jnp

from o1jax.models.config import ModelConfig
from o1jax.models.layers.kernels import CACHE_SLOT_MULTIPLE


ROW_LEAVES = ("k", "v", "mask", "positions", "experts")   # the leaves with a batch axis


def batch_axis(a) -> int:
    """A cache leaf's batch axis: the second of a stacked k/v [L, B, ...], else the first."""
    return max(a.ndim - 4, 0)


def slot_axes(key_slot_axis: int) -> dict:
    """The slot axis of each of a cache's k, v and mask leaves, counted from the end (stacked or
    not), for keys with ``key_slot_axis`` (``Transformer.key_slot_axis``)."""
    return {"k": key_slot_axis, "v": -2, "mask": -1}


def cache_slots(length: int, attention: str) -> int:
    """The slots a cache for ``length`` tokens has under the ``attention`` backend: ``length``
    (``xla``), or the next multiple of its decode kernel's CACHE_SLOT_MULTIPLE (``gpu``'s
    splits the cache into parts of a power-of-two size, ``tpu``'s reads it in blocks)."""
    m = CACHE_SLOT_MULTIPLE.get(attention, 1)
    return -(-length // m) * m


def init_cache(cfg: ModelConfig, batch: int, length: int, key_slot_axis: int, stacked: bool
               ) -> dict:
    """An empty cache of ``length`` slots (``cache_slots`` rounds them for the attention
    backend), stacked or a tuple of layers."""
    keys = (length, cfg.head_dim) if key_slot_axis == -2 else (cfg.head_dim, length)
    k = jnp.zeros((cfg.num_layers, batch, cfg.num_kv_heads) + keys, cfg.compute_dtype)
    v = jnp.zeros((cfg.num_layers, batch, cfg.num_kv_heads, length, cfg.head_dim),
                  cfg.compute_dtype)
    if not stacked:
        k, v = tuple(k), tuple(v)
    cache = {"k": k, "v": v, "mask": jnp.zeros((batch, length), bool),
             "index": jnp.zeros((), jnp.int32)}
    if cfg.num_experts:
        cache["experts"] = jnp.zeros((batch, length, cfg.num_layers, cfg.experts_per_token),
                                     jnp.int32)
    return cache


def cache_axes(cfg: ModelConfig, key_slot_axis: int, stacked: bool) -> dict:
    """Logical axis names of ``init_cache``'s tree (o1jax/sharding.py's rules place them)."""
    v = ("act_batch", "act_kv_heads", "cache_length", None)
    k = v if key_slot_axis == -2 else ("act_batch", "act_kv_heads", None, "cache_length")
    if stacked:
        k, v = ("layers",) + k, ("layers",) + v
    else:
        k, v = (k,) * cfg.num_layers, (v,) * cfg.num_layers
    axes = {"k": k, "v": v, "mask": ("act_batch", "cache_length"), "index": ()}
    if cfg.num_experts:
        axes["experts"] = ("act_batch", "cache_length", None, None)
    return axes
