"""Padding-free training on the demo checkpoint: the RL iteration with and without length
buckets, side by side in one run.

    python benchmarks/padding_free.py --workdir WORKDIR [--iters 5] [--buckets 8]
        [--micro-batch 8]

WORKDIR: command 1's run (configs/arithmetic_ppo.py: PPO with a critic, 16 prompts x 8 samples,
96 new tokens, 2 epochs x 4 minibatches of 32 rows). From its latest RL checkpoint, each
iteration runs once as the demo does (every row over all 96 response columns) and once
padding-free (``rl.length_buckets=B``, ``rl.micro_batch=M``: each minibatch's rows grouped by
length into micro-batches of M, each over the shortest of B response lengths that holds its
rows), from the same state, batch and key. Prints the median seconds of each (after a
compiling call), the speed-up, the share of the padded [rows, columns] the update computed
over, and the largest loss difference; the last line is a JSON object.
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
from o1jax import policy as policy_lib  # noqa: E402
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
    ap.add_argument("--buckets", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=8)
    args = ap.parse_args()
    cfg = arithmetic_ppo.get_config()
    rl = experiment.check_config(cfg, 1)
    policy, tok, fmt = policy_lib.from_config(cfg)
    params = policy_lib.restore_params(args.workdir, policy, stage="rl")[0]
    train = experiment.load_data(cfg, wd.resolve(args.workdir))["train"]
    pipeline = PromptPipeline(train, tok, rl.batch_prompts, fmt, seed=cfg.seed)
    reward_fn = make_reward_callback(tok, lambda i: decode_example(train[i]), rl.reward_weights)
    padding_free = dataclasses.replace(rl, length_buckets=args.buckets,
                                       micro_batch=args.micro_batch)
    variants = {name: make_iteration(policy, c, reward_fn, tok.stop_ids, tok.pad_id)[0]
                for name, c in (("padded", rl), ("padding_free", padding_free))}
    times = {b: [] for b in variants}
    diffs, fractions, longest, mean = [], [], [], []
    for i in range(args.iters + 1):
        b = pipeline.next_batch()
        batch = {"tokens": b.tokens, "mask": b.mask, "example_ids": b.indices.astype(np.int32)}
        out = {}
        for name, it in variants.items():
            state = init_state(jax.tree.map(np.array, params), rl, jax.random.key(1))
            t = time.perf_counter()
            _, m, _ = it(state, batch, jax.random.key(100 + i))
            m = jax.device_get(m)
            if i:   # the first call compiles
                times[name].append(time.perf_counter() - t)
            out[name] = m
        diffs.append(max(abs(float(out["padded"][k]) - float(out["padding_free"][k]))
                         for k in LOSSES))
        fractions.append(round(float(out["padding_free"]["update_token_fraction"]), 3))
        longest.append(float(out["padded"]["response_length_max"]))
        mean.append(round(float(out["padded"]["response_length_mean"]), 1))
    full, free = (statistics.median(times[b]) for b in variants)
    result = {"padded_s": full, "padding_free_s": free, "speedup": full / free,
              "max_loss_diff": max(diffs), "update_token_fraction": fractions,
              "longest_response": longest, "mean_response": mean,
              "prompt_columns": int(cfg.data.max_prompt_len), "max_new_tokens": rl.max_new_tokens,
              "length_buckets": args.buckets, "micro_batch": args.micro_batch}
    print(f"iteration over all {rl.max_new_tokens} response columns: {full:.3f} s; "
          f"padding-free ({args.buckets} length buckets, micro-batches of {args.micro_batch}): "
          f"{free:.3f} s ({full / free:.2f}x); responses mean {mean} longest {longest}; share "
          f"of the padded cells computed {fractions}; largest loss difference {max(diffs):.2e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
