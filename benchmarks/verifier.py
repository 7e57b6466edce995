"""Verifier throughput, and reward time against rollout time for the same batch.

    python benchmarks/verifier.py [--quick]

The batch: 512 responses to synthetic tasks (arithmetic, linear, fractions, countdown), half
with the reference solution, half with a wrong final answer. The rollout is the tiny model
sampling 64 prompts x 8 samples x 128 new tokens (the same 512 sequences). The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_seconds  # noqa: E402
from o1jax.data import tasks  # noqa: E402
from o1jax.models import Transformer, preset  # noqa: E402
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
           "verifier_timeouts": metrics["verifier/timeouts"]}
    print(f"{BATCH} responses verified in {reward_s:.2f} s with {args.workers} workers: "
          f"{out['checks_per_s']:,.0f} checks/s (half correct: {accuracy:.2f} rewarded); "
          f"tiny-model rollout of the same 512 x 128 tokens: {rollout_s:.2f} s; "
          f"reward / rollout time = {out['reward_over_rollout_time']:.2f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
