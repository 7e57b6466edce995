"""Parameter trees built from a model's stored params: layouts for decoding (layers stacked on a
leading axis with q/k/v and gate/up fused, or unstacked into a tuple of per-layer dicts;
``Transformer.hidden`` runs either), and a value model's params from a policy's."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from o1jax.models.transformer import Params


def fuse_layers(layers: Params) -> Params:
    """Layer weights, one layer's or stacked [L, ...], with q/k/v and gate/up concatenated
    (wqkv [(L,) D, H + 2 KVH, Dh], bqkv [(L,) H + 2 KVH, Dh], w_gate_up [(L,) D, 2, F]), so
    that a decode step runs two matmuls where it ran five."""
    p = dict(layers)
    lead = p["attn_norm"].ndim - 1           # 1 when stacked
    p["wqkv"] = jnp.concatenate([p.pop("wq"), p.pop("wk"), p.pop("wv")], axis=lead + 1)
    if "bq" in p:
        p["bqkv"] = jnp.concatenate([p.pop("bq"), p.pop("bk"), p.pop("bv")], axis=lead)
    if "w_gate" in p:        # a dense MLP (a mixture of experts keeps its own layout)
        p["w_gate_up"] = jnp.stack([p.pop("w_gate"), p.pop("w_up")], axis=lead + 1)
    return p


def unstack_layers(params: Params, fuse: bool = False) -> Params:
    """The same params in the unrolled decode layout: ``layers`` a tuple of per-layer dicts, so
    a decode loop slices the stacked weights once, not at every token; with ``fuse``, each
    layer's weights ``fuse_layers``'d."""
    n = jax.tree.leaves(params["layers"])[0].shape[0]
    layers = tuple(jax.tree.map(lambda v, i=i: v[i], params["layers"]) for i in range(n))
    return dict(params, layers=tuple(map(fuse_layers, layers)) if fuse else layers)


def backbone(params: Params) -> Params:
    """A policy's params without its output head (``lm_head``, untied models only)."""
    return {k: v for k, v in params.items() if k != "lm_head"}


def value_head(policy_params: Params, key: jax.Array) -> Params:
    """A fresh scalar value head for a policy's backbone: {w: [D] normal(0.02), b: 0}."""
    d, dtype = policy_params["final_norm"].shape[0], policy_params["final_norm"].dtype
    return {"w": 0.02 * jax.random.normal(key, (d,), dtype), "b": jnp.zeros((), dtype)}


def value_params_from_policy(policy_params: Params, key: jax.Array) -> Params:
    """Value-model parameters: a copy of the policy backbone plus a fresh scalar head."""
    return dict(jax.tree.map(jnp.copy, backbone(policy_params)),
                value_head=value_head(policy_params, key))


def in_compute_dtype(params: Params, dtype) -> Params:
    """The decoder's floating weights (embedding, layers, untied head) cast to the compute dtype,
    once per rollout rather than at every decode step: every use in the decoder casts them to it
    (``.astype(x.dtype)``), so the numbers are the same, and a bf16 step reads half the bytes of
    the f32 master weights. A vision encoder and a value head stay as they are."""
    cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    return dict(params, **{k: jax.tree.map(cast, params[k])
                           for k in ("embed", "layers", "lm_head") if k in params})
