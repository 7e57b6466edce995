"""The vision encoder's shapes (``VisionConfig``) and how images keep their own sizes
(``NativeSize``), free of JAX: the encoder (``vision.py``) and the image layouts
(``patches.py``) both read them."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np


class NativeSize(NamedTuple):
    """How images keep their own sizes: sides multiples of ``factor`` pixels (patch x merge),
    the area within [min_pixels, max_pixels] (``VisionConfig.native``)."""
    factor: int
    min_pixels: int
    max_pixels: int


# CLIP's pixel statistics (Qwen2.5-VL's image processor uses them too)
PIXEL_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
PIXEL_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    image_size: int = 32          # S: images are S x S x 3 (``data.builders.load_image``)
    patch_size: int = 4           # P
    hidden_size: int = 64         # Dv
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 128
    merge_size: int = 2           # M: M x M patches -> one image token
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    bias: bool = False            # biases on the attention output and the MLP (Qwen2.5-VL)
    window_size: int = 0          # pixels per window side (Qwen2.5-VL); 0: full attention
    full_attention_layers: tuple[int, ...] = ()   # blocks with full attention when windowed
    temporal_patch_size: int = 1  # frames of a Hugging Face patch (a still image repeats its
                                  # frame; only export reads it)
    pixel_mean: tuple[float, float, float] = tuple(PIXEL_MEAN.tolist())   # RGB, of [0, 1]
    pixel_std: tuple[float, float, float] = tuple(PIXEL_STD.tolist())     # pixel values
    min_pixels: int = 0           # > 0 with max_pixels: images keep their own size and aspect
    max_pixels: int = 0           # ratio, their area within these (``patches.native_size``)

    def __post_init__(self):
        for name in ("full_attention_layers", "pixel_mean", "pixel_std"):   # JSON lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.window_size and self.window_merged < 1:
            raise ValueError(f"vision.window_size={self.window_size} pixels must hold at least "
                             f"one merged patch ({self.patch_size * self.merge_size} pixels)")
        bad = [i for i in self.full_attention_layers if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f"vision.full_attention_layers {bad} outside the encoder's "
                             f"{self.num_layers} layers")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError("vision.pixel_mean / pixel_std: three values each (RGB), std > 0")
        if self.image_size % (self.patch_size * self.merge_size):
            raise ValueError(f"vision.image_size={self.image_size} must be a multiple of "
                             f"patch_size x merge_size = {self.patch_size * self.merge_size}")
        native = (self.patch_size * self.merge_size) ** 2 <= self.max_pixels and \
            0 <= self.min_pixels <= self.max_pixels
        if not (native or self.min_pixels == self.max_pixels == 0):
            raise ValueError(f"vision.min_pixels={self.min_pixels}, max_pixels="
                             f"{self.max_pixels}: 0 <= min_pixels <= max_pixels, and max_pixels "
                             f"at least one merged patch ({self.patch_size * self.merge_size}^2)")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 4:
            raise ValueError(f"vision.hidden_size={self.hidden_size} / num_heads="
                             f"{self.num_heads} must be a multiple of 4 (2-D rotary positions)")

    @property
    def native(self) -> NativeSize | None:
        """How images keep their own sizes, or None: images are ``image_size`` squares."""
        if not self.max_pixels:
            return None
        return NativeSize(self.patch_size * self.merge_size, self.min_pixels, self.max_pixels)

    @property
    def read_size(self) -> int | NativeSize:
        """What ``load_image`` resizes an image to for this encoder: its own size within the
        pixel bounds (``native``), else the ``image_size`` square."""
        return self.native or self.image_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def window_merged(self) -> int:
        """Merged patches per window side (Qwen2.5-VL's window_size // merge // patch)."""
        return self.window_size // self.merge_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Image tokens per image: the placeholders a prompt holds for it."""
        return (self.grid // self.merge_size) ** 2

    def flops_per_image(self, out_size: int) -> float:
        """Forward FLOPs of one image: 2 x each matmul's weights per patch (patch embedding,
        q/k/v/o, MLP) and per image token (the merger), plus attention among the image's
        patches (QK^T and AV, counted as full attention: windows make it an upper bound)."""
        n, d, f = self.grid ** 2, self.hidden_size, self.mlp_dim
        wide = self.merge_size ** 2 * d
        per_patch = (3 * self.patch_size ** 2 * self.temporal_patch_size * d
                     + self.num_layers * (4 * d * d + 3 * d * f))
        merger = self.num_tokens * (wide * wide + wide * out_size)
        return 2.0 * (n * per_patch + merger) + 4.0 * self.num_layers * d * n * n

    def num_params(self, out_size: int) -> int:
        d, f, m2 = self.hidden_size, self.mlp_dim, self.merge_size ** 2
        per_layer = 4 * d * d + 3 * d + 3 * d * f + 2 * d + (2 * d + 2 * f) * self.bias
        return (3 * self.patch_size ** 2 * d + self.num_layers * per_layer + d
                + (m2 * d) ** 2 + m2 * d + m2 * d * out_size + out_size)
