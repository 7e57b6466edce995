"""Search throughput: policy tokens per second of beam search, DVTS and MCTS (verifier calls
included) against plain sampling of about as many tokens, same checkpoint.

    python benchmarks/search.py --workdir DIR --verifier orm:DIR/verifiers/orm [--problems 64]

DIR is a trained workdir (README command 1). Each search runs once to compile and once timed;
plain sampling draws enough samples per problem to generate at least as many tokens as the
search did (one compiled sampler, its first call not timed), timed once just before and once
just after the search. Overhead = plain tokens/s over search tokens/s (target at most 2x); the
top-level ``beam_ratio``, ``dvts_ratio`` and ``mcts_ratio`` are its inverse (target at least
0.5). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from o1jax import workdir as wd  # noqa: E402
from o1jax.experiment import load_problems  # noqa: E402
from o1jax.policy import load_policy  # noqa: E402
from o1jax.rollout import SamplingConfig  # noqa: E402
from o1jax.search import beam, mcts, strategies, value_models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--verifier", required=True, help="critic, orm:PATH or prm:PATH")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--budget", type=int, default=16, help="candidates per step / simulations")
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--step-tokens", type=int, default=28)
    ap.add_argument("--strategies", default="beam,dvts,mcts")
    args = ap.parse_args()
    cfg = wd.load_config(args.workdir)
    (policy, tok, fmt), params = load_policy(args.workdir)
    verifier = value_models.load(args.verifier, policy, args.workdir, steps=True)
    examples = load_problems(cfg, wd.resolve(args.workdir), "test", args.problems)
    n = cfg.eval.max_new_tokens
    runs = {
        name: functools.partial(beam.search, policy, params, examples, tok, verifier,
                                args.budget // args.width, args.width, name == "dvts", fmt, n,
                                args.step_tokens, 1.0)
        for name in ("beam", "dvts")}
    runs["mcts"] = functools.partial(mcts.search, policy, params, examples, tok, verifier,
                                     args.budget, args.width, fmt, n, args.step_tokens, 1.0)
    one = strategies.generate(policy, params, examples, tok, SamplingConfig(
        n, 1.0, stop_ids=tok.stop_ids, pad_id=tok.pad_id), fmt, cfg.eval.batch_prompts)
    mean_len = float(one.lengths.mean())  # to draw as many plain tokens as a search wrote
    out = {}
    for name in args.strategies.split(","):
        run = runs[name]
        _, ledger = run()  # compile
        tokens = float(ledger["tokens"].sum())
        g = max(1, int(np.ceil(tokens / len(examples) / mean_len)))
        sampling = SamplingConfig(n, 1.0, num_samples=g, stop_ids=tok.stop_ids,
                                  pad_id=tok.pad_id)
        batch = max(1, cfg.eval.batch_prompts // g)
        # plain sampling timed just before and just after the search: a shared machine's load
        # drifts within minutes, and the ratio should compare the two under the same load
        plain_runs = [strategies.generate(policy, params, examples, tok, sampling, fmt, batch)]
        t = time.perf_counter()
        _, ledger = run()
        seconds = time.perf_counter() - t
        plain_runs.append(strategies.generate(policy, params, examples, tok, sampling, fmt,
                                              batch))
        tokens = float(ledger["tokens"].sum())
        plain_tokens = float(sum(gen.lengths.sum() for gen in plain_runs))
        plain_s = sum(gen.seconds for gen in plain_runs)
        plain = plain_tokens / plain_s
        ours = tokens / seconds
        out[name] = dict(search_tokens=tokens, search_s=seconds, search_tokens_per_s=ours,
                         plain_tokens=plain_tokens, plain_s=plain_s,
                         plain_tokens_per_s=plain, overhead=plain / ours)
        print(f"{name}: {ours:,.0f} policy tokens/s ({tokens:,.0f} tokens in {seconds:.1f} s, "
              f"verifier included); plain sampling {plain:,.0f} tokens/s ({g} samples per "
              f"problem); ratio {ours / plain:.2f} (target >= 0.5)")
    out.update({f"{name}_ratio": r["search_tokens_per_s"] / r["plain_tokens_per_s"]
                for name, r in list(out.items())})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
