"""Thinking that pays: Countdown written as a stream of search (o1jax/data/search_tasks.py).

A tiny model trained from scratch imitates the searches of several solvers (best-first,
depth-first, random order, breadth-limited, some cut short by a budget): one move per line, the
state it leads to, dead ends, back-ups to an earlier state, the expression boxed at the end. SFT
teaches the search, not the answer; GRPO then rewards reaching the target within the token
budget, so the policy learns which moves to try first. Held-out evaluation (greedy, maj@8) on 3
numbers; the hard split has 4. Test-time compute on the checkpoint: ``python -m
o1jax.evaluate`` with budget forcing over thinking budgets (README, command 4). Seed 0 gave SFT
20.0% -> GRPO 36.0% greedy, budget forcing 7.5% at 32 tokens -> 36.0% at 256 and beyond; the
hard split stays at 2% (docs/results.md, "Thinking that pays").

    python -m o1jax.train --config configs/thinking.py --workdir /tmp/thinking
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.model.overrides = ml_collections.ConfigDict({
        "vocab_size": 320, "hidden_size": 128, "num_layers": 4, "num_heads": 4,
        "num_kv_heads": 2, "head_dim": 32, "mlp_dim": 384, "max_seq_len": 1088})

    c.data.task = "countdown_search"
    c.data.difficulty = 1             # 3 numbers; the hard split 4
    c.data.num_train = 8000
    c.data.num_test = 200
    c.data.max_prompt_len = 32

    c.sft.num_steps = 800
    c.sft.batch_size = 32
    c.sft.max_len = 192
    c.sft.lr = 3e-3
    c.sft.warmup_steps = 30

    c.rl.algorithm = "grpo"
    c.rl.loss_agg = "seq_mean_token_mean"
    c.rl.num_iterations = 60
    c.rl.batch_prompts = 16
    c.rl.group_size = 8
    c.rl.max_new_tokens = 256
    c.rl.temperature = 1.0
    c.rl.epochs = 1
    c.rl.minibatches = 2
    c.rl.policy_lr = 1e-4
    c.rl.kl_coef = 0.0
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0})

    c.eval.num_examples = 200
    c.eval.max_new_tokens = 256
    c.eval.maj_k = 8
    c.eval.batch_prompts = 100
    c.eval.curve_points = 4

    c.checkpoint.every = 20
    return c
