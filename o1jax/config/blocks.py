"""The ``data``, ``eval``, ``model``, ``sft`` and ``checkpoint`` blocks of an experiment config, and
its top-level settings, as frozen objects checked in one place (beside ``RLConfig`` and
``SelfPlayConfig``).

``DataConfig.from_config(cfg.data)`` takes a block: every key must be a field here (a misspelt
key is an error naming the known ones, never silently dropped), and every value is checked
before anything is built: its type, its range (learning rates > 0, fractions in [0, 1], counts
>= 1, ...), with the field and what is allowed in the message. A field absent from the block
takes the default here (the defaults of ``configs/base.py``).
"""

import dataclasses
import math
from typing import Any, ClassVar, Mapping

from o1jax.config import datasets

_RANGES = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1,
           "in [0, 1]": lambda v: 0 <= v <= 1}
NONFINITE_POLICIES = ("skip", "stop")


def number(default, allowed: str, integer: bool = True):
    """A numeric field whose value must be ``allowed`` (a key of _RANGES), an int or any real."""
    return dataclasses.field(default=default, metadata={"allowed": allowed, "integer": integer})


def _plain(value):
    """A config value without ml_collections' types: nested blocks as dicts."""
    return value.to_dict() if hasattr(value, "to_dict") else value


class Block:
    """What the typed blocks share: ``from_config`` refuses unknown keys; construction checks
    each field's type and range, then the block's own rules (``_problems``), raising
    ValueError("BLOCK.FIELD=VALUE: what is allowed") for the first problem."""
    NAME: ClassVar[str] = ""

    def __post_init__(self):
        for msg in self._field_problems():
            raise ValueError(f"{self.NAME}.{msg}" if self.NAME else msg)
        for msg in self._problems():
            raise ValueError(f"{self.NAME}.{msg}" if self.NAME else msg)

    def _field_problems(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed = f.metadata.get("allowed")
            if allowed is None:
                want = type(f.default) if f.default is not dataclasses.MISSING else Mapping
                if not isinstance(value, want):
                    yield f"{f.name}={value!r}: must be a {want.__name__}"
                continue
            integer = f.metadata["integer"]
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
                yield f"{f.name}={value!r}: must be {'an integer' if integer else 'a number'}"
            elif not (math.isfinite(value) and _RANGES[allowed](value)):
                yield f"{f.name}={value!r}: must be {allowed}"

    def _problems(self):
        return ()

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | None):
        """From an experiment config's block of this name; unknown keys are an error."""
        block = dict(block or {})
        known = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(block) - set(known))
        if unknown:
            raise ValueError(f"{cls.NAME}.{unknown[0]} is not a {cls.NAME} setting; "
                             f"known: {known}")
        return cls(**{k: _plain(v) for k, v in block.items()})


@dataclasses.dataclass(frozen=True)
class DataConfig(Block):
    NAME: ClassVar[str] = "data"
    task: str = "arithmetic"           # a name of the dataset registry (datasets.DATASETS)
    difficulty: int = number(2, ">= 1")
    num_train: int = number(256, ">= 1")
    num_test: int = number(32, ">= 1")
    seed: int = number(0, ">= 0")
    hard_levels: int = number(1, ">= 1")    # the hard split: this much above difficulty
    slip_rate: float = number(0.0, "in [0, 1]", integer=False)
    asks: str = ""   # count: the kinds of question, comma-separated (colour,shape,both; "": all)
    max_prompt_len: int = number(12, ">= 1")
    template: str = datasets.PLAIN_TEMPLATE
    use_chat_template: bool = False
    data_dir: str = ""
    manual_dir: str = ""
    train_path: str = ""
    test_path: str = ""

    def _problems(self):
        if self.task not in datasets.DATASETS:
            yield f"task={self.task!r}: one of {tuple(datasets.DATASETS)}"
            return
        dataset = datasets.get(self.task)
        if "{question}" not in self.template:
            yield f"template={self.template!r} has no {{question}} field to put the problem in"
        if dataset.needs and not getattr(self, dataset.needs):
            yield f"task={self.task!r} needs data.{dataset.needs}{dataset.needs_what}"
        sloppy = datasets.sloppy()
        if self.slip_rate and self.task not in sloppy:
            yield (f"slip_rate={self.slip_rate!r}: a sloppy demonstrator exists for {sloppy} "
                   f"only, not task={self.task!r}; use 0")
        asks = self.asks.split(",")
        if self.asks and (self.task not in datasets.ASKING
                          or not set(asks) <= set(datasets.COUNT_ASKS)
                          or len(set(asks)) != len(asks)):
            yield (f"asks={self.asks!r}: the kinds of count question, comma-separated names of "
                   f"{datasets.COUNT_ASKS} without repeats (task one of {datasets.ASKING}; '' "
                   f"asks all)")

    @property
    def dataset(self) -> datasets.Dataset:
        return datasets.get(self.task)


@dataclasses.dataclass(frozen=True)
class EvalConfig(Block):
    NAME: ClassVar[str] = "eval"
    num_examples: int = number(0, ">= 0")   # held-out examples (0: no evaluation)
    max_new_tokens: int = number(16, ">= 1")
    maj_k: int = number(4, ">= 0")
    curve_points: int = number(8, ">= 0")   # evaluations along RL (0: none)
    temperature: float = number(1.0, "> 0", integer=False)
    batch_prompts: int = number(16, ">= 1")


@dataclasses.dataclass(frozen=True)
class ModelChoice(Block):
    """Which model: a preset's shapes (+ overrides; o1jax.models.ModelConfig checks those) or,
    with ``hf_path``, a Hugging Face directory's weights, shapes and tokenizer."""
    NAME: ClassVar[str] = "model"
    preset: str = "tiny"
    hf_path: str = ""
    overrides: Mapping = dataclasses.field(default_factory=dict)

    def _problems(self):
        if not self.preset:
            yield "preset='': name a preset of o1jax.models.config.PRESETS"


@dataclasses.dataclass(frozen=True)
class SFTConfig(Block):
    NAME: ClassVar[str] = "sft"
    num_steps: int = number(0, ">= 0")      # 0: no SFT
    batch_size: int = number(16, ">= 1")
    max_len: int = number(48, ">= 1")
    lr: float = number(1e-3, "> 0", integer=False)
    warmup_steps: int = number(10, ">= 0")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig(Block):
    NAME: ClassVar[str] = "checkpoint"
    every: int = number(1, ">= 1")
    keep: int = number(3, ">= 1")
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class ToolsConfig(Block):
    """Tool calls in the rollout (o1jax/rollout/tools.py): the policy's ``<tool>`` programs run
    in the code sandbox during RL rollouts and evaluations."""
    NAME: ClassVar[str] = "tools"
    enabled: bool = False
    max_calls: int = number(2, ">= 1")          # per response
    max_output_tokens: int = number(24, ">= 1")   # one call's output, markers included
    cpu_seconds: int = number(1, ">= 1")
    wall_seconds: float = number(2.0, "> 0", integer=False)


BLOCKS = (DataConfig, EvalConfig, ModelChoice, SFTConfig, CheckpointConfig, ToolsConfig)
CHECKED_ELSEWHERE = ("rl", "selfplay")     # RLConfig, SelfPlayConfig


@dataclasses.dataclass(frozen=True)
class RunConfig(Block):
    """The top-level settings; its ``from_config`` takes the whole config and refuses a key
    that is neither one of these nor a block."""
    seed: int = number(0, ">= 0")
    mesh_shape: tuple = (-1, 1, 1)          # sharding.resolve_mesh_shape checks it
    on_nonfinite: str = "skip"
    distributed: bool = False
    progress_bar: bool = True
    workdir_timeout: float = number(60.0, "> 0", integer=False)    # seconds
    peak_flops_per_s: float = number(0.0, ">= 0", integer=False)   # 0: measured
    init_from: str = ""
    hardware: str = ""

    def __post_init__(self):
        object.__setattr__(self, "mesh_shape", tuple(self.mesh_shape))   # a JSON list
        super().__post_init__()

    def _problems(self):
        if self.on_nonfinite not in NONFINITE_POLICIES:
            yield f"on_nonfinite={self.on_nonfinite!r}: one of {NONFINITE_POLICIES}"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None):
        blocks = {b.NAME for b in BLOCKS} | set(CHECKED_ELSEWHERE)
        top = {k: v for k, v in dict(cfg or {}).items() if k not in blocks}
        known = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(top) - set(known))
        if unknown:
            raise ValueError(f"{unknown[0]} is not a setting; known: {known} and the blocks "
                             f"{sorted(blocks)}")
        return cls(**top)
