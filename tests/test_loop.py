"""The training-FLOPs ledger against a hand count, and the train-time curve's evaluations, on
one smoke run (SFT, PPO with a critic and a reference, log-spaced evaluations)."""

import json

import pytest

from o1jax.curves import curve_steps

# configs/smoke.py's model (base.py overrides of the tiny preset) and batch shapes
V, D, L, H, KVH, DH, F = 320, 64, 1, 4, 2, 16, 192
SFT_B, SFT_T = 16, 48
PROMPTS, G, P, N, EPOCHS = 8, 2, 12, 16, 1


def forward_per_token(context):
    """By hand: 2 x every matmul weight (q, k, v, o, gate, up, down, the output head) plus
    QK^T and AV over ``context`` keys."""
    weights = L * (D * H * DH + 2 * D * KVH * DH + H * DH * D + 3 * D * F) + D * V
    return 2 * weights + 2 * 2 * L * H * DH * context


def test_ledger_equals_a_hand_count(smoke_run):
    _, rows = smoke_run
    sft = [r for r in rows if r["stage"] == "sft"]
    rl = [r for r in rows if r["stage"] == "rl"]
    # an SFT step: forward + backward (3 forwards) over the padded batch, causal mean context
    per_sft = 3 * SFT_B * SFT_T * forward_per_token(SFT_T / 2)
    assert [r["sft_flops"] for r in sft] == pytest.approx(
        [per_sft * (i + 1) for i in range(len(sft))], rel=1e-9)
    # an RL iteration: every prompt and generated token once (rollout), then the reference and
    # critic scoring passes and E epochs of policy and critic forward + backward over [R, T]
    t, rows_ = P + N, PROMPTS * G
    total = 0.0
    for r in rl:
        prompt_tokens = r["prompt_tokens"]
        rollout = (prompt_tokens + r["generated_tokens"]) * forward_per_token(t / 2)
        update = (1 + 1 + EPOCHS * 3 * 2) * rows_ * t * forward_per_token(t / 2)
        total += rollout + update
        assert r["train_flops"] == pytest.approx(total, rel=1e-9)


def test_curve_points_carry_the_flops_spent_so_far(smoke_run):
    workdir, rows = smoke_run
    rl = {r["step"]: r for r in rows if r["stage"] == "rl"}
    steps = curve_steps(len(rl), 3)
    assert steps == [1, 2, 4]
    for step in steps:
        point = json.loads((workdir / "curve" / f"step_{step:06d}.json").read_text())
        assert point["step"] == step
        assert point["train_flops"] == rl[step]["train_flops"]
        assert {r["strategy"] for r in point["rows"]} >= {"greedy", "majority", "pass_at_k"}
