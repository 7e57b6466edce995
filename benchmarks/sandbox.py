"""The code sandbox's cost: its overhead per check and code checks per second.

    python benchmarks/sandbox.py [--quick]

Side by side in one run: the same Python interpreter started bare (``python3 -E -s -B -c
pass``, no sandbox: the peer) and inside bubblewrap with its limits (``run_python`` of an empty
program), each timed one at a time (median); the difference is the sandbox's overhead per
check. Then the code task's reference solutions (64 level-2 problems of ``code_functions``,
each with its unit tests in the harness) checked as the reward checks them (``code_check``),
one at a time and 8 at once (threads: each check is a process of its own), as checks per
second. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from o1jax.data import tasks  # noqa: E402
from o1jax.rewards.code import code_check  # noqa: E402
from o1jax.rewards.sandbox import PYTHONS, run_python  # noqa: E402


def median_call(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    quick = ap.parse_args().quick
    repeats = 10 if quick else 40
    python = next(p for p in PYTHONS if os.path.exists(p))
    bare = median_call(lambda: subprocess.run([python, "-E", "-s", "-B", "-c", "pass"],
                                              check=True), repeats)
    sandboxed = median_call(lambda: run_python({"main.py": "pass"}, "main.py"), repeats)
    print(f"an empty program: bare {bare * 1e3:.1f} ms, in the sandbox {sandboxed * 1e3:.1f} ms: "
          f"{(sandboxed - bare) * 1e3:.1f} ms overhead per check ({sandboxed / bare:.2f}x)")

    problems = list(tasks.generate("code_functions", "train", 16 if quick else 64, difficulty=2))
    meta = [json.loads(e["meta"]) for e in problems]
    jobs = [(e["solution"], m["tests"], m["entry_point"]) for e, m in zip(problems, meta)]
    out = {"bare_s": bare, "sandboxed_s": sandboxed, "overhead_s": sandboxed - bare}
    for workers in (1, 8):
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda j: code_check(*j), jobs))
        seconds = time.perf_counter() - t
        passed = sum(share == 1.0 for share, _ in results)
        print(f"code checks, {workers} at once: {len(jobs) / seconds:.1f} checks/s "
              f"({passed}/{len(jobs)} reference solutions pass)")
        out[f"checks_per_s_{workers}"] = len(jobs) / seconds
        if passed != len(jobs):
            raise SystemExit(f"reference solutions failed: {[r for r in results if r[0] < 1]}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
