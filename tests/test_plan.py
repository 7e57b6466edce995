"""python -m o1jax.plan: the memory plan's table and JSON line, and its errors."""

import json
import os
import subprocess
import sys

from tests import commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plan_cli_prints_the_table_and_a_json_line():
    env = commands.env()   # the CLI makes the fake devices itself
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
