"""The decoder-only transformer (Llama / Qwen2 / Qwen3 family): pure functions over a parameter
pytree.

Parameters (f32 master weights; layers stacked on a leading axis and run with ``lax.scan``)::

    embed       [V, D]
    layers      attn_norm [L, D], wq [L, D, H, Dh], wk/wv [L, D, KVH, Dh], (bq [L, H, Dh],
                bk/bv [L, KVH, Dh] for Qwen2), (q_norm/k_norm [L, Dh] for Qwen3),
                wo [L, H, Dh, D], mlp_norm [L, D],
                w_gate/w_up [L, D, F], w_down [L, F, D] (a mixture of experts: moe, see
                parameters.py), (lora: LoRA adapters beside the projections,
                ``o1jax.models.lora.attach``)
    final_norm  [D]
    lm_head     [D, V]          policy head, untied embeddings only
    value_head  {w: [D], b: []} value model only

The KV cache: o1jax/models/cache.py. ``hidden`` reads either cache form (stacked, a tuple) with
either parameter layout (layouts.py) and returns its form.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from o1jax import sharding
import o1jax.models.vision as vision
from o1jax.models.config import ModelConfig
from o1jax.models.layers.attention import attend, output_projection, project_qkv
from o1jax.models import cache as cache_lib, parameters, patches
from o1jax.models.layers import kernels, moe
from o1jax.models.layers.mlp import swiglu
from o1jax.models.layers.norm import rms_norm
from o1jax.models.layers.rope import inverse_frequencies, rope_angles

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
        """Logical axis names of every parameter, same tree as ``init`` (parameters.py)."""
        return parameters.param_axes(self.cfg, self.head)

    def param_shapes(self) -> Params:
        """``jax.ShapeDtypeStruct`` of every parameter (no memory allocated)."""
        return jax.eval_shape(self.init, jax.random.key(0))

    def init(self, key: jax.Array) -> Params:
        """Random parameters: normal(0.02) matrices, unit norms, zero biases (parameters.py)."""
        return parameters.init_params(self.cfg, self.head, key)

    def shardings(self) -> Params:
        """NamedShardings of every parameter on ``self.mesh``."""
        return sharding.tree_shardings(self.mesh, self.param_axes(), self.param_shapes())

    def init_sharded(self, key: jax.Array) -> Params:
        """``init`` compiled with sharded outputs: each device only ever holds its own shards."""
        return jax.jit(self.init, out_shardings=self.shardings())(key)

    # ---------------------------------------------------------------- attention and cache
    @property
    def platform(self) -> str:
        """Where the model runs: its mesh's devices' platform, else JAX's default backend."""
        return self.mesh.devices.flat[0].platform if self.mesh else jax.default_backend()

    @property
    def attention(self) -> str:
        """The attention backend ``cfg.attention`` resolves to here (kernels.resolve)."""
        return kernels.resolve(self.cfg, self.platform)

    @property
    def key_slot_axis(self) -> int:
        """The slot axis of a cache's keys: -1 ([..., Dh, S], ``xla``), -2 ([..., S, Dh])."""
        return -2 if self.attention == "gpu" else -1

    @property
    def scans_decode(self) -> bool:
        """Whether decoding runs the layers with ``lax.scan`` over a stacked cache (one layer's
        program at any depth) rather than unrolled over a tuple of per-layer caches. A GPU
        decodes unrolled at any depth: 1.8-3.7x faster a step on an H200 (docs/performance.md)."""
        return self.cfg.num_layers >= self.cfg.scan_decode_from and self.platform != "gpu"

    def init_cache(self, batch: int, length: int) -> dict:
        """An empty KV cache of ``length`` slots, rounded up as the attention backend's decode
        kernel reads them (o1jax/models/cache.py)."""
        slots = cache_lib.cache_slots(length, self.attention)
        return cache_lib.init_cache(self.cfg, batch, slots, self.key_slot_axis, self.scans_decode)

    def cache_axes(self) -> dict:
        """Logical axis names of ``init_cache``'s tree."""
        return cache_lib.cache_axes(self.cfg, self.key_slot_axis, self.scans_decode)

    # ---------------------------------------------------------------- forward
    def _layer(self, x, p, rope, attention, k_cache=None, v_cache=None, start=0, route=None,
               token_mask=None):
        """One pre-norm block -> (x, k_cache, v_cache, routing): routing None for a dense MLP,
        else (the experts each token chose [B, T, k], the layer's expert load (f, P) over the
        real tokens ``token_mask`` [B, T], ``moe.expert_load``). With a cache, the new k, v are
        written at slot ``start``.
        ``attention``: the key mask [B, T, S] of a dense ``attend``, or a blocked attention
        function (q, k, v) -> [B, T, H, Dh] (``causal_attention``). ``route`` [B, T, k]: a
        mixture of experts runs these experts (routing replay) instead of its router's top-k."""
        c = self.cfg
        h = rms_norm(x, p["attn_norm"], c.rms_norm_eps)
        slots_major = self.key_slot_axis == -2
        q, k, v = project_qkv(h, p, rope, c.num_heads, self.mesh, c.rms_norm_eps, slots_major)
        if k_cache is not None:
            k_cache = jax.lax.dynamic_update_slice(
                k_cache, k.astype(k_cache.dtype), (0, 0, start, 0) if slots_major
                else (0, 0, 0, start))
            v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype),
                                                   (0, 0, start, 0))
            k, v = k_cache, v_cache
        o = attention(q, k, v) if callable(attention) else attend(q, k, v, attention)
        x = x + output_projection(o, p["wo"], p.get("lora"))
        h = rms_norm(x, p["mlp_norm"], c.rms_norm_eps)
        chosen = None
        if c.num_experts:
            y, aux = moe.moe_mlp(h, p["moe"], c.experts_per_token, c.norm_topk_prob, self.mesh,
                                 route)
            x = x + y
            chosen = (aux["experts"], moe.expert_load(aux["router_probs"], aux["experts"],
                                                      token_mask, c.num_experts))
        else:
            x = x + swiglu(h, p, self.mesh)
        x = sharding.constrain(x, self.mesh, ("act_batch", "act_length", "act_embed"))
        return x, k_cache, v_cache, chosen

    def encode_images(self, params: Params, images) -> jax.Array:
        """Images [B, S, S, 3] uint8 or ``patches.Patches`` -> image tokens [B, N, D] (compute
        dtype) for ``hidden``'s ``image_embeds``: once per prompt, reused by its samples."""
        if not self.cfg.vision:
            raise ValueError("this model has no vision encoder (model.vision is None)")
        return vision.encode(self.cfg.vision, params["vision"], images, self.cfg.compute_dtype,
                             self.mesh)

    def image_inputs(self, params: Params, images) -> dict:
        """``hidden``'s image arguments (``encode_images``'s tokens; each row's merged grid)."""
        return {"image_embeds": self.encode_images(params, images),
                "image_grid": patches.merged_grid(self.cfg.vision, images)}

    def rope_positions(self, tokens: jax.Array, positions: jax.Array, mask: jax.Array,
                       with_image: bool, image_grid: jax.Array | None = None) -> jax.Array:
        """The positions the rotary embedding reads: ``positions`` [B, T] as given, or for an
        M-RoPE model (``mrope_section``, Qwen2.5-VL) reading each row's image, (t, h, w)
        [B, T, 3] from them (``vision.mrope_positions``; ``image_grid`` [B, 2]: each row's
        merged grid, None: the config's square one)."""
        c = self.cfg
        if not (with_image and c.mrope_section):
            return positions
        return vision.mrope_positions(c.vision, tokens, positions, mask, c.image_token_id,
                                      image_grid)

    def hidden(self, params: Params, tokens: jax.Array, positions: jax.Array, mask: jax.Array,
               cache: dict | None = None, image_embeds: jax.Array | None = None,
               experts: jax.Array | None = None, with_experts: bool = False,
               image_grid: jax.Array | None = None) -> tuple:
        """Final-norm hidden states [B, T, D] (compute dtype) and the updated cache (and with
        ``with_experts``, a mixture of experts' routing: {"experts": its choices [B, T, L, k]
        int32, "balance_loss": the load-balancing loss, E sum_e f_e P_e with f and P averaged
        over the layers, as transformers' ``load_balancing_loss_func`` computes it}).

        tokens, positions: [B, T] int; mask: [B, T] (1 = real token, 0 = padding). Without a cache
        the T tokens attend causally among themselves; with one they are written at slots
        ``cache["index"] ...`` and attend to every valid slot up to their own.

        ``params["layers"]`` stacked (the stored layout, or ``fuse_layers``'s) runs the layers
        with ``lax.scan``, the stacked cache scanned in and out (a tuple cache is stacked for
        it); a tuple of per-layer dicts (``unstack_layers``) runs them unrolled, which lets a
        decode loop update each layer's cache in place. An unrolled decode step's program grows
        with depth, a scanned one's does not (docs/performance.md has both forms' costs).

        ``image_embeds`` [B, N, D] (and ``image_grid`` [B, 2]: ``image_inputs``): the k-th
        image placeholder of each row reads image token k (a prefill; decode steps have none).
        positions count real tokens (``positions_from_mask``); with ``image_embeds`` an M-RoPE
        model turns them into (t, h, w) positions (``rope_positions``); without, it reads them
        as text positions, so a decode step after an image feeds them already shifted (the
        ``prefill`` cache's ``positions``).

        A mixture of experts (``num_experts``) runs the experts ``experts`` [B, T, L, k] names
        (routing replay: the sampler's choices, so the trainer's forward routes as it did) or
        else its routers' top-k; a cache with ``experts`` [L, B, S, k] records the choices at
        the tokens' slots (the sampler's record of its routing).
        """
        c = self.cfg
        mask = mask.astype(bool)
        t = tokens.shape[1]
        inv_freq = inverse_frequencies(c.head_dim, c.rope_theta,
                                       dict(c.rope_scaling) if c.rope_scaling else None)
        x = jnp.take(params["embed"], tokens, axis=0).astype(c.compute_dtype)
        if image_embeds is not None:
            x = vision.place_image_tokens(x, tokens, c.image_token_id, image_embeds)
        x = sharding.constrain(x, self.mesh, ("act_batch", "act_length", "act_embed"))

        start = 0 if cache is None else cache["index"]
        kv_mask = mask if cache is None else jax.lax.dynamic_update_slice(
            cache["mask"], mask, (0, start))
        attention = kernels.attention_for(self.attention, self.platform, kv_mask, start, t,
                                          cached=cache is not None, mesh=self.mesh)
        rope = rope_angles(self.rope_positions(tokens, positions, mask, image_embeds is not None,
                                               image_grid), inv_freq, c.mrope_section)
        layer = functools.partial(self._layer, rope=rope, attention=attention, start=start,
                                  token_mask=mask)
        if c.remat:
            layer = jax.checkpoint(layer, prevent_cse=False)
        routes = None if experts is None else jnp.moveaxis(experts, 2, 0)   # [L, B, T, k]

        ks = vs = None
        if isinstance(params["layers"], (tuple, list)):
            if cache is not None:
                ks, vs = list(cache["k"]), list(cache["v"])
            chosen = []
            for i, p in enumerate(params["layers"]):
                route = None if routes is None else routes[i]
                if cache is None:
                    x, _, _, e = layer(x, p, route=route)
                else:
                    x, ks[i], vs[i], e = layer(x, p, k_cache=ks[i], v_cache=vs[i], route=route)
                chosen.append(e)
            chosen = jax.tree.map(lambda *a: jnp.stack(a), *chosen) if c.num_experts else None
        elif cache is None:
            def step(x, xs):
                x, _, _, e = layer(x, xs[0], route=xs[1])
                return x, e
            x, chosen = jax.lax.scan(step, x, (params["layers"], routes))
        else:
            def step(x, xs):
                x, k, v, e = layer(x, xs[0], k_cache=xs[1], v_cache=xs[2], route=xs[3])
                return x, (k, v, e)
            stack = lambda a: jnp.stack(a) if isinstance(a, (tuple, list)) else a  # noqa: E731
            x, (ks, vs, chosen) = jax.lax.scan(step, x, (params["layers"], stack(cache["k"]),
                                                         stack(cache["v"]), routes))
        x = rms_norm(x, params["final_norm"], c.rms_norm_eps)
        routing = None if chosen is None else {
            "experts": jnp.moveaxis(chosen[0], 0, 2),
            "balance_loss": c.num_experts * jnp.sum(jnp.mean(chosen[1][0], 0) *
                                                    jnp.mean(chosen[1][1], 0))}
        if cache is not None:
            if isinstance(cache["k"], (tuple, list)):
                ks, vs = tuple(ks), tuple(vs)
            elif isinstance(ks, list):
                ks, vs = jnp.stack(ks), jnp.stack(vs)
            new = {"k": ks, "v": vs, "mask": kv_mask, "index": start + t}
            if "experts" in cache:
                new["experts"] = jax.lax.dynamic_update_slice(
                    cache["experts"], routing["experts"], (0, start, 0, 0))
            cache = new
        return (x, cache, routing) if with_experts else (x, cache)

    def unembedding(self, params: Params) -> jax.Array:
        """The policy head's matrix [D, V] (the embedding's transpose when tied)."""
        return params["embed"].T if self.cfg.tie_embeddings else params["lm_head"]

    def head_out(self, params: Params, x: jax.Array) -> jax.Array:
        """Head on hidden states x: [B, T, D] -> logits [B, T, V] or values [B, T], both f32."""
        if self.head == "value":
            w = params["value_head"]["w"].astype(x.dtype)
            return (x @ w).astype(jnp.float32) + params["value_head"]["b"]
        logits = (x @ self.unembedding(params).astype(x.dtype)).astype(jnp.float32)
        return sharding.constrain(logits, self.mesh, ("act_batch", "act_length", "act_vocab"))

    def apply(self, params: Params, tokens: jax.Array, positions: jax.Array, mask: jax.Array,
              cache: dict | None = None, image_embeds: jax.Array | None = None,
              image_grid: jax.Array | None = None) -> tuple[jax.Array, dict | None]:
        """Logits [B, T, V] (policy) or values [B, T] (value model), f32, and the new cache."""
        x, cache = self.hidden(params, tokens, positions, mask, cache, image_embeds,
                               image_grid=image_grid)[:2]
        return self.head_out(params, x), cache

