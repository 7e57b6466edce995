"""The embedded default with GRPO (no critic, group-normalised advantages) instead of PPO.

    python -m o1jax.train --config configs/arithmetic_grpo.py --workdir /tmp/arith_grpo
"""

import ml_collections

from configs import arithmetic_ppo


def get_config() -> ml_collections.ConfigDict:
    c = arithmetic_ppo.get_config()
    c.rl.algorithm = "grpo"
    c.rl.loss_agg = "seq_mean_token_mean"
    return c
