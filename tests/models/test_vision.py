"""The vision encoder against a plain NumPy ViT written from its description (patch by patch,
head by head, 2-D rotary angles by hand); image tokens land on the placeholders in order."""

import jax
import numpy as np
import pytest

from o1jax.models import Transformer, positions_from_mask, preset
from o1jax.models import vision, vision_config
from o1jax.models.vision_config import VisionConfig

CFG = VisionConfig(image_size=16, patch_size=4, hidden_size=32, num_layers=2, num_heads=2,
                   mlp_dim=48, merge_size=2)


def _rms(x, w, eps=1e-6):
    return w * x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)


def _rotate(x, angles):
    """Rotate-half rotary embedding of x [Dh] by angles [Dh / 2]."""
    h = len(x) // 2
    c, s = np.cos(angles), np.sin(angles)
    return np.concatenate([x[:h] * c - x[h:] * s, x[h:] * c + x[:h] * s])


def _numpy_encoder(cfg, p, image):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    P, g, m = cfg.patch_size, cfg.grid, cfg.merge_size
    pix = (image.astype(np.float64) / 255 - vision_config.PIXEL_MEAN) / vision_config.PIXEL_STD
    order = [(wr * m + i, wc * m + j) for wr in range(g // m) for wc in range(g // m)
             for i in range(m) for j in range(m)]
    x = np.stack([pix[r * P:(r + 1) * P, c * P:(c + 1) * P].reshape(-1) for r, c in order])
    x = x @ p["patch_embed"]
    dh = cfg.head_dim
    inv = 1.0 / cfg.rope_theta ** (np.arange(0, dh // 2, 2) / (dh // 2))
    angles = [np.concatenate([r * inv, c * inv]) for r, c in order]
    for layer in range(cfg.num_layers):
        w = {k: v[layer] for k, v in p["layers"].items()}
        h = _rms(x, w["attn_norm"])
        out = np.zeros_like(x)
        for head in range(cfg.num_heads):
            q = h @ w["wq"][:, head] + w["bq"][head]
            k = h @ w["wk"][:, head] + w["bk"][head]
            v = h @ w["wv"][:, head] + w["bv"][head]
            q = np.stack([_rotate(q[i], angles[i]) for i in range(len(order))])
            k = np.stack([_rotate(k[i], angles[i]) for i in range(len(order))])
            s = q @ k.T / np.sqrt(dh)
            a = np.exp(s - s.max(1, keepdims=True))
            a /= a.sum(1, keepdims=True)
            out += (a @ v) @ w["wo"][head]
        x = x + out
        h = _rms(x, w["mlp_norm"])
        gate = h @ w["w_gate"]
        x = x + (gate / (1 + np.exp(-gate)) * (h @ w["w_up"])) @ w["w_down"]
    mg = p["merger"]
    x = _rms(x, mg["norm"]).reshape(len(order) // m ** 2, -1)
    from math import erf, sqrt
    hid = x @ mg["w1"] + mg["b1"]
    hid = hid * 0.5 * (1 + np.vectorize(erf)(hid / sqrt(2)))
    return hid @ mg["w2"] + mg["b2"]


def test_encoder_equals_a_numpy_vit():
    params = vision.init(CFG, 24, jax.random.key(0))
    # larger weights than init's 0.02 so attention is far from uniform
    params = jax.tree.map(lambda a: a * 8 if a.ndim >= 2 else a + 0.1, params)
    images = np.random.RandomState(0).randint(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    got = np.asarray(vision.encode(CFG, params, images))
    assert got.shape == (2, CFG.num_tokens, 24) and CFG.num_tokens == 4
    for b in range(2):
        np.testing.assert_allclose(got[b], _numpy_encoder(CFG, params, images[b]), rtol=2e-4,
                                   atol=2e-4)


def test_image_tokens_take_the_placeholders_in_order():
    rs = np.random.RandomState(1)
    tokens = rs.randint(4, 20, (3, 12))
    tokens[0, [2, 3, 4, 5]] = 1
    tokens[1, [0, 5, 6, 11]] = 1
    tokens[2, [1, 2, 3, 4, 7, 9]] = 1       # 2 more than the image has: sampled, kept as text
    x = rs.randn(3, 12, 8).astype(np.float32)
    embeds = rs.randn(3, 4, 8).astype(np.float32)
    got = np.asarray(vision.place_image_tokens(x, tokens, 1, embeds))
    want = x.copy()
    for b in range(3):
        k = 0
        for t in range(12):
            if tokens[b, t] == 1 and k < 4:
                want[b, t] = embeds[b, k]
                k += 1
    np.testing.assert_array_equal(got, want)


def test_decoder_reads_the_image_at_its_placeholders_only():
    """A prompt [text, 4 placeholders, text]: the image changes the hidden states from the
    first placeholder on (causal), never before; a row without placeholders is unaffected."""
    cfg = preset("tiny", vision=CFG, image_token_id=1)
    model = Transformer(cfg)
    params = model.init(jax.random.key(0))
    tokens = np.array([[5, 6, 1, 1, 1, 1, 7, 8], [5, 6, 9, 9, 9, 9, 7, 8]])
    mask = np.ones_like(tokens, bool)
    pos = positions_from_mask(mask)
    images = np.random.RandomState(2).randint(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    other = 255 - images
    a, _ = model.hidden(params, tokens, pos, mask, image_embeds=model.encode_images(params, images))
    b, _ = model.hidden(params, tokens, pos, mask, image_embeds=model.encode_images(params, other))
    plain, _ = model.hidden(params, tokens, pos, mask)
    a, b, plain = map(np.asarray, (a, b, plain))
    np.testing.assert_allclose(a[0, :2], b[0, :2], atol=1e-6)
    assert np.abs(a[0, 2:] - b[0, 2:]).min(axis=-1).max() > 1e-4
    np.testing.assert_allclose(a[1], plain[1], atol=1e-6)
    np.testing.assert_allclose(a[0, :2], plain[0, :2], atol=1e-6)


def test_bad_image_inputs_are_named():
    with pytest.raises(ValueError, match="encoder takes \\(16, 16, 3\\)"):
        vision.encode(CFG, vision.init(CFG, 8, jax.random.key(0)),
                      np.zeros((1, 16, 16, 4), np.uint8))
    with pytest.raises(ValueError, match="row 1 holds 3 image placeholder tokens"):
        vision.check_placeholders(np.array([[1, 1, 1, 1], [1, 1, 1, 2]]), np.ones((2, 4)), 1, 4)
    with pytest.raises(ValueError, match="multiple of patch_size x merge_size"):
        VisionConfig(image_size=18)
    with pytest.raises(ValueError, match="image_token_id=-1"):
        preset("tiny", vision=CFG)


def test_a_vision_policy_is_not_exported_without_its_encoder(tmp_path):
    from o1jax.models import hf
    cfg = preset("tiny", vision=CFG, image_token_id=1)
    with pytest.raises(ValueError, match="vision-language policy to Hugging Face is not supported"):
        hf.save_pretrained(str(tmp_path / "out"), Transformer(cfg).init(jax.random.key(0)), cfg)
    assert not (tmp_path / "out").exists()


def test_flops_per_image_agree_with_xla_cost_analysis():
    """The benchmark's encoder FLOPs against what XLA counts for the compiled encoder (which
    also counts norms, activations and the softmax: a few percent more). One block: XLA's cost
    analysis counts a scanned loop's body once."""
    cfg = VisionConfig(image_size=32, patch_size=4, hidden_size=128, num_layers=1, num_heads=4,
                       mlp_dim=512, merge_size=2)
    params = vision.init(cfg, 96, jax.random.key(0))
    images = np.zeros((1, 32, 32, 3), np.uint8)
    cost = jax.jit(lambda p, x: vision.encode(cfg, p, x)).lower(params, images).compile()
    analysis = cost.cost_analysis()
    xla = (analysis[0] if isinstance(analysis, list) else analysis)["flops"]
    ours = cfg.flops_per_image(96)
    assert 0.9 * xla <= ours <= 1.02 * xla, (ours, xla)
