"""Model shapes: a Llama/Qwen2/Qwen3-family decoder (optionally with a vision encoder, as in
Qwen2.5-VL), with size presets."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from o1jax.models.vision_config import VisionConfig

ARCHITECTURES = ("llama", "qwen2", "qwen3", "qwen3_moe", "qwen2_5_vl")
ATTENTION_BACKENDS = ("auto", "xla", "gpu", "tpu")   # o1jax/models/layers/kernels.py


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and numerics of the decoder.

    ``rope_scaling`` is None or a tuple of (key, value) pairs of a Llama-3 style scaling
    (rope_type="llama3", factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings); a tuple keeps the config hashable for ``jax.jit``.

    ``qk_norm`` (Qwen3): q and k are RMS-normalised per head, over head_dim, before the rotary
    embedding, each with its own [head_dim] weight per layer.

    ``num_experts`` > 0 (Qwen3-MoE, architecture "qwen3_moe"): every layer's MLP is routed, each
    token to its ``experts_per_token`` of ``num_experts`` SwiGLU experts of ``moe_mlp_dim``
    hidden units, gated by the router's probabilities (renormalised over the chosen ones with
    ``norm_topk_prob``); ``mlp_dim`` is then unused.

    ``mrope_section`` (Qwen2.5-VL, architecture "qwen2_5_vl"): the decoder's rotary frequencies
    split into (t, h, w) sections summing to head_dim / 2; with images, image tokens get 3-D
    positions and text after the image a constant shift (``vision.mrope_positions``).
    """
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_dim: int
    architecture: str = "llama"
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    rms_norm_eps: float = 1e-6
    qkv_bias: bool = False
    qk_norm: bool = False
    num_experts: int = 0
    experts_per_token: int = 0
    moe_mlp_dim: int = 0
    norm_topk_prob: bool = True
    tie_embeddings: bool = True
    max_seq_len: int = 2048
    dtype: str = "float32"        # compute dtype: float32 or bfloat16
    param_dtype: str = "float32"  # master weights
    remat: bool = False           # recompute each layer's activations in the backward pass
    attention: str = "auto"       # attention backend: auto (kernels on GPU and TPU), xla, gpu,
                                  # tpu (o1jax/models/layers/kernels.py)
    scan_decode_from: int = 16    # decoding scans over layers from this depth, unrolls below
                                  # (CPU, TPU; a GPU unrolls: Transformer.scans_decode)
    vision: VisionConfig | None = None   # a vision encoder whose image tokens take the places
    image_token_id: int = -1             # of this placeholder token in the input (one image
                                         # per row); see o1jax/models/vision.py
    mrope_section: tuple[int, int, int] | None = None   # multimodal rotary positions

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; "
                             f"known: {ARCHITECTURES}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of "
                             f"num_kv_heads={self.num_kv_heads}")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "head_dim",
                     "mlp_dim", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.vision is not None and not isinstance(self.vision, VisionConfig):
            object.__setattr__(self, "vision", VisionConfig(**dict(self.vision)))   # a config dict
        if self.vision is not None and not 0 <= self.image_token_id < self.vocab_size:
            raise ValueError(f"image_token_id={self.image_token_id}: a model with a vision "
                             f"encoder needs its image placeholder token in [0, "
                             f"{self.vocab_size})")
        if self.mrope_section is not None:
            object.__setattr__(self, "mrope_section", tuple(self.mrope_section))  # a JSON list
            if len(self.mrope_section) != 3 or sum(self.mrope_section) != self.head_dim // 2:
                raise ValueError(f"mrope_section={self.mrope_section}: three sections (t, h, w) "
                                 f"summing to head_dim / 2 = {self.head_dim // 2}")
        if self.qk_norm != (self.architecture in ("qwen3", "qwen3_moe")):
            raise ValueError(f"architecture={self.architecture!r} with qk_norm={self.qk_norm}: "
                             "Qwen3 (and only Qwen3) normalises q and k per head")
        if bool(self.num_experts) != (self.architecture == "qwen3_moe"):
            raise ValueError(f"architecture={self.architecture!r} with num_experts="
                             f"{self.num_experts}: only qwen3_moe routes its MLP to experts")
        if self.num_experts and not (0 < self.experts_per_token <= self.num_experts
                                     and self.moe_mlp_dim > 0):
            raise ValueError(f"experts_per_token={self.experts_per_token} must be in 1.."
                             f"num_experts={self.num_experts} and moe_mlp_dim="
                             f"{self.moe_mlp_dim} positive")
        if self.architecture == "qwen2_5_vl" and not (
                self.vision and self.vision.bias and self.mrope_section and self.qkv_bias):
            raise ValueError("architecture='qwen2_5_vl' needs a vision encoder with bias=True, "
                             "mrope_section and qkv_bias=True (hf.config_from_hf builds one)")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention={self.attention!r}: use one of {ATTENTION_BACKENDS}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"{name}={getattr(self, name)!r}: use float32, bfloat16 or "
                                 "float16")

    @property
    def image_tokens(self) -> int:
        """Image placeholders per prompt: the vision encoder's tokens per image, or 0."""
        return self.vision.num_tokens if self.vision else 0

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def num_params(self, with_lm_head: bool = True) -> int:
        d, f, n_layers = self.hidden_size, self.mlp_dim, self.num_layers
        attn = d * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
        if self.qkv_bias:
            attn += self.head_dim * (self.num_heads + 2 * self.num_kv_heads)
        mlp = (self.num_experts * (3 * d * self.moe_mlp_dim + d) if self.num_experts
               else 3 * d * f)
        per_layer = attn + mlp + 2 * d + (2 * self.head_dim if self.qk_norm else 0)
        head = 0 if (self.tie_embeddings or not with_lm_head) else d * self.vocab_size
        encoder = self.vision.num_params(d) if self.vision else 0
        return self.vocab_size * d + n_layers * per_layer + d + head + encoder

    def flops_per_token(self, context: int) -> float:
        """Forward FLOPs per token: 2 x (the weights of every matmul: q/k/v/o, the MLP and the
        output head; not the embedding lookup, norms or biases) plus attention over ``context``
        keys (QK^T and AV)."""
        d = self.hidden_size
        mlp = (self.experts_per_token * 3 * d * self.moe_mlp_dim + d * self.num_experts
               if self.num_experts else 3 * d * self.mlp_dim)     # the experts a token runs
        per_layer = d * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads) + mlp
        matmul = self.num_layers * per_layer + d * self.vocab_size
        attn = 2 * 2 * self.num_layers * self.num_heads * self.head_dim * context
        return 2.0 * matmul + attn


_LLAMA3_SCALING = lambda factor: (("rope_type", "llama3"), ("factor", factor),  # noqa: E731
                                  ("low_freq_factor", 1.0), ("high_freq_factor", 4.0),
                                  ("original_max_position_embeddings", 8192))

PRESETS: dict[str, ModelConfig] = {
    # For tests and the laptop demo.
    "tiny": ModelConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4,
                        num_kv_heads=2, head_dim=16, mlp_dim=192, max_seq_len=512),
    # ~26M parameters: the "medium" size of the benchmarks.
    "small25m": ModelConfig(vocab_size=16384, hidden_size=512, num_layers=6, num_heads=8,
                            num_kv_heads=4, head_dim=64, mlp_dim=1408, max_seq_len=2048),
    "qwen2.5-0.5b": ModelConfig(architecture="qwen2", vocab_size=151936, hidden_size=896,
                                num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
                                mlp_dim=4864, rope_theta=1e6, qkv_bias=True, tie_embeddings=True,
                                max_seq_len=32768),
    "qwen2.5-1.5b": ModelConfig(architecture="qwen2", vocab_size=151936, hidden_size=1536,
                                num_layers=28, num_heads=12, num_kv_heads=2, head_dim=128,
                                mlp_dim=8960, rope_theta=1e6, qkv_bias=True, tie_embeddings=True,
                                max_seq_len=32768),
    "qwen2.5-7b": ModelConfig(architecture="qwen2", vocab_size=152064, hidden_size=3584,
                              num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128,
                              mlp_dim=18944, rope_theta=1e6, qkv_bias=True,
                              tie_embeddings=False, max_seq_len=32768),
    "llama-3.2-1b": ModelConfig(vocab_size=128256, hidden_size=2048, num_layers=16,
                                num_heads=32, num_kv_heads=8, head_dim=64, mlp_dim=8192,
                                rope_theta=500000.0, rope_scaling=_LLAMA3_SCALING(32.0),
                                rms_norm_eps=1e-5, tie_embeddings=True, max_seq_len=131072),
    "llama-3.2-3b": ModelConfig(vocab_size=128256, hidden_size=3072, num_layers=28,
                                num_heads=24, num_kv_heads=8, head_dim=128, mlp_dim=8192,
                                rope_theta=500000.0, rope_scaling=_LLAMA3_SCALING(32.0),
                                rms_norm_eps=1e-5, tie_embeddings=True, max_seq_len=131072),
    "llama-3.1-8b": ModelConfig(vocab_size=128256, hidden_size=4096, num_layers=32,
                                num_heads=32, num_kv_heads=8, head_dim=128, mlp_dim=14336,
                                rope_theta=500000.0, rope_scaling=_LLAMA3_SCALING(8.0),
                                rms_norm_eps=1e-5, tie_embeddings=False, max_seq_len=131072),
    # Qwen/Qwen3-0.6B's and Qwen/Qwen3-8B's config.json
    "qwen3-0.6b": ModelConfig(architecture="qwen3", vocab_size=151936, hidden_size=1024,
                              num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
                              mlp_dim=3072, rope_theta=1e6, qk_norm=True, tie_embeddings=True,
                              max_seq_len=40960),
    "qwen3-8b": ModelConfig(architecture="qwen3", vocab_size=151936, hidden_size=4096,
                            num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128,
                            mlp_dim=12288, rope_theta=1e6, qk_norm=True, tie_embeddings=False,
                            max_seq_len=40960),
    # Qwen/Qwen3-30B-A3B's config.json: 128 experts, 8 per token, 3.3B active parameters
    "qwen3-30b-a3b": ModelConfig(architecture="qwen3_moe", vocab_size=151936, hidden_size=2048,
                                 num_layers=48, num_heads=32, num_kv_heads=4, head_dim=128,
                                 mlp_dim=6144, rope_theta=1e6, qk_norm=True, num_experts=128,
                                 experts_per_token=8, moe_mlp_dim=768, tie_embeddings=False,
                                 max_seq_len=40960),
    # Qwen/Qwen2.5-VL-3B-Instruct's config.json; 448 x 448 images: 256 image tokens
    "qwen2.5-vl-3b": ModelConfig(
        architecture="qwen2_5_vl", vocab_size=151936, hidden_size=2048, num_layers=36,
        num_heads=16, num_kv_heads=2, head_dim=128, mlp_dim=11008, rope_theta=1e6,
        qkv_bias=True, tie_embeddings=True, max_seq_len=128000, mrope_section=(16, 24, 24),
        image_token_id=151655,
        vision=VisionConfig(image_size=448, patch_size=14, hidden_size=1280, num_layers=32,
                            num_heads=16, mlp_dim=3420, merge_size=2, bias=True,
                            window_size=112, full_attention_layers=(7, 15, 23, 31),
                            temporal_patch_size=2)),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A preset with ``overrides``; a ``vision`` mapping updates the preset's own encoder (a
    preset without one: it is the whole encoder config)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    base, vision = PRESETS[name], overrides.get("vision")
    if base.vision is not None and vision is not None and not isinstance(vision, VisionConfig):
        overrides["vision"] = dataclasses.replace(base.vision, **dict(vision))
    return base.replace(**overrides)
