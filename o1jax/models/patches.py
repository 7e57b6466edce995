"""Images as the vision encoder reads them: patches in merge-window order, each patch's (row,
column), its 2-D rotary angles and the attention masks among patches.

Two forms. Square images of one size (``VisionConfig.image_size``): a uint8 array
[B, S, S, 3], patched inside the program, every layout a constant. Images at their own size
(Qwen2.5-VL's native resolution, ``VisionConfig.max_pixels`` > 0): each image resized as the
checkpoint's processor resizes it (``native_size``: sides multiples of patch x merge, the
aspect ratio kept, the area within [min_pixels, max_pixels]) and patched on the host into
``Patches``, rows padded to one patch count per batch; the layout is computed inside the
program from each row's grid, so a program serves every image size of its patch count.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from o1jax import sharding
from o1jax.models.layers.rope import inverse_frequencies
from o1jax.models.vision_config import NativeSize, VisionConfig


class Patches(NamedTuple):
    """Images at their own sizes, patched. pixels: [B, N, P * P * 3] uint8, each patch
    flattened (row, column, channel), patches in encoder order, row b's first
    ``grid[b, 0] * grid[b, 1]`` real and the rest zero padding; grid: [B, 2] int32, each image's
    patches per column and per row (height / P, width / P)."""
    pixels: np.ndarray | jax.Array
    grid: np.ndarray | jax.Array


# ----------------------------------------------------------------------------- square images
def patch_grid(cfg: VisionConfig) -> np.ndarray:
    """[N, 2] (row, column) of each patch of a square image in encoder order: M x M merge
    windows, window by window, row-major inside each."""
    g, m = cfg.grid, cfg.merge_size
    r, c = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    def to_windows(x):
        return x.reshape(g // m, m, g // m, m).transpose(0, 2, 1, 3).reshape(-1)
    return np.stack([to_windows(r), to_windows(c)], axis=1)


def patchify(cfg: VisionConfig, images: jax.Array) -> jax.Array:
    """[B, S, S, 3] uint8 -> [B, N, P * P * 3] uint8 patches in encoder order."""
    b, s = images.shape[0], images.shape[1]
    if images.shape[1:] != (cfg.image_size, cfg.image_size, 3):
        raise ValueError(f"images of shape {images.shape[1:]}; the encoder takes "
                         f"{(cfg.image_size, cfg.image_size, 3)} (resize them with "
                         "o1jax.data.builders.load_image)")
    p, g = cfg.patch_size, s // cfg.patch_size
    x = images.reshape(b, g, p, g, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, g * g, p * p * 3)
    rows, cols = patch_grid(cfg).T
    return x[:, rows * g + cols]


def square_layout(cfg: VisionConfig) -> tuple[tuple[jax.Array, jax.Array], np.ndarray]:
    """(rope: cos, sin [1, N, 1, Dh / 2]; masks [2, 1, N, N] bool: full attention, then
    attention within windows) of a square image, constants of the program."""
    grid = patch_grid(cfg).astype(np.float32)
    inv = inverse_frequencies(cfg.head_dim // 2, cfg.rope_theta)        # [Dh / 4]
    angles = np.concatenate([grid[:, :1] * inv, grid[:, 1:] * inv], axis=1)   # [N, Dh / 2]
    rope = (jnp.asarray(np.cos(angles))[None, :, None], jnp.asarray(np.sin(angles))[None, :, None])
    n = cfg.grid ** 2
    if not cfg.window_size:
        return rope, np.ones((2, 1, n, n), bool)
    merged = patch_grid(cfg) // cfg.merge_size                      # [N, 2]
    wins = merged // cfg.window_merged
    win = wins[:, 0] * (cfg.grid // cfg.merge_size) + wins[:, 1]
    return rope, np.stack([np.ones((n, n), bool), win[:, None] == win[None, :]])[:, None]


def full_layers(cfg: VisionConfig) -> np.ndarray:
    """[L] bool: which blocks attend fully (all without ``window_size``), the others within
    windows."""
    full = np.ones(cfg.num_layers, bool)
    if cfg.window_size:
        full[:] = False
        full[list(cfg.full_attention_layers)] = True
    return full


# ------------------------------------------------------------------- images at their own size
def native_size(cfg: NativeSize, height: int, width: int) -> tuple[int, int]:
    """(height, width) an image is resized to, as Qwen2.5-VL's processor does (its
    ``smart_resize``): each side the nearest multiple of the factor, then scaled down (up) with
    the aspect ratio kept when the area is above ``max_pixels`` (below ``min_pixels``)."""
    f = cfg.factor
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"an image of {width} x {height} pixels: the aspect ratio must be below "
                         "200")
    h, w = round(height / f) * f, round(width / f) * f
    if h * w > cfg.max_pixels:
        beta = math.sqrt(height * width / cfg.max_pixels)
        h = max(f, math.floor(height / beta / f) * f)
        w = max(f, math.floor(width / beta / f) * f)
    elif h * w < cfg.min_pixels:
        beta = math.sqrt(cfg.min_pixels / (height * width))
        h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return h, w


def native_tokens(cfg: VisionConfig, height: int, width: int) -> int:
    """Image tokens of an image already at its ``native_size``."""
    return (height // cfg.patch_size // cfg.merge_size) * (width // cfg.patch_size
                                                           // cfg.merge_size)


def patch_native(images: Sequence[np.ndarray], patch_size: int, merge_size: int,
                 capacity: int | None = None) -> Patches:
    """Images [H_i, W_i, 3] uint8, each at its ``native_size``, as one batch of ``Patches`` of
    ``capacity`` image tokens per row (default: the largest image's)."""
    p, m = patch_size, merge_size
    grids = np.array([(im.shape[0] // p, im.shape[1] // p) for im in images], np.int32)
    most = int(grids.prod(1).max()) // (m * m)
    bucket = most if capacity is None else capacity
    if bucket < most:
        raise ValueError(f"an image of {most} tokens does not fit a capacity of {capacity}")
    pixels = np.zeros((len(images), bucket * m * m, p * p * 3), np.uint8)
    for i, (im, (gh, gw)) in enumerate(zip(images, grids)):
        if im.shape != (gh * p, gw * p, 3) or gh % m or gw % m:
            raise ValueError(f"image {i} of shape {im.shape}: sides must be multiples of "
                             f"{p * m} pixels (resize it with native_size)")
        x = im.reshape(gh // m, m, p, gw // m, m, p, 3).transpose(0, 3, 1, 4, 2, 5, 6)
        pixels[i, :gh * gw] = x.reshape(gh * gw, p * p * 3)
    return Patches(pixels, grids)


def native_layout(cfg: VisionConfig, grid: jax.Array, n: int
                  ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """(rope: cos, sin [B, N, 1, Dh / 2]; masks [2, B, N, N] bool: full attention, then within
    windows, only ever to a row's real patches) of ``n`` patch slots per row from each row's
    grid [B, 2], inside the program. Windows tile the merged grid from its top-left corner, as
    Qwen2.5-VL's get_window_index."""
    m = cfg.merge_size
    i = jnp.arange(n)[None]                                           # [1, N]
    block, inner = i // (m * m), i % (m * m)
    width = grid[:, 1:2] // m                                         # merged columns [B, 1]
    br, bc = block // width, block % width
    rows, cols = br * m + inner // m, bc * m + inner % m              # [B, N]
    inv = jnp.asarray(inverse_frequencies(cfg.head_dim // 2, cfg.rope_theta), jnp.float32)
    angles = jnp.concatenate([rows[..., None] * inv, cols[..., None] * inv], axis=-1)
    rope = (jnp.cos(angles)[:, :, None], jnp.sin(angles)[:, :, None])
    real = (i < grid[:, :1] * grid[:, 1:2])[:, None, :]               # keys [B, 1, N]
    full = jnp.broadcast_to(real, (grid.shape[0], n, n))
    if not cfg.window_size:
        return rope, jnp.stack([full, full])
    wm = cfg.window_merged
    win = (br // wm) * ((width + wm - 1) // wm) + bc // wm            # [B, N]
    return rope, jnp.stack([full, (win[:, :, None] == win[:, None, :]) & real])


def merged_grid(cfg: VisionConfig, images) -> jax.Array | None:
    """[B, 2] merged rows and columns of each image of a ``Patches`` batch; None for square
    images (the config's)."""
    if not isinstance(images, Patches):
        return None
    return images.grid // cfg.merge_size


def batch_shardings(mesh, native: bool, rows: int | None = None):
    """The shardings of a batch's images over the data axes: ``Patches`` of images at their own
    sizes (``native``), else square images [B, S, S, 3] (``rows``: the batch's, for a batch the
    data axes may not divide, as ``sharding.batch_sharding`` says)."""
    shape = lambda ndim: None if rows is None else (rows,) + (1,) * (ndim - 1)  # noqa: E731
    if native:
        return Patches(sharding.batch_sharding(mesh, 3, shape(3)),
                       sharding.batch_sharding(mesh, 2, shape(2)))
    return sharding.batch_sharding(mesh, 4, shape(4))
