"""Test setup: 8 fake CPU devices (must be set before jax is imported), shared fixtures."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from tests import hf_fixtures  # noqa: E402


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (untied, rope_theta 5000) saved by transformers, with tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    """A tiny random Qwen2 (tied, QKV bias) saved by transformers, with tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("qwen2"), "qwen2")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One trained smoke run shared by the tests that read a workdir: SFT, PPO with a critic and
    a reference, 3 log-spaced evaluations during RL. Returns (workdir, metrics rows)."""
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir = tmp_path_factory.mktemp("smoke_run")
    res = subprocess.run([sys.executable, "-m", "o1jax.train",
                          f"--config={os.path.join(root, 'configs', 'smoke.py')}",
                          f"--workdir={workdir}", "--config.progress_bar=False",
                          "--config.eval.curve_points=3"], capture_output=True, text=True,
                         cwd=root, env=dict(os.environ, XLA_FLAGS=""), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(workdir / "metrics.jsonl") as f:
        return workdir, [json.loads(line) for line in f]
