"""TensorFlow Datasets builders, so every task loads the same way: array_record files read with
``tfds.data_source`` / ``builder.as_data_source()`` (no TensorFlow needed).

* ``O1jaxTasks``: the synthetic tasks of ``o1jax.data.tasks`` (one config per task).
* ``Gsm8kLocal``: TFDS's own ``gsm8k`` builder, reading the official ``train.jsonl`` /
  ``test.jsonl`` of openai/grade-school-math from a manual directory instead of downloading.
* ``HendrycksMath``: MATH from the official ``MATH/{train,test}/<subject>/<id>.json`` files in a
  manual directory; the answer is the last ``\\boxed{}`` of the reference solution.
* ``JsonlQA``: a user's own JSONL file with ``question`` and ``answer`` fields.
* ``VisualTasks``: the rendered tasks of ``o1jax.data.visual`` (count, chart, pixel_sum).
* ``ImageQA``: a user's image dataset as JSONL or parquet (Geometry3K's layout).

Every builder yields the same features: question, answer, solution, task, difficulty, meta; the
visual ones also ``image``, [S, S, 3] uint8.
"""

from __future__ import annotations

import base64
import dataclasses
import glob
import io
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.text.gsm8k import gsm8k as tfds_gsm8k

from o1jax.config import datasets
from o1jax.data import tasks, visual
from o1jax.rewards.answers import last_boxed

FEATURES = {"question": tfds.features.Text(), "answer": tfds.features.Text(),
            "solution": tfds.features.Text(), "task": tfds.features.Text(),
            "difficulty": tfds.features.Scalar(dtype=np.int32), "meta": tfds.features.Text()}


def _info(builder, description: str, image_size: int | None = None) -> tfds.core.DatasetInfo:
    features = dict(FEATURES)
    if image_size:
        features["image"] = tfds.features.Tensor(shape=(image_size, image_size, 3),
                                                 dtype=np.uint8)
    return tfds.core.DatasetInfo(builder=builder, description=description,
                                 features=tfds.features.FeaturesDict(features))


@dataclasses.dataclass
class TaskConfig(tfds.core.BuilderConfig):
    task: str = "arithmetic"
    difficulty: int = 2
    num_train: int = 20000
    num_test: int = 500
    seed: int = 0
    hard_levels: int = 1     # the hard split: test-partition questions this much harder
    slip_rate: float = 0.0   # train-split solutions from a sloppy demonstrator (arithmetic)


class O1jaxTasks(tfds.core.GeneratorBasedBuilder):
    """Synthetic verifiable math (arithmetic, linear equations, fractions, countdown)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "a hard split: held-out questions above the training difficulty"}
    BUILDER_CONFIGS = [TaskConfig(name=t, task=t) for t in tasks.TASKS]

    def _info(self):
        return _info(self, self.__doc__)

    def _split_generators(self, dl_manager):
        c = self.builder_config
        return {"train": self._generate_examples("train", c.num_train),
                "test": self._generate_examples("test", c.num_test),
                "hard": self._generate_examples("test", c.num_test, c.hard_levels)}

    def _generate_examples(self, split, num, harder=0):
        c = self.builder_config
        slips = c.slip_rate if split == "train" else 0.0
        for i, ex in enumerate(tasks.generate(c.task, split, num, c.seed, c.difficulty + harder,
                                              slips)):
            yield i, ex


class Gsm8kLocal(tfds_gsm8k.Gsm8k):
    """TFDS's gsm8k builder over the official JSONL files in ``manual_dir``."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Put train.jsonl and test.jsonl of "
                                    "github.com/openai/grade-school-math in manual_dir.")

    def _info(self):
        return _info(self, "GSM8K (grade school math), from local official files.")

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        return {split: self._generate_examples(os.path.join(root, f"{split}.jsonl"))
                for split in ("train", "test")}

    def _generate_examples(self, path):
        # the official builder's parsing, mapped onto the common features
        for key, ex in super()._generate_examples(path):
            yield key, {"question": ex["question"], "answer": ex["short_answer"].strip(),
                        "solution": ex["answer"], "task": "gsm8k", "difficulty": 0,
                        "meta": "{}"}


class HendrycksMath(tfds.core.GeneratorBasedBuilder):
    """MATH (Hendrycks et al. 2021) from the official files in ``manual_dir``."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Extract MATH.tar so that manual_dir/MATH/train exists."

    def _info(self):
        return _info(self, self.__doc__)

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        if os.path.isdir(os.path.join(root, "MATH")):
            root = os.path.join(root, "MATH")
        return {s: self._generate_examples(os.path.join(root, s)) for s in ("train", "test")}

    def _generate_examples(self, folder):
        for path in sorted(glob.glob(os.path.join(folder, "*", "*.json"))):
            with open(path) as f:
                ex = json.load(f)
            answer = last_boxed(ex["solution"])
            if answer is None:
                continue  # no gold answer: never reward against it
            level = ex.get("level", "")
            yield os.path.relpath(path, folder), {
                "question": ex["problem"], "answer": answer.strip(), "solution": ex["solution"],
                "task": "math/" + ex.get("type", ""),
                "difficulty": int(level.split()[-1]) if level.split()[-1:] and
                level.split()[-1].isdigit() else 0,
                "meta": json.dumps({"type": ex.get("type", ""), "level": level})}


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
        return _info(self, self.__doc__)

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


@dataclasses.dataclass
class VisualConfig(tfds.core.BuilderConfig):
    task: str = "count"
    difficulty: int = 1
    num_train: int = 4000
    num_test: int = 200
    seed: int = 0
    hard_levels: int = 1
    image_size: int = visual.IMAGE_SIZE


class VisualTasks(tfds.core.GeneratorBasedBuilder):
    """Rendered visual tasks whose answers come from their specifications: counting objects,
    reading a bar chart, a sum shown only as pixels."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [VisualConfig(name=t, task=t) for t in visual.TASKS]

    def _info(self):
        return _info(self, self.__doc__, self.builder_config.image_size)

    def _split_generators(self, dl_manager):
        c = self.builder_config
        return {"train": self._generate_examples("train", c.num_train, c.difficulty),
                "test": self._generate_examples("test", c.num_test, c.difficulty),
                "hard": self._generate_examples("test", c.num_test,
                                                c.difficulty + c.hard_levels)}

    def _generate_examples(self, split, num, difficulty):
        c = self.builder_config
        yield from enumerate(visual.generate(c.task, split, num, c.seed, difficulty,
                                             c.image_size))


def load_image(data, size: int, where: str = "") -> np.ndarray:
    """An image file's bytes, or a path to one, as [size, size, 3] uint8. The rule: decode with
    Pillow, composite any alpha over white, convert to RGB (grayscale and palette images too),
    resize to size x size with bicubic filtering (the aspect ratio is not kept)."""
    from PIL import Image, UnidentifiedImageError
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
        return _info(self, self.__doc__, self.builder_config.image_size)

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


# builders.py's families of the dataset registry (o1jax.config.datasets): generated ones have a
# config per task and settings, files ones a config per hash of their paths
_GENERATED = {"tasks": (O1jaxTasks, TaskConfig), "visual": (VisualTasks, VisualConfig)}
_FILES = {"jsonl": (JsonlQA, JsonlConfig), "image_qa": (ImageQA, ImageQAConfig)}
_OFFICIAL = {"gsm8k": Gsm8kLocal, "math": HendrycksMath}


def build(name: str, data_dir: str, manual_dir: str | None = None, **config) -> dict:
    """Prepares (once) and opens a dataset; returns {split: random-access data source}.

    name: a dataset of the registry ``o1jax.config.datasets`` (a task of ``o1jax.data.tasks``
    ("arithmetic", ...) or ``o1jax.data.visual`` ("count", ...), "gsm8k", "math", "jsonl" or
    "image_qa"); ``config`` sets the builder config's fields.
    """
    family = datasets.get(name).builder
    kw = dict(data_dir=data_dir, file_format="array_record")
    if family in _GENERATED:
        builder_cls, config_cls = _GENERATED[family]
        cfg_name = name + "".join(f"-{k}{v}" for k, v in sorted(config.items()))
        builder = builder_cls(config=config_cls(name=cfg_name, task=name, **config), **kw)
    elif family in _FILES:
        builder_cls, config_cls = _FILES[family]
        builder = builder_cls(config=config_cls(name=f"{name}-{_path_tag(config)}", **config),
                              **kw)
    else:
        builder = _OFFICIAL[family](**kw)
    dl_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=dl_config)
    return {split: builder.as_data_source(split) for split in builder.info.splits}


def _path_tag(config: dict) -> str:
    import hashlib
    key = json.dumps(config, sort_keys=True).encode()
    return hashlib.sha256(key).hexdigest()[:10]
