"""Image layouts: the square patch order (merge windows), the native size against
transformers' smart_resize, native patches against the square ones where both apply, and a
batch of images at their own sizes encoded as each image alone."""

import jax
import numpy as np
import pytest

from o1jax.models import patches, vision
from o1jax.models.vision_config import VisionConfig

CFG = VisionConfig(image_size=16, patch_size=2, hidden_size=16, num_layers=2, num_heads=2,
                   mlp_dim=32, merge_size=2)
NATIVE = VisionConfig(image_size=56, patch_size=14, hidden_size=16, num_layers=2, num_heads=2,
                      mlp_dim=32, merge_size=2, window_size=56, full_attention_layers=(1,),
                      bias=True, min_pixels=56 * 56, max_pixels=28 * 28 * 12)


def test_patch_order_is_merge_windows():
    grid = patches.patch_grid(VisionConfig(image_size=16, patch_size=4, hidden_size=16,
                                           num_heads=2))
    assert grid[:4].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert grid[4:8].tolist() == [[0, 2], [0, 3], [1, 2], [1, 3]]
    assert sorted(map(tuple, grid.tolist())) == [(r, c) for r in range(4) for c in range(4)]


def test_native_size_equals_transformers_smart_resize():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
    rng = np.random.RandomState(0)
    for h, w in [(70, 90), (28, 28), (13, 2000), (1000, 1000)] + \
            [tuple(rng.randint(10, 600, 2)) for _ in range(300)]:
        if max(h, w) / min(h, w) > 200:
            continue
        assert patches.native_size(NATIVE.native, h, w) == smart_resize(
            h, w, 28, NATIVE.min_pixels, NATIVE.max_pixels), (h, w)
    with pytest.raises(ValueError, match="aspect ratio must be below 200"):
        patches.native_size(NATIVE.native, 10, 2500)


def test_native_patches_of_a_square_image_are_the_square_layout():
    """A 56 x 56 image: its native patches, rotary angles and masks equal the square path's,
    so both encode it alike."""
    image = np.random.RandomState(1).randint(0, 256, (56, 56, 3)).astype(np.uint8)
    batch = patches.patch_native([image], 14, 2)
    np.testing.assert_array_equal(batch.pixels, np.asarray(patches.patchify(NATIVE, image[None])))
    (cos, sin), masks = patches.native_layout(NATIVE, batch.grid, 16)
    (cos0, sin0), masks0 = patches.square_layout(NATIVE)
    np.testing.assert_allclose(np.asarray(cos), np.asarray(cos0), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sin), np.asarray(sin0), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(masks), masks0)


def test_a_padded_batch_encodes_each_image_as_alone():
    """Images of 3 sizes in one batch padded to the largest: each row's real tokens equal the
    image encoded alone (padding never attended to), windows uneven at the edges."""
    params = vision.init(NATIVE, 8, jax.random.key(0))
    params = jax.tree.map(lambda a: a * 8 if a.ndim >= 2 else a + 0.1, params)
    rng = np.random.RandomState(2)
    images = [rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
              for h, w in ((56, 84), (112, 56), (84, 84))]
    together = np.asarray(vision.encode(NATIVE, params, patches.patch_native(images, 14, 2)))
    assert together.shape == (3, 9, 8)
    for i, image in enumerate(images):
        alone = np.asarray(vision.encode(NATIVE, params, patches.patch_native([image], 14, 2)))
        n = patches.native_tokens(NATIVE, *image.shape[:2])
        assert alone.shape[1] == n
        np.testing.assert_allclose(together[i, :n], alone[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="multiples of 28 pixels"):
        patches.patch_native([images[0][:50]], 14, 2)
