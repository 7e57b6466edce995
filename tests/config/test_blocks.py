"""The typed blocks: each refuses an unknown key (naming it and the known ones), a value of the
wrong type and every out-of-range value, field by field; the ranges below are written out by
hand (what each setting means), not read from the code under test."""

import math
import subprocess
import sys

import pytest

from configs import base
from o1jax.config.blocks import (CheckpointConfig, DataConfig, EvalConfig, ModelChoice,
                                 RunConfig, SFTConfig)

BLOCKS = {"data": DataConfig, "eval": EvalConfig, "model": ModelChoice, "sft": SFTConfig,
          "checkpoint": CheckpointConfig}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_unknown_key_is_refused_naming_the_known_ones(name):
    block = base.get_config()[name].to_dict()
    block["lr_typo"] = 1
    with pytest.raises(ValueError) as e:
        BLOCKS[name].from_config(block)
    msg = str(e.value)
    assert msg.startswith(f"{name}.lr_typo is not a {name} setting; known: ")
    assert all(repr(key) in msg for key in base.get_config()[name])   # every real key listed


def test_unknown_top_level_key_is_refused():
    cfg = base.get_config().to_dict()
    cfg["sede"] = 1
    with pytest.raises(ValueError, match=r"^sede is not a setting; known: .*'seed'"):
        RunConfig.from_config(cfg)


def test_base_config_passes_every_block():
    cfg = base.get_config()
    for name, block in BLOCKS.items():
        typed = block.from_config(cfg[name])
        for key, value in cfg[name].items():
            want = value.to_dict() if hasattr(value, "to_dict") else value
            assert getattr(typed, key) == want, (name, key)
    assert RunConfig.from_config(cfg).mesh_shape == (-1, 1, 1)


BAD = [  # (block, field, value, the message's tail): learning rates > 0, counts >= 1, ...
    ("sft", "lr", -1.0, "must be > 0"), ("sft", "lr", 0.0, "must be > 0"),
    ("sft", "lr", math.inf, "must be > 0"), ("sft", "lr", math.nan, "must be > 0"),
    ("sft", "num_steps", -1, "must be >= 0"), ("sft", "batch_size", 0, "must be >= 1"),
    ("sft", "max_len", 0, "must be >= 1"), ("sft", "warmup_steps", -1, "must be >= 0"),
    ("eval", "num_examples", -1, "must be >= 0"), ("eval", "max_new_tokens", 0, "must be >= 1"),
    ("eval", "maj_k", -1, "must be >= 0"), ("eval", "curve_points", -1, "must be >= 0"),
    ("eval", "temperature", 0.0, "must be > 0"), ("eval", "temperature", -0.5, "must be > 0"),
    ("eval", "batch_prompts", 0, "must be >= 1"),
    ("data", "difficulty", 0, "must be >= 1"), ("data", "num_train", 0, "must be >= 1"),
    ("data", "num_test", 0, "must be >= 1"), ("data", "seed", -1, "must be >= 0"),
    ("data", "hard_levels", 0, "must be >= 1"), ("data", "max_prompt_len", 0, "must be >= 1"),
    ("data", "slip_rate", -0.1, "must be in [0, 1]"), ("data", "slip_rate", 1.5,
                                                        "must be in [0, 1]"),
    ("checkpoint", "every", 0, "must be >= 1"), ("checkpoint", "keep", 0, "must be >= 1"),
    # types: what a config file (not the typed flag parser) can get wrong
    ("sft", "batch_size", 2.5, "must be an integer"), ("sft", "lr", "fast", "must be a number"),
    ("sft", "num_steps", True, "must be an integer"),
    ("data", "use_chat_template", "yes", "must be a bool"),
    ("data", "template", 3, "must be a str"), ("checkpoint", "async_save", 1, "must be a bool"),
    ("model", "overrides", 3, "must be a Mapping"), ("model", "preset", "",
                                                     "name a preset"),
]


@pytest.mark.parametrize("name, field, value, tail", BAD)
def test_out_of_range_or_mistyped_field_is_named(name, field, value, tail):
    block = base.get_config()[name].to_dict()
    block[field] = value
    with pytest.raises(ValueError) as e:
        BLOCKS[name].from_config(block)
    assert str(e.value) == f"{name}.{field}={value!r}: {tail}" or (
        field == "preset" and str(e.value).startswith(f"model.preset='': {tail}"))


@pytest.mark.parametrize("field, value, tail", [
    ("seed", -1, "must be >= 0"), ("workdir_timeout", 0, "must be > 0"),
    ("peak_flops_per_s", -1.0, "must be >= 0"), ("on_nonfinite", "ignore",
                                                  "one of ('skip', 'stop')"),
    ("progress_bar", "no", "must be a bool"),
])
def test_top_level_field_is_named(field, value, tail):
    cfg = base.get_config().to_dict()
    cfg[field] = value
    with pytest.raises(ValueError) as e:
        RunConfig.from_config(cfg)
    assert str(e.value) == f"{field}={value!r}: {tail}"


@pytest.mark.parametrize("changes, match", [
    ({"task": "gsm9k"}, "data.task='gsm9k': one of ('arithmetic', "),
    ({"task": "math"}, "data.task='math' needs data.manual_dir"),
    ({"task": "image_qa"}, "data.task='image_qa' needs data.train_path"),
    ({"template": "Q:"}, "data.template='Q:' has no {question} field"),
    ({"task": "linear", "slip_rate": 0.5}, "data.slip_rate=0.5: a sloppy demonstrator exists "
                                           "for ['arithmetic', 'code_functions', 'count'] "
                                           "only, not "
                                           "task='linear'"),
    ({"task": "chart", "asks": "colour"}, "data.asks='colour': the kinds of count question"),
    ({"task": "count", "asks": "colour,size"}, "data.asks='colour,size': the kinds of count"),
    ({"task": "count", "asks": "shape,shape"}, "data.asks='shape,shape': the kinds of count"),
])
def test_data_rules(changes, match):
    block = dict(base.get_config().data.to_dict(), **changes)
    with pytest.raises(ValueError) as e:
        DataConfig.from_config(block)
    assert str(e.value).startswith(match)


def test_the_blocks_are_a_jax_free_leaf():
    """o1jax/config imports the standard library only: the config check runs before (and
    without) JAX, TFDS or sympy."""
    code = ("import sys\nimport o1jax.config.blocks, o1jax.config.datasets\n"
            "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
            "('jax', 'jaxlib', 'numpy', 'tensorflow', 'tensorflow_datasets', 'sympy', "
            "'ml_collections', 'etils')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
