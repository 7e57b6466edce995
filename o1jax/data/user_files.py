"""Builders of a user's own files: ``JsonlQA`` (question/answer JSONL) and ``ImageQA`` (image
question answering as JSONL or parquet, Geometry3K's layout), and the one rule that turns an
image file into the policy's pixels (``load_image``)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, UnidentifiedImageError

from o1jax.data import features, visual


@dataclasses.dataclass
class JsonlConfig(tfds.core.BuilderConfig):
    train_path: str = ""
    test_path: str = ""


class JsonlQA(tfds.core.GeneratorBasedBuilder):
    """A user's JSONL files, one {"question": ..., "answer": ...} object per line
    (optional "solution")."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [JsonlConfig(name="default")]

    def _info(self):
        return features.info(self, self.__doc__)

    def _split_generators(self, dl_manager):
        c = self.builder_config
        splits = {"train": c.train_path, "test": c.test_path}
        return {k: self._generate_examples(v) for k, v in splits.items() if v}

    def _generate_examples(self, path):
        with open(path) as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                ex = json.loads(line)
                missing = {"question", "answer"} - set(ex)
                if missing:
                    raise ValueError(f"{path}:{i + 1}: missing field(s) {sorted(missing)}")
                yield i, {"question": str(ex["question"]), "answer": str(ex["answer"]),
                          "solution": str(ex.get("solution", "")), "task": "jsonl",
                          "difficulty": int(ex.get("difficulty", 0)), "meta": "{}"}


def load_image(data, size: int, where: str = "") -> np.ndarray:
    """An image file's bytes, or a path to one, as [size, size, 3] uint8. The rule: decode with
    Pillow, composite any alpha over white, convert to RGB (grayscale and palette images too),
    resize to size x size with bicubic filtering (the aspect ratio is not kept)."""
    try:
        if isinstance(data, (bytes, bytearray)):
            img = Image.open(io.BytesIO(data))
        else:
            img = Image.open(data)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"{where}: the image does not decode ({type(e).__name__}: {e}); give "
                         "PNG/JPEG bytes (base64 in JSONL) or a path to such a file") from None
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, np.uint8)


@dataclasses.dataclass
class ImageQAConfig(tfds.core.BuilderConfig):
    train_path: str = ""
    test_path: str = ""
    image_size: int = visual.IMAGE_SIZE


class ImageQA(tfds.core.GeneratorBasedBuilder):
    """A user's image question answering files, JSONL or parquet, one example per line/row:
    ``question`` (or ``problem``), ``answer``, and the image as ``image`` or the first of
    ``images``: a path (relative to the file), base64 bytes, or {"bytes": ..., "path": ...}
    (parquet: raw bytes), Geometry3K's layout. Optional ``solution``, ``difficulty``."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [ImageQAConfig(name="default")]

    def _info(self):
        return features.info(self, self.__doc__, self.builder_config.image_size)

    def _split_generators(self, dl_manager):
        c = self.builder_config
        splits = {"train": c.train_path, "test": c.test_path}
        return {k: self._generate_examples(v) for k, v in splits.items() if v}

    def _generate_examples(self, path):
        for i, row in enumerate(_rows(path)):
            where = f"{path}:{i + 1}"
            question = row.get("question", row.get("problem"))
            image = row.get("image")
            if image is None and row.get("images") is not None and len(row["images"]):
                image = row["images"][0]
            missing = [n for n, v in (("question", question), ("answer", row.get("answer")),
                                      ("image", image)) if v is None]
            if missing:
                raise ValueError(f"{where}: missing field(s) {missing}")
            yield i, {"question": str(question), "answer": str(row["answer"]),
                      "solution": str(row.get("solution") or ""), "task": "image_qa",
                      "difficulty": int(row.get("difficulty") or 0), "meta": "{}",
                      "image": load_image(_image_source(image, path, where),
                                          self.builder_config.image_size, where)}


def _rows(path: str):
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq
        yield from pq.read_table(path).to_pylist()
        return
    with open(path) as f:
        for i, line in enumerate(f):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i + 1}: not JSON ({e})") from None


def _image_source(image, path: str, where: str):
    """Bytes or a file path from a row's image field."""
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        return image
    if not isinstance(image, str) or not image:
        raise ValueError(f"{where}: image must be a path, base64 bytes or {{'bytes': ...}}")
    local = os.path.join(os.path.dirname(os.path.abspath(path)), image)
    if os.path.exists(local):
        return local
    try:
        return base64.b64decode(image, validate=True)
    except ValueError:
        raise ValueError(f"{where}: image {image[:60]!r} is neither a file next to "
                         f"{os.path.basename(path)} nor base64 bytes") from None
