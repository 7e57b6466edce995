"""``python -m o1jax.report``: the train-time curve with its fits, pass@k, the training metrics
and the test-time curve as one static page (``o1jax/page.py``)."""

from __future__ import annotations

import argparse
import sys

from etils import epath

from o1jax import curves, page


def main(argv=None) -> int:
    """``python -m o1jax.report --workdir DIR [--workdir DIR2 ...] [--out DIR]``."""
    ap = argparse.ArgumentParser(prog="python -m o1jax.report", description="The train-time "
                                 "curve and its fits, the test-time curve, pass@k and the run's "
                                 "metrics as one static page (OUT/index.html).")
    ap.add_argument("--workdir", action="append", required=True,
                    help="a training workdir; repeat for several runs (seeds, algorithms)")
    ap.add_argument("--out", default=None, help="default WORKDIR/report (required with several)")
    args = ap.parse_args(argv)
    if len(args.workdir) > 1 and not args.out:
        print("error: --out is required with several --workdir", file=sys.stderr)
        return 2
    try:
        runs = [curves.load_run(w) for w in args.workdir]
        curves.check_same_task(runs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = epath.Path(args.out) if args.out else runs[0].workdir / "report"
    out.mkdir(parents=True, exist_ok=True)
    fits = curves.fit_runs(runs)
    table = curves.fit_table(runs, fits)
    print(curves.format_fit_table(table))
    for r in runs:
        if len(r.points) <= 1:
            print(f"note: {r.workdir} has no evaluations during RL (curve/): the train-time curve "
                  "shows what exists; set eval.curve_points > 0 (and eval.num_examples) to "
                  "measure it")
    path = page.write_page(out, runs, fits, table)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
