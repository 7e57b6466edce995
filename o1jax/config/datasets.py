"""The dataset registry: every ``data.task`` a run can name, and what it brings with it.

One entry per dataset: the TFDS builder family that prepares it (``o1jax/data/builders.py``)
and the ``data.*`` settings its builder config takes, the answer check its correctness reward
runs (``o1jax/rewards/functions.py``), the prompt format used when none is given, whether its
prompts carry an image, whether it is generated here (a ``hard`` split, self-play's forms), and
the setting it cannot do without. The config check, the data loader, the builders, the reward
and ``evaluate --model`` all read this table; a new dataset is one entry here (and its builder).
"""

from __future__ import annotations

import dataclasses

PLAIN_TEMPLATE = "{question}\n"
# the instruct models' own "\boxed{}" answer convention (configs/base.py REASONING_TEMPLATE)
REASONING_TEMPLATE = ("{question}\nPlease reason step by step, and put your final answer "
                      "within \\boxed{{}}.\n")
IMAGE_TEMPLATE = "{question}\n<image>"     # the image right before the answer
ANSWER_CHECKS = ("equivalence", "countdown", "grid", "code")
COUNT_ASKS = ("colour", "shape", "both")   # the kinds of count question (data.asks)
ASKING = ("count", "count_chart")         # the tasks whose count questions data.asks picks
_GENERATED_KEYS = ("difficulty", "num_train", "num_test", "seed", "hard_levels")
_FILE_KEYS = ("train_path", "test_path")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    builder: str                   # builders.py's family: tasks | visual | gsm8k | math |
                                   # jsonl | code_jsonl | image_qa
    keys: tuple[str, ...] = ()     # data.* settings given to its builder config when set ...
    keys_if_nonzero: tuple[str, ...] = ()   # ... and these only when nonzero (a zero would
                                   # rename the prepared files of earlier runs)
    answer_check: str = "equivalence"       # one of ANSWER_CHECKS
    template: str = PLAIN_TEMPLATE  # the prompt format when the user gives none
    visual: bool = False           # prompts carry an image: a vision policy's task
    generated: bool = False        # generated here: a hard split, self-play's problem forms
    needs: str = ""                # a data.* setting it cannot run without ...
    needs_what: str = ""           # ... and what to give there

    def builder_config(self, data) -> dict:
        """The builder config's fields from a ``data`` block (a mapping)."""
        return {k: data[k] for k in self.keys + self.keys_if_nonzero if k in data and
                (k not in self.keys_if_nonzero or data[k])}


def _generated(name, builder="tasks", **kw) -> Dataset:
    return Dataset(name, builder, _GENERATED_KEYS, generated=True, **kw)


_OFFICIAL = ": the directory of the official files (see README, 'Real data')"
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    _generated("arithmetic", keys_if_nonzero=("slip_rate",)),
    _generated("multiplication"),
    _generated("linear"),
    _generated("fractions"),
    _generated("countdown", answer_check="countdown"),
    _generated("countdown_search", answer_check="countdown"),
    _generated("countdown_nested", answer_check="countdown"),
    _generated("sudoku", answer_check="grid"),
    _generated("code_functions", answer_check="code", keys_if_nonzero=("slip_rate",)),
    Dataset("gsm8k", "gsm8k", template=REASONING_TEMPLATE, needs="manual_dir",
            needs_what=_OFFICIAL),
    Dataset("math", "math", template=REASONING_TEMPLATE, needs="manual_dir",
            needs_what=_OFFICIAL),
    Dataset("jsonl", "jsonl", _FILE_KEYS, needs="train_path", needs_what=" (and data.test_path)"),
    Dataset("code_jsonl", "code_jsonl", _FILE_KEYS, answer_check="code", needs="train_path",
            needs_what=" (and data.test_path): MBPP's or HumanEval's JSONL layout"),
    _generated("count", "visual", template=IMAGE_TEMPLATE, visual=True,
               keys_if_nonzero=("slip_rate", "asks")),
    *(_generated(n, "visual", template=IMAGE_TEMPLATE, visual=True)
      for n in ("chart", "pixel_sum")),
    # counting scenes and bar charts, half each (visual self-play's seed problems)
    _generated("count_chart", "visual", template=IMAGE_TEMPLATE, visual=True,
               keys_if_nonzero=("asks",)),
    Dataset("image_qa", "image_qa", _FILE_KEYS, template=REASONING_TEMPLATE, visual=True,
            needs="train_path", needs_what=" (and data.test_path): JSONL or parquet files (see "
                                           "o1jax/data/builders.py ImageQA)"),
)}


def sloppy() -> list[str]:
    """The tasks with a sloppy demonstrator (their generators take ``data.slip_rate``)."""
    return [n for n, d in DATASETS.items() if "slip_rate" in d.keys_if_nonzero]


def get(name: str) -> Dataset:
    """The registry's entry for ``name``; ValueError naming the known ones otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {tuple(DATASETS)}")
    return DATASETS[name]


def names(**where) -> tuple[str, ...]:
    """The datasets whose fields have the given values, e.g. ``names(generated=True)``."""
    return tuple(n for n, d in DATASETS.items()
                 if all(getattr(d, k) == v for k, v in where.items()))


def answer_check(task: str) -> str:
    """The answer check for an example whose ``task`` field is ``task`` (MATH's examples say
    "math/<subject>"; a self-play problem names its form): one of ANSWER_CHECKS."""
    dataset = DATASETS.get(task.partition("/")[0])
    return dataset.answer_check if dataset else "equivalence"
