"""The plots: the run report drawn from a workdir's files, the test-time curve's panels, the
search over RL."""

import json

import matplotlib.image

from o1jax.plots import plot_run, plot_test_time, plot_thinking


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


def _search_rows(n: int) -> list[dict]:
    return [{"stage": "rl", "step": i, "response_length_mean": 100 + 5 * i,
             "search/backup_share": i / n, "search/backups_mean": 2 * i / n,
             "search/stuck_share": 0.1} for i in range(1, n + 1)]


def test_thinking_plot_has_its_three_panels_with_or_without_lengths(tmp_path):
    by_length = ("sample", [dict(lo=10.0 * b, hi=10.0 * b + 10, responses=8, accuracy=0.1 * b,
                                 ci_low=0.0, ci_high=min(1.0, 0.1 * b + 0.2)) for b in range(6)])
    held_out = [(0, 80.0, 0.3), (5, 120.0, 0.5), (20, 160.0, 0.7)]
    img = matplotlib.image.imread(plot_thinking(_search_rows(20), held_out, by_length,
                                                tmp_path / "t.png"))
    assert img.shape[:2] == (4 * 110, 15 * 110) and img[..., :3].std() > 0.05
    bare = matplotlib.image.imread(plot_thinking(_search_rows(3), [], None, tmp_path / "b.png"))
    assert bare.shape == img.shape
