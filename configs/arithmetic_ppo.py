"""The embedded default: a tiny model trained from scratch on 2-digit arithmetic.

SFT imitates the worked solutions of a sloppy demonstrator who forgets 60% of the carries and
borrows (``data.slip_rate``; the true answers, which the verifier checks, are unchanged), so
teacher forcing yields a mediocre policy that copies the slips. PPO with a critic then optimises
the verifier's reward (k3 KL to the SFT policy) and learns to keep the carries: RL exceeding its
demonstrations is the contrast between GPT-style imitation and o1-style RL. Then a held-out
evaluation (greedy and maj@16), with 8 more along the way (the train-time curve). About 15
minutes on 2 CPU cores (see README for the figures, and for the run with clean demonstrations,
where PPO adds only 2.5 points).

    python -m o1jax.train --config configs/arithmetic_ppo.py --workdir /tmp/arith
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_config()
    c.model.overrides = ml_collections.ConfigDict({
        "vocab_size": 320, "hidden_size": 128, "num_layers": 4, "num_heads": 4,
        "num_kv_heads": 2, "head_dim": 32, "mlp_dim": 384, "max_seq_len": 128})

    c.data.task = "arithmetic"
    c.data.difficulty = 2
    c.data.num_train = 8000
    c.data.num_test = 200
    c.data.max_prompt_len = 12
    c.data.slip_rate = 0.6            # the SFT demonstrations forget 60% of carries and borrows

    c.sft.num_steps = 700
    c.sft.batch_size = 32
    c.sft.max_len = 112
    c.sft.lr = 3e-3
    c.sft.warmup_steps = 30

    c.rl.algorithm = "ppo"
    c.rl.num_iterations = 80
    c.rl.batch_prompts = 16
    c.rl.group_size = 8
    c.rl.max_new_tokens = 96
    c.rl.temperature = 1.0
    c.rl.epochs = 2
    c.rl.minibatches = 4
    c.rl.policy_lr = 3e-5
    c.rl.value_lr = 1e-3
    c.rl.critic_warmup = 10           # iterations that train only the critic
    c.rl.kl_coef = 0.01               # k3 KL to the SFT policy, as a loss term
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0})

    c.eval.num_examples = 200
    c.eval.max_new_tokens = 96
    c.eval.maj_k = 16
    c.eval.batch_prompts = 64

    c.checkpoint.every = 20
    return c
