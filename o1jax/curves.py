"""The train-time curve: where a run measures it (log-spaced held-out evaluations during RL,
each with the FLOPs spent so far), and reading it back from one or several workdirs with the
fits of ``o1jax.scaling`` per run and over runs (and pass@k of the SFT and RL checkpoints);
response length against accuracy, from the same evaluations and the evaluate command's
samples."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from etils import epath

from o1jax import scaling
from o1jax import workdir as wd
from o1jax.rl.state import sampling_params
from o1jax.search.evaluation import evaluate_stage
from o1jax.search.voting import wilson_interval

PASS_AT_K_DIRS = {"SFT": ("passk_sft",), "RL": ("passk_rl", "eval")}


def curve_steps(num_iterations: int, points: int) -> list[int]:
    """About ``points`` log-spaced iterations in [1, num_iterations], the last included: where
    the train-time curve is measured."""
    if points <= 0 or num_iterations <= 0:
        return []
    return sorted({int(round(x)) for x in np.geomspace(1, num_iterations, points)})


def curve_path(workdir, step: int):
    """WORKDIR/curve/step_NNNNNN.json: the train-time curve's evaluation at an RL step."""
    return workdir / "curve" / f"step_{step:06d}.json"


def curve_evaluation(exp):
    """The RL loop's ``after_step``: at the log-spaced steps of ``curve_steps``, training's
    held-out evaluation (``search.evaluation.evaluate_stage``: greedy, maj@k, pass@k, per
    difficulty bin) with the cumulative training FLOPs at that point, in ``curve_path``. The
    last point is the final policy's evaluation: train.py's eval_rl.json reuses it."""
    cfg = exp.cfg
    steps = set(curve_steps(exp.rl.num_iterations, cfg.eval.get("curve_points", 0))
                if cfg.eval.num_examples else ())

    def after_step(state, step: int, metrics: dict) -> None:
        if step in steps:
            evaluate_stage(exp, "rl", sampling_params(state, exp.rl), cfg.eval.maj_k, step,
                           path=curve_path(exp.workdir, step),
                           extra={"train_flops": metrics["train_flops"]})
    return after_step


class Run(NamedTuple):
    """A training run as the report reads it. ``points``: (train FLOPs, held-out greedy
    accuracy, maj@k accuracy or None, step), the SFT evaluation first at 0 FLOPs."""
    workdir: epath.Path
    task: str
    config: dict
    rows: list[dict]
    points: list[tuple[float, float, float | None, int]]
    sft_flops: float
    maj_k: int


def load_run(workdir) -> Run:
    """Reads config.json, metrics.jsonl, eval_sft.json and curve/*.json of a workdir."""
    root = wd.resolve(workdir)
    if not (root / "config.json").exists():
        raise ValueError(f"{workdir} is not a training workdir (no config.json)")
    config = wd.read_json(root / "config.json")
    rows = []
    if (root / "metrics.jsonl").exists():
        rows = wd.read_jsonl(root / "metrics.jsonl")
    maj_k = int(config.get("eval", {}).get("maj_k", 0))
    points = []
    if (root / "eval_sft.json").exists():
        sft = wd.read_json(root / "eval_sft.json")
        points.append((0.0, sft["greedy_accuracy"], sft.get(f"maj{maj_k}_accuracy"), 0))
    curve = root / "curve"
    for path in sorted(curve.glob("step_*.json")) if curve.exists() else ():
        p = wd.read_json(path)
        points.append((float(p["train_flops"]), p["greedy_accuracy"],
                       p.get(f"maj{maj_k}_accuracy"), int(p["step"])))
    sft_flops = max((r.get("sft_flops", 0.0) for r in rows if r["stage"] == "sft"), default=0.0)
    return Run(root, config["data"]["task"], config, rows, points, sft_flops, maj_k)


def check_same_task(runs: list[Run]) -> None:
    tasks = {r.task for r in runs}
    if len(tasks) > 1:
        raise ValueError("runs of different tasks cannot share one curve: " + ", ".join(
            f"{r.workdir} ({r.task})" for r in runs))


class Fits(NamedTuple):
    """Per run: a SigmoidFit / LogLinearFit, or the reason there is none."""
    sigmoid: list
    log_linear: list


def fit_runs(runs: list[Run]) -> Fits:
    sig, lin = [], []
    for r in runs:
        trained = [(c, y) for c, y, _, _ in r.points if c > 0]
        r0 = next((y for c, y, _, _ in r.points if c == 0), None)
        if r0 is None:
            sig.append("no SFT evaluation (eval_sft.json) to anchor R0")
        else:
            try:
                sig.append(scaling.fit_sigmoid(*zip(*trained), r0=r0) if trained else
                           "no evaluations during RL (curve/)")
            except ValueError as e:
                sig.append(str(e))
        try:
            lin.append(scaling.fit_log_linear(*zip(*trained)) if trained else
                       "no evaluations during RL (curve/)")
        except ValueError as e:
            lin.append(str(e))
    return Fits(sig, lin)


def fit_table(runs: list[Run], fits: Fits) -> list[dict]:
    """One row per run, and (with two or more fitted runs) the mean and 95% t interval."""
    out = []
    for r, s, ll in zip(runs, fits.sigmoid, fits.log_linear):
        row = {"run": str(r.workdir), "points": len(r.points), "sft_flops": r.sft_flops}
        if isinstance(s, scaling.SigmoidFit):
            row.update(r0=s.r0, a=s.a, b=s.b, c_mid=s.c_mid, sigmoid_rmse=s.rmse)
        else:
            row["sigmoid"] = s
        if isinstance(ll, scaling.LogLinearFit):
            row.update(per_decade=ll.per_decade, r2=ll.r2)
        else:
            row["log_linear"] = ll
        out.append(row)
    fitted = [row for row in out if "a" in row]
    if len(fitted) >= 2:
        mean = {"run": f"mean of {len(fitted)} (95% interval)"}
        for key in ("r0", "a", "b", "c_mid", "per_decade", "r2"):
            vals = [row[key] for row in fitted if key in row]
            if key == "c_mid":
                m, lo, hi = scaling.interval(np.log10(vals))
                mean[key], mean[key + "_ci"] = 10 ** m, (10 ** lo, 10 ** hi)
            else:
                m, lo, hi = scaling.interval(vals)
                mean[key], mean[key + "_ci"] = m, (lo, hi)
        out.append(mean)
    return out


def format_fit_table(table: list[dict]) -> str:
    head = f"{'run':<40}{'R0':>7}{'A':>7}{'B':>7}{'C_mid':>10}{'/decade':>9}{'R^2':>7}"
    lines = [head, "-" * len(head)]
    def f(row, k, fmt):
        width = int(fmt.split(".")[0])
        ok = isinstance(row.get(k), float) and math.isfinite(row[k])
        return format(row[k], fmt) if ok else "-".rjust(width)
    for row in table:
        lines.append(f"{row['run'][-40:]:<40}{f(row, 'r0', '7.3f')}{f(row, 'a', '7.3f')}"
                     f"{f(row, 'b', '7.2f')}{f(row, 'c_mid', '10.2e')}"
                     f"{f(row, 'per_decade', '9.3f')}{f(row, 'r2', '7.2f')}")
        for k in ("a", "b", "per_decade"):
            if k + "_ci" in row:
                lo, hi = row[k + "_ci"]
                lines[-1] += f"  {k} in [{lo:.3f}, {hi:.3f}]"
        for k in ("sigmoid", "log_linear"):
            if k in row:
                lines.append(f"    {k}: {row[k]}")
    return "\n".join(lines)


def pass_at_k(root: epath.Path) -> dict[str, list[tuple[int, float]]]:
    """pass@k (all problems) of the SFT and RL checkpoints, from the evaluate command's
    results in WORKDIR/passk_sft, WORKDIR/passk_rl (or eval/), where they exist."""
    out = {}
    for label, dirs in PASS_AT_K_DIRS.items():
        for d in dirs:
            path = root / d / "results.jsonl"
            if path.exists():
                rows = wd.read_jsonl(path)
                pts = sorted((r["budget"], r["accuracy"]) for r in rows
                             if r["strategy"] == "pass_at_k" and r["bin"] == "all")
                if pts:
                    out[label] = pts
                    break
    return out


def held_out_lengths(root: epath.Path) -> list[tuple[int, float, float]]:
    """(RL step, mean greedy response tokens, greedy accuracy) of each held-out evaluation a
    run made: the SFT one (step 0, eval_sft.json) and the train-time curve's (curve/)."""
    paths = [root / "eval_sft.json"] if (root / "eval_sft.json").exists() else []
    if (root / "curve").exists():
        paths += sorted((root / "curve").glob("step_*.json"))
    out = []
    for path in paths:
        p = wd.read_json(path)
        greedy = [r for r in p.get("rows", []) if r["strategy"] == "greedy" and r["bin"] == "all"
                  and "tokens" in r]
        if greedy:
            step = 0 if path.name == "eval_sft.json" else int(p["step"])
            out.append((step, float(greedy[0]["tokens"]), float(greedy[0]["accuracy"])))
    return out


def accuracy_by_length(samples: list[dict], bins: int = 6) -> tuple[str, list[dict]] | None:
    """Accuracy against response length over the responses of the evaluate command's
    samples.jsonl: the sampled ones ("sample") where it has them, else greedy. Up to ``bins``
    bins of about equal counts (edges at quantiles of the token counts; a bin holds lo <=
    tokens < hi, the last one its hi too); per bin {lo, hi, responses, accuracy, ci_low,
    ci_high} (95% Wilson). Returns (the generation used, bins), or None without token counts.
    Across problems, length and difficulty go together: a long response is often a hard
    problem's, and a cut-off one (unfinished) is wrong."""
    name = "sample" if samples and "sample" in samples[0]["responses"] else "greedy"
    resp = [r for s in samples for r in s["responses"].get(name, []) if "tokens" in r]
    if not resp:
        return None
    tokens = np.array([r["tokens"] for r in resp], float)
    correct = np.array([bool(r["correct"]) for r in resp])
    edges = np.unique(np.quantile(tokens, np.linspace(0, 1, bins + 1)))
    which = np.minimum(np.searchsorted(edges, tokens, side="right") - 1, max(len(edges) - 2, 0))
    out = []
    for b in range(max(len(edges) - 1, 1)):
        m = which == b
        if m.any():
            acc = float(correct[m].mean())
            lo, hi = wilson_interval(acc, int(m.sum()))
            out.append(dict(lo=float(edges[b]), hi=float(edges[min(b + 1, len(edges) - 1)]),
                            responses=int(m.sum()), accuracy=acc, ci_low=lo, ci_high=hi))
    return name, out
