"""One GRPO iteration with every weight trained against LoRA adapters, side by side:

    python benchmarks/lora.py [--quick]

small25m (~26M parameters, 6 layers), 8 prompts x 8 samples, 32 new tokens, 1 epoch x 2
minibatches, a reward computed in the graph (so the verifier pool's time is not in either).
Full fine-tuning keeps a reference copy for its KL term; LoRA (rank 16 on every projection)
keeps the base once, which is also its reference. The two compiled iterations run alternately
(``--quick``: 3 rounds, else 7) and the median of each is reported with their ratio, and the
train state's bytes (parameters, optimizer moments, reference). Last line: JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import block, start  # noqa: E402
from o1jax.models import Transformer, preset  # noqa: E402
from o1jax.rl.config import RLConfig  # noqa: E402
from o1jax.rl.iteration import make_iteration  # noqa: E402
from o1jax.rl.state import init_state  # noqa: E402

PROMPTS, G, NEW, PROMPT_LEN = 8, 8, 32, 16


def parity_reward(roll, example_ids):
    """1 for an even last token: a reward that varies within groups, computed in the graph."""
    r = (roll.tokens[:, -1] % 2 == 0).astype(jnp.float32)
    return r, {}


def _bytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def main():
    quick, _ = start()
    policy = Transformer(preset("small25m", max_seq_len=PROMPT_LEN + NEW))
    params = policy.init(jax.random.key(0))
    rs = np.random.RandomState(0)
    batch = {"tokens": rs.randint(1, 16000, (PROMPTS, PROMPT_LEN)).astype(np.int32),
             "mask": np.ones((PROMPTS, PROMPT_LEN), bool),
             "example_ids": np.arange(PROMPTS, dtype=np.int32)}
    runs = {}
    for name, extra in (("full", {}), ("lora", {"lora_rank": 16, "lora_alpha": 32.0})):
        cfg = RLConfig(algorithm="grpo", batch_prompts=PROMPTS, group_size=G,
                       max_new_tokens=NEW, minibatches=2, kl_coef=0.01, **extra)
        state = init_state(jax.tree.map(jnp.copy, params), cfg, jax.random.key(1))
        it, _ = make_iteration(policy, cfg, parity_reward)
        sizes = {"trained": _bytes(state.policy), "optimizer": _bytes(state.policy_opt),
                 "reference": _bytes(state.ref), "frozen_base": _bytes(state.base)}
        runs[name] = {"it": it, "state": state, "times": [], "bytes": sizes}
        block(it(jax.tree.map(jnp.copy, state), batch, jax.random.key(2)))   # compile, warm up
    for r in range(3 if quick else 7):
        for name, run in runs.items():
            state = jax.tree.map(jnp.copy, run["state"])     # the iteration donates its state
            t = time.perf_counter()
            block(run["it"](state, batch, jax.random.key(3 + r)))
            run["times"].append(time.perf_counter() - t)
    out = {name: {"iteration_s": statistics.median(run["times"]), **run["bytes"]}
           for name, run in runs.items()}
    out["lora_over_full_time"] = out["lora"]["iteration_s"] / out["full"]["iteration_s"]
    for name in ("full", "lora"):
        o = out[name]
        print(f"{name:>4}: iteration {o['iteration_s']:.3f} s; trained {o['trained'] / 2**20:.1f}"
              f" MiB, optimizer {o['optimizer'] / 2**20:.1f} MiB, reference "
              f"{o['reference'] / 2**20:.1f} MiB, frozen base {o['frozen_base'] / 2**20:.1f} MiB")
    print(f"LoRA / full iteration time: {out['lora_over_full_time']:.2f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
