"""The features every dataset builder yields: question, answer, solution, task, difficulty, meta;
the visual ones also ``image``, [S, S, 3] uint8 (or [H, W, 3] of each image's own size)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

FEATURES = {"question": tfds.features.Text(), "answer": tfds.features.Text(),
            "solution": tfds.features.Text(), "task": tfds.features.Text(),
            "difficulty": tfds.features.Scalar(dtype=np.int32), "meta": tfds.features.Text()}


def info(builder, description: str, image_size: int | None = None) -> tfds.core.DatasetInfo:
    """``image_size`` S > 0: images [S, S, 3]; -1: images of their own sizes, stored flat with
    their shape (``image_shape`` [3]; ``pipeline.decode_example`` joins the two)."""
    features = dict(FEATURES)
    if image_size and image_size > 0:
        features["image"] = tfds.features.Tensor(shape=(image_size, image_size, 3),
                                                 dtype=np.uint8)
    elif image_size:
        features["image"] = tfds.features.Tensor(shape=(None,), dtype=np.uint8)
        features["image_shape"] = tfds.features.Tensor(shape=(3,), dtype=np.int32)
    return tfds.core.DatasetInfo(builder=builder, description=description,
                                 features=tfds.features.FeaturesDict(features))
