"""One RL iteration: time split, update MFU, and one compiled program vs stage by stage.

    python benchmarks/rl_iteration.py [--quick]

Work per iteration (the field notes' Tunix GRPO workload): 8 arithmetic prompts x 8 samples =
64 sequences, 64 new tokens each, 1 epoch x 2 minibatches, the real verifier reward. Configs: the
Tunix-shaped 2.9M Qwen2 (4 layers, hidden 256, heads 8/4, MLP 688; our vocabulary is the
320-entry byte tokenizer instead of 64), tiny, and small25m (~26M).

Staged: rollout, reward (host verifier pool on decoded text) and update each run as a separate
jitted call driven from Python, timed one by one. Fused: ``make_iteration``, one compiled
program with the reward as a host callback. The last line printed is one JSON object.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import start  # noqa: E402
from o1jax.data import tasks  # noqa: E402
from o1jax.flops import update_flops  # noqa: E402
from o1jax.data.pipeline import PromptPipeline  # noqa: E402
from o1jax.data.prompts import PromptFormat  # noqa: E402
from o1jax.models import Transformer, preset  # noqa: E402
from o1jax.rewards.api import default_pool  # noqa: E402
from o1jax.rewards.functions import compute_rewards  # noqa: E402
from o1jax.rewards.in_graph import make_reward_callback  # noqa: E402
from o1jax.rl import iteration  # noqa: E402
from o1jax.rl.advantages import Group  # noqa: E402
from o1jax.rl.config import RLConfig  # noqa: E402
from o1jax.rl.state import init_state  # noqa: E402
from o1jax.tokenizer import byte_tokenizer, response_texts  # noqa: E402

PROMPTS, G, NEW = 8, 8, 64
WEIGHTS = {"correctness": 1.0, "format": 0.1}
CONFIGS = {
    "tunix_shape": dict(preset="tiny", architecture="qwen2", qkv_bias=True, vocab_size=320,
                        hidden_size=256, num_layers=4, num_heads=8, num_kv_heads=4,
                        head_dim=32, mlp_dim=688, max_seq_len=128),
    "tiny": dict(preset="tiny", vocab_size=320, max_seq_len=128),
    "medium": dict(preset="small25m", max_seq_len=128),
}


def bench(name: str, algorithm: str, iters: int, peak: float) -> dict:
    kw = dict(CONFIGS[name])
    model = Transformer(preset(kw.pop("preset"), **kw))
    tok = byte_tokenizer()
    source = list(tasks.generate("arithmetic", "train", 256, difficulty=3))
    pipe = PromptPipeline(source, tok, PROMPTS, PromptFormat(max_prompt_len=16))
    cfg = RLConfig(algorithm=algorithm, epochs=1, minibatches=2, kl_coef=0.0,
                   batch_prompts=PROMPTS, group_size=G, max_new_tokens=NEW)
    sampling = cfg.sampling(tok.stop_ids, tok.pad_id)
    pool = default_pool()
    reward_fn = make_reward_callback(tok, lambda i: source[i], WEIGHTS, pool)

    params = model.init(jax.random.key(0))
    batches = []
    for _ in range(iters + 1):
        b = pipe.next_batch()
        batches.append(({"tokens": b.tokens, "mask": b.mask,
                         "example_ids": b.indices.astype(np.int32)}, b.examples))

    # ---- fused
    fused, _ = iteration.make_iteration(model, cfg, reward_fn, tok.stop_ids, tok.pad_id)
    state = init_state(jax.tree.map(jnp.copy, params), cfg, jax.random.key(1))
    t = time.perf_counter()
    state, m, _ = fused(state, batches[0][0], jax.random.key(0))
    jax.block_until_ready(m)
    fused_compile = time.perf_counter() - t
    fused_times = []
    for i in range(1, iters + 1):
        t = time.perf_counter()
        state, m, _ = fused(state, batches[i][0], jax.random.key(i))
        jax.block_until_ready(m)
        fused_times.append(time.perf_counter() - t)

    # ---- staged
    roll_fn = jax.jit(functools.partial(iteration.rollout, policy=model, cfg=cfg,
                                        sampling=sampling))

    # the stages after the reward: targets -> update -> metrics
    groups, prompt_len = (Group(cfg.rows, G, cfg.algorithm),), batches[0][0]["tokens"].shape[1]
    upd_fn = jax.jit(lambda state, roll, scored, key: iteration.learn(
        state, iteration.Experience(roll, scored.rewards, groups, prompt_len), key, policy=model,
        cfg=cfg, temperature=sampling.logprob_temperature), donate_argnums=(0,))
    state = init_state(jax.tree.map(jnp.copy, params), cfg, jax.random.key(1))
    split = {"rollout": [], "reward": [], "update": []}
    for i in range(iters + 1):
        batch, examples = batches[i]
        t0 = time.perf_counter()
        roll = jax.block_until_ready(roll_fn(state, batch, jax.random.key(i)))
        t1 = time.perf_counter()
        texts = response_texts(roll.tokens, roll.response_mask, roll.finished, tok)
        rewards, rm = compute_rewards(texts, [e for e in examples for _ in range(G)],
                                      np.asarray(roll.finished), WEIGHTS, pool)
        t2 = time.perf_counter()
        scored = iteration.Scored(jnp.asarray(rewards), {k: jnp.asarray(v) for k, v in rm.items()})
        state, m2 = upd_fn(state, roll, scored, jax.random.key(i))
        jax.block_until_ready(m2)
        t3 = time.perf_counter()
        if i:  # the first iteration compiles
            split["rollout"].append(t1 - t0)
            split["reward"].append(t2 - t1)
            split["update"].append(t3 - t2)
    med = {k: float(np.median(v)) for k, v in split.items()}
    staged = sum(med.values())
    fused_s = float(np.median(fused_times))
    rows, length = PROMPTS * G, batches[0][0]["tokens"].shape[1] + NEW
    flops = update_flops(model.cfg, rows, length, cfg.epochs, cfg.uses_critic,
                         cfg.uses_reference)
    return {"params": model.cfg.num_params(), "fused_s": fused_s, "fused_compile_s": fused_compile,
            "staged_s": staged, "rollout_s": med["rollout"], "reward_s": med["reward"],
            "update_s": med["update"], "fused_over_staged_speed": staged / fused_s,
            "update_peak_fraction": flops / med["update"] / peak,
            "reward_mean": float(m["reward_mean"])}


def main():
    quick, peak = start()
    iters = 2 if quick else 5
    out = {"peak_flops_per_s": peak}
    for name, algo in [("tunix_shape", "grpo"), ("tiny", "ppo"), ("medium", "ppo")]:
        r = bench(name, algo, iters, peak)
        print(f"{name:11s} {algo:4s} ({r['params'] / 1e6:.1f}M): fused {r['fused_s']:.3f} s/iter "
              f"(first call {r['fused_compile_s']:.1f} s); staged {r['staged_s']:.3f} s = rollout "
              f"{r['rollout_s']:.3f} + reward {r['reward_s']:.3f} + update {r['update_s']:.3f}; "
              f"fused/staged speed {r['fused_over_staged_speed']:.2f}x; update "
              f"{r['update_peak_fraction']:.3f} of peak")
        out[name] = r
    # headline figures: the ~25M config
    for k in ("fused_over_staged_speed", "update_peak_fraction", "rollout_s", "reward_s",
              "update_s"):
        out[k] = out["medium"][k]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
