"""scripts/kernel_sweep.py: one point of the kernels' wide sweep runs and passes."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_one_point_of_the_sweep_passes():
    res = subprocess.run([sys.executable, "scripts/kernel_sweep.py", "--lengths", "96",
                          "--heads", "4:2", "--head-dim", "16"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert "T=   96 H= 4 KVH=2" in res.stdout and res.stdout.rstrip().endswith("ok")
