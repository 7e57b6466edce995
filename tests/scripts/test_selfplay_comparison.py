"""scripts/selfplay_comparison.py: the equal-FLOPs checkpoint, reused evaluations read back with
each problem's greedy outcome, and the paired difference of self-play and the baseline."""

import importlib.util
import json
import os
import random

from o1jax import workdir as wd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script():
    spec = importlib.util.spec_from_file_location(
        "selfplay_comparison", os.path.join(ROOT, "scripts", "selfplay_comparison.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_equal_flops_step_is_the_saved_checkpoint_closest_in_cumulative_flops(tmp_path):
    sc = _script()
    rng = random.Random(0)
    flops = [rng.uniform(1.0, 3.0) for _ in range(20)]
    _jsonl(tmp_path / "metrics.jsonl", [{"stage": "sft", "step": 5, "flops": 99.0}] + [
        {"stage": "rl", "step": i + 1, "flops": f} for i, f in enumerate(flops)])
    saved = {4, 8, 12, 16, 20}
    for s in saved:
        (tmp_path / "checkpoints" / "rl" / str(s)).mkdir(parents=True)
    (tmp_path / "checkpoints" / "rl" / "tmp.orbax").mkdir()
    target = 0.55 * sum(flops)
    cumulative = {s: sum(flops[:s]) for s in saved}
    want = min(saved, key=lambda s: abs(cumulative[s] - target))
    step, total = sc.equal_flops_step(sc.saved_flops(str(tmp_path)), target)
    assert step == want and abs(total - cumulative[want]) < 1e-9


def test_a_reused_evaluation_is_read_back_with_each_problems_greedy_outcome(tmp_path):
    sc = _script()
    out = wd.resolve(tmp_path / "eval")
    out.mkdir()
    cmd = ["-m", "o1jax.evaluate", "--workdir=W", "--stage=rl", "--split=hard",
           "--strategies=greedy,majority", "--budgets=16", "--num-problems=200",
           f"--out={out}", "--step=8"]
    (out / "command.json").write_text(json.dumps(cmd))
    _jsonl(out / "results.jsonl", [
        {"bin": "all", "strategy": "greedy", "accuracy": 0.5},
        {"bin": "all", "strategy": "majority", "accuracy": 0.25},
        {"bin": "all", "strategy": "pass_at_k", "accuracy": 0.75},
        {"bin": "2 numbers", "strategy": "greedy", "accuracy": 0.0}])
    _jsonl(out / "samples.jsonl", [
        {"id": "hard/0", "responses": {"greedy": [{"correct": True}]}},
        {"id": "hard/1", "responses": {"greedy": [{"correct": False}]}}])
    got = sc.evaluate("W", "rl", 8, "hard", out)     # no command is run: it is reused
    assert got == {"greedy": 0.5, "maj16": 0.25, "pass16": 0.75,
                   "greedy_by_problem": {"hard/0": 1.0, "hard/1": 0.0}}


def test_paired_difference_pairs_problems_by_id():
    sc = _script()
    rng = random.Random(1)
    a = {f"p{i}": float(rng.random() < 0.4) for i in range(200)}
    b = {f"p{i}": float(rng.random() < 0.3) for i in range(10, 210)}   # 190 shared ids
    d = sc.paired_difference(a, b)
    shared = sorted(a.keys() & b.keys())
    mean = sum(a[i] - b[i] for i in shared) / len(shared)
    assert d["problems"] == 190 and abs(d["mean"] - mean) < 1e-12
    assert d["low"] < d["mean"] < d["high"]
    same = sc.paired_difference(a, dict(a))
    assert (same["mean"], same["low"], same["high"]) == (0.0, 0.0, 0.0)


def _saved_run(root, flops, saved, outcomes_by_step, out, name):
    """A run's metrics and checkpoints, and reusable greedy hard-split evaluations of its saved
    steps under out/NAME_STEP (``outcomes_by_step``: step -> [problem outcomes])."""
    root.mkdir()
    _jsonl(root / "metrics.jsonl", [{"stage": "rl", "step": i + 1, "flops": f}
                                    for i, f in enumerate(flops)])
    for s in saved:
        (root / "checkpoints" / "rl" / str(s)).mkdir(parents=True)
    for s, outcomes in outcomes_by_step.items():
        d = out / f"{name}_{s}"
        d.mkdir(parents=True)
        (d / "command.json").write_text(json.dumps([
            "-m", "o1jax.evaluate", f"--workdir={root}", "--stage=rl", "--split=hard",
            "--strategies=greedy", "--num-problems=200", f"--out={d}", f"--step={s}"]))
        _jsonl(d / "results.jsonl", [{"bin": "all", "strategy": "greedy",
                                      "accuracy": sum(outcomes) / len(outcomes)}])
        _jsonl(d / "samples.jsonl", [{"id": f"hard/{i}", "responses": {"greedy": [
            {"correct": bool(o)}]}} for i, o in enumerate(outcomes)])


def test_along_the_runs_each_self_play_checkpoint_meets_the_baselines_nearest_in_flops(tmp_path):
    """Self-play saved at cumulative FLOPs 2, 4, 6; the baseline at 1.5, 3, 4.5, 6 (steps 2,
    4, 6, 8): the pairs are (2, 2), (4, 6), (6, 8), and the difference is each problem's mean
    outcome over the three self-play checkpoints minus its mean over the three baseline ones,
    averaged over the problems (evaluations reused, so no command runs)."""
    sc = _script()
    rng = random.Random(2)
    out = wd.resolve(tmp_path / "along")
    draw = lambda: [int(rng.random() < 0.4) for _ in range(50)]  # noqa: E731
    mine = {s: draw() for s in (2, 4, 6)}
    theirs = {s: draw() for s in (2, 6, 8)}
    _saved_run(tmp_path / "sp", [1.0] * 6, (2, 4, 6), mine, out, "self-play")
    _saved_run(tmp_path / "fx", [0.75] * 8, (2, 4, 6, 8), theirs, out, "fixed")
    got = sc.along_runs(str(tmp_path / "sp"), str(tmp_path / "fx"), out)
    assert [(p["step"], p["baseline_step"]) for p in got["points"]] == [(2, 2), (4, 6), (6, 8)]
    assert [p["greedy"] for p in got["points"]] == [sum(mine[s]) / 50 for s in (2, 4, 6)]
    want = sum(sum(mine[s][i] for s in mine) / 3 - sum(theirs[s][i] for s in theirs) / 3
               for i in range(50)) / 50
    d = got["difference"]
    assert d["problems"] == 50 and abs(d["mean"] - want) < 1e-12 and d["low"] <= want <= d["high"]
