"""o1jax's GRPO iteration against Google Tunix's GRPO on the same work, side by side in one run.

    python benchmarks/peer_tunix.py --peer-python PEER_VENV/bin/python [--steps 5]

The peer environment (installed by you, never by this script; it resolves to our jax 0.10.2):

    python3.11 -m venv PEER_VENV && PEER_VENV/bin/pip install google-tunix==0.1.7

Work, both sides: a Qwen2 of 2.94M parameters (4 layers, hidden 256, 8 query / 4 KV heads,
MLP 688, vocabulary 64, untied, random init), 8 prompts x 8 samples, prompts of 16 tokens, 64
new tokens with no early stop, one update epoch of one minibatch, no KL, f32, one CPU device.
Tunix runs ``benchmarks/tunix_grpo.py`` under ``--peer-python``: its RLCluster + GRPOLearner
with the vanilla rollout engine and no reference model. Ours is
``make_iteration`` (one compiled program; an in-graph reward where Tunix's checks the decoded
sum in Python, a negligible share of its step). Prints each median step time over ``--steps``
steps after the first (compiling) one, each phase (rollout, update), and last a JSON object
with ``o1jax_step_s``, ``tunix_step_s`` and ``ratio`` (ours / theirs).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")   # the work is defined on one CPU device, both sides
sys.path.insert(0, ROOT)

TUNIX_VERSION = "0.1.7"
TUNIX_SIDE = os.path.join(ROOT, "benchmarks", "tunix_grpo.py")   # runs under --peer-python
PROMPTS, G, PROMPT_LEN, NEW, VOCAB = 8, 8, 16, 64, 64
CREATE = (f"python3.11 -m venv PEER_VENV && PEER_VENV/bin/pip install "
          f"google-tunix=={TUNIX_VERSION}")


def check_peer(python: str) -> None:
    """Exits non-zero, saying how to create it, unless ``python`` has Tunix 0.1.7."""
    code = "import importlib.metadata as m, tunix; print(m.version('google-tunix'))"
    try:
        res = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
        version = res.stdout.strip().splitlines()[-1] if res.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, IndexError):
        version = None
    if version != TUNIX_VERSION:
        found = f"found google-tunix {version}" if version else "no importable tunix there"
        sys.exit(f"error: --peer-python {python}: {found}; this benchmark compares with Tunix "
                 f"{TUNIX_VERSION} only. Create the peer environment with:\n    {CREATE}")


def run_ours(steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from o1jax.models import Transformer, preset
    from o1jax.rl import iteration
    from o1jax.rl.advantages import Group
    from o1jax.rl.config import RLConfig
    from o1jax.rl.state import init_state

    model = Transformer(preset("tiny", architecture="qwen2", qkv_bias=True, tie_embeddings=False,
                               vocab_size=VOCAB, hidden_size=256, num_layers=4, num_heads=8,
                               num_kv_heads=4, head_dim=32, mlp_dim=688, rope_theta=1e6,
                               max_seq_len=PROMPT_LEN + NEW))
    cfg = RLConfig(algorithm="grpo", batch_prompts=PROMPTS, group_size=G, max_new_tokens=NEW,
                   temperature=0.9, epochs=1, minibatches=1, kl_coef=0.0, policy_lr=1e-5,
                   rewards=(("correctness", 1.0),))

    def reward_fn(roll, example_ids):   # in-graph: 1 when the first response token is even
        r = (roll.tokens[:, PROMPT_LEN] % 2 == 0).astype(jnp.float32)
        return r, {}

    rs = np.random.RandomState(0)
    batches = [{"tokens": rs.randint(3, VOCAB, (PROMPTS, PROMPT_LEN)).astype(np.int32),
                "mask": np.ones((PROMPTS, PROMPT_LEN), bool),
                "example_ids": np.arange(PROMPTS, dtype=np.int32)} for _ in range(steps + 1)]
    params = model.init(jax.random.key(0))

    def timed(fn, state):
        times = []
        for i, batch in enumerate(batches):
            t = time.perf_counter()
            state = jax.block_until_ready(fn(state, batch, jax.random.key(i)))
            times.append(time.perf_counter() - t)
        return statistics.median(times[1:])

    fused, _ = iteration.make_iteration(model, cfg, reward_fn)   # no stop ids: full length
    fresh = lambda: init_state(jax.tree.map(jnp.copy, params), cfg, jax.random.key(1))  # noqa
    step_s = timed(lambda s, b, k: fused(s, b, k)[0], fresh())   # the state is donated

    # the phases, each its own compiled call
    sampling = cfg.sampling()
    roll_fn = jax.jit(functools.partial(iteration.rollout, policy=model, cfg=cfg,
                                        sampling=sampling))
    groups = (Group(cfg.rows, G, cfg.algorithm),)
    learn_fn = jax.jit(lambda state, roll, scored, key: iteration.learn(
        state, iteration.Experience(roll, scored.rewards, groups, PROMPT_LEN), key, policy=model,
        cfg=cfg, temperature=sampling.logprob_temperature))
    state = fresh()
    phases = {"rollout": [], "update": []}
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        roll = jax.block_until_ready(roll_fn(state, batch, jax.random.key(i)))
        scored = iteration.reward(roll, batch, reward_fn, G)
        t1 = time.perf_counter()
        state, _ = jax.block_until_ready(learn_fn(state, roll, scored, jax.random.key(i)))
        if i:
            phases["rollout"].append(t1 - t0)
            phases["update"].append(time.perf_counter() - t1)
    return {"step_s": step_s, "params_m": model.cfg.num_params() / 1e6,
            **{f"{k}_s": statistics.median(v) for k, v in phases.items()}}


def run_tunix(python: str, steps: int) -> dict:
    cmd = [python, TUNIX_SIDE, "--vocab-size", str(VOCAB), "--hidden", "256",
           "--layers", "4", "--heads", "8", "--kv-heads", "4", "--mlp", "688",
           "--batch-prompts", str(PROMPTS), "--num-generations", str(G),
           "--max-new-tokens", str(NEW), "--max-prompt-len", str(PROMPT_LEN),
           "--num-iterations", "1", "--beta", "0", "--steps", str(steps)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    if res.returncode != 0:
        sys.exit(f"error: {TUNIX_SIDE} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {k: out[k] for k in ("step_s", "params_m", "rollout_s", "update_s")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-python", required=True,
                    help=f"the interpreter of an environment with google-tunix=={TUNIX_VERSION}")
    ap.add_argument("--steps", type=int, default=5, help="measured steps after the first")
    args = ap.parse_args()
    if args.steps < 5:
        ap.error("--steps: at least 5")
    check_peer(args.peer_python)
    ours = run_ours(args.steps)
    theirs = run_tunix(args.peer_python, args.steps)
    if abs(ours["params_m"] - theirs["params_m"]) > 0.01:
        sys.exit(f"error: different models ({ours['params_m']:.3f}M vs "
                 f"{theirs['params_m']:.3f}M parameters): not the same work")
    for name, r in (("o1jax", ours), (f"tunix {TUNIX_VERSION}", theirs)):
        print(f"{name:12s} {r['params_m']:.2f}M: step {r['step_s']:.3f} s (rollout "
              f"{r['rollout_s']}, update {r['update_s']})")
    ratio = ours["step_s"] / theirs["step_s"]
    print(json.dumps({"o1jax_step_s": ours["step_s"], "tunix_step_s": theirs["step_s"],
                      "ratio": ratio, "o1jax": ours, "tunix": theirs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
