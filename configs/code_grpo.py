"""Rewards beyond math: write a small Python function from its description, rewarded by running
its unit tests in the sandbox (o1jax/data/code_tasks.py, o1jax/rewards/sandbox.py; needs
bubblewrap: apt-get install bubblewrap).

The thinking config's model, trained from scratch: SFT on demonstrations of level-2 problems
(three operations, one per line), then GRPO with correctness (every test passes) and a small
share for the tests passed, then the held-out split; the hard split has a parity branch (level
3). Measured (docs/results.md, "Code checked by running it"): SFT 11.0% -> GRPO 14.0% held-out
greedy in 19 minutes (300 SFT steps do not teach copying the constants); with 900 SFT steps
97.0% -> 98.5%.

    python -m o1jax.train --config configs/code_grpo.py --workdir /tmp/code_grpo
"""

import ml_collections

from configs import thinking


def get_config() -> ml_collections.ConfigDict:
    c = thinking.get_config()
    c.model.overrides.max_seq_len = 352   # a hard-split prompt (<= 160) and 192 new tokens

    c.data.task = "code_functions"
    c.data.difficulty = 2             # three operations; the hard split adds a parity branch
    c.data.num_train = 6000
    c.data.max_prompt_len = 160       # the hard split's questions run to about 150 characters

    c.sft.num_steps = 300
    c.sft.max_len = 192

    c.rl.num_iterations = 40
    c.rl.max_new_tokens = 128         # a level-2 solution is about 80 characters
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0, "tests_passed": 0.2})

    c.eval.max_new_tokens = 192       # a level-3 one about 140
    c.eval.curve_points = 3
    return c
