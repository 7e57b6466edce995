"""Padding-free training on the demo checkpoint: the RL iteration with and without length
buckets, side by side in one run.

    python benchmarks/padding_free.py --workdir WORKDIR [--iters 5]

WORKDIR: command 1's run (configs/arithmetic_ppo.py: PPO with a critic, 16 prompts x 8 samples,
96 new tokens, 2 epochs x 4 minibatches). From its latest RL checkpoint, each iteration runs
once with ``rl.length_buckets=1`` (scoring and update over all 96 response columns) and once
with 4 (over the shortest of 24, 48, 72, 96 that holds the longest response), from the same
state, batch and key. Prints the median seconds of each (after a compiling call), the speed-up,
and the largest loss difference; the last line is a JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import arithmetic_ppo  # noqa: E402
from o1jax import experiment  # noqa: E402
from o1jax import workdir as wd  # noqa: E402
from o1jax.data.pipeline import PromptPipeline, decode_example  # noqa: E402
from o1jax.rewards.in_graph import make_reward_callback  # noqa: E402
from o1jax.rl.iteration import make_iteration  # noqa: E402
from o1jax.rl.state import init_state  # noqa: E402

LOSSES = ("policy_loss", "value_loss", "entropy", "kl")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, help="command 1's run (an RL checkpoint)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--buckets", type=int, default=4)
    args = ap.parse_args()
    cfg = arithmetic_ppo.get_config()
    rl = experiment.check_config(cfg, 1)
    policy, tok = experiment.build_model(cfg, None)
    params = wd.policy_params(wd.load_state(args.workdir, stage="rl"))
    train = experiment.load_data(cfg, wd.resolve(args.workdir))["train"]
    pipeline = PromptPipeline(train, tok, rl.batch_prompts, cfg.data.max_prompt_len,
                              seed=cfg.seed, template=cfg.data.template)
    reward_fn = make_reward_callback(tok, lambda i: decode_example(train[i]), rl.reward_weights)
    variants = {b: make_iteration(policy, dataclasses.replace(rl, length_buckets=b), reward_fn,
                                  tok.stop_ids, tok.pad_id)[0] for b in (1, args.buckets)}
    times = {b: [] for b in variants}
    diffs, columns, longest = [], [], []
    for i in range(args.iters + 1):
        b = pipeline.next_batch()
        batch = {"tokens": b.tokens, "mask": b.mask, "example_ids": b.indices.astype(np.int32)}
        out = {}
        for buckets, it in variants.items():
            state = init_state(jax.tree.map(np.array, params), rl, jax.random.key(1))
            t = time.perf_counter()
            _, m = it(state, batch, jax.random.key(100 + i))
            m = jax.device_get(m)
            if i:   # the first call compiles
                times[buckets].append(time.perf_counter() - t)
            out[buckets] = m
        diffs.append(max(abs(float(out[1][k]) - float(out[args.buckets][k])) for k in LOSSES))
        columns.append(float(out[args.buckets]["update_columns"]))
        longest.append(float(out[1]["response_length_max"]))
    full, bucketed = (statistics.median(times[b]) for b in (1, args.buckets))
    result = {"full_s": full, "bucketed_s": bucketed, "speedup": full / bucketed,
              "max_loss_diff": max(diffs), "update_columns": columns,
              "longest_response": longest, "prompt_columns": int(cfg.data.max_prompt_len),
              "max_new_tokens": rl.max_new_tokens}
    print(f"iteration over all {rl.max_new_tokens} response columns: {full:.3f} s; with "
          f"{args.buckets} length buckets: {bucketed:.3f} s ({full / bucketed:.2f}x); longest "
          f"responses {longest}, columns trained {columns}; largest loss difference "
          f"{max(diffs):.2e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
