"""Which compiled programs grow with depth, and the decode loop's two forms.

    python benchmarks/compile_depth.py [--quick] [--depths 4,32] [--decode-depths 4,24] [--rl]

Compile time (wall seconds of ``jax.jit(f).lower(...).compile()``, abstract inputs) at
small25m widths with ``num_layers`` = each of ``--depths``, and its ratio deepest/shallowest,
of: the sampler (``sample``, a few new tokens) with its decode loop unrolled over layers and
scanned (``ModelConfig.scan_decode_from``); scoring (``token_logprobs``, forward and backward);
with ``--rl`` the whole RL iteration (rollout + scoring + update; a reward computed in the graph
stands in for the host verifier). Batch and lengths are tiny: compile time does not depend on
them. Then per-token decode time of both forms at each of ``--decode-depths`` (greedy, no stop
token, so every row decodes every step). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.common import median_seconds  # noqa: E402
from o1jax.models import Transformer, preset  # noqa: E402
from o1jax.rl import iteration  # noqa: E402
from o1jax.rl.config import RLConfig  # noqa: E402
from o1jax.rl.state import init_state  # noqa: E402
from o1jax.rollout import SamplingConfig  # noqa: E402
from o1jax.rollout.sampler import sample  # noqa: E402
from o1jax.rollout.scoring import token_logprobs  # noqa: E402

FORMS = {"unrolled": 10 ** 9, "scanned": 1}    # scan_decode_from of each decode form
BATCH, PROMPT, NEW = 2, 8, 4                   # the compiled programs' shapes
DECODE_BATCH, DECODE_NEW = 16, 48              # the decode timing's


def model_at(depth: int, form: str = "unrolled") -> Transformer:
    return Transformer(preset("small25m", num_layers=depth, max_seq_len=256,
                              scan_decode_from=FORMS[form]))


def compile_seconds(fn, *args) -> float:
    t = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - t


def batch_shapes(rows: int, length: int):
    return (jax.ShapeDtypeStruct((rows, length), jnp.int32),
            jax.ShapeDtypeStruct((rows, length), jnp.bool_))


def sampler_compile(depth: int, form: str) -> float:
    model = model_at(depth, form)
    cfg = SamplingConfig(max_new_tokens=NEW, temperature=1.0)
    fn = functools.partial(sample, model, cfg=cfg)
    return compile_seconds(lambda p, t, m, k: fn(p, t, m, k), model.param_shapes(),
                           *batch_shapes(BATCH, PROMPT), jax.random.key(0))


def scoring_compile(depth: int) -> float:
    model = model_at(depth)
    loss = lambda p, t, m: jnp.sum(token_logprobs(model, p, t, m)[0])  # noqa: E731
    return compile_seconds(jax.grad(loss), model.param_shapes(), *batch_shapes(BATCH, PROMPT))


def rl_iteration_compile(depth: int, form: str) -> float:
    model = model_at(depth, form)
    cfg = RLConfig(algorithm="grpo", epochs=1, minibatches=2, kl_coef=0.0, batch_prompts=BATCH,
                   group_size=2, max_new_tokens=NEW)

    def reward_fn(roll, example_ids):
        return roll.lengths.astype(jnp.float32) / NEW, {}
    step, _ = iteration.make_iteration(model, cfg, reward_fn, stop_ids=(1,))
    state = jax.eval_shape(lambda k: init_state(model.init(k), cfg, k), jax.random.key(0))
    tokens, mask = batch_shapes(BATCH, PROMPT)
    batch = {"tokens": tokens, "mask": mask,
             "example_ids": jax.ShapeDtypeStruct((BATCH,), jnp.int32)}
    t = time.perf_counter()
    step.lower(state, batch, jax.random.key(0)).compile()
    return time.perf_counter() - t


def decode_ms_per_token(depth: int, form: str, repeats: int) -> float:
    """Median wall ms of one decode step of DECODE_BATCH rows (a whole ``sample`` call of
    DECODE_NEW tokens, its prefill included, over DECODE_NEW)."""
    model = model_at(depth, form)
    params = model.init(jax.random.key(0))
    cfg = SamplingConfig(max_new_tokens=DECODE_NEW, greedy=True)
    run = jax.jit(functools.partial(sample, model, cfg=cfg))
    tokens = jnp.ones((DECODE_BATCH, PROMPT), jnp.int32)
    mask = jnp.ones((DECODE_BATCH, PROMPT), bool)
    return 1e3 * median_seconds(lambda: run(params, tokens, mask, jax.random.key(0)),
                                repeats=repeats) / DECODE_NEW


def ratio(row: dict) -> float:
    secs = list(row.values())
    return round(secs[-1] / secs[0], 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer timing repeats")
    ap.add_argument("--depths", default="4,32")
    ap.add_argument("--decode-depths", default="4,24")
    ap.add_argument("--rl", action="store_true", help="also compile the whole RL iteration")
    args = ap.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    rows = {f"sampler_{form}": {d: sampler_compile(d, form) for d in depths} for form in FORMS}
    rows["scoring_grad"] = {d: scoring_compile(d) for d in depths}
    if args.rl:
        rows.update({f"rl_iteration_{form}": {d: rl_iteration_compile(d, form) for d in depths}
                     for form in FORMS})
    for name, row in rows.items():
        print(f"compile {name:22s} " + "  ".join(f"L={d}: {s:6.1f} s" for d, s in row.items())
              + f"  ratio {ratio(row)}")
    decode = {form: {d: decode_ms_per_token(d, form, 3 if args.quick else 5)
                     for d in (int(x) for x in args.decode_depths.split(","))} for form in FORMS}
    for form, row in decode.items():
        print(f"decode {form:9s} " + "  ".join(f"L={d}: {ms:6.2f} ms/token"
                                               for d, ms in row.items()))
    print(json.dumps({
        "compile_s": {k: {str(d): round(s, 2) for d, s in v.items()} for k, v in rows.items()},
        "compile_ratio": {k: ratio(v) for k, v in rows.items()},
        "decode_ms_per_token": {k: {str(d): round(ms, 2) for d, ms in v.items()}
                                for k, v in decode.items()},
        "machine": f"{os.cpu_count()} CPU cores, {os.getloadavg()[0]:.1f} load"}))


if __name__ == "__main__":
    main()
