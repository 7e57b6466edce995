"""Builders of a user's own files: ``JsonlQA`` (question/answer JSONL), ``CodeJsonl`` (code tasks
with tests, MBPP's and HumanEval's layouts) and ``ImageQA`` (image question answering as JSONL
or parquet, Geometry3K's layout), and the one rule that turns an image file into the policy's
pixels (``load_image``)."""

from __future__ import annotations

import base64
import builtins
import dataclasses
import io
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image, UnidentifiedImageError

from o1jax.data import features, visual
from o1jax.models.patches import native_size
from o1jax.models.vision_config import NativeSize


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
        for i, ex in enumerate(_rows(path)):
            missing = {"question", "answer"} - set(ex)
            if missing:
                raise ValueError(f"{path}:{i + 1}: missing field(s) {sorted(missing)}")
            yield i, {"question": str(ex["question"]), "answer": str(ex["answer"]),
                      "solution": str(ex.get("solution", "")), "task": "jsonl",
                      "difficulty": int(ex.get("difficulty", 0)), "meta": "{}"}


class CodeJsonl(JsonlQA):
    """Code tasks as JSONL, one problem per line, checked by running their tests in the sandbox
    (answer check ``code``). MBPP's layout: ``text`` (or sanitized MBPP's ``prompt``),
    ``test_list`` of assert lines, optional ``test_setup_code`` / ``test_imports`` and ``code``
    (the reference, the demonstration); the entry point is the function the first test calls.
    HumanEval's: ``prompt`` (signature and docstring), ``test`` (defining ``check(candidate)``),
    ``entry_point``, optional ``canonical_solution``."""

    def _generate_examples(self, path):
        for i, row in enumerate(_rows(path)):
            yield i, code_example(row, f"{path}:{i + 1}")


_CALLED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")


def _entry_point(test: str, code: str) -> str | None:
    """The function an MBPP test calls: the first name it calls that is not a builtin (``set``,
    ``sorted``, ...) nor a module's (``math.isclose``), preferring one the reference defines."""
    called = [n for n in _CALLED.findall(test) if not hasattr(builtins, n)]
    defined = set(re.findall(r"^def\s+([A-Za-z_]\w*)", code, re.MULTILINE))
    return next((n for n in called if n in defined), called[0] if called else None)


def code_example(row: dict, where: str) -> dict:
    """An example of the code task from an MBPP or a HumanEval row (``CodeJsonl``)."""
    if "entry_point" in row and "test" in row:                     # HumanEval
        entry, tests = row["entry_point"], [f"{row['test']}\ncheck({row['entry_point']})"]
        question = str(row.get("prompt", ""))
        code = question + str(row.get("canonical_solution", "")) \
            if row.get("canonical_solution") else ""
    elif "test_list" in row:                                         # MBPP
        setup = "\n".join([str(row.get("test_setup_code") or "")] +
                          [str(t) for t in row.get("test_imports") or []]).strip()
        tests = [f"{setup}\n{t}" if setup else str(t) for t in row["test_list"]]
        code = str(row.get("code") or "")
        entry = _entry_point(str(row["test_list"][0]), code) if row["test_list"] else None
        if entry is None:
            raise ValueError(f"{where}: the first of test_list calls no function of its own "
                             f"(assert f(...) ...); cannot tell the entry point")
        text = str(row.get("text", row.get("prompt", "")))
        question = f"{text}\nYour code should pass this test:\n{row['test_list'][0]}" \
            if text.strip() else ""
    else:
        raise ValueError(f"{where}: neither MBPP's layout (text, test_list) nor HumanEval's "
                         f"(prompt, test, entry_point)")
    if not question.strip():
        raise ValueError(f"{where}: the problem has no text")
    return {"question": question, "answer": code, "task": "code_jsonl",
            "solution": f"```python\n{code}\n```" if code else "",
            "difficulty": int(row.get("difficulty") or 0),
            "meta": json.dumps({"tests": tests, "entry_point": entry})}


def load_image(data, size: int | NativeSize, where: str = "") -> np.ndarray:
    """An image file's bytes, or a path to one, as [H, W, 3] uint8. The rule: decode with
    Pillow, composite any alpha over white, convert to RGB (grayscale and palette images too),
    resize with bicubic filtering to ``size`` x ``size`` (an int: the aspect ratio is not kept)
    or, for an encoder that reads images at their own sizes (``VisionConfig.native``), to its
    ``patches.native_size`` as Qwen2.5-VL's processor does."""
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
    if isinstance(size, int):
        height, width = size, size
    else:
        try:
            height, width = native_size(size, img.height, img.width)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(img, np.uint8)


@dataclasses.dataclass
class ImageQAConfig(tfds.core.BuilderConfig):
    """image_size: the square images' side; with max_pixels > 0 images keep their own sizes
    (``patches.native_size`` of factor, min_pixels, max_pixels) instead."""
    train_path: str = ""
    test_path: str = ""
    image_size: int = visual.IMAGE_SIZE
    factor: int = 0
    min_pixels: int = 0
    max_pixels: int = 0

    @property
    def size(self) -> int | NativeSize:
        if self.max_pixels:
            return NativeSize(self.factor, self.min_pixels, self.max_pixels)
        return self.image_size


class ImageQA(tfds.core.GeneratorBasedBuilder):
    """A user's image question answering files, JSONL or parquet, one example per line/row:
    ``question`` (or ``problem``), ``answer``, and the image as ``image`` or the first of
    ``images``: a path (relative to the file), base64 bytes, or {"bytes": ..., "path": ...}
    (parquet: raw bytes), Geometry3K's layout. Optional ``solution``, ``difficulty``."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [ImageQAConfig(name="default")]

    def _info(self):
        c = self.builder_config
        return features.info(self, self.__doc__, -1 if c.max_pixels else c.image_size)

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
            pixels = load_image(_image_source(image, path, where), self.builder_config.size,
                                where)
            own = {"image": pixels.reshape(-1), "image_shape": np.array(pixels.shape, np.int32)}
            yield i, {"question": str(question), "answer": str(row["answer"]),
                      "solution": str(row.get("solution") or ""), "task": "image_qa",
                      "difficulty": int(row.get("difficulty") or 0), "meta": "{}",
                      **(own if self.builder_config.max_pixels else {"image": pixels})}


def _rows(path: str):
    """The rows of a user's JSONL or parquet file, local or gs:// (through ``etils.epath``)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq
        with epath.Path(path).open("rb") as f:
            yield from pq.read_table(f).to_pylist()
        return
    with epath.Path(path).open() as f:
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
