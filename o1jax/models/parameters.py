"""The decoder's parameters: their logical axis names and their random initialisation, for a
policy or a value head (``Transformer.param_axes`` / ``Transformer.init`` delegate here).

A mixture-of-experts model (``num_experts`` > 0, Qwen3-MoE) has, in place of each layer's dense
w_gate/w_up/w_down, ``layers["moe"]``: router [L, D, E], w_gate/w_up [L, E, D, F'], w_down
[L, E, F', D] (``o1jax/models/layers/moe.py``), the experts on their own logical axis.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import o1jax.models.vision as vision
from o1jax.models.config import ModelConfig
from o1jax.models.layers import moe

Params = dict[str, Any]
DENSE_MLP = ("w_gate", "w_up", "w_down")


def param_axes(c: ModelConfig, head: str) -> Params:
    """Logical axis names of every parameter, same tree as ``init_params``."""
    layers = {
        "attn_norm": ("layers", "norm"),
        "wq": ("layers", "embed", "heads", "head_dim"),
        "wk": ("layers", "embed", "kv_heads", "head_dim"),
        "wv": ("layers", "embed", "kv_heads", "head_dim"),
        "wo": ("layers", "heads", "head_dim", "embed"),
        "mlp_norm": ("layers", "norm"),
        "w_gate": ("layers", "embed", "mlp"),
        "w_up": ("layers", "embed", "mlp"),
        "w_down": ("layers", "mlp", "embed"),
    }
    if c.qkv_bias:
        layers.update(bq=("layers", "heads", "head_dim"), bk=("layers", "kv_heads", "head_dim"),
                      bv=("layers", "kv_heads", "head_dim"))
    if c.qk_norm:
        layers.update(q_norm=("layers", "head_dim"), k_norm=("layers", "head_dim"))
    if c.num_experts:
        for name in DENSE_MLP:
            del layers[name]
        layers["moe"] = {name: ("layers",) + axes for name, axes in moe.param_axes().items()}
    axes = {"embed": ("vocab", "embed"), "layers": layers, "final_norm": ("norm",)}
    if c.vision:
        axes["vision"] = vision.param_axes(c.vision)
    if head == "value":
        axes["value_head"] = {"w": ("embed",), "b": ()}
    elif not c.tie_embeddings:
        axes["lm_head"] = ("embed", "vocab")
    return axes


def init_params(c: ModelConfig, head: str, key: jax.Array) -> Params:
    """Random parameters: normal(0.02) matrices, unit norms, zero biases."""
    pd = jnp.dtype(c.param_dtype)
    shapes = {
        "wq": (c.num_layers, c.hidden_size, c.num_heads, c.head_dim),
        "wk": (c.num_layers, c.hidden_size, c.num_kv_heads, c.head_dim),
        "wv": (c.num_layers, c.hidden_size, c.num_kv_heads, c.head_dim),
        "wo": (c.num_layers, c.num_heads, c.head_dim, c.hidden_size),
        "w_gate": (c.num_layers, c.hidden_size, c.mlp_dim),
        "w_up": (c.num_layers, c.hidden_size, c.mlp_dim),
        "w_down": (c.num_layers, c.mlp_dim, c.hidden_size),
    }
    # parameters added after the text ones take keys from fold_in: their keys stay put
    keys = jax.random.split(key, len(shapes) + 3)
    if c.num_experts:
        shapes = {k: s for k, s in shapes.items() if k not in DENSE_MLP}
    normal = lambda k, s: 0.02 * jax.random.normal(k, s, pd)  # noqa: E731
    layers = {name: normal(k, s) for (name, s), k in zip(shapes.items(), keys)}
    layers["attn_norm"] = jnp.ones((c.num_layers, c.hidden_size), pd)
    layers["mlp_norm"] = jnp.ones((c.num_layers, c.hidden_size), pd)
    for name, heads in (("bq", c.num_heads), ("bk", c.num_kv_heads), ("bv", c.num_kv_heads)):
        if c.qkv_bias:
            layers[name] = jnp.zeros((c.num_layers, heads, c.head_dim), pd)
    for name in ("q_norm", "k_norm") if c.qk_norm else ():
        layers[name] = jnp.ones((c.num_layers, c.head_dim), pd)
    if c.num_experts:
        layer_keys = jax.random.split(jax.random.fold_in(key, 3), c.num_layers)
        layers["moe"] = jax.vmap(lambda k: moe.init(k, c.hidden_size, c.num_experts,
                                                    c.moe_mlp_dim, pd))(layer_keys)
    params = {"embed": normal(keys[-3], (c.vocab_size, c.hidden_size)), "layers": layers,
              "final_norm": jnp.ones((c.hidden_size,), pd)}
    if c.vision:
        params["vision"] = vision.init(c.vision, c.hidden_size, jax.random.fold_in(key, 1), pd)
    if head == "value":
        params["value_head"] = {"w": normal(keys[-2], (c.hidden_size,)), "b": jnp.zeros((), pd)}
    elif not c.tie_embeddings:
        params["lm_head"] = normal(keys[-1], (c.hidden_size, c.vocab_size))
    return params
