"""A trace's own figures, as PNG files (local or gs://): attention maps over the sequence, and a
vision policy's answer tokens' attention as a heat map over the image."""

from __future__ import annotations

import numpy as np
from etils import epath

from o1jax.plots import plt, save_figure   # pyplot with the backend plots.py chose (Agg)


def plot_attention(labels: list[str], matrix: np.ndarray, out, title: str) -> epath.Path:
    """One attention map: rows attend (queries) to columns (keys), tokens as tick labels."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(min(8, 2 + 0.1 * n), min(8, 2 + 0.1 * n)))
    ax.imshow(matrix[:n, :n], cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-6))
    shown = [repr(t)[1:-1] for t in labels]
    ax.set_xticks(range(n), shown, rotation=90, fontsize=5)
    ax.set_yticks(range(n), shown, fontsize=5)
    ax.set(title=title, xlabel="key", ylabel="query")
    fig.tight_layout()
    return save_figure(fig, out)


def upsample_heat(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A [Gh, Gw] grid as ``shape`` [H, W] pixels (multiples of Gh and Gw): each cell repeated
    over its H / Gh x W / Gw pixels (nearest neighbour)."""
    return np.repeat(np.repeat(heat, shape[0] // heat.shape[0], axis=0),
                     shape[1] // heat.shape[1], axis=1)


def plot_image_attention(image: np.ndarray, heat: np.ndarray, out, title: str) -> epath.Path:
    """The image [H, W, 3] uint8, and beside it the image under a heat map of ``heat`` [Gh, Gw]
    (dividing H and W; upsampled nearest, alpha over the image, scale from 0 to its largest
    value)."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(image, interpolation="nearest")
    shown = axes[1].imshow(upsample_heat(heat, image.shape[:2]), cmap="inferno", alpha=0.6,
                           vmin=0, vmax=max(float(heat.max()), 1e-6), interpolation="nearest")
    axes[1].set_title(title, fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, out)
