"""Does self-play help? Self-play vs RL on the fixed task distribution vs their SFT start, at
equal training FLOPs, each evaluated greedy and maj@16 on the held-out and the hard split.

    python -m o1jax.train --config configs/selfplay.py --workdir W       # self-play first
    python scripts/selfplay_comparison.py --workdir W [--baseline B] [--out DIR]
    python scripts/selfplay_comparison.py --config configs/visual_selfplay.py --workdir W

The baseline (B, default W_fixed) is trained here if it is not already: the same config (and
seed; ``--config``, default configs/selfplay.py) with ``selfplay.enabled=False``, from W's SFT
checkpoint, checkpointing every 4 iterations, and resumed until its FLOPs pass the self-play
run's; the checkpoint whose cumulative FLOPs (metrics.jsonl's ``flops``) come closest to the
self-play run's total is the one compared. Evaluations already made (the same command) are
reused. The greedy difference of self-play and the baseline on each split comes with a paired 95%
bootstrap interval over the same problems (``o1jax.search.voting.paired_bootstrap``). Writes
comparison.json and comparison.md under --out (default W/comparison; local or gs://, through
the workdir's paths) and prints the table.

One checkpoint of each run is a noisy reading (a run's hard-split accuracy moves by several
points between checkpoints a few iterations apart), so ``--along`` also compares the runs along
their length: hard-split greedy at every saved self-play checkpoint (train it with
``--config.checkpoint.every=10 --config.checkpoint.keep=1000``), each against the baseline
checkpoint nearest in cumulative FLOPs, and the mean difference over those budgets with a paired
95% interval over the problems (each problem's outcome averaged over the budgets).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = os.path.join(ROOT, "configs", "selfplay.py")

from o1jax import workdir as wd  # noqa: E402
from o1jax.search.voting import paired_bootstrap  # noqa: E402


def rl_rows(workdir) -> list[dict]:
    return [r for r in wd.read_jsonl(wd.resolve(workdir) / "metrics.jsonl") if r["stage"] == "rl"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def train_baseline(config: str, workdir: str, baseline: str, iterations: int) -> None:
    seed = wd.read_json(wd.resolve(workdir) / "config.json")["seed"]
    run([sys.executable, "-m", "o1jax.train", f"--config={config}", f"--workdir={baseline}",
         f"--config.seed={seed}", "--config.selfplay.enabled=False",
         f"--config.init_from={workdir}:sft",
         "--config.sft.num_steps=0", f"--config.rl.num_iterations={iterations}",
         "--config.checkpoint.every=4", "--config.checkpoint.keep=1000",
         "--config.eval.num_examples=0", "--config.progress_bar=False"])


def saved_flops(workdir: str) -> dict[int, float]:
    """{saved RL step: the run's cumulative FLOPs at it} (metrics.jsonl's ``flops``)."""
    saved = {int(d.name) for d in (wd.resolve(workdir) / "checkpoints" / "rl").iterdir()
             if d.name.isdigit()}
    total, out = 0.0, {}
    for r in rl_rows(workdir):
        total += r["flops"]
        if r["step"] in saved:
            out[r["step"]] = total
    return out


def equal_flops_step(saved: dict[int, float], target: float) -> tuple[int, float]:
    """(step, FLOPs): of a run's saved steps (``saved_flops``), the one whose cumulative FLOPs
    are closest to ``target``."""
    return min(saved.items(), key=lambda kv: abs(kv[1] - target))


def evaluate(workdir: str, stage: str, step: int | None, split: str, out,
             greedy_only: bool = False) -> dict:
    """Greedy, maj@16 and pass@16 accuracy (greedy alone with ``greedy_only``), and each
    problem's greedy outcome by its id."""
    strategies = (["--strategies=greedy"] if greedy_only else
                  ["--strategies=greedy,majority", "--budgets=16"])
    cmd = [sys.executable, "-m", "o1jax.evaluate", f"--workdir={workdir}", f"--stage={stage}",
           f"--split={split}", *strategies, "--num-problems=200", f"--out={out}"]
    if step is not None:
        cmd.append(f"--step={step}")
    done = out / "command.json"   # an evaluation already made is reused
    if not done.exists() or wd.read_json(done) != cmd[1:]:
        run(cmd)
        wd.write_text(done, json.dumps(cmd[1:]))
    rows = [r for r in wd.read_jsonl(out / "results.jsonl") if r["bin"] == "all"]
    pick = lambda s: next(r for r in rows if r["strategy"] == s)  # noqa: E731
    greedy = {r["id"]: float(r["responses"]["greedy"][0]["correct"])
              for r in wd.read_jsonl(out / "samples.jsonl")}
    if greedy_only:
        return {"greedy": pick("greedy")["accuracy"], "greedy_by_problem": greedy}
    return {"greedy": pick("greedy")["accuracy"], "maj16": pick("majority")["accuracy"],
            "pass16": pick("pass_at_k")["accuracy"], "greedy_by_problem": greedy}


def along_runs(workdir: str, baseline: str, out) -> dict:
    """Hard-split greedy at every saved self-play checkpoint and at the baseline checkpoint
    nearest it in cumulative FLOPs; the mean difference over those budgets with its paired
    interval, each problem's outcome averaged over the budgets (``paired_difference``)."""
    points, mine, theirs = [], [], []
    baseline_saved = saved_flops(baseline)
    for step, flops in sorted(saved_flops(workdir).items()):
        base, base_flops = equal_flops_step(baseline_saved, flops)
        a = evaluate(workdir, "rl", step, "hard", out / f"self-play_{step}", greedy_only=True)
        b = evaluate(baseline, "rl", base, "hard", out / f"fixed_{base}", greedy_only=True)
        points.append({"step": step, "rl_flops": flops, "greedy": a["greedy"],
                       "baseline_step": base, "baseline_rl_flops": base_flops,
                       "baseline_greedy": b["greedy"]})
        mine.append(a["greedy_by_problem"])
        theirs.append(b["greedy_by_problem"])
    return {"points": points,
            "difference": paired_difference(mean_outcomes(mine), mean_outcomes(theirs))}


def mean_outcomes(evaluations: list[dict[str, float]]) -> dict[str, float]:
    """Each problem's outcome averaged over evaluations (the problems all of them hold)."""
    ids = set.intersection(*(set(e) for e in evaluations))
    return {i: sum(e[i] for e in evaluations) / len(evaluations) for i in ids}


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict:
    """Mean of a - b over the problems both were evaluated on, with its paired 95% interval."""
    ids = sorted(a.keys() & b.keys())
    mean, lo, hi = paired_bootstrap([a[i] for i in ids], [b[i] for i in ids])
    return {"mean": mean, "low": lo, "high": hi, "problems": len(ids)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, help="a finished self-play run of --config")
    ap.add_argument("--config", default=CONFIG, help="the run's config (default: %(default)s)")
    ap.add_argument("--baseline", default=None, help="fixed-distribution RL run (default "
                    "WORKDIR_fixed; trained when missing)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--along", action="store_true", help="also compare hard-split greedy at "
                    "every saved self-play checkpoint against the baseline's nearest in FLOPs")
    args = ap.parse_args()
    workdir = args.workdir.rstrip("/")
    baseline = args.baseline or workdir + "_fixed"
    out = wd.resolve(args.out or os.path.join(workdir, "comparison"))
    sp_rows = rl_rows(workdir)
    sp_flops = sum(r["flops"] for r in sp_rows)
    if not (wd.resolve(baseline) / "checkpoints" / "rl").is_dir():
        # the fixed-distribution iteration costs a little less (no proposals): ~15% spare
        train_baseline(args.config, workdir, baseline, math.ceil(1.15 * len(sp_rows)))
    rows = rl_rows(baseline)
    if sum(r["flops"] for r in rows) < sp_flops:   # resumed until its FLOPs pass self-play's
        per = sum(r["flops"] for r in rows) / len(rows)
        train_baseline(args.config, workdir, baseline, math.ceil(sp_flops / per) + 1)
    step, base_flops = equal_flops_step(saved_flops(baseline), sp_flops)
    models = {"SFT start": (workdir, "sft", None, 0.0),
              "self-play": (workdir, "rl", sp_rows[-1]["step"], sp_flops),
              "RL, fixed tasks": (baseline, "rl", step, base_flops)}
    results = {}
    for name, (path, stage, st, flops) in models.items():
        results[name] = {"workdir": path, "stage": stage, "step": st, "rl_flops": flops}
        for split in ("test", "hard"):
            tag = f"{name.split(',')[0].replace(' ', '_').lower()}_{split}"
            results[name][split] = evaluate(path, stage, st, split, out / tag)
    differences = {split: paired_difference(results["self-play"][split]["greedy_by_problem"],
                                            results["RL, fixed tasks"][split]["greedy_by_problem"])
                   for split in ("test", "hard")}
    along = along_runs(workdir, baseline, out / "along") if args.along else None
    out.mkdir(parents=True, exist_ok=True)
    wd.write_text(out / "comparison.json", json.dumps(
        {**results, "self-play - fixed, greedy": differences, "along": along}, indent=2))
    lines = ["| model | RL iterations | RL FLOPs | held-out greedy | held-out maj@16 | "
             "hard greedy | hard maj@16 |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['step'] or 0} | {r['rl_flops']:.3g} | "
                     f"{100 * r['test']['greedy']:.1f}% | {100 * r['test']['maj16']:.1f}% | "
                     f"{100 * r['hard']['greedy']:.1f}% | {100 * r['hard']['maj16']:.1f}% |")
    lines.append("")
    for split, name in (("test", "held-out"), ("hard", "hard")):
        d = differences[split]
        lines.append(f"Self-play - fixed-task RL, {name} greedy: {100 * d['mean']:+.1f} points "
                     f"(paired 95% {100 * d['low']:+.1f} to {100 * d['high']:+.1f}, "
                     f"{d['problems']} problems)")
    if along:
        row = lambda name, cells: f"| {name} | " + " | ".join(cells) + " |"  # noqa: E731
        pts = along["points"]
        lines += ["", row("self-play iteration (RL FLOPs)",
                          [f"{p['step']} ({p['rl_flops']:.2g})" for p in pts]),
                  "|---|" + "---|" * len(pts),
                  row("self-play, hard greedy", [f"{100 * p['greedy']:.1f}" for p in pts]),
                  row("fixed tasks, nearest in FLOPs",
                      [f"{100 * p['baseline_greedy']:.1f}" for p in pts]), ""]
        d = along["difference"]
        lines.append(f"Along the runs ({len(along['points'])} budgets), self-play - fixed-task "
                     f"RL, hard greedy: {100 * d['mean']:+.1f} points (paired 95% "
                     f"{100 * d['low']:+.1f} to {100 * d['high']:+.1f}, {d['problems']} problems)")
    wd.write_text(out / "comparison.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
