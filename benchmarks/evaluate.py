"""The evaluate command's overhead: samples per second of ``o1jax.search.evaluation.evaluate`` against a
bare loop over the same compiled sampler, on the same problems, batches and budget.

    python benchmarks/evaluate.py --workdir DIR [--problems 200] [--samples 16]

DIR is a trained workdir (README command 1): a trained policy writes answers to extract, verify
and vote on, as the command does in use. Both sides sample ``--samples`` responses per problem
at temperature 1 with the run's token limit; the bare loop only samples and copies the tokens
to the host. The command also decodes the texts, verifies each response in the worker pool,
extracts and groups the answers and scores sample / majority / pass@k at every budget. First
calls (compilation) are left out on both sides. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from o1jax import workdir as wd  # noqa: E402
from o1jax.data.prompts import encode_prompt, pad_prompts  # noqa: E402
from o1jax.search.evaluation import evaluate  # noqa: E402
from o1jax.search.spec import EvalSpec  # noqa: E402
from o1jax.experiment import load_problems  # noqa: E402
from o1jax.policy import load_policy  # noqa: E402
from o1jax.rollout import SamplingConfig, make_sampler  # noqa: E402


def bare_loop(policy, params, prompts, tokenizer, spec: EvalSpec, samples: int) -> float:
    """Seconds of the sampler calls alone, batches laid out as the command lays them out."""
    sampling = SamplingConfig(spec.max_new_tokens, spec.temperature, num_samples=samples,
                              stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id)
    sampler = make_sampler(policy, sampling, gather=True)
    per = max(1, spec.batch_prompts // samples)
    key = jax.random.key(spec.seed + 1)
    seconds = 0.0
    for start in range(0, len(prompts), per):
        chunk = prompts[start:start + per]
        tokens, mask = pad_prompts(chunk + [chunk[-1]] * (per - len(chunk)), tokenizer.pad_id,
                                   spec.max_prompt_len)
        if start == 0:
            jax.block_until_ready(sampler(params, tokens, mask, key))
        t = time.perf_counter()
        jax.block_until_ready(sampler(params, tokens, mask, jax.random.fold_in(key, start)))
        seconds += time.perf_counter() - t
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, help="a trained workdir (README command 1)")
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each side")
    args = ap.parse_args()
    cfg = wd.load_config(args.workdir)
    (policy, tokenizer, prompt), params = load_policy(args.workdir)
    examples = load_problems(cfg, wd.resolve(args.workdir), "test", args.problems)
    budgets = tuple(k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= args.samples)
    spec = EvalSpec(max_prompt_len=cfg.data.max_prompt_len,
                    max_new_tokens=cfg.eval.max_new_tokens, strategies=("sample", "majority"),
                    budgets=budgets, temperature=cfg.eval.temperature,
                    batch_prompts=cfg.eval.batch_prompts, seed=cfg.seed,
                    prompt=prompt)
    prompts = [encode_prompt(e, tokenizer, prompt) for e in examples]
    n = len(examples) * args.samples
    bares, runs = [], []
    for _ in range(args.repeats):  # alternated, so that a slow spell of the machine hits both
        bares.append(bare_loop(policy, params, prompts, tokenizer, spec, args.samples))
        runs.append(evaluate(policy, params, examples, tokenizer, spec).timing)
    bare = statistics.median(bares)
    timing = sorted(runs, key=lambda t: t["total_s"] - t["warmup_s"])[len(runs) // 2]
    ours = timing["total_s"] - timing["warmup_s"]
    overhead = ours / bare - 1
    print(f"{n} samples ({len(examples)} problems x {args.samples}), "
          f"{cfg.eval.max_new_tokens} new tokens at most")
    print(f"bare sampler loop:   {n / bare:8.1f} samples/s ({bare:.2f} s)")
    print(f"evaluate command:    {n / ours:8.1f} samples/s ({ours:.2f} s: sampling "
          f"{timing['sampling_s']:.2f} s, verification, voting and bookkeeping "
          f"{timing['other_s']:.2f} s)")
    print(f"command / bare: {bare / ours:.2f}x the samples per second: the command takes "
          f"{100 * overhead:.1f}% longer than sampling alone (target < 10%); medians of "
          f"{args.repeats} alternating runs")
    print(json.dumps(dict(samples=n, bare_samples_per_s=n / bare, command_samples_per_s=n / ours,
                          ratio=bare / ours, overhead=overhead, **timing)))


if __name__ == "__main__":
    main()
