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
def qwen3_dir(tmp_path_factory):
    """A tiny random Qwen3 (untied, q/k norms, head_dim 24 != hidden / heads) saved by
    transformers, with a tokenizer holding Qwen3's chat and thinking tokens and template."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("qwen3"), "qwen3")


@pytest.fixture(scope="session")
def qwen3_moe_dir(tmp_path_factory):
    """A tiny random Qwen3-MoE (4 experts, 2 per token, renormalised gates) saved by
    transformers (each expert's tensors apart, as on the Hub), with the Qwen3 tokenizer."""
    return hf_fixtures.save_tiny_model(tmp_path_factory.mktemp("qwen3_moe"), "qwen3_moe")


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


@pytest.fixture(scope="session")
def visual_run(tmp_path_factory):
    """One tiny vision policy trained on the count task (SFT, then PPO: a critic that reads the
    image too), evaluated (eval/samples.jsonl with the images) and traced (traces/: held-out
    example 0), each through its command. Returns the workdir."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir = tmp_path_factory.mktemp("visual_run")
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
    for command in (["o1jax.train", f"--config={os.path.join(root, 'configs', 'visual_grpo.py')}",
                     f"--workdir={workdir}"] + small,
                    ["o1jax.evaluate", "--workdir", str(workdir), "--num-problems", "3",
                     "--strategies", "greedy", "--budgets", "1"],
                    ["o1jax.trace", "--workdir", str(workdir), "--example", "0",
                     "--samples", "2"]):
        res = subprocess.run([sys.executable, "-m"] + command, capture_output=True, text=True,
                             cwd=root, env=dict(os.environ, XLA_FLAGS=""), timeout=600)
        assert res.returncode == 0, (command[0], res.stderr[-3000:])
    return workdir
