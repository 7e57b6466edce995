"""Test setup, before jax is imported: 8 fake CPU devices and the test XLA flags, a compilation
cache for the run; and the fixtures tests share."""

import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from tests import commands  # no jax: the flags below are set before jax loads

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {commands.XLA_TEST_FLAGS}"
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# JAX's persistent compilation cache, one per test run: the xdist workers and every command a
# test starts inherit the variable from the process that set it, so the many runs of the same
# small configs compile each program once. A hit is the executable XLA built for the same
# program and flags. That process removes the directory when the run ends.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = os.path.join(tempfile.gettempdir(), f"o1jax-tests-jax-cache-{os.getpid()}")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE

import pytest  # noqa: E402

from tests import hf_fixtures  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def pytest_sessionfinish(session):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (untied, rope_theta 5000) saved by transformers, with tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    """A tiny random Qwen2 (tied, QKV bias) saved by transformers, with tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("qwen2"), "qwen2")


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory):
    """A tiny random Qwen3 (untied, q/k norms, head_dim 24 != hidden / heads) saved by
    transformers, with a tokenizer holding Qwen3's chat and thinking tokens and template."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("qwen3"), "qwen3")


@pytest.fixture(scope="session")
def qwen3_moe_dir(tmp_path_factory):
    """A tiny random Qwen3-MoE (4 experts, 2 per token, renormalised gates) saved by
    transformers (each expert's tensors apart, as on the Hub), with the Qwen3 tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("qwen3_moe"), "qwen3_moe")


def _built_once(tmp_path_factory, name: str, build) -> pathlib.Path:
    """A directory ``build(path)`` fills once per test run for every xdist worker: the first
    worker to ask builds it under a file lock, the others wait (their core free for the build)
    and read it. The tests that take it only read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent            # this run's directory, above every worker's own
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".built").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            (path / ".built").touch()
    return path


def _run(*command: str) -> None:
    """``python -m command...`` from the repository root on one CPU device; it must exit 0."""
    res = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True,
                         cwd=ROOT, env=commands.env(), timeout=600)
    assert res.returncode == 0, (command[0], res.stderr[-3000:])


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One trained smoke run shared by the tests that read a workdir: SFT, PPO with a critic and
    a reference, 3 log-spaced evaluations during RL. Returns (workdir, metrics rows)."""
    workdir = _built_once(tmp_path_factory, "smoke_run", lambda w: _run(
        "o1jax.train", f"--config={ROOT / 'configs' / 'smoke.py'}", f"--workdir={w}",
        "--config.progress_bar=False", "--config.eval.curve_points=3"))
    with open(workdir / "metrics.jsonl") as f:
        return workdir, [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def visual_run(tmp_path_factory):
    """One tiny vision policy trained on the count task (SFT, then PPO: a critic that reads the
    image too), evaluated (eval/samples.jsonl with the images) and traced (traces/: held-out
    example 0), each through its command. Returns the workdir."""
    small = ["--config.progress_bar=False", "--config.rl.algorithm=ppo",
             "--config.model.overrides.num_layers=1", "--config.model.overrides.mlp_dim=128",
             "--config.model.overrides.vision.num_layers=1", "--config.data.num_train=64",
             "--config.data.num_test=8", "--config.sft.num_steps=4", "--config.sft.batch_size=8",
             "--config.rl.num_iterations=2", "--config.rl.batch_prompts=4",
             "--config.rl.group_size=2", "--config.rl.micro_batch=0",
             "--config.rl.length_buckets=1", "--config.rl.max_new_tokens=16",
             "--config.eval.num_examples=4", "--config.eval.maj_k=0",
             "--config.eval.curve_points=0", "--config.eval.max_new_tokens=16",
             "--config.eval.batch_prompts=4"]

    def build(workdir):
        _run("o1jax.train", f"--config={ROOT / 'configs' / 'visual_grpo.py'}",
             f"--workdir={workdir}", *small)
        _run("o1jax.evaluate", "--workdir", str(workdir), "--num-problems", "3",
             "--strategies", "greedy", "--budgets", "1")
        _run("o1jax.trace", "--workdir", str(workdir), "--example", "0", "--samples", "2")
    return _built_once(tmp_path_factory, "visual_run", build)
