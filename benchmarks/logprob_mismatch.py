"""Rollout vs training log-probs in bf16, before and after recomputing the old log-probs:

    python benchmarks/logprob_mismatch.py

One GRPO iteration of the tiny model (random init, bf16 compute, 32 rows x 16 new tokens) with
``rl.old_logprobs`` = rollout (the sampler's log-probs, f32 decode attention) and = recompute
(veRL's default, ours for bf16): the mismatch between the sampler's and the trainer's
log-probs and the first minibatch's largest |ratio - 1|. Then the same iteration of a tiny
mixture of experts (Qwen3-MoE layout: 8 experts, 2 per token), with the sampler's log-probs,
without and with routing replay (``rl.routing_replay``: the trainer routes each token to the
experts the sampler chose): the share of (token, layer) routings the trainer would pick
differently (``router_mismatch``) and the same mismatch figures. The rollout-mode iteration is
also run with the ``gpu`` attention backend (on a CPU: its decode kernel in interpret mode).
Last line: JSON.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models import Transformer, preset
from o1jax.rl.config import RLConfig
from o1jax.rl.iteration import make_iteration
from o1jax.rl.state import init_state

KEYS = ("logprob_mismatch_mean", "logprob_mismatch_max", "logprob_mismatch_frac",
        "first_ratio_max_dev")


def constant_reward(roll, example_ids):
    r = (roll.tokens[:, -1] % 2).astype(jnp.float32)
    return r, {}


def main():
    rs = np.random.RandomState(0)
    batch = {"tokens": rs.randint(1, 320, (8, 12)).astype(np.int32),
             "mask": np.ones((8, 12), bool), "example_ids": np.arange(8, dtype=np.int32)}
    policy = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, dtype="bfloat16"))
    out = {}
    for mode in ("rollout", "recompute"):
        cfg = RLConfig(algorithm="grpo", batch_prompts=8, group_size=4, max_new_tokens=16,
                       minibatches=2, old_logprobs=mode)
        state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
        it, _ = make_iteration(policy, cfg, constant_reward)
        m = jax.device_get(it(state, batch, jax.random.key(2))[1])
        out[mode] = {k: float(m[k]) for k in KEYS}
        print(f"{mode:>9}: mismatch mean {out[mode][KEYS[0]]:.4f}, max {out[mode][KEYS[1]]:.4f} "
              f"nats, {100 * out[mode][KEYS[2]]:.1f}% of tokens over 0.01; first-minibatch "
              f"max |ratio - 1| {out[mode][KEYS[3]]:.2e}")
    # the same rollout-mode iteration with the gpu attention backend: its cache layout and decode
    # kernel (interpret mode on a CPU) and, for training, XLA's form of the cuDNN call
    kernel_policy = Transformer(policy.cfg.replace(attention="gpu"))
    cfg = RLConfig(algorithm="grpo", batch_prompts=8, group_size=4, max_new_tokens=16,
                   minibatches=2, old_logprobs="rollout")
    it, _ = make_iteration(kernel_policy, cfg, constant_reward)
    state = init_state(kernel_policy.init(jax.random.key(0)), cfg, jax.random.key(1))
    m = jax.device_get(it(state, batch, jax.random.key(2))[1])
    out["rollout_gpu_attention"] = {k: float(m[k]) for k in KEYS}
    print(f"rollout, gpu attention: mismatch mean {m[KEYS[0]]:.4f}, max {m[KEYS[1]]:.4f} nats; "
          f"first-minibatch max |ratio - 1| {m[KEYS[3]]:.2e} "
          f"({m[KEYS[1]] / out['rollout'][KEYS[1]]:.2f}x xla's max)")
    moe = Transformer(preset("tiny", vocab_size=320, max_seq_len=64, dtype="bfloat16",
                             architecture="qwen3_moe", qk_norm=True, num_experts=8,
                             experts_per_token=2, moe_mlp_dim=48))
    for replay in (False, True):
        cfg = RLConfig(algorithm="grpo", batch_prompts=8, group_size=4, max_new_tokens=16,
                       minibatches=2, old_logprobs="rollout", routing_replay=replay)
        state = init_state(moe.init(jax.random.key(0)), cfg, jax.random.key(1))
        it, _ = make_iteration(moe, cfg, constant_reward)
        m = jax.device_get(it(state, batch, jax.random.key(2))[1])
        name = "moe_replay" if replay else "moe"
        out[name] = {k: float(m[k]) for k in KEYS + ("router_mismatch",)}
        print(f"MoE, routing replay {'on ' if replay else 'off'}: router mismatch "
              f"{100 * out[name]['router_mismatch']:.1f}% of (token, layer) routings; log-prob "
              f"mismatch mean {out[name][KEYS[0]]:.4f}, max {out[name][KEYS[1]]:.4f} nats; "
              f"first-minibatch max |ratio - 1| {out[name][KEYS[3]]:.2e}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
