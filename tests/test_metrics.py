"""metrics.jsonl and TensorBoard sinks, resume truncation, and the RL log row."""

import json
import math
import os

import pytest

from o1jax.metrics import MetricsWriter, rl_log_row


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_rows_are_written_and_non_finite_values_are_null(tmp_path):
    w = MetricsWriter(str(tmp_path), 3, stage="sft", console=False)
    w.write(1, {"loss": 2.5, "grad_norm": float("nan")})
    w.write(2, {"loss": 1.5, "grad_norm": float("inf")})
    w.close()
    assert _rows(tmp_path) == [
        {"stage": "sft", "step": 1, "loss": 2.5, "grad_norm": None},
        {"stage": "sft", "step": 2, "loss": 1.5, "grad_norm": None}]
    with open(tmp_path / "metrics.jsonl") as f:
        assert "NaN" not in f.read()   # strict JSON: readers outside Python parse it too
    events = [f for _, _, fs in os.walk(tmp_path / "tensorboard" / "sft") for f in fs]
    assert any(f.startswith("events.out.tfevents") for f in events)


def test_progress_in_a_log_is_a_line_every_five_percent(tmp_path, capsys):
    """stderr is not a terminal under pytest: 200 steps give 20 lines, not a redraw each."""
    w = MetricsWriter(str(tmp_path), 200, stage="rl", console=True)
    for step in range(1, 201):
        w.write(step, {"reward_mean": 0.5, "kl": float("nan")})
    w.close()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 20 and "\r" not in "".join(lines)
    assert lines[0] == "rl 10/200 reward_mean=0.500" and lines[-1].startswith("rl 200/200")


def test_resume_drops_only_this_stages_rows_past_the_restored_step(tmp_path):
    w = MetricsWriter(str(tmp_path), 2, stage="sft", console=False)
    for s in (1, 2):
        w.write(s, {"loss": float(s)})
    w.close()
    w = MetricsWriter(str(tmp_path), 5, stage="rl", console=False)
    for s in (1, 2, 3, 4):
        w.write(s, {"reward_mean": s / 10})
    w.close()
    # a run killed after RL step 4 resumes from the checkpoint at step 2
    w = MetricsWriter(str(tmp_path), 5, resume_from=2, stage="rl", console=False)
    w.write(3, {"reward_mean": 0.99})
    w.close()
    assert [(r["stage"], r["step"]) for r in _rows(tmp_path)] == [
        ("sft", 1), ("sft", 2), ("rl", 1), ("rl", 2), ("rl", 3)]
    assert _rows(tmp_path)[-1]["reward_mean"] == 0.99


def test_rl_log_row():
    raw = {"reward/correctness": 0.25, "generated_tokens": 300.0, "skipped_updates": 0}
    row = rl_log_row(raw, seconds=2.0, flops=1e9, peak_flops_per_s=1e10, devices=1)
    assert row["accuracy"] == 0.25 and math.isnan(row["format_rate"])
    assert row["tokens_per_s"] == 150.0 and row["time/iteration_s"] == 2.0
    assert row["mfu"] == pytest.approx(0.05)
    assert all(isinstance(v, float) for v in row.values())


def test_mfu_on_eight_devices_is_an_eighth_of_one_devices():
    """The same global FLOPs in the same time on a mesh of the 8 fake CPU devices (tests/
    conftest.py): MFU and per-device throughput are the one-device figures over 8 (the FLOPs
    are the whole mesh's work; the peak is one device's)."""
    import jax
    from o1jax import sharding
    mesh = sharding.make_mesh((8, 1, 1))
    assert mesh.size == 8 == jax.device_count()
    raw = {"generated_tokens": 800.0}
    one = rl_log_row(raw, seconds=2.0, flops=4e9, peak_flops_per_s=1e10, devices=1)
    eight = rl_log_row(raw, seconds=2.0, flops=4e9, peak_flops_per_s=1e10, devices=mesh.size)
    assert one["mfu"] == pytest.approx(4e9 / 2.0 / 1e10)
    assert eight["mfu"] == pytest.approx(one["mfu"] / 8)
    assert eight["tokens_per_s"] == one["tokens_per_s"] == 400.0
    assert eight["tokens_per_s_per_device"] == pytest.approx(50.0)
    assert eight["flops_per_s_per_device"] == pytest.approx(4e9 / 2.0 / 8)
