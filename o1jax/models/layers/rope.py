"""Rotary position embeddings (the Llama "rotate half" layout), with Llama-3 frequency scaling."""

import math

import jax
import jax.numpy as jnp
import numpy as np


def inverse_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> np.ndarray:
    """[head_dim // 2] inverse frequencies (radians per position), f32."""
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if scaling and scaling.get("rope_type", "default") == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old_len / low, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv = np.where(medium, smoothed, scaled)
    elif scaling and scaling.get("rope_type", "default") != "default":
        raise ValueError(f"unsupported rope scaling type {scaling.get('rope_type')!r}")
    return inv.astype(np.float32)


def rope_angles(positions: jax.Array, inv_freq: np.ndarray,
                sections: tuple[int, ...] | None = None) -> tuple[jax.Array, jax.Array]:
    """cos and sin of the rotation angles for positions: [B, T] (int): each [B, T, 1, Dh/2] f32.
    Computed once per forward and shared by every layer.

    Multimodal positions [B, T, 3] (Qwen2.5-VL's M-RoPE, (t, h, w) per token) need
    ``sections`` (mrope_section, summing to Dh/2): the first sections[0] frequencies rotate by
    t, the next sections[1] by h, the last sections[2] by w."""
    if positions.ndim == 3:
        which = np.repeat(np.arange(len(sections)), sections)          # [Dh/2]: t, h or w
        angles = positions.astype(jnp.float32)[..., which] * jnp.asarray(inv_freq)
    else:
        angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    return jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates x: [B, T, heads, head_dim] by the angles of ``rope_angles``."""
    cos, sin = cos.astype(x.dtype), sin.astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
