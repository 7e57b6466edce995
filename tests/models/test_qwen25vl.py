"""Qwen2.5-VL from a Hugging Face directory: logits, vision tokens and M-RoPE position ids equal
transformers' on a tiny random checkpoint transformers wrote (every weight random, biases and
norms included; window attention in vision blocks 0 and 2, full attention in block 1).

transformers gets pixel_values / image_grid_thw from its own Qwen2-VL image processor (PIL
backend, loaded from the checkpoint's preprocessor_config.json) applied to the same
112 x 112 uint8 images we feed: its resize keeps a 112 x 112 image as it is, so both sides see
the same pixels, normalised by each side's own code.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from o1jax.models import hf, positions_from_mask
from o1jax.models.vision_config import PIXEL_MEAN
from o1jax.rollout.decoding import prefill
from o1jax.tokenizer import Tokenizer
from tests import hf_fixtures

IMAGE_ID, N = hf_fixtures.VOCAB, 16     # <image>; 16 image tokens per 112-pixel image
SIZE = hf_fixtures.VL_IMAGE_SIZE


@pytest.fixture(scope="module", params=[56, 84], ids=["windows2x2", "windows3x3"])
def vl_dir(request, tmp_path_factory):
    return hf_fixtures.save_tiny_qwen25vl(tmp_path_factory.mktemp("qwen25vl"),
                                          window_size=request.param)


def _images(seed=0, b=3):
    return np.random.RandomState(seed).randint(0, 256, (b, SIZE, SIZE, 3)).astype(np.uint8)


def _batch(seed=0):
    """Left-padded rows in prompt_ids' layout and others: <s> + image + text; image + text (no
    <s>); text + image at the end."""
    rng = np.random.RandomState(seed)
    text = lambda n: list(rng.randint(0, 256, n))  # noqa: E731
    rows = [[257] + [IMAGE_ID] * N + text(9), [IMAGE_ID] * N + text(4), text(5) + [IMAGE_ID] * N]
    t = max(map(len, rows))
    tokens, mask = np.full((3, t), 256), np.zeros((3, t), np.int64)
    for i, r in enumerate(rows):
        tokens[i, t - len(r):], mask[i, t - len(r):] = r, 1
    return tokens, mask


def _hf_inputs(path, tokens, mask, images):
    proc = transformers.AutoImageProcessor.from_pretrained(path)
    feats = proc(images=list(images), return_tensors="pt")
    assert feats["image_grid_thw"].tolist() == [[1, 8, 8]] * len(images)
    return dict(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                pixel_values=feats["pixel_values"], image_grid_thw=feats["image_grid_thw"],
                mm_token_type_ids=torch.tensor((tokens == IMAGE_ID).astype(np.int64)))


def _ours(model, params, tokens, mask, images):
    m = jnp.asarray(mask)
    logits, _ = model.apply(params, jnp.asarray(tokens), positions_from_mask(m), m,
                            image_embeds=model.encode_images(params, jnp.asarray(images)))
    return np.asarray(logits)


def test_logits_and_image_tokens_match_transformers(vl_dir):
    ref = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(vl_dir).eval()
    model, params = hf.load(vl_dir, vision={"image_size": SIZE})
    tokens, mask = _batch()
    images = _images()
    inputs = _hf_inputs(vl_dir, tokens, mask, images)
    with torch.no_grad():
        want = ref(**inputs).logits.numpy()
        vis = ref.model.get_image_features(inputs["pixel_values"],
                                           inputs["image_grid_thw"]).pooler_output
    embeds = np.asarray(model.encode_images(params, jnp.asarray(images)))
    np.testing.assert_allclose(embeds.reshape(-1, 64), torch.cat(vis).numpy(), atol=1e-5,
                               rtol=1e-5)
    real = mask.astype(bool)
    got = _ours(model, params, tokens, mask, images)
    assert np.abs(want).max() > 1.0
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)
    # the comparison sees the windows: full attention in every block gives other image tokens
    full = hf.load(vl_dir, vision={"image_size": SIZE, "window_size": 0})
    other = np.asarray(full[0].encode_images(full[1], jnp.asarray(images)))
    assert np.abs(other - embeds).max() > 1e-2


def test_position_ids_equal_get_rope_index(vl_dir):
    ref = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(vl_dir).eval()
    model = hf.load(vl_dir, vision={"image_size": SIZE})[0]
    tokens, mask = _batch(1)
    inputs = _hf_inputs(vl_dir, tokens, mask, _images(b=3))
    want, deltas = ref.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs["attention_mask"])
    m = jnp.asarray(mask)
    got = np.asarray(model.rope_positions(jnp.asarray(tokens), positions_from_mask(m), m, True))
    real = mask.astype(bool)
    np.testing.assert_array_equal(got.transpose(2, 0, 1)[:, real], want.numpy()[:, real])
    # decode steps continue where transformers' generate does: text position + rope delta
    params = model.init(jax.random.key(0))
    cache, _ = prefill(model, params, jnp.asarray(tokens), m, tokens.shape[1] + 4,
                       jnp.asarray(_images(b=3)))
    np.testing.assert_array_equal(np.asarray(cache["positions"]),
                                  mask.sum(1) + deltas.numpy()[:, 0])


def test_config_reads_hub_layout_and_preprocessor(vl_dir, tmp_path):
    cfg = hf.load_config(vl_dir)
    assert cfg.architecture == "qwen2_5_vl" and cfg.mrope_section == (2, 3, 3)
    assert cfg.vision.image_size == hf.QWEN_VL_IMAGE_SIZE and cfg.image_token_id == IMAGE_ID
    assert cfg.vision.pixel_mean == hf_fixtures.VL_PIXEL_MEAN
    assert cfg.vision.full_attention_layers == (1,) and cfg.vision.temporal_patch_size == 2
    assert Tokenizer.from_dir(vl_dir).image_id == IMAGE_ID
    # the Hub's flat layout (text fields top-level, rope_scaling type mrope), no preprocessor
    hub = json.loads(open(os.path.join(vl_dir, "config.json")).read())
    text = hub.pop("text_config")
    rope = text.pop("rope_parameters")
    hub.update(text, rope_theta=rope["rope_theta"],
               rope_scaling={"type": "mrope", "mrope_section": rope["mrope_section"]})
    flat = hf.config_from_hf(hub)
    assert flat.vision.pixel_mean == tuple(PIXEL_MEAN.tolist())   # Qwen's default: CLIP's
    assert flat.replace(vision=cfg.vision) == cfg


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["text_config"].update(use_sliding_window=True), "use_sliding_window"),
    (lambda c: c["vision_config"].update(hidden_act="gelu"), "hidden_act"),
    (lambda c: c["vision_config"].update(out_hidden_size=32), "out_hidden_size"),
    (lambda c: c["text_config"]["rope_parameters"].update(mrope_section=[2, 2, 2]),
     "mrope_section"),
])
def test_unsupported_configs_are_refused(vl_dir, edit, match):
    cfg = json.loads(open(os.path.join(vl_dir, "config.json")).read())
    edit(cfg)
    with pytest.raises(ValueError, match=match):
        hf.config_from_hf(cfg)
    with pytest.raises(ValueError, match="multiple of patch_size x merge_size"):
        hf.load_config(vl_dir, vision={"image_size": 100})


def test_missing_vision_tensor_is_named(vl_dir, tmp_path):
    for name in os.listdir(vl_dir):
        (tmp_path / name).write_bytes(open(os.path.join(vl_dir, name), "rb").read())
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["visual.blocks.1.attn.proj.bias"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(hf.CheckpointError, match="missing tensor visual.blocks.1.attn.proj.bias"):
        hf.load(str(tmp_path))


def test_export_reloads_in_transformers_with_the_same_logits(vl_dir, tmp_path):
    model, params = hf.load(vl_dir, vision={"image_size": SIZE})
    out = str(tmp_path / "export")
    hf.save_pretrained(out, params, model.cfg, Tokenizer.from_dir(vl_dir))
    tokens, mask = _batch(2)
    images = _images(3)
    real = mask.astype(bool)
    ref = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(vl_dir).eval()
    back = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
    with torch.no_grad():
        want = ref(**_hf_inputs(vl_dir, tokens, mask, images)).logits.numpy()
        got = back(**_hf_inputs(out, tokens, mask, images)).logits.numpy()
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)
    again = hf.load(out, vision={"image_size": SIZE})
    assert again[0].cfg == model.cfg
    np.testing.assert_allclose(_ours(*again, tokens, mask, images)[real], want[real], atol=1e-4,
                               rtol=1e-4)


def test_bfloat16_checkpoint_loads(tmp_path):
    """Hub checkpoints are bfloat16 (which safetensors' NumPy reader refuses): they load, and
    match transformers running the same rounded weights in float32 (an untied output head)."""
    hf_fixtures.tiny_qwen25vl(seed=3, tie=False).to(torch.bfloat16).save_pretrained(str(tmp_path))
    hf_fixtures.vl_processor().save_pretrained(str(tmp_path))
    from safetensors import safe_open
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert f.get_tensor("visual.patch_embed.proj.weight").dtype == torch.bfloat16
    ref = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        str(tmp_path), dtype=torch.float32).eval()
    tokens, mask = _batch(3)
    images = _images(4)
    with torch.no_grad():
        want = ref(**_hf_inputs(str(tmp_path), tokens, mask, images)).logits.numpy()
    got = _ours(*hf.load(str(tmp_path), vision={"image_size": SIZE}), tokens, mask, images)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)


def test_images_at_their_own_sizes_match_transformers(vl_dir):
    """Images of three sizes and aspect ratios, each resized by its own rule on each side (ours:
    ``load_image`` to ``patches.native_size``; transformers' processor: smart_resize), in one
    batch padded to one patch count: the grids, the image tokens, the logits, the M-RoPE
    positions and where decoding continues all equal transformers'."""
    import io

    from PIL import Image

    from o1jax.data.builders import load_image
    from o1jax.models.patches import native_tokens, patch_native

    ref = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(vl_dir).eval()
    model, params = hf.load(vl_dir)
    assert model.cfg.vision.max_pixels == 28 * 28 * 1280       # the preprocessor's bounds
    rng = np.random.RandomState(3)
    raw = [Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8))
           for h, w in ((70, 90), (150, 45), (60, 60))]
    ours = []
    for im in raw:
        buf = io.BytesIO()
        im.save(buf, "PNG")
        ours.append(load_image(buf.getvalue(), model.cfg.vision.native))
    feats = transformers.AutoImageProcessor.from_pretrained(vl_dir)(images=raw,
                                                                    return_tensors="pt")
    batch = patch_native(ours, 14, 2)
    np.testing.assert_array_equal(batch.grid, feats["image_grid_thw"].numpy()[:, 1:])
    counts = [native_tokens(model.cfg.vision, *im.shape[:2]) for im in ours]
    assert counts == [6, 10, 4] and batch.pixels.shape[1] == 10 * 4    # padded to the largest
    text = lambda n: list(rng.randint(0, 256, n))  # noqa: E731
    rows = [[257] + [IMAGE_ID] * counts[0] + text(9), [IMAGE_ID] * counts[1] + text(4),
            text(5) + [IMAGE_ID] * counts[2] + text(2)]
    t = max(map(len, rows))
    tokens, mask = np.full((3, t), 256), np.zeros((3, t), np.int64)
    for i, r in enumerate(rows):
        tokens[i, t - len(r):], mask[i, t - len(r):] = r, 1
    inputs = dict(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                  pixel_values=feats["pixel_values"], image_grid_thw=feats["image_grid_thw"],
                  mm_token_type_ids=torch.tensor((tokens == IMAGE_ID).astype(np.int64)))
    with torch.no_grad():
        want = ref(**inputs).logits.numpy()
        vis = ref.model.get_image_features(inputs["pixel_values"],
                                           inputs["image_grid_thw"]).pooler_output
        want_pos, deltas = ref.model.get_rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs["attention_mask"])
    images = jax.tree.map(jnp.asarray, batch)
    embeds = np.asarray(model.encode_images(params, images))
    for i, n in enumerate(counts):
        np.testing.assert_allclose(embeds[i, :n], vis[i].numpy(), atol=1e-5, rtol=1e-5)
    m = jnp.asarray(mask)
    extra = model.image_inputs(params, images)
    got = np.asarray(model.apply(params, jnp.asarray(tokens), positions_from_mask(m), m,
                                 **extra)[0])
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=1e-4)
    pos = np.asarray(model.rope_positions(jnp.asarray(tokens), positions_from_mask(m), m, True,
                                          extra["image_grid"]))
    np.testing.assert_array_equal(pos.transpose(2, 0, 1)[:, real], want_pos.numpy()[:, real])
    cache, _ = prefill(model, params, jnp.asarray(tokens), m, t + 4, images)
    np.testing.assert_array_equal(np.asarray(cache["positions"]),
                                  mask.sum(1) + deltas.numpy()[:, 0])
