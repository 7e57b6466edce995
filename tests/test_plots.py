"""The plots: the run report drawn from a workdir's files, the test-time curve's panels."""

import json

import matplotlib.image

from o1jax.plots import plot_run, plot_test_time


def test_plot_run_draws_the_workdir(tmp_path):
    rows = [{"stage": "sft", "step": i, "loss": 3.0 / i} for i in range(1, 6)] + \
        [{"stage": "rl", "step": i, "reward_mean": i / 20} for i in range(1, 21)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval_sft.json").write_text(json.dumps({"greedy_accuracy": 0.4}))
    (tmp_path / "eval_rl.json").write_text(json.dumps({"greedy_accuracy": 0.7,
                                                       "maj16_accuracy": 0.65}))
    out = plot_run(str(tmp_path))
    assert str(out) == str(tmp_path / "report.png")
    img = matplotlib.image.imread(out)
    assert img.shape[0] == int(3.6 * 110) and img.shape[1] == 13 * 110
    assert img[..., :3].std() > 0.05  # something was drawn


def test_plot_run_without_evaluations(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"stage": "rl", "step": 1,
                                                        "reward_mean": 0.5}) + "\n")
    assert matplotlib.image.imread(plot_run(str(tmp_path), str(tmp_path / "r.png"))).size


def test_test_time_plot_has_a_panel_per_bin_and_the_overall_one(tmp_path):
    rows = [dict(strategy=s, budget=k, bin=b, problems=10, accuracy=min(1, 0.1 * k),
                 ci_low=0.0, ci_high=1.0, flops=1e6 * k)
            for s in ("majority", "pass_at_k") for k in (1, 2, 4) for b in ("all", "level1",
                                                                            "level5")]
    img = matplotlib.image.imread(plot_test_time(rows, tmp_path / "t.png"))
    assert img.shape[1] == int(round(3 * 4.2 * 110)) and img[..., :3].std() > 0.05
