"""Self-play on the embedded default's task: one policy proposes 2-digit arithmetic problems and
solves them; the referee (sympy through the safe parser, in the time-limited worker pool)
checks every proposal and computes its answer; proposer reward = validity x learnability,
solver reward = correctness; one compiled program per iteration.

SFT is the demo's (the sloppy demonstrator, 700 steps) with a quarter of its rows proposer
demonstrations, so the policy knows both roles. ``--config.init_from=WORKDIR:sft`` starts from
another run's SFT policy instead (set ``--config.sft.num_steps`` for the role warm-up, or 0).
``--config.selfplay.enabled=False`` gives the comparison: GRPO on the fixed task distribution
with the same settings. About 18 minutes on 2 CPU cores (see README for the figures).

    python -m o1jax.train --config configs/selfplay.py --workdir /tmp/selfplay
"""

import ml_collections

from configs import arithmetic_ppo


def get_config() -> ml_collections.ConfigDict:
    c = arithmetic_ppo.get_config()
    c.data.max_prompt_len = 16          # proposed problems may be longer than the seed ones
    c.sft.max_len = 112

    c.rl.algorithm = "grpo"             # per role: the solver's groups, the proposer's batch
    c.rl.loss_agg = "token_mean"        # rows the gate leaves out have no tokens to average
    c.rl.critic_warmup = 0
    c.rl.num_iterations = 80
    c.rl.batch_prompts = 16             # solver problems an iteration, proposals included
    c.rl.group_size = 8                 # G solver samples per problem: the pass rate
    c.rl.minibatches = 4                # (16 x 8 solver + 8 proposer rows) / 4

    c.selfplay.enabled = True           # 8 proposals an iteration, 2 examples each, gate
    return c                            # 0.2-0.8, Absolute Zero's learnability (base.py)
