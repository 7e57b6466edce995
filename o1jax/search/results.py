"""Results of the evaluate command: difficulty bins, the rows of results.jsonl (one per
strategy x budget x bin), samples.jsonl, the files in the output directory and the printed table."""

from __future__ import annotations

import base64
import json
from typing import Sequence

import numpy as np
from etils import epath

from o1jax import workdir as wd
from o1jax.plots import plot_test_time, png_bytes
from o1jax.search import strategies, voting

PASS_RATE_LEVELS = (0.8, 0.6, 0.4, 0.2)   # level 1: pass rate above 0.8, ..., level 5: <= 0.2


def difficulty_bins(examples: Sequence[dict], pass_rates: np.ndarray | None
                    ) -> list[str] | None:
    """A bin per problem: the task generator's difficulty when the problems have more than one
    (``difficulty3``), else the level of the model's own pass rate over its samples
    (``level1``: above 0.8 ... ``level5``: 0.2 or less; Snell et al.'s oracle bins), else None."""
    levels = [int(e.get("difficulty", 0)) for e in examples]
    if len(set(levels)) > 1:
        return [f"difficulty{d}" for d in levels]
    if pass_rates is None:
        return None
    return [f"level{1 + sum(p <= t for t in PASS_RATE_LEVELS)}" for p in pass_rates]


def flops(s: strategies.Scores) -> float:
    """Mean FLOPs per problem of a strategy's scores (prefill, decode and verifier)."""
    return float(np.mean(s.prefill_flops + s.decode_flops + s.verifier_flops))


def result_rows(strategy: str, budget: int, s: strategies.Scores, bins: list[str] | None,
                majority: strategies.Scores | None = None,
                costlier: tuple[int, strategies.Scores] | None = None) -> list[dict]:
    """One row for all problems and one per bin (the keys of results.jsonl). With
    ``majority`` (majority vote at the same budget, on the same problems) a row also has
    ``vs_majority``: the accuracy difference, with its paired 95% bootstrap interval
    (``vs_majority_low``, ``vs_majority_high``); with ``costlier`` (budget, scores) of the
    cheapest majority vote that spends at least this strategy's FLOPs, the same against it
    (``vs_majority_at_flops``, ``_low``, ``_high`` and ``_budget``): a verifier pays for
    reading the samples, so at equal compute it must beat a larger vote."""
    out = []
    for name in ["all"] + sorted(set(bins or [])):
        m = np.ones(len(s.accuracy), bool) if name == "all" else np.asarray(bins) == name
        acc = float(s.accuracy[m].mean())
        lo, hi = voting.wilson_interval(acc, int(m.sum()))
        pre, dec = float(s.prefill_flops[m].mean()), float(s.decode_flops[m].mean())
        ver = float(s.verifier_flops[m].mean())
        out.append(dict(strategy=strategy, budget=budget, bin=name, problems=int(m.sum()),
                        accuracy=acc, ci_low=lo, ci_high=hi, tokens=float(s.tokens[m].mean()),
                        flops=pre + dec + ver, seconds=float(s.seconds[m].mean()),
                        prompt_tokens=float(s.prompt_tokens[m].mean()), prefill_flops=pre,
                        decode_flops=dec, verifier_flops=ver))
        if majority is not None:
            d, lo, hi = voting.paired_bootstrap(s.accuracy[m], majority.accuracy[m])
            out[-1].update(vs_majority=d, vs_majority_low=lo, vs_majority_high=hi)
        if costlier is not None:
            d, lo, hi = voting.paired_bootstrap(s.accuracy[m], costlier[1].accuracy[m])
            out[-1].update(vs_majority_at_flops=d, vs_majority_at_flops_low=lo,
                           vs_majority_at_flops_high=hi, vs_majority_at_flops_budget=costlier[0])
    return out


def sample_records(examples: Sequence[dict], gens: dict, bins: list[str] | None) -> list[dict]:
    """samples.jsonl: per problem, every response of every generation with its answer; a
    visual problem also its image as the policy saw it (``image_png``: base64 PNG bytes)."""
    out = []
    for i, e in enumerate(examples):
        image = {} if e.get("image") is None else {
            "image_png": base64.b64encode(png_bytes(e["image"])).decode("ascii")}
        out.append(dict(id=e.get("id", str(i)), question=e["question"], answer=e["answer"],
                        bin=bins[i] if bins else "all", **image, responses={
            name: [dict(text=g.texts[i][j], answer=g.answers[i][j],
                        correct=bool(g.correct[i, j]), finished=bool(g.finished[i, j]),
                        tokens=int(g.lengths[i, j])) for j in range(g.correct.shape[1])]
            for name, g in gens.items()}))
    return out


def write_results(out: epath.Path, rows: list[dict], samples: list[dict]) -> None:
    """results.jsonl, samples.jsonl and test_time_compute.png in ``out`` (local or gs://)."""
    out.mkdir(parents=True, exist_ok=True)
    wd.write_text(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    wd.write_text(out / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    plot_test_time(rows, out / "test_time_compute.png")


def _versus(row: dict, key: str, label: str) -> str:
    """A row's paired difference ``key`` as printed ("" when the row has none)."""
    if key not in row:
        return ""
    return (f"{label} {100 * row[key]:+.1f} points (paired 95% {100 * row[key + '_low']:+.1f}"
            f" to {100 * row[key + '_high']:+.1f})")


def print_results(rows: list[dict]) -> None:
    """The overall rows as a table, then accuracy per bin."""
    head = f"{'strategy':<15}{'budget':>7}{'accuracy':>10}{'95% CI':>16}{'tokens':>9}" \
           f"{'GFLOPs':>10}{'seconds':>9}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        if r["bin"] == "all":
            ci = f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}%"
            print(f"{r['strategy']:<15}{r['budget']:>7}{100 * r['accuracy']:>9.1f}%{ci:>16}"
                  f"{r['tokens']:>9.1f}{r['flops'] / 1e9:>10.3f}{r['seconds']:>9.4f}" +
                  _versus(r, "vs_majority", "  vs majority") +
                  _versus(r, "vs_majority_at_flops", f"; vs majority@"
                          f"{r.get('vs_majority_at_flops_budget')} (at least its FLOPs)"))
    bins = sorted({r["bin"] for r in rows} - {"all"})
    if bins:
        counts = {r["bin"]: r["problems"] for r in rows}
        print("\naccuracy by difficulty bin (problems): " +
              ", ".join(f"{b} ({counts[b]})" for b in bins))
        for r in rows:
            if r["bin"] == "all":
                cells = [next((f"{100 * x['accuracy']:.1f}%" for x in rows if x["bin"] == b
                               and x["strategy"] == r["strategy"] and
                               x["budget"] == r["budget"]), "-") for b in bins]
                print(f"{r['strategy']:<15}{r['budget']:>7}  " + "  ".join(
                    f"{c:>12}" for c in cells))


def print_value_model(v: dict) -> None:
    """The value model's own accuracy on the sampled solutions (``EvalResult.verifier``) and
    compute-optimal's choices per predicted difficulty bin, on stdout."""
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"\nverifier {v['kind']} ({v['verifier']}) on the sampled solutions: AUC "
          f"{fmt(v['auc'])}, within a problem {fmt(v['within_problem_auc'])}; mean "
          f"score {fmt(v['mean_score_correct'])} correct, {fmt(v['mean_score_wrong'])} "
          "wrong")
    for k, choice in (v.get("compute_optimal") or {}).items():
        print(f"compute_optimal at {k}: " + ", ".join(
            f"bin {b} (predicted {'easiest' if b == 1 else 'hardest' if b == 5 else b}) "
            f"{'/'.join(c)}" for b, c in choice.items()))
