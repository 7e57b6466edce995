"""Where each of our parameters lives in a Hugging Face checkpoint: tensor names, the transform
from their layout to ours and its inverse, for the decoder and Qwen2.5-VL's vision tower."""

from __future__ import annotations

from typing import Callable

import numpy as np

from o1jax.models.config import ModelConfig
from o1jax.models.vision_config import VisionConfig

# ------------------------------------------------------------------------------ tensor map
# An entry: (our param path, HF tensor names (one per layer for stacked ``layers`` params; a list
# per layer, one per expert, for a mixture of experts' stacked experts), transform HF -> ours
# (of one tensor), HF shape (of one tensor). Several of ours may read one HF tensor (a fused qkv).
Entry = tuple[tuple[str, ...], list, Callable, tuple]


def flat_names(names) -> list[str]:
    """An entry's tensor names, its nesting (layers, experts) flattened."""
    return [names] if isinstance(names, str) else [n for sub in names for n in flat_names(sub)]


def layer_map(cfg: ModelConfig) -> dict[str, tuple[str, Callable, tuple]]:
    """Our layer param -> (HF tensor name pattern, transform HF->ours, HF shape)."""
    d, h, kvh, dh, f = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                        cfg.mlp_dim)
    m = {
        "attn_norm": ("input_layernorm.weight", lambda w: w, (d,)),
        "wq": ("self_attn.q_proj.weight", lambda w: w.T.reshape(d, h, dh), (h * dh, d)),
        "wk": ("self_attn.k_proj.weight", lambda w: w.T.reshape(d, kvh, dh), (kvh * dh, d)),
        "wv": ("self_attn.v_proj.weight", lambda w: w.T.reshape(d, kvh, dh), (kvh * dh, d)),
        "wo": ("self_attn.o_proj.weight", lambda w: w.T.reshape(h, dh, d), (d, h * dh)),
        "mlp_norm": ("post_attention_layernorm.weight", lambda w: w, (d,)),
        "w_gate": ("mlp.gate_proj.weight", lambda w: w.T, (f, d)),
        "w_up": ("mlp.up_proj.weight", lambda w: w.T, (f, d)),
        "w_down": ("mlp.down_proj.weight", lambda w: w.T, (d, f)),
    }
    if cfg.num_experts:       # routed: the experts' entries are ``expert_entries``
        for name in ("w_gate", "w_up", "w_down"):
            del m[name]
    if cfg.qk_norm:
        m.update(q_norm=("self_attn.q_norm.weight", lambda w: w, (dh,)),
                 k_norm=("self_attn.k_norm.weight", lambda w: w, (dh,)))
    if cfg.qkv_bias:
        m.update(bq=("self_attn.q_proj.bias", lambda b: b.reshape(h, dh), (h * dh,)),
                 bk=("self_attn.k_proj.bias", lambda b: b.reshape(kvh, dh), (kvh * dh,)),
                 bv=("self_attn.v_proj.bias", lambda b: b.reshape(kvh, dh), (kvh * dh,)))
    return m


def inverse(ours: np.ndarray, name: str, cfg: ModelConfig) -> np.ndarray:
    """Our per-layer array -> HF tensor layout."""
    if name in ("wq", "wk", "wv"):
        return ours.reshape(cfg.hidden_size, -1).T
    if name == "wo":
        return ours.reshape(-1, cfg.hidden_size).T
    if name in ("w_gate", "w_up", "w_down"):
        return ours.T
    return ours.reshape(-1)


def top_map(cfg: ModelConfig, prefix: str = "model.") -> dict[str, tuple[str, Callable, tuple]]:
    m = {"embed": (f"{prefix}embed_tokens.weight", lambda w: w,
                   (cfg.vocab_size, cfg.hidden_size)),
         "final_norm": (f"{prefix}norm.weight", lambda w: w, (cfg.hidden_size,))}
    if not cfg.tie_embeddings:
        m["lm_head"] = ("lm_head.weight", lambda w: w.T, (cfg.vocab_size, cfg.hidden_size))
    return m


def vision_layer_map(v: VisionConfig) -> dict[str, tuple[str, Callable, tuple]]:
    """Qwen2.5-VL vision block ``blocks.{i}.<pattern>`` -> our ``vision.layers`` params (the
    fused qkv [3 Dv, Dv] is q rows, then k, then v, each head-major)."""
    d, h, dh, f = v.hidden_size, v.num_heads, v.head_dim, v.mlp_dim
    part = lambda j: lambda w: w[j * d:(j + 1) * d].T.reshape(d, h, dh)  # noqa: E731
    part_b = lambda j: lambda b: b[j * d:(j + 1) * d].reshape(h, dh)     # noqa: E731
    same = lambda w: w  # noqa: E731
    return {
        "attn_norm": ("norm1.weight", same, (d,)),
        "wq": ("attn.qkv.weight", part(0), (3 * d, d)),
        "wk": ("attn.qkv.weight", part(1), (3 * d, d)),
        "wv": ("attn.qkv.weight", part(2), (3 * d, d)),
        "bq": ("attn.qkv.bias", part_b(0), (3 * d,)),
        "bk": ("attn.qkv.bias", part_b(1), (3 * d,)),
        "bv": ("attn.qkv.bias", part_b(2), (3 * d,)),
        "wo": ("attn.proj.weight", lambda w: w.T.reshape(h, dh, d), (d, d)),
        "bo": ("attn.proj.bias", same, (d,)),
        "mlp_norm": ("norm2.weight", same, (d,)),
        "w_gate": ("mlp.gate_proj.weight", lambda w: w.T, (f, d)),
        "b_gate": ("mlp.gate_proj.bias", same, (f,)),
        "w_up": ("mlp.up_proj.weight", lambda w: w.T, (f, d)),
        "b_up": ("mlp.up_proj.bias", same, (f,)),
        "w_down": ("mlp.down_proj.weight", lambda w: w.T, (d, f)),
        "b_down": ("mlp.down_proj.bias", same, (d,)),
    }


def vision_top_map(v: VisionConfig, out_size: int) -> dict[str, tuple[str, Callable, tuple]]:
    """Qwen2.5-VL ``visual.<name>`` -> our ``vision`` params outside the blocks. The patch
    embedding Conv3d [Dv, 3, T, P, P] sees a still image's frame T times: its map is the sum of
    the T temporal slices, in our (row, column, channel) patch layout."""
    d, p, wide = v.hidden_size, v.patch_size, v.merge_size ** 2 * v.hidden_size
    return {
        "patch_embed": ("patch_embed.proj.weight",
                        lambda w: w.sum(axis=2).transpose(2, 3, 1, 0).reshape(p * p * 3, d),
                        (d, 3, v.temporal_patch_size, p, p)),
        "norm": ("merger.ln_q.weight", lambda w: w, (d,)),
        "w1": ("merger.mlp.0.weight", lambda w: w.T, (wide, wide)),
        "b1": ("merger.mlp.0.bias", lambda w: w, (wide,)),
        "w2": ("merger.mlp.2.weight", lambda w: w.T, (out_size, wide)),
        "b2": ("merger.mlp.2.bias", lambda w: w, (out_size,)),
    }


def prefixes(cfg: ModelConfig, names) -> tuple[str, str]:
    """(decoder, vision) tensor name prefixes: Hub layout ``model.`` / ``visual.``, or the
    ``model.language_model.`` / ``model.visual.`` some transformers 4.x versions saved."""
    if cfg.architecture == "qwen2_5_vl" and "model.language_model.embed_tokens.weight" in names:
        return "model.language_model.", "model.visual."
    return "model.", "visual."


EXPERT_MODULES = {"w_gate": "gate_proj", "w_up": "up_proj", "w_down": "down_proj"}


def expert_entries(cfg: ModelConfig, prefix: str = "model.") -> list[Entry]:
    """A Qwen3-MoE's routed MLP: the router ``mlp.gate.weight`` [E, D] per layer, and each
    expert's ``mlp.experts.{j}.<module>.weight`` per layer (names nested [layer][expert]),
    read into ``layers["moe"]`` (o1jax/models/layers/moe.py)."""
    d, e, f = cfg.hidden_size, cfg.num_experts, cfg.moe_mlp_dim
    layers = range(cfg.num_layers)
    out = [(("layers", "moe", "router"), [f"{prefix}layers.{i}.mlp.gate.weight" for i in layers],
            lambda w: w.T, (e, d))]
    for ours, module in EXPERT_MODULES.items():
        out.append((("layers", "moe", ours),
                    [[f"{prefix}layers.{i}.mlp.experts.{j}.{module}.weight" for j in range(e)]
                     for i in layers], lambda w: w.T, (d, f) if ours == "w_down" else (f, d)))
    return out


def entries(cfg: ModelConfig, names=()) -> list[Entry]:
    """Every parameter of the policy and where it is read from."""
    text, visual = prefixes(cfg, names)
    out = [((ours,), [hf_name], fn, shape)
           for ours, (hf_name, fn, shape) in top_map(cfg, text).items()]
    out += [(("layers", ours), [f"{text}layers.{i}.{pattern}" for i in range(cfg.num_layers)],
             fn, shape) for ours, (pattern, fn, shape) in layer_map(cfg).items()]
    if cfg.num_experts:
        out += expert_entries(cfg, text)
    if cfg.architecture == "qwen2_5_vl":
        v = cfg.vision
        for ours, (name, fn, shape) in vision_top_map(v, cfg.hidden_size).items():
            path = ("vision", ours) if ours == "patch_embed" else ("vision", "merger", ours)
            out.append((path, [visual + name], fn, shape))
        out += [(("vision", "layers", ours),
                 [f"{visual}blocks.{i}.{pattern}" for i in range(v.num_layers)], fn, shape)
                for ours, (pattern, fn, shape) in vision_layer_map(v).items()]
    return out
