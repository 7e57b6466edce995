"""The features every dataset builder yields: question, answer, solution, task, difficulty, meta;
the visual ones also ``image``, [S, S, 3] uint8."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

FEATURES = {"question": tfds.features.Text(), "answer": tfds.features.Text(),
            "solution": tfds.features.Text(), "task": tfds.features.Text(),
            "difficulty": tfds.features.Scalar(dtype=np.int32), "meta": tfds.features.Text()}


def info(builder, description: str, image_size: int | None = None) -> tfds.core.DatasetInfo:
    features = dict(FEATURES)
    if image_size:
        features["image"] = tfds.features.Tensor(shape=(image_size, image_size, 3),
                                                 dtype=np.uint8)
    return tfds.core.DatasetInfo(builder=builder, description=description,
                                 features=tfds.features.FeaturesDict(features))
