"""Grouped-query attention with an optional KV cache.

Keys are kept as [B, KVH, S, Dh] and values as [B, KVH, Dh, S]: the layouts in which both
attention matmuls contract over the minor dimension, so a decode step reads the cache in place
(with [B, S, KVH, Dh] XLA transposes the whole cache of every layer at every step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from o1jax import sharding
from o1jax.models.layers.rope import apply_rope

NEG_INF = -1e30  # finite, so a row with no valid key gives a uniform (not NaN) softmax


def project_qkv(x: jax.Array, p: dict, positions: jax.Array, inv_freq, mesh=None):
    """Projects x: [B, T, D] to rotated q: [B, T, H, Dh], k: [B, KVH, T, Dh], v: [B, KVH, Dh, T]."""
    dt = x.dtype
    q = jnp.einsum("btd,dhk->bthk", x, p["wq"].astype(dt))
    k = jnp.einsum("btd,dhk->bthk", x, p["wk"].astype(dt))
    v = jnp.einsum("btd,dhk->bthk", x, p["wv"].astype(dt))
    if "bq" in p:
        q, k, v = q + p["bq"].astype(dt), k + p["bk"].astype(dt), v + p["bv"].astype(dt)
    q = sharding.constrain(q, mesh, ("act_batch", "act_length", "act_heads", None))
    k = sharding.constrain(k, mesh, ("act_batch", "act_length", "act_kv_heads", None))
    v = sharding.constrain(v, mesh, ("act_batch", "act_length", "act_kv_heads", None))
    k = apply_rope(k, positions, inv_freq)
    return apply_rope(q, positions, inv_freq), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 3, 1)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """Softmax attention.

    q: [B, T, H, Dh]; k: [B, KVH, S, Dh]; v: [B, KVH, Dh, S]; key_mask: [B, T, S] bool (True =
    may attend).
    Scores and softmax in f32; returns [B, T, H, Dh] in q's dtype.
    """
    b, t, h, dh = q.shape
    kvh = k.shape[1]
    qg = q.reshape(b, t, kvh, h // kvh, dh)
    scores = jnp.einsum("btkgd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32)
    scores = scores * (dh ** -0.5)
    scores = jnp.where(key_mask[:, None, None, :, :], scores, NEG_INF)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bkds->btkgd", probs, v)
    return out.reshape(b, t, h, dh)


def output_projection(o: jax.Array, wo: jax.Array) -> jax.Array:
    """o: [B, T, H, Dh], wo: [H, Dh, D] -> [B, T, D]."""
    return jnp.einsum("bthk,hkd->btd", o, wo.astype(o.dtype))
