"""Verifier throughput, time per check, and reward time against rollout time.

    python benchmarks/verifier.py [--quick]

Two batches of 512 responses, half right and half wrong: the synthetic tasks (arithmetic,
linear, fractions, countdown; reference solution or a wrong final answer) and MATH-style
answers (fractions, radicals, intervals, unions, sets, tuples, matrices, equations,
inequalities, \\pm, percentages, symbolic expressions; an equal rewriting or a change in one
place). For each: checks per second through the worker pool, and the median and 99th
percentile time of a single check (one at a time, pool overhead included) against the pool's
1 s limit. The rollout is the tiny model sampling 64 prompts x 8 samples x 128 new tokens (the
same 512 sequences as the synthetic batch). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_seconds  # noqa: E402
from o1jax.data import tasks  # noqa: E402
from o1jax.models import Transformer, preset  # noqa: E402
from o1jax.rewards.api import EQUIVALENCE  # noqa: E402
from o1jax.rewards.functions import compute_rewards  # noqa: E402
from o1jax.rewards.pool import CheckPool  # noqa: E402
from o1jax.rollout import SamplingConfig, make_sampler  # noqa: E402

BATCH = 512


def realistic_batch():
    exs = []
    for task in ("arithmetic", "linear", "fractions", "countdown"):
        exs += list(tasks.generate(task, "train", BATCH // 4, seed=11, difficulty=3))
    responses = []
    for i, e in enumerate(exs):
        if i % 2:
            body = e["solution"].rsplit("\\boxed{", 1)[0]
            responses.append(body + "\\boxed{" + e["answer"] + "+1}")
        else:
            responses.append(e["solution"])
    return responses, exs


MATH_FORMS = [  # (gold, equal answer, answer that differs in one place); a, b, c ints, lo < hi
    ("\\frac{{{a}}}{{{b}}}", "\\frac{{{a2}}}{{{b2}}}", "\\frac{{{b}}}{{{a}}}"),
    ("{a}\\sqrt{{{c}}}", "\\sqrt{{{a}^2 \\cdot {c}}}", "{a}\\sqrt{{{c1}}}"),
    ("({a}, {b}]", "({a},{b}]", "[{a}, {b}]"),
    ("(-\\infty, {lo}) \\cup ({hi}, \\infty)", "(-\\infty,{lo})\\cup({hi},\\infty)",
     "(-\\infty, {lo}] \\cup ({hi}, \\infty)"),
    ("\\{{{a}, {b}, {c}\\}}", "\\{{{c}, {a}, {b}\\}}", "\\{{{a}, {b}, {c1}\\}}"),
    ("({a}, {b})", "\\left({a}, {b}\\right)", "({b}, {a})"),
    ("\\begin{{pmatrix}} {a} & {b} \\\\ {c} & 1 \\end{{pmatrix}}",
     "\\begin{{pmatrix}}{a}&{b}\\\\{c}&1\\end{{pmatrix}}",
     "\\begin{{pmatrix}} {a} & {b} \\\\ {c} & 2 \\end{{pmatrix}}"),
    ("x = {a}", "x = {a}", "x = {c1}"),
    ("x > {a}", "{a} < x", "x < {a}"),
    ("\\pm {a}", "{a}, -{a}", "\\pm {c1}"),
    ("{a}\\%", "{a}\\%", "{c1}\\%"),
    ("{a}x^2 + {b}x", "x({a}x + {b})", "{a}x^2 - {b}x"),
]


def math_batch():
    """(responses, golds, right): every form, alternately an equal and a differing answer."""
    rng = np.random.RandomState(0)
    responses, golds, right = [], [], []
    for i in range(BATCH):
        gold, same, other = MATH_FORMS[i % len(MATH_FORMS)]
        a, b, c = (int(v) for v in rng.randint(2, 50, 3))
        v = dict(a=a, b=b, c=c, a2=2 * a, b2=2 * b, c1=c + 1, lo=min(a, b), hi=max(a, b) + 1)
        right.append((i // len(MATH_FORMS)) % 2 == 0)
        answer = (same if right[-1] else other).format(**v)
        responses.append(f"Working through the problem ... so the answer is \\boxed{{{answer}}}.")
        golds.append(gold.format(**v))
    return responses, golds, np.asarray(right)


def per_check_seconds(pool, responses, golds, n):
    """Wall time of ``n`` single checks, one after another."""
    times = []
    for r, g in list(zip(responses, golds))[:n]:
        t = time.perf_counter()
        pool.map(EQUIVALENCE, [(r, g)])
        times.append(time.perf_counter() - t)
    return np.asarray(times)


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MB."""
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def rss_after_import(code: str) -> float:
    """Resident memory of a fresh interpreter after running ``code``, MB."""
    out = subprocess.run([sys.executable, "-c", code + "; import os; print(os.getpid()); "
                          "print(open(f'/proc/{os.getpid()}/status').read())"],
                         capture_output=True, text=True, check=True).stdout
    kb = next(int(line.split()[1]) for line in out.splitlines() if line.startswith("VmRSS:"))
    return kb / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    repeats = 1 if args.quick else 3
    responses, exs = realistic_batch()
    finished = [True] * len(responses)
    with CheckPool(num_workers=args.workers) as pool:
        compute_rewards(responses[:8], exs[:8], finished[:8], {"correctness": 1.0}, pool)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            rewards, metrics = compute_rewards(responses, exs, finished,
                                               {"correctness": 1.0, "format": 0.1}, pool)
            times.append(time.perf_counter() - t)
        m_resp, m_gold, m_right = math_batch()
        pool.map(EQUIVALENCE, list(zip(m_resp[:8], m_gold[:8])))
        t = time.perf_counter()
        m_ok = np.asarray(pool.map(EQUIVALENCE, list(zip(m_resp, m_gold)))) == True  # noqa: E712
        math_s = time.perf_counter() - t
        n_single = 64 if args.quick else 256
        single = {"synthetic": per_check_seconds(pool, responses, [e["answer"] for e in exs],
                                                 n_single),
                  "math": per_check_seconds(pool, m_resp, m_gold, n_single)}
        math_timeouts = pool.stats["timeouts"]
        worker_mb = [rss_mb(w.proc.pid) for w in pool._workers]
    # what a worker cost before: multiprocessing's spawn re-imported the trainer's main module
    trainer_import_mb = rss_after_import("import o1jax.train, o1jax.rewards.verifier")
    reward_s = float(np.median(times))
    accuracy = float(np.mean(rewards >= 1.0))
    model = Transformer(preset("tiny"))
    params = model.init(jax.random.key(0))
    prompts = np.random.RandomState(0).randint(0, 256, (BATCH // 8, 32))
    sampler = make_sampler(model, SamplingConfig(max_new_tokens=128, num_samples=8))
    rollout_s = median_seconds(lambda: sampler(params, prompts, np.ones_like(prompts, bool),
                                               jax.random.key(1)), repeats=repeats)
    out = {"checks_per_s": BATCH / reward_s, "reward_s": reward_s, "rollout_s": rollout_s,
           "reward_over_rollout_time": reward_s / rollout_s, "workers": args.workers,
           "fraction_rewarded_correct": accuracy,
           "verifier_timeouts": metrics["verifier/timeouts"],
           "math_checks_per_s": BATCH / math_s, "math_fraction_accepted": float(m_ok.mean()),
           "math_right_accepted": float(m_ok[m_right].mean()),
           "math_wrong_accepted": float(m_ok[~m_right].mean()), "pool_timeouts": math_timeouts,
           **{f"{k}_check_ms_p50": 1e3 * float(np.median(v)) for k, v in single.items()},
           **{f"{k}_check_ms_p99": 1e3 * float(np.percentile(v, 99)) for k, v in single.items()},
           "worker_rss_mb": float(np.mean(worker_mb)),
           "worker_importing_trainer_rss_mb": trainer_import_mb}
    print(f"{BATCH} responses verified in {reward_s:.2f} s with {args.workers} workers: "
          f"{out['checks_per_s']:,.0f} checks/s (half correct: {accuracy:.2f} rewarded); "
          f"tiny-model rollout of the same 512 x 128 tokens: {rollout_s:.2f} s; "
          f"reward / rollout time = {out['reward_over_rollout_time']:.2f}")
    print(f"MATH-style answers: {out['math_checks_per_s']:,.0f} checks/s; right ones accepted "
          f"{out['math_right_accepted']:.2f}, wrong ones accepted "
          f"{out['math_wrong_accepted']:.2f}")
    for k in single:
        print(f"one {k} check: median {out[f'{k}_check_ms_p50']:.1f} ms, 99th percentile "
              f"{out[f'{k}_check_ms_p99']:.1f} ms (pool limit 1000 ms)")
    print(f"verifier worker: {out['worker_rss_mb']:.0f} MB resident; a worker importing the "
          f"trainer (what multiprocessing's spawn did): "
          f"{out['worker_importing_trainer_rss_mb']:.0f} MB")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
