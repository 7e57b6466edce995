"""The vision encoder: a ViT over image patches with 2-D rotary positions and pre-norm blocks,
and a patch merger that projects to the decoder's width, as pure functions over a parameter
pytree (the layout of Qwen2.5-VL's encoder). From-scratch encoders attend fully in every block
without output or MLP biases; a Qwen2.5-VL encoder (``bias=True``, ``window_size`` > 0) has
those biases and attends within windows of ``window_size`` pixels except in
``full_attention_layers``.

Parameters (under the policy's ``params["vision"]``; layers stacked and run with ``lax.scan``)::

    patch_embed  [3 * P * P, Dv]          a P x P x 3 patch, flattened (row, column, channel)
    layers       attn_norm [L, Dv], wq/wk/wv [L, Dv, Hv, Dh], bq/bk/bv [L, Hv, Dh],
                 wo [L, Hv, Dh, Dv], mlp_norm [L, Dv], w_gate/w_up [L, Dv, Fv], w_down [L, Fv, Dv]
                 with ``bias``: bo [L, Dv], b_gate/b_up [L, Fv], b_down [L, Dv]
    merger       norm [Dv], w1 [M * M * Dv, M * M * Dv], b1, w2 [M * M * Dv, D], b2

Patches are ordered in M x M merge windows (window by window, row-major inside each), so the
merger joins M * M consecutive patches into one image token: an S x S image gives
(S / P / M)^2 tokens of width D, which take the places of the image placeholder tokens in the
decoder's input (``Transformer.hidden``). Window attention needs no reordering: a patch attends
to the patches of its own window (a mask), which is what Qwen2.5-VL's regrouping computes.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models.layers.attention import attend, output_projection, project_qkv
from o1jax.models.layers.mlp import swiglu
from o1jax.models.layers.norm import rms_norm
from o1jax.models import patches
from o1jax.models.vision_config import VisionConfig

def param_axes(cfg: VisionConfig) -> dict:
    """Logical axis names (the rules table in o1jax/sharding.py), same tree as ``init``."""
    layers = {
        "attn_norm": ("layers", "norm"),
        "wq": ("layers", "embed", "heads", "head_dim"),
        "wk": ("layers", "embed", "heads", "head_dim"),
        "wv": ("layers", "embed", "heads", "head_dim"),
        "bq": ("layers", "heads", "head_dim"), "bk": ("layers", "heads", "head_dim"),
        "bv": ("layers", "heads", "head_dim"),
        "wo": ("layers", "heads", "head_dim", "embed"),
        "mlp_norm": ("layers", "norm"),
        "w_gate": ("layers", "embed", "mlp"), "w_up": ("layers", "embed", "mlp"),
        "w_down": ("layers", "mlp", "embed"),
    }
    if cfg.bias:
        layers.update(bo=("layers", "embed"), b_gate=("layers", "mlp"), b_up=("layers", "mlp"),
                      b_down=("layers", "embed"))
    merger = {"norm": ("norm",), "w1": ("patch", "mlp"), "b1": ("mlp",),
              "w2": ("mlp", "embed"), "b2": ("norm",)}
    return {"patch_embed": ("patch", "embed"), "layers": layers, "merger": merger}


def init(cfg: VisionConfig, out_size: int, key: jax.Array, dtype=jnp.float32) -> dict:
    """Random parameters: normal(0.02) matrices, unit norms, zero biases."""
    d, h, dh, f, n = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, cfg.num_layers
    wide = cfg.merge_size ** 2 * d
    shapes = {"wq": (n, d, h, dh), "wk": (n, d, h, dh), "wv": (n, d, h, dh), "wo": (n, h, dh, d),
              "w_gate": (n, d, f), "w_up": (n, d, f), "w_down": (n, f, d)}
    keys = jax.random.split(key, len(shapes) + 3)
    normal = lambda k, s: 0.02 * jax.random.normal(k, s, dtype)  # noqa: E731
    layers = {name: normal(k, s) for (name, s), k in zip(shapes.items(), keys)}
    layers.update(attn_norm=jnp.ones((n, d), dtype), mlp_norm=jnp.ones((n, d), dtype),
                  bq=jnp.zeros((n, h, dh), dtype), bk=jnp.zeros((n, h, dh), dtype),
                  bv=jnp.zeros((n, h, dh), dtype))
    if cfg.bias:
        layers.update(bo=jnp.zeros((n, d), dtype), b_gate=jnp.zeros((n, f), dtype),
                      b_up=jnp.zeros((n, f), dtype), b_down=jnp.zeros((n, d), dtype))
    merger = {"norm": jnp.ones((d,), dtype), "w1": normal(keys[-2], (wide, wide)),
              "b1": jnp.zeros((wide,), dtype), "w2": normal(keys[-1], (wide, out_size)),
              "b2": jnp.zeros((out_size,), dtype)}
    return {"patch_embed": normal(keys[-3], (3 * cfg.patch_size ** 2, d)), "layers": layers,
            "merger": merger}


def encode(cfg: VisionConfig, params: dict, images, dtype=jnp.float32, mesh=None) -> jax.Array:
    """Images -> image tokens [B, N, D] in ``dtype``: square images [B, S, S, 3] uint8 give
    N = (S / P / M)^2; ``patches.Patches`` (images at their own sizes) give N = the bucket's
    count, row b's first (its grid's) tokens real."""
    if isinstance(images, patches.Patches):
        x = images.pixels
        rope, masks = patches.native_layout(cfg, images.grid, x.shape[1])
    else:
        x = patches.patchify(cfg, images)
        rope, masks = patches.square_layout(cfg)
    mean, std = np.asarray(cfg.pixel_mean, np.float32), np.asarray(cfg.pixel_std, np.float32)
    x = ((x.astype(jnp.float32) / 255.0 - np.tile(mean, cfg.patch_size ** 2))
         / np.tile(std, cfg.patch_size ** 2))
    x = x.astype(dtype) @ params["patch_embed"].astype(dtype)
    n = x.shape[1]
    masks = jnp.asarray(masks)
    bias = lambda p, name: p[name].astype(dtype) if cfg.bias else 0  # noqa: E731

    def block(x, xs):
        p, is_full = xs
        h = rms_norm(x, p["attn_norm"], cfg.norm_eps)
        q, k, v = project_qkv(h, p, rope, cfg.num_heads, mesh)
        mask = jnp.where(is_full, masks[0], masks[1])
        x = x + output_projection(attend(q, k, v, mask), p["wo"]) + bias(p, "bo")
        return x + swiglu(rms_norm(x, p["mlp_norm"], cfg.norm_eps), p, mesh), None

    x, _ = jax.lax.scan(block, x, (params["layers"], jnp.asarray(patches.full_layers(cfg))))
    m = params["merger"]
    x = rms_norm(x, m["norm"], cfg.norm_eps)
    x = x.reshape(x.shape[0], n // cfg.merge_size ** 2, -1)                   # join windows
    x = jax.nn.gelu(x @ m["w1"].astype(dtype) + m["b1"].astype(dtype), approximate=False)
    return x @ m["w2"].astype(dtype) + m["b2"].astype(dtype)


def place_image_tokens(x: jax.Array, tokens: jax.Array, image_token_id: int,
                       image_embeds: jax.Array) -> jax.Array:
    """x [B, T, D] with the k-th placeholder (``tokens == image_token_id``) of each row replaced
    by that row's image token k (image_embeds [B, N, D]) for k < N; other positions unchanged.
    Placeholders past the N-th (the policy can sample the placeholder's id in its response)
    keep their embedding, as a decode step that feeds them does."""
    is_image = tokens == image_token_id
    k = jnp.cumsum(is_image.astype(jnp.int32), axis=1) - 1
    is_image = is_image & (k < image_embeds.shape[1])
    k = jnp.clip(k, 0, image_embeds.shape[1] - 1)
    picked = jnp.take_along_axis(image_embeds.astype(x.dtype), k[..., None], axis=1)
    return jnp.where(is_image[..., None], picked, x)


def mrope_positions(cfg: VisionConfig, tokens: jax.Array, positions: jax.Array,
                    mask: jax.Array, image_token_id: int, grid: jax.Array | None = None
                    ) -> jax.Array:
    """Qwen2.5-VL's multimodal rotary positions (M-RoPE) [B, T, 3] int32: (t, h, w) per token.

    positions: [B, T] sequential (``positions_from_mask``); each row holds one image, its
    n = gh x gw tokens consecutive (the first n real placeholders, as ``place_image_tokens``
    reads them), gh x gw its merged grid: ``grid`` [B, 2] per row (``patches.merged_grid``), or
    with None the config's square one. Text before the image has (p, p, p); image token k has
    (s, s + k // gw, s + k % gw), s the position of the image's first token; text after the
    image continues from s + max(gh, gw), i.e. (p + d, p + d, p + d) with the constant
    d = max(gh, gw) - n. A row without placeholders keeps (p, p, p). This is transformers'
    ``get_rope_index`` for one still image per row."""
    if grid is None:
        gh = gw = cfg.grid // cfg.merge_size
    else:
        gh, gw = grid[:, :1], grid[:, 1:]                              # [B, 1]
    n = gh * gw
    is_image = (tokens == image_token_id) & mask.astype(bool)
    k = jnp.cumsum(is_image.astype(jnp.int32), axis=1) - 1
    is_image = is_image & (k < n)
    start = jnp.min(jnp.where(is_image, positions, jnp.iinfo(jnp.int32).max), axis=1,
                    keepdims=True)
    text = jnp.where(positions > start, positions + jnp.maximum(gh, gw) - n, positions)
    t = jnp.where(is_image, start, text)
    h = jnp.where(is_image, start + k // gw, text)
    w = jnp.where(is_image, start + k % gw, text)
    return jnp.stack([t, h, w], axis=-1).astype(jnp.int32)


def check_placeholders(tokens: np.ndarray, mask: np.ndarray, image_token_id: int,
                       num_tokens) -> None:
    """Every row of a [B, T] prompt batch holds exactly ``num_tokens`` placeholders (an int, or
    [B] per row for images at their own sizes), one image per row; raises naming the first row
    that does not."""
    counts = np.sum((np.asarray(tokens) == image_token_id) & np.asarray(mask, bool), axis=1)
    want = np.broadcast_to(np.asarray(num_tokens), counts.shape)
    bad = np.nonzero(counts != want)[0]
    if len(bad):
        raise ValueError(f"prompt row {int(bad[0])} holds {int(counts[bad[0]])} image "
                         f"placeholder tokens (id {image_token_id}); its image needs exactly "
                         f"{int(want[bad[0]])}: render prompts with the tokenizer's image "
                         "placeholder and one image per prompt")
