"""Self-play on countdown_search (configs/thinking_selfplay.py): the config is configs/thinking.py
with only self-play's fields and the prompt length changed, its comparison passes the checks,
and a toy-size run proposes in the task's own form and logs the share of accepted proposals at
each level."""

import json
import math
import os
import subprocess
import sys

import pytest

from configs import thinking, thinking_selfplay
from o1jax.experiment import check_config
from tests import commands

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_the_config_is_thinkings_with_selfplay_and_its_comparison_passes_the_checks():
    base, sp = _flat(thinking.get_config()), _flat(thinking_selfplay.get_config())
    changed = {k for k in sp if base.get(k, object()) != sp[k]}
    assert changed == {"data.max_prompt_len", "selfplay.enabled", "selfplay.prompt_len",
                       "selfplay.proposal_tokens", "selfplay.level_bonus"}
    cfg = thinking_selfplay.get_config()
    check_config(cfg, 1)
    cfg.selfplay.enabled = False      # the fixed-data comparison
    check_config(cfg, 1)


TOY = ["--config.model.overrides.hidden_size=64", "--config.model.overrides.num_layers=2",
       "--config.model.overrides.num_heads=2", "--config.model.overrides.num_kv_heads=1",
       "--config.model.overrides.head_dim=32", "--config.model.overrides.mlp_dim=128",
       "--config.model.overrides.max_seq_len=96", "--config.data.num_train=200",
       "--config.data.num_test=8", "--config.sft.num_steps=250", "--config.sft.batch_size=16",
       "--config.sft.max_len=80", "--config.sft.warmup_steps=10",
       "--config.selfplay.sft_fraction=1.0", "--config.selfplay.sft_hard_fraction=0.5",
       "--config.selfplay.examples=1", "--config.selfplay.prompt_len=48",
       "--config.selfplay.proposals=7", "--config.selfplay.gate_low=0.0",
       "--config.selfplay.gate_high=1.0", "--config.rl.num_iterations=6",
       "--config.rl.batch_prompts=8", "--config.rl.group_size=2", "--config.rl.minibatches=1",
       "--config.rl.max_new_tokens=16", "--config.eval.num_examples=0",
       "--config.eval.max_new_tokens=16", "--config.eval.curve_points=0",
       "--config.checkpoint.every=100", "--config.progress_bar=False"]


@pytest.mark.slow
def test_toy_selfplay_on_countdown_search_logs_the_level_shares(tmp_path):
    """SFT on proposer demonstrations only (half of them 4-number problems) teaches a 2-layer
    model the form; the referee accepts some proposals, and each iteration's level shares
    agree with the accepted proposals' mean level computed in the compiled iteration."""
    res = subprocess.run([sys.executable, "-m", "o1jax.train",
                          f"--config={os.path.join(ROOT, 'configs', 'thinking_selfplay.py')}",
                          f"--workdir={tmp_path}", *TOY], capture_output=True, text=True,
                         env=commands.env(), cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [r for r in map(json.loads, f) if r["stage"] == "rl"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert sum(r["proposer/accept_rate"] for r in rows) > 0
    levels = (1, 2, 3)
    for r in rows:
        shares = [r[f"proposer/accepted_level_{k}"] for k in levels]
        if r["proposer/accept_rate"] == 0:
            assert shares == [None] * 3         # NaN: no accepted proposal to share out
            continue
        assert all(0 <= s <= 1 for s in shares) and sum(shares) == pytest.approx(1.0)
        assert sum(k * s for k, s in zip(levels, shares)) == pytest.approx(r["proposer/level"])
        for k in ("search/backup_share", "buffer/level", "proposer/reward_mean"):
            assert math.isfinite(r[k]), k
