"""Memory planning: the RL iteration compiled ahead of time for a TPU topology (the TPU compiler,
no TPU attached) and for GPUs (fake CPU devices), per-device memory against the chip's HBM."""

import json
import os
import subprocess
import sys

import pytest

from configs import smoke
from o1jax import plan
from o1jax.hardware import parse_hardware

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name, platform, chip, devices, topology", [
    ("v5p-64", "tpu", "v5p", 32, "v5p:2x4x4"), ("v5litepod-8", "tpu", "v5e", 8, "v5e:2x4"),
    ("v6e-4", "tpu", "v6e", 4, "v6e:2x2"), ("h100x8", "gpu", "h100", 8, None)])
def test_hardware_names(name, platform, chip, devices, topology):
    hw = parse_hardware(name)
    assert (hw.platform, hw.chip, hw.devices) == (platform, chip, devices)
    if topology:
        assert hw.topology == topology


def test_unknown_hardware_is_named():
    with pytest.raises(ValueError, match="hardware='tpu9-8': a Cloud TPU type"):
        parse_hardware("tpu9-8")


def _parts_add_up(p):
    assert p["bytes_per_device"] > 0 and p["hbm_bytes_per_device"] > 0
    assert p["parameters"] > 0 and p["optimizer"] > p["parameters"]   # Adam: two moments
    assert p["kv_cache"] > 0 and p["activations"] >= 0
    # arguments (params, optimizer) and temporaries (cache, activations) are within the total
    assert p["parameters"] + p["optimizer"] <= p["bytes_per_device"]


def test_plan_compiles_for_a_tpu_topology_on_this_cpu_machine():
    hw = parse_hardware("v5e-4")
    devices, compiler = plan.target_devices(hw)
    assert compiler == "tpu" and len(devices) == 4 and devices[0].platform == "tpu"
    p = plan.plan(smoke.get_config(), devices, compiler, hw)
    assert p["fits"] and p["mesh_shape"] == [4, 1, 1] and p["hbm_bytes_per_device"] == 16 * 2**30
    _parts_add_up(p)
    # the state is split 4 ways over fsdp: a quarter of the parameter bytes on each chip
    cfg = smoke.get_config()
    cfg.mesh_shape = (1, 4, 1)
    q = plan.plan(cfg, devices, compiler, hw)
    assert q["parameters"] < 0.3 * p["parameters"]


def test_plan_on_fake_cpu_devices_and_a_config_that_does_not_fit(monkeypatch):
    hw = parse_hardware("h100x8")
    devices, compiler = plan.target_devices(hw)
    assert "estimate" in compiler
    p = plan.plan(smoke.get_config(), devices, compiler, hw)
    assert p["fits"]
    _parts_add_up(p)
    monkeypatch.setitem(plan.HBM_BYTES, "h100", p["bytes_per_device"] / 2)
    small = plan.plan(smoke.get_config(), devices, compiler, hw)
    assert not small["fits"]
    text = plan.format_plan(small)
    assert "DOES NOT FIT" in text and "rl.micro_batch" in text and "rl.vocab_chunk" in text


def test_plan_cli_prints_the_table_and_a_json_line():
    env = dict(os.environ, XLA_FLAGS="")   # the CLI makes the fake devices itself
    res = subprocess.run([sys.executable, "-m", "o1jax.plan", "--config",
                          os.path.join(ROOT, "configs", "smoke.py"),
                          "--config.hardware=h100x8", "--config.mesh_shape=(2,4,1)"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8 and out["mesh_shape"] == [2, 4, 1] and out["fits"] is True
    assert {"bytes_per_device", "hbm_bytes_per_device", "fits"} <= set(out)
    assert "parameters" in res.stdout and "HBM: fits" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "o1jax.plan", "--config",
                          os.path.join(ROOT, "configs", "smoke.py"), "--config.hardware=x"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert bad.returncode == 2 and "hardware='x'" in bad.stderr
