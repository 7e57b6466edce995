"""Hugging Face config.json / preprocessor_config.json <-> ModelConfig: Llama, Qwen2, Qwen3 and
Qwen2.5-VL (its vision tower for still images: at their own sizes within the processor's
min/max pixels, or squared to ``QWEN_VL_IMAGE_SIZE`` by default)."""

from __future__ import annotations

import json

from etils import epath

from o1jax.models.config import ModelConfig
from o1jax.models.vision_config import VisionConfig

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
                 "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe",
                 "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl"}
HF_ARCHITECTURES = {v: k for k, v in ARCHITECTURES.items()}
QWEN_VL_IMAGE_SIZE = 448   # a 16 x 16 grid of merged 28-pixel patches: 256 image tokens


class CheckpointError(ValueError):
    """A Hugging Face checkpoint directory that cannot be loaded as it is."""


# ------------------------------------------------------------------------------------ config
def config_from_hf(hf: dict, preprocessor: dict | None = None, **overrides) -> ModelConfig:
    """ModelConfig from a config.json dict. Reads the rope base from ``rope_parameters``
    (transformers >= 5) or the older top-level ``rope_theta`` / ``rope_scaling``. A Qwen2.5-VL
    config's text fields may be top-level (Hub checkpoints) or under ``text_config``;
    ``preprocessor`` (preprocessor_config.json) gives its pixel normalisation, and
    ``overrides["vision"]`` (a dict) updates the vision fields read from it."""
    archs = hf.get("architectures") or []
    arch = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        raise CheckpointError(f"unknown architecture {archs or hf.get('model_type')!r}; "
                              f"supported: {sorted(ARCHITECTURES)}")
    text = hf
    if arch == "qwen2_5_vl":
        text = {**{k: v for k, v in hf.items() if k != "vision_config"},
                **(hf.get("text_config") or {})}
        if text.get("use_sliding_window"):
            raise CheckpointError("use_sliding_window=True (sliding-window decoder layers) is "
                                  "not supported")
    if text.get("mlp_bias"):
        raise CheckpointError("mlp_bias=True is not supported")
    qwen3 = arch in ("qwen3", "qwen3_moe")
    if (arch == "llama" or qwen3) and text.get("attention_bias"):
        raise CheckpointError("attention_bias=True (output projection bias) is not supported")
    if arch == "qwen3_moe" and (text.get("decoder_sparse_step", 1) != 1
                                or text.get("mlp_only_layers")):
        raise CheckpointError("decoder_sparse_step != 1 or mlp_only_layers (dense MLP layers "
                              "among the routed ones) is not supported: every layer routes")
    if qwen3 and text.get("use_sliding_window"):
        raise CheckpointError("use_sliding_window=True (sliding-window decoder layers) is not "
                              "supported")
    rope = dict(text.get("rope_parameters") or text.get("rope_scaling") or {})
    theta = rope.get("rope_theta", text.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    scaling = None
    if rope_type == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        scaling = (("rope_type", "llama3"),) + tuple((k, rope[k]) for k in keys)
    elif rope_type not in ("default", "mrope") or (rope_type == "mrope" and arch != "qwen2_5_vl"):
        raise CheckpointError(f"unsupported rope type {rope_type!r}")
    heads = text["num_attention_heads"]
    cfg = dict(
        architecture=arch, vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
        num_layers=text["num_hidden_layers"], num_heads=heads,
        num_kv_heads=text.get("num_key_value_heads") or heads,
        head_dim=text.get("head_dim") or text["hidden_size"] // heads,
        mlp_dim=text["intermediate_size"], rope_theta=float(theta), rope_scaling=scaling,
        rms_norm_eps=text.get("rms_norm_eps", 1e-6), qkv_bias=arch in ("qwen2", "qwen2_5_vl"),
        qk_norm=qwen3,
        tie_embeddings=bool(hf.get("tie_word_embeddings") or text.get("tie_word_embeddings")),
        max_seq_len=text.get("max_position_embeddings", 2048))
    if arch == "qwen3_moe":
        # the Hub's configs say num_experts, transformers >= 5 writes num_local_experts
        experts = text.get("num_experts", text.get("num_local_experts"))
        cfg.update(num_experts=experts, experts_per_token=text["num_experts_per_tok"],
                   moe_mlp_dim=text["moe_intermediate_size"],
                   norm_topk_prob=bool(text.get("norm_topk_prob", False)))
    if arch == "qwen2_5_vl":
        if text.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"hidden_act={text['hidden_act']!r}: only silu is supported")
        cfg.update(head_dim=text["hidden_size"] // heads,   # transformers' attention ignores
                   rms_norm_eps=text.get("rms_norm_eps", 1e-5),   # head_dim
                   mrope_section=tuple(rope.get("mrope_section", (16, 24, 24))),
                   image_token_id=hf.get("image_token_id", 151655),
                   vision=_vision_from_hf(hf.get("vision_config") or {}, preprocessor or {},
                                          text["hidden_size"], overrides.pop("vision", None)))
    cfg.update(overrides)
    return ModelConfig(**cfg)


def _vision_from_hf(v: dict, preprocessor: dict, out_size: int, override: dict | None
                    ) -> VisionConfig:
    """VisionConfig of a Qwen2.5-VL vision_config (transformers' defaults where a key is
    missing); refuses what the encoder does not compute."""
    if v.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"vision_config.hidden_act={v['hidden_act']!r}: only silu is "
                              "supported")
    if v.get("in_channels", v.get("in_chans", 3)) != 3:
        raise CheckpointError("vision_config: only 3-channel (RGB) images are supported")
    if v.get("out_hidden_size", 3584) != out_size:
        raise CheckpointError(f"vision_config.out_hidden_size={v.get('out_hidden_size', 3584)} "
                              f"is not the decoder's hidden_size {out_size}")
    for key in ("patch_size", "temporal_patch_size"):
        if not isinstance(v.get(key, 1), int):
            raise CheckpointError(f"vision_config.{key}={v[key]!r}: only square patches "
                                  "(an int) are supported")
    rope = v.get("rope_parameters") or {}
    if rope.get("rope_type", "axial") != "axial":
        raise CheckpointError(f"vision rope type {rope['rope_type']!r} is not supported")
    fields = dict(
        image_size=QWEN_VL_IMAGE_SIZE, patch_size=v.get("patch_size", 14),
        hidden_size=v.get("hidden_size", 3584), num_layers=v.get("depth", 32),
        num_heads=v.get("num_heads", 16), mlp_dim=v.get("intermediate_size", 3420),
        merge_size=v.get("spatial_merge_size", 2), rope_theta=float(rope.get("rope_theta", 1e4)),
        norm_eps=1e-6, bias=True, window_size=v.get("window_size", 112),
        full_attention_layers=tuple(v.get("fullatt_block_indexes", (7, 15, 23, 31))),
        temporal_patch_size=v.get("temporal_patch_size", 2))
    if "image_mean" in preprocessor:
        fields.update(pixel_mean=tuple(preprocessor["image_mean"]),
                      pixel_std=tuple(preprocessor["image_std"]))
    size = preprocessor.get("size") or {}   # transformers >= 5 writes the bounds here
    bounds = (preprocessor.get("min_pixels", size.get("shortest_edge")),
              preprocessor.get("max_pixels", size.get("longest_edge")))
    if preprocessor and None not in bounds:
        fields.update(min_pixels=int(bounds[0]), max_pixels=int(bounds[1]))
    fields.update(override or {})
    try:
        return VisionConfig(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"vision: {e}") from None


def config_to_hf(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | None = None) -> dict:
    """config.json dict that transformers (4.x and 5.x) and vLLM read (a Qwen2.5-VL's text
    fields top-level, as on the Hub)."""
    out = {
        "architectures": [HF_ARCHITECTURES[cfg.architecture]], "model_type": cfg.architecture,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
        "intermediate_size": cfg.mlp_dim, "hidden_act": "silu", "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": dict(cfg.rope_scaling) if cfg.rope_scaling
        else None, "tie_word_embeddings": cfg.tie_embeddings,
        "max_position_embeddings": cfg.max_seq_len, "torch_dtype": "float32",
        "bos_token_id": bos_id, "eos_token_id": eos_id,
    }
    if cfg.architecture in ("llama", "qwen3", "qwen3_moe"):
        out.update(attention_bias=False, mlp_bias=False)
    if cfg.architecture in ("qwen3", "qwen3_moe"):
        out.update(use_sliding_window=False)
    if cfg.architecture == "qwen3_moe":
        out.update(num_experts=cfg.num_experts, num_experts_per_tok=cfg.experts_per_token,
                   moe_intermediate_size=cfg.moe_mlp_dim, norm_topk_prob=cfg.norm_topk_prob,
                   decoder_sparse_step=1, mlp_only_layers=[])
    if cfg.architecture == "qwen2_5_vl":
        v = cfg.vision
        del out["head_dim"]
        out.update(rope_scaling={"type": "mrope", "mrope_section": list(cfg.mrope_section)},
                   use_sliding_window=False, image_token_id=cfg.image_token_id,
                   vision_config={
                       "depth": v.num_layers, "hidden_size": v.hidden_size, "hidden_act": "silu",
                       "intermediate_size": v.mlp_dim, "num_heads": v.num_heads,
                       "in_channels": 3, "patch_size": v.patch_size,
                       "spatial_merge_size": v.merge_size,
                       "temporal_patch_size": v.temporal_patch_size,
                       "window_size": v.window_size, "out_hidden_size": cfg.hidden_size,
                       "fullatt_block_indexes": list(v.full_attention_layers),
                       "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta}})
    return out


def preprocessor_to_hf(v: VisionConfig) -> dict:
    """preprocessor_config.json of a Qwen2.5-VL export: the image processor's normalisation,
    patching and, where the model reads images at their own sizes, its pixel bounds."""
    out = {"image_processor_type": "Qwen2VLImageProcessor", "image_mean": list(v.pixel_mean),
           "image_std": list(v.pixel_std), "patch_size": v.patch_size,
           "merge_size": v.merge_size, "temporal_patch_size": v.temporal_patch_size}
    if v.max_pixels:
        out.update(min_pixels=v.min_pixels, max_pixels=v.max_pixels,
                   size={"shortest_edge": v.min_pixels, "longest_edge": v.max_pixels})
    return out


def _read_json(path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def load_config(path: str, **overrides) -> ModelConfig:
    cfg_file = epath.Path(path) / "config.json"  # a local directory or gs://
    if not cfg_file.exists():
        raise CheckpointError(f"{path}: no config.json (not a Hugging Face model directory)")
    return config_from_hf(json.loads(cfg_file.read_text()),
                          _read_json(epath.Path(path) / "preprocessor_config.json"), **overrides)
