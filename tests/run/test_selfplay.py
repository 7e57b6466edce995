"""Self-play through the training CLI: a short run whose SFT has taught the proposer's format,
with finite metrics, a non-empty buffer and one compiled program for every iteration; and a run
where every proposal is rejected, which still trains on seed tasks and says so."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from tests import commands

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "smoke.py")
SELFPLAY = ["--config.selfplay.enabled=True", "--config.rl.algorithm=grpo",
            "--config.rl.loss_agg=token_mean", "--config.rl.batch_prompts=8",
            "--config.rl.group_size=4", "--config.rl.minibatches=2",
            "--config.selfplay.proposals=4", "--config.data.max_prompt_len=16",
            "--config.model.overrides.max_seq_len=64", "--config.eval.num_examples=0",
            "--config.progress_bar=False"]


def _train(workdir, *extra):
    env = commands.env()
    res = subprocess.run([sys.executable, "-m", "o1jax.train", f"--config={CONFIG}",
                          f"--workdir={workdir}", *SELFPLAY, *extra], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["stage"] == "rl"]


def _timeless(row):
    return {k: v for k, v in row.items()
            if not k.startswith("time/") and k not in (
                "tokens_per_s", "tokens_per_s_per_device", "flops_per_s_per_device", "mfu")}


def _finite(row, keys):
    for k in keys:
        assert isinstance(row[k], float) and math.isfinite(row[k]), (k, row[k])


@pytest.mark.slow
def test_selfplay_cli_fills_the_buffer_in_one_compiled_program(tmp_path):
    # SFT on proposer demonstrations only: a 1-layer model learns to write "NN+NN=?" lines;
    # the gate is opened so that problems the untrained solver cannot solve still enter
    rows = _train(tmp_path / "run", "--config.sft.num_steps=300", "--config.sft.lr=3e-3",
                  "--config.sft.batch_size=32", "--config.selfplay.sft_fraction=1.0",
                  "--config.selfplay.gate_low=0.0", "--config.selfplay.gate_high=1.0",
                  "--config.rl.num_iterations=4", "--config.checkpoint.every=2")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["compiled_programs"] == 1 for r in rows)
    assert sum(r["proposer/accept_rate"] for r in rows) > 0
    assert rows[-1]["buffer/size"] > 0 and rows[-1]["buffer/seen"] >= rows[-1]["buffer/size"]
    for r in rows:
        _finite(r, ["policy_loss", "grad_norm", "reward_mean", "proposer/reward_mean",
                    "proposer/accept_rate", "proposer/trigram_entropy_bits", "solver/accuracy_seed",
                    "time/propose_s", "time/referee_s", "time/solve_s", "time/update_s", "flops"])
        rejected = sum(v for k, v in r.items() if k.startswith("proposer/rejected/"))
        assert r["proposer/accept_rate"] + rejected == pytest.approx(1.0)
    assert os.path.exists(tmp_path / "run" / "selfplay.png")

    # resume from the checkpoint at iteration 2 (buffer, seen forms and data position restored):
    # iterations 3 and 4 come out exactly as they did
    shutil.copytree(tmp_path / "run", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "rl" / "4")
    again = _train(tmp_path / "resumed", "--config.sft.num_steps=300", "--config.sft.lr=3e-3",
                   "--config.sft.batch_size=32", "--config.selfplay.sft_fraction=1.0",
                   "--config.selfplay.gate_low=0.0", "--config.selfplay.gate_high=1.0",
                   "--config.rl.num_iterations=4", "--config.checkpoint.every=2")
    assert [_timeless(r) for r in again] == [_timeless(r) for r in rows]


def test_every_proposal_rejected_still_trains_on_seed_tasks(tmp_path):
    rows = _train(tmp_path / "run", "--config.sft.num_steps=0", "--config.rl.num_iterations=2")
    for r in rows:
        assert r["proposer/accept_rate"] == 0.0 and r["solver/proposed_problems"] == 0.0
        assert r["proposer/reward_mean"] == 0.0 and r["buffer/size"] == 0.0
        _finite(r, ["policy_loss", "solver/accuracy_seed", "reward_mean", "kl"])
        assert r["skipped_updates"] == 0.0


VISUAL = ["--config.model.overrides.hidden_size=48", "--config.model.overrides.num_layers=2",
          "--config.model.overrides.num_heads=2", "--config.model.overrides.num_kv_heads=1",
          "--config.model.overrides.head_dim=24", "--config.model.overrides.mlp_dim=96",
          "--config.model.overrides.vision.hidden_size=16",
          "--config.model.overrides.vision.num_layers=1",
          "--config.model.overrides.vision.num_heads=2",
          "--config.model.overrides.vision.mlp_dim=32",
          "--config.data.num_train=400", "--config.data.num_test=16",
          "--config.rl.batch_prompts=8", "--config.rl.group_size=2",
          "--config.rl.minibatches=1", "--config.rl.micro_batch=0",
          "--config.rl.length_buckets=1", "--config.selfplay.proposals=4",
          "--config.selfplay.gate_low=0.0", "--config.selfplay.gate_high=1.0",
          "--config.eval.num_examples=0", "--config.progress_bar=False"]


@pytest.mark.slow
def test_cross_modal_selfplay_cli_draws_proposed_pictures_in_one_compiled_program(tmp_path):
    """configs/visual_selfplay.py, shrunk: SFT on proposer demonstrations only teaches the
    scene grammar; accepted proposals are drawn, solved from their pictures and buffered (the
    buffer's pictures drawn again from their specifications in later iterations)."""
    env = commands.env()
    res = subprocess.run([sys.executable, "-m", "o1jax.train",
                          f"--config={os.path.join(ROOT, 'configs', 'visual_selfplay.py')}",
                          f"--workdir={tmp_path / 'run'}", *VISUAL,
                          "--config.sft.num_steps=300", "--config.sft.batch_size=16",
                          "--config.selfplay.sft_fraction=1.0", "--config.rl.num_iterations=4"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        rows = [r for r in map(json.loads, f) if r["stage"] == "rl"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["compiled_programs"] == 1 for r in rows)
    assert sum(r["proposer/accept_rate"] for r in rows) > 0
    assert rows[-1]["buffer/size"] > 0
    # the pictures' levels (scenes.LEVELS): shares of the accepted proposals, summing to 1
    shares = [[r[f"proposer/accepted_level_{k}"] for k in (1, 2, 3, 4)] for r in rows
              if r["proposer/accept_rate"] > 0]
    assert shares and all(sum(s) == pytest.approx(1.0) for s in shares)
    for r in rows:
        _finite(r, ["policy_loss", "grad_norm", "reward_mean", "proposer/reward_mean",
                    "proposer/accept_rate", "proposer/trigram_entropy_bits",
                    "solver/accuracy_seed", "flops"])
        rejected = sum(v for k, v in r.items() if k.startswith("proposer/rejected/"))
        assert r["proposer/accept_rate"] + rejected == pytest.approx(1.0)
