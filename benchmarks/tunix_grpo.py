"""Tunix's side of ``benchmarks/peer_tunix.py``: Google Tunix 0.1.7's GRPO on a tiny random Qwen2.

    PEER_VENV/bin/python benchmarks/tunix_grpo.py [--steps 5]

Runs in an environment with ``google-tunix==0.1.7`` (``python3.11 -m venv PEER_VENV &&
PEER_VENV/bin/pip install google-tunix==0.1.7``), never in o1jax's: it imports nothing of o1jax,
only Tunix and what Tunix installs. Wired as Tunix's GRPO examples are: a Qwen2 with every
parameter drawn from a normal distribution (``dummy_model_creator``), an ``RLCluster`` with the
vanilla rollout engine on a one-device mesh, a ``GRPOLearner`` and ``learner.train(batches)``.
Prompts are synthetic sums ("12+35="), encoded one character per token; the reward is 1 when
the decoded completion contains the sum. The end-of-sequence id lies outside the vocabulary,
so every completion has exactly ``--max-new-tokens`` tokens.

A step (rollout, rewards and advantages, update) is timed from the learner's pull of one prompt
batch to its pull of the next (the last one to ``train()`` returning with the parameters ready);
the first step compiles and is left out of the median. The rollout and update times of a step
are Tunix's own perf spans. The last line printed is one JSON object: ``tunix``, ``params_m``,
``step_s``, ``rollout_s``, ``update_s`` (medians, seconds), ``first_step_s``, ``step_times_s``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import statistics
import string
import sys
import time
import warnings

TUNIX_VERSION = "0.1.7"
PAD, BOS = 0, 1
SPECIALS = 3   # pad, beginning of sequence, and an end-of-sequence id no completion reaches
CHARACTERS = string.digits + "+-*/=()., " + string.ascii_letters


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=688)
    ap.add_argument("--init-scale", type=float, default=0.02, help="std of every parameter")
    ap.add_argument("--batch-prompts", type=int, default=8)
    ap.add_argument("--num-generations", type=int, default=8, help="G, samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-prompt-len", type=int, default=16)
    ap.add_argument("--num-iterations", type=int, default=1, help="GRPO's update epochs (mu)")
    ap.add_argument("--beta", type=float, default=0.0, help="KL coefficient; > 0 adds a reference")
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--steps", type=int, default=5, help="measured steps after the first")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps: at least 1")
    if args.vocab_size < SPECIALS + len(string.digits + "+-*/=()., "):
        ap.error(f"--vocab-size {args.vocab_size}: too small for the digits, '+' and '='")
    return args


class CharTokenizer:
    """One token per character; what Tunix's TokenizerAdapter needs (encode, decode, and the
    bos, eos and pad ids). The eos id is ``vocab_size``: the sampler never draws it."""

    def __init__(self, vocab_size: int):
        chars = CHARACTERS[:vocab_size - SPECIALS]
        self.vocab_size = vocab_size
        self.ids = {c: i + SPECIALS for i, c in enumerate(chars)}
        self.chars = {i: c for c, i in self.ids.items()}

    def encode(self, text: str, **_) -> list[int]:
        return [self.ids[c] for c in text]

    def decode(self, ids, **_) -> str:
        return "".join(self.chars.get(int(i), "") for i in ids)

    def bos_id(self) -> int:
        return BOS

    def eos_id(self) -> int:
        return self.vocab_size

    def pad_id(self) -> int:
        return PAD


def sum_problems(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    pairs = [(rng.randint(0, 99), rng.randint(0, 99)) for _ in range(n)]
    return [(f"{a}+{b}=", a + b) for a, b in pairs]


class PulledBatches:
    """The prompt batches, cycling over ``problems``; records when the learner pulls each
    (``time.perf_counter`` seconds), which is when its step begins."""

    def __init__(self, problems: list[tuple[str, int]], batch: int, count: int, np):
        self.problems, self.batch, self.count, self.np = problems, batch, count, np
        self.pulled: list[float] = []

    def __iter__(self):
        for k in range(self.count):
            self.pulled.append(time.perf_counter())
            rows = [self.problems[(k * self.batch + i) % len(self.problems)]
                    for i in range(self.batch)]
            yield {"prompts": self.np.array([q for q, _ in rows]),
                   "answer": self.np.array([a for _, a in rows], dtype=self.np.int32)}


def qwen2(args, mesh):
    """A Qwen2 of the given shapes (untied embeddings, f32), every parameter random normal:
    the constructor alone zero-initialises some kernels, expecting a checkpoint."""
    import jax.numpy as jnp
    from tunix.models import dummy_model_creator
    from tunix.models.qwen2 import model as qwen2_lib

    config = qwen2_lib.ModelConfig(
        num_layers=args.layers, vocab_size=args.vocab_size, embed_dim=args.hidden,
        hidden_dim=args.mlp, num_heads=args.heads, head_dim=args.hidden // args.heads,
        num_kv_heads=args.kv_heads, rope_theta=1_000_000, norm_eps=1e-6,
        use_tied_embedding=False, dtype=jnp.float32, param_dtype=jnp.float32)
    return dummy_model_creator.create_dummy_model(qwen2_lib.Qwen2, config, mesh=mesh,
                                                  random_seed=args.seed, scale=args.init_scale)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        version = importlib.metadata.version("google-tunix")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != TUNIX_VERSION:
        found = f"google-tunix {version}" if version else "no google-tunix"
        sys.exit(f"error: {sys.executable} has {found}; this benchmark is written for Tunix "
                 f"{TUNIX_VERSION}: run it with the interpreter of an environment made by\n"
                 f"    python3.11 -m venv PEER_VENV && PEER_VENV/bin/pip install "
                 f"google-tunix=={TUNIX_VERSION}")
    os.environ.setdefault("TQDM_DISABLE", "1")   # read when Tunix imports tqdm
    import jax
    import numpy as np
    import optax
    import tunix
    from flax import nnx
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout
    from tunix.utils import mesh as mesh_lib

    # Tunix's perf export averages an empty list of reference times when beta is 0
    warnings.filterwarnings("ignore", "Mean of empty slice")
    warnings.filterwarnings("ignore", "invalid value encountered")

    steps = 1 + args.steps
    # Tunix's helper makes the mesh with AxisType.Auto; the models' embedding gather refuses
    # jax.make_mesh's default, Explicit
    mesh = mesh_lib.create_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1])
    actor = qwen2(args, mesh)
    reference = qwen2(args, mesh) if args.beta else None
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(actor, nnx.Param)))
    roles = rl_cluster_lib.Role
    cluster_config = rl_cluster_lib.ClusterConfig(
        role_to_mesh={roles.ACTOR: mesh, roles.REFERENCE: mesh, roles.ROLLOUT: mesh},
        rollout_engine="vanilla", offload_to_cpu=False,
        training_config=rl_cluster_lib.RLTrainingConfig(
            actor_optimizer=optax.adamw(args.lr), eval_every_n_steps=10**9, max_steps=steps,
            mini_batch_size=args.batch_prompts, train_micro_batch_size=args.batch_prompts,
            metrics_logging_options=None, checkpoint_root_directory=None),
        rollout_config=base_rollout.RolloutConfig(
            max_tokens_to_generate=args.max_new_tokens, max_prompt_length=args.max_prompt_len,
            kv_cache_size=args.max_prompt_len + args.max_new_tokens,
            temperature=args.temperature, top_p=1.0, top_k=None))
    perf = tunix.PerfMetricsConfig()
    perf.custom_export_fn = tunix.PerfMetricsExport.from_cluster_config(cluster_config)
    cluster = rl_cluster_lib.RLCluster(actor=actor, reference=reference,
                                       tokenizer=CharTokenizer(args.vocab_size),
                                       cluster_config=cluster_config, perf_config=perf)

    phases: dict[str, dict[int, float]] = {"rollout_time": {}, "actor_train_time": {}}

    def record(buffer):   # a step's perf spans arrive tagged with the next step's number
        for phase, by_step in phases.items():
            values = buffer.metrics.get(f"perf/sum/{phase}", ((),))[0]
            if len(values):
                by_step[buffer.global_steps - 1] = float(np.mean(values))

    cluster.with_external_metrics_logger(record)

    def reward(prompts, completions, answer, **_):
        return [float(str(int(a)) in c) for c, a in zip(completions, answer)]

    learner = grpo_learner.GRPOLearner(
        rl_cluster=cluster, reward_fns=[reward],
        algo_config=grpo_learner.GRPOConfig(num_generations=args.num_generations,
                                            num_iterations=args.num_iterations,
                                            beta=args.beta, epsilon=0.2))
    batches = PulledBatches(sum_problems(64, args.seed), args.batch_prompts, steps, np)
    learner.train(batches)
    jax.block_until_ready(nnx.state(cluster.actor_trainer.model))
    marks = batches.pulled + [time.perf_counter()]
    if len(batches.pulled) != steps:
        sys.exit(f"error: the learner pulled {len(batches.pulled)} batches, not {steps}")
    step_s = [b - a for a, b in zip(marks, marks[1:])]

    def measured(phase: str) -> float | None:
        values = [v for step, v in phases[phase].items() if step >= 1]
        return statistics.median(values) if values else None

    result = {"tunix": version, "params_m": params / 1e6,
              "step_s": statistics.median(step_s[1:]), "rollout_s": measured("rollout_time"),
              "update_s": measured("actor_train_time"), "first_step_s": step_s[0],
              "step_times_s": step_s}
    print(f"tunix {version}, {params / 1e6:.2f}M parameters: step "
          f"{result['step_s']:.3f} s (median of {args.steps}; the first, compiling, "
          f"{step_s[0]:.1f} s)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
