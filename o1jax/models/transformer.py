"""The decoder-only transformer (Llama / Qwen2 family) as pure functions over a parameter pytree.

Parameters (f32 master weights; layers stacked on a leading axis and run with ``lax.scan``)::

    embed       [V, D]
    layers      attn_norm [L, D], wq [L, D, H, Dh], wk/wv [L, D, KVH, Dh], (bq [L, H, Dh],
                bk/bv [L, KVH, Dh] for Qwen2), wo [L, H, Dh, D], mlp_norm [L, D],
                w_gate/w_up [L, D, F], w_down [L, F, D]
    final_norm  [D]
    lm_head     [D, V]          policy head, untied embeddings only
    value_head  {w: [D], b: []} value model only

KV cache (see ``init_cache``)::

    k, v   [L, B, S, KVH, Dh]   compute dtype
    mask   [B, S] bool          slot holds a real (non-padding) token
    index  [] int32             next slot to write; every row writes the same slot (left padding)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from o1jax import sharding
from o1jax.models.config import ModelConfig
from o1jax.models.layers.attention import attend, output_projection, project_qkv
from o1jax.models.layers.mlp import swiglu
from o1jax.models.layers.norm import rms_norm
from o1jax.models.layers.rope import inverse_frequencies

Params = dict[str, Any]
HEADS = ("policy", "value")


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Position ids for a left-padded [B, T] mask: 0 at each row's first real token."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


@dataclasses.dataclass(frozen=True)
class Transformer:
    """A decoder with a policy head (next-token logits) or a value head (a scalar per position).

    ``mesh`` only switches on activation sharding constraints; the model never names mesh axes.
    """
    cfg: ModelConfig
    head: str = "policy"
    mesh: Mesh | None = None

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")

    # ---------------------------------------------------------------- parameters
    def param_axes(self) -> Params:
        """Logical axis names of every parameter, same tree as ``init``."""
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
        if self.cfg.qkv_bias:
            layers.update(bq=("layers", "heads", "head_dim"), bk=("layers", "kv_heads", "head_dim"),
                          bv=("layers", "kv_heads", "head_dim"))
        axes = {"embed": ("vocab", "embed"), "layers": layers, "final_norm": ("norm",)}
        if self.head == "value":
            axes["value_head"] = {"w": ("embed",), "b": ()}
        elif not self.cfg.tie_embeddings:
            axes["lm_head"] = ("embed", "vocab")
        return axes

    def param_shapes(self) -> Params:
        """``jax.ShapeDtypeStruct`` of every parameter (no memory allocated)."""
        return jax.eval_shape(self.init, jax.random.key(0))

    def init(self, key: jax.Array) -> Params:
        """Random parameters: normal(0.02) matrices, unit norms, zero biases."""
        c = self.cfg
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
        keys = jax.random.split(key, len(shapes) + 3)
        normal = lambda k, s: 0.02 * jax.random.normal(k, s, pd)  # noqa: E731
        layers = {name: normal(k, s) for (name, s), k in zip(shapes.items(), keys)}
        layers["attn_norm"] = jnp.ones((c.num_layers, c.hidden_size), pd)
        layers["mlp_norm"] = jnp.ones((c.num_layers, c.hidden_size), pd)
        if c.qkv_bias:
            layers["bq"] = jnp.zeros((c.num_layers, c.num_heads, c.head_dim), pd)
            layers["bk"] = jnp.zeros((c.num_layers, c.num_kv_heads, c.head_dim), pd)
            layers["bv"] = jnp.zeros((c.num_layers, c.num_kv_heads, c.head_dim), pd)
        params = {"embed": normal(keys[-3], (c.vocab_size, c.hidden_size)), "layers": layers,
                  "final_norm": jnp.ones((c.hidden_size,), pd)}
        if self.head == "value":
            params["value_head"] = {"w": normal(keys[-2], (c.hidden_size,)),
                                    "b": jnp.zeros((), pd)}
        elif not c.tie_embeddings:
            params["lm_head"] = normal(keys[-1], (c.hidden_size, c.vocab_size))
        return params

    def shardings(self) -> Params:
        """NamedShardings of every parameter on ``self.mesh``."""
        return sharding.tree_shardings(self.mesh, self.param_axes(), self.param_shapes())

    def init_sharded(self, key: jax.Array) -> Params:
        """``init`` compiled with sharded outputs: each device only ever holds its own shards."""
        return jax.jit(self.init, out_shardings=self.shardings())(key)

    # ---------------------------------------------------------------- cache
    def init_cache(self, batch: int, length: int) -> dict:
        c = self.cfg
        kv = jnp.zeros((c.num_layers, batch, length, c.num_kv_heads, c.head_dim), c.compute_dtype)
        return {"k": kv, "v": kv, "mask": jnp.zeros((batch, length), bool),
                "index": jnp.zeros((), jnp.int32)}

    @staticmethod
    def cache_axes() -> dict:
        kv = ("layers", "act_batch", "cache_length", "act_kv_heads", None)
        return {"k": kv, "v": kv, "mask": ("act_batch", "cache_length"), "index": ()}

    # ---------------------------------------------------------------- forward
    def hidden(self, params: Params, tokens: jax.Array, positions: jax.Array, mask: jax.Array,
               cache: dict | None = None) -> tuple[jax.Array, dict | None]:
        """Final-norm hidden states [B, T, D] (compute dtype) and the updated cache.

        tokens, positions: [B, T] int; mask: [B, T] (1 = real token, 0 = padding). Without a cache
        the T tokens attend causally among themselves; with one they are written at slots
        ``cache["index"] ...`` and attend to every valid slot up to their own.
        """
        c = self.cfg
        dt = c.compute_dtype
        mesh = self.mesh
        mask = mask.astype(bool)
        b, t = tokens.shape
        inv_freq = inverse_frequencies(c.head_dim, c.rope_theta,
                                       dict(c.rope_scaling) if c.rope_scaling else None)
        x = jnp.take(params["embed"], tokens, axis=0).astype(dt)
        x = sharding.constrain(x, mesh, ("act_batch", "act_length", "act_embed"))

        if cache is None:
            causal = jnp.tril(jnp.ones((t, t), bool))
            key_mask = mask[:, None, :] & causal[None]
            start = 0
            kv_mask = None
        else:
            start = cache["index"]
            kv_mask = jax.lax.dynamic_update_slice(cache["mask"], mask, (0, start))
            slots = jnp.arange(kv_mask.shape[1])
            key_mask = kv_mask[:, None, :] & (slots[None, :] <= start + jnp.arange(t)[:, None])[None]

        def layer(carry, xs):
            x, ks, vs = carry
            p, i = xs
            h = rms_norm(x, p["attn_norm"], c.rms_norm_eps)
            q, k, v = project_qkv(h, p, positions, inv_freq, mesh)
            if ks is not None:
                ks = jax.lax.dynamic_update_slice(ks, k[None].astype(ks.dtype), (i, 0, start, 0, 0))
                vs = jax.lax.dynamic_update_slice(vs, v[None].astype(vs.dtype), (i, 0, start, 0, 0))
                k, v = ks[i], vs[i]
            o = attend(q, k, v, key_mask)
            x = x + output_projection(o, p["wo"])
            h = rms_norm(x, p["mlp_norm"], c.rms_norm_eps)
            x = x + swiglu(h, p["w_gate"], p["w_up"], p["w_down"], mesh)
            x = sharding.constrain(x, mesh, ("act_batch", "act_length", "act_embed"))
            return (x, ks, vs), None

        if c.remat:
            layer = jax.checkpoint(layer, prevent_cse=False)
        ks = vs = None
        if cache is not None:
            ks, vs = cache["k"], cache["v"]
        (x, ks, vs), _ = jax.lax.scan(layer, (x, ks, vs),
                                      (params["layers"], jnp.arange(c.num_layers)))
        x = rms_norm(x, params["final_norm"], c.rms_norm_eps)
        new_cache = None
        if cache is not None:
            new_cache = {"k": ks, "v": vs, "mask": kv_mask, "index": start + t}
        return x, new_cache

    def head_out(self, params: Params, x: jax.Array) -> jax.Array:
        """Head on hidden states x: [B, T, D] -> logits [B, T, V] or values [B, T], both f32."""
        if self.head == "value":
            w = params["value_head"]["w"].astype(x.dtype)
            return (x @ w).astype(jnp.float32) + params["value_head"]["b"]
        w = params["embed"].T if self.cfg.tie_embeddings else params["lm_head"]
        logits = (x @ w.astype(x.dtype)).astype(jnp.float32)
        return sharding.constrain(logits, self.mesh, ("act_batch", "act_length", "act_vocab"))

    def apply(self, params: Params, tokens: jax.Array, positions: jax.Array, mask: jax.Array,
              cache: dict | None = None) -> tuple[jax.Array, dict | None]:
        """Logits [B, T, V] (policy) or values [B, T] (value model), f32, and the new cache."""
        x, cache = self.hidden(params, tokens, positions, mask, cache)
        return self.head_out(params, x), cache


def value_params_from_policy(policy_params: Params, key: jax.Array) -> Params:
    """Value-model parameters: a copy of the policy backbone plus a fresh scalar head."""
    backbone = {k: v for k, v in policy_params.items() if k != "lm_head"}
    d = policy_params["final_norm"].shape[0]
    dtype = policy_params["final_norm"].dtype
    backbone = jax.tree.map(jnp.copy, backbone)
    backbone["value_head"] = {"w": 0.02 * jax.random.normal(key, (d,), dtype),
                              "b": jnp.zeros((), dtype)}
    return backbone
