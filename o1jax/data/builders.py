"""TensorFlow Datasets builders, so every task loads the same way: array_record files read with
``tfds.data_source`` / ``builder.as_data_source()`` (no TensorFlow needed).

* ``O1jaxTasks``: the synthetic tasks of ``o1jax.data.tasks`` (one config per task).
* ``Gsm8kLocal``: TFDS's own ``gsm8k`` builder, reading the official ``train.jsonl`` /
  ``test.jsonl`` of openai/grade-school-math from a manual directory instead of downloading.
* ``HendrycksMath``: MATH from the official ``MATH/{train,test}/<subject>/<id>.json`` files in a
  manual directory; the answer is the last ``\\boxed{}`` of the reference solution.
* ``JsonlQA``: a user's own JSONL file with ``question`` and ``answer`` fields.
* ``CodeJsonl``: code tasks with tests in MBPP's or HumanEval's JSONL layout.
* ``VisualTasks``: the rendered tasks of ``o1jax.data.visual`` (count, chart, pixel_sum).
* ``ImageQA``: a user's image dataset as JSONL or parquet (Geometry3K's layout).

Every builder yields the same features: question, answer, solution, task, difficulty, meta; the
visual ones also ``image``, [S, S, 3] uint8.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import tensorflow_datasets as tfds
from tensorflow_datasets.text.gsm8k import gsm8k as tfds_gsm8k

from o1jax.config import datasets
from o1jax.data import features
from o1jax.data import tasks, visual
# load_image keeps its documented name here (o1jax.data.builders.load_image)
from o1jax.data.user_files import (CodeJsonl, ImageQA, ImageQAConfig, JsonlConfig,  # noqa: F401
                                   JsonlQA, load_image)
from o1jax.rewards.answers import last_boxed

@dataclasses.dataclass
class GeneratedConfig(tfds.core.BuilderConfig):
    """A generated task's settings; ``build`` names each config after the ones it sets."""
    task: str = ""
    difficulty: int = 1
    num_train: int = 4000
    num_test: int = 200
    seed: int = 0
    hard_levels: int = 1     # the hard split: test-partition questions this much harder


@dataclasses.dataclass
class TaskConfig(GeneratedConfig):
    task: str = "arithmetic"
    difficulty: int = 2
    num_train: int = 20000
    num_test: int = 500
    slip_rate: float = 0.0   # train-split solutions from a sloppy demonstrator (arithmetic,
                             # code_functions)


class O1jaxTasks(tfds.core.GeneratorBasedBuilder):
    """Synthetic verifiable math (arithmetic, linear equations, fractions, countdown)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "a hard split: held-out questions above the training difficulty"}
    BUILDER_CONFIGS = [TaskConfig(name=t, task=t) for t in tasks.TASKS]

    def _info(self):
        return features.info(self, self.__doc__)

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
        return features.info(self, "GSM8K (grade school math), from local official files.")

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
        return features.info(self, self.__doc__)

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
class VisualConfig(GeneratedConfig):
    task: str = "count"
    image_size: int = visual.IMAGE_SIZE
    slip_rate: float = 0.0   # train-split solutions from a sloppy counter (count)
    asks: str = ""           # count: the kinds of question (datasets.COUNT_ASKS, comma-separated)


class VisualTasks(tfds.core.GeneratorBasedBuilder):
    """Rendered visual tasks whose answers come from their specifications: counting objects,
    reading a bar chart, a sum shown only as pixels."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [VisualConfig(name=t, task=t) for t in visual.TASKS]

    def _info(self):
        return features.info(self, self.__doc__, self.builder_config.image_size)

    def _split_generators(self, dl_manager):
        c = self.builder_config
        return {"train": self._generate_examples("train", c.num_train, c.difficulty),
                "test": self._generate_examples("test", c.num_test, c.difficulty),
                "hard": self._generate_examples("test", c.num_test,
                                                c.difficulty + c.hard_levels)}

    def _generate_examples(self, split, num, difficulty):
        c = self.builder_config
        slips = c.slip_rate if split == "train" else 0.0
        yield from enumerate(visual.generate(c.task, split, num, c.seed, difficulty,
                                             c.image_size, slips, c.asks))


# builders.py's families of the dataset registry (o1jax.config.datasets): generated ones have a
# config per task and settings, files ones a config per hash of their paths
_GENERATED = {"tasks": (O1jaxTasks, TaskConfig), "visual": (VisualTasks, VisualConfig)}
_FILES = {"jsonl": (JsonlQA, JsonlConfig), "code_jsonl": (CodeJsonl, JsonlConfig),
          "image_qa": (ImageQA, ImageQAConfig)}
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
