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
    step, total = sc.equal_flops_step(str(tmp_path), target)
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

