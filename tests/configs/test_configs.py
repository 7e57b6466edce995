"""Every config loads, honours the common overrides and the ones its docstring shows (applied
through the flag parser train uses), and the real-hardware ones build their mesh, shapes and
compiled RL step abstractly on CPU with as many fake devices as the hardware has."""

import importlib
import os
import re
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from tests import commands

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL = ["smoke", "arithmetic_ppo", "arithmetic_grpo", "gsm8k_qwen05b_tpu", "math_qwen7b_v5p64",
       "gsm8k_h100x8", "selfplay", "visual_grpo", "visual_selfplay", "geo3k_qwen25vl_tpu",
       "thinking", "thinking_nested", "thinking_selfplay", "thinking_sudoku", "code_grpo",
       "tool_grpo", "gsm8k_qwen3_lora_tpu", "math_qwen3moe_tpu"]
REAL = {"gsm8k_qwen05b_tpu": 8, "math_qwen7b_v5p64": 32, "gsm8k_h100x8": 8,
        "geo3k_qwen25vl_tpu": 4, "gsm8k_qwen3_lora_tpu": 8, "math_qwen3moe_tpu": 32}
DEVICES = {"math_qwen7b_v5p64": 32, "geo3k_qwen25vl_tpu": 4,
           "math_qwen3moe_tpu": 32,
           # micro-batches of 4 rows (4 divides both its 68- and 64-row minibatches): up to 4
           # data-parallel devices; more take rl.micro_batch=0, checked below
           "visual_selfplay": 4}   # the others: 8


def _parse(name: str, *overrides: str):
    """The config as ``python -m o1jax.train --config configs/NAME.py OVERRIDES`` reads it: the
    flag train defines (config_flags.DEFINE_config_file, lock_config=True), on its own flags."""
    argv = ["train", f"--config={os.path.join(ROOT, 'configs', name + '.py')}", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "experiment config file",
                                    flag_values=values, lock_config=True, sys_argv=argv)
    values(argv)
    return values.config


def _at(cfg, path: str):
    for part in path.split("."):
        cfg = cfg[part]
    return cfg


def _documented_overrides(name: str) -> list[str]:
    """The ``--config.X=Y`` overrides the config's docstring shows its users."""
    doc = importlib.import_module(f"configs.{name}").__doc__
    return [m.strip("\"'`") for m in re.findall(r"--config\.[\w.]+=\S+", doc)]


@pytest.mark.parametrize("name", ALL)
def test_common_overrides_take_effect_and_pass_the_checks(name):
    from o1jax.experiment import check_config
    mesh = "(2,4,4)" if DEVICES.get(name) == 32 else "(1,-1,1)"
    cfg = _parse(name, "--config.seed=5", "--config.sft.num_steps=3",
                 "--config.rl.num_iterations=2", "--config.rl.algorithm=dr_grpo",
                 f"--config.mesh_shape={mesh}", "--config.checkpoint.every=7",
                 "--config.eval.maj_k=2", "--config.sft.lr=0.5")
    assert (cfg.seed, cfg.sft.num_steps, cfg.rl.num_iterations, cfg.rl.algorithm,
            cfg.checkpoint.every, cfg.eval.maj_k) == (5, 3, 2, "dr_grpo", 7, 2)
    assert cfg.mesh_shape == eval(mesh) and cfg.sft.lr == 0.5   # noqa: S307 - our literal
    assert importlib.import_module(f"configs.{name}").get_config().seed == 0   # a fresh copy
    rl = check_config(cfg, DEVICES.get(name, 8))
    assert (rl.algorithm, rl.num_iterations) == ("dr_grpo", 2)


@pytest.mark.parametrize("name", [n for n in ALL if _documented_overrides(n)])
def test_documented_overrides_take_effect_and_pass_the_checks(name):
    from o1jax.experiment import check_config
    overrides = _documented_overrides(name)
    cfg = _parse(name, *overrides)
    for flag in overrides:
        path, _, text = flag.removeprefix("--config.").partition("=")
        value = _at(cfg, path)
        if isinstance(value, bool):
            assert str(value) == text, flag
        elif isinstance(value, (int, float)):
            assert value == float(text), flag
        else:
            assert value == text, flag
    check_config(cfg, DEVICES.get(name, 8))


def test_a_misspelt_override_is_refused_by_the_parser():
    with pytest.raises(AttributeError, match="lrr"):
        _parse("smoke", "--config.sft.lrr=1")


def test_an_out_of_range_override_fails_the_config_check():
    """Defect 15: --config.sft.lr=-1 parses (a float) and must stop at the config check."""
    from o1jax.experiment import ConfigError, check_config
    cfg = _parse("smoke", "--config.sft.lr=-1")
    with pytest.raises(ConfigError, match=r"^sft.lr=-1.0: must be > 0$"):
        check_config(cfg, 8)


@pytest.mark.parametrize("name, devices", sorted(REAL.items()))
def test_real_hardware_config_lowers_on_fake_devices(name, devices):
    code = (f"from configs import {name} as m\n"
            "from o1jax.run.rl import lower_rl_step\n"
            "low = lower_rl_step(m.get_config()).lowered\n"
            "text = low.as_text()\n"
            "assert 'mhlo.sharding' in text or 'sdy.sharding' in text, 'no shardings'\n"
            "print('lowered', len(text))\n")
    env = commands.env(devices)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "lowered" in res.stdout


def test_real_config_on_wrong_device_count_is_a_clear_error():
    code = ("from configs import math_qwen7b_v5p64 as m\n"
            "from o1jax.run.rl import lower_rl_step\n"
            "lower_rl_step(m.get_config())\n")
    env = commands.env(8)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert res.returncode != 0
    assert "mesh_shape" in res.stderr and "needs 32 devices but 8" in res.stderr


def test_base_config_sets_every_rl_field():
    """configs/base.py lists every RLConfig field (none missing, none unknown), so each can be
    set from the command line."""
    import dataclasses
    from configs import base
    from o1jax.rl.config import RLConfig
    cfg = base.get_config()
    assert set(cfg.rl) == {f.name for f in dataclasses.fields(RLConfig)}


@pytest.mark.parametrize("name", ALL)
def test_config_passes_the_checks(name):
    from o1jax.experiment import check_config
    cfg = importlib.import_module(f"configs.{name}").get_config()
    rl = check_config(cfg, DEVICES.get(name, 8))
    assert cfg.rl.algorithm in ("ppo", "grpo", "dr_grpo")
    assert rl.group_size == cfg.rl.group_size and rl.algorithm == cfg.rl.algorithm


def test_visual_selfplay_runs_padded_on_eight_devices():
    """Its padding-free micro-batches of 4 rows cannot be split over 8 devices (the error says
    so); whole minibatches, as its comment says, pass the checks there."""
    from o1jax.experiment import check_config
    from o1jax.policy import ConfigError
    with pytest.raises(ConfigError, match="micro_batch=4: each micro-batch is split over the 8"):
        check_config(_parse("visual_selfplay"), 8)
    check_config(_parse("visual_selfplay", "--config.rl.micro_batch=0"), 8)
