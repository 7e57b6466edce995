"""Rewards beyond math: write a small Python function from its description, rewarded by running
its unit tests in the sandbox (o1jax/data/code_tasks.py, o1jax/rewards/sandbox.py; needs
bubblewrap: apt-get install bubblewrap).

The thinking config's model, trained from scratch: SFT on a sloppy demonstrator's level-2
solutions (three operations, each under a comment restating its clause; 60% of subtractions
written with swapped operands and 60% of rounded-down divisions as int(y / k), the tests true),
then GRPO with correctness (every test passes) and a small share for the tests passed, then the
held-out split; the hard split has a parity branch (level 3). Measured (docs/results.md, "Code
checked by running it"): SFT 47.5% -> GRPO 98.5% held-out greedy in 19.7 minutes.

    python -m o1jax.train --config configs/code_grpo.py --workdir /tmp/code_grpo
    python -m o1jax.evaluate --workdir /tmp/code_grpo --split hard --max-new-tokens 320
"""

import ml_collections

from configs import thinking


def get_config() -> ml_collections.ConfigDict:
    c = thinking.get_config()
    c.model.overrides.max_seq_len = 480   # a hard-split prompt (<= 160) and 320 new tokens

    c.data.task = "code_functions"
    c.data.difficulty = 2             # three operations; the hard split adds a parity branch
    c.data.num_train = 6000
    c.data.max_prompt_len = 160       # the hard split's questions run to about 150 characters
    c.data.slip_rate = 0.6            # the demonstrator swaps 60% of subtractions' operands and
                                      # truncates 60% of divisions (the tests stay true)

    c.sft.num_steps = 500
    c.sft.max_len = 256               # a prompt and a level-2 solution: 24 of 6,000 rows (up to
                                      # 288 tokens) are cut before their return

    c.rl.num_iterations = 40
    c.rl.max_new_tokens = 184         # a level-2 solution: median 123 tokens, 99% within 168
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0, "tests_passed": 0.2})

    c.eval.max_new_tokens = 192       # the hard split's (level 3: median 231, at most 301)
                                      # needs evaluate --max-new-tokens 320
    c.eval.curve_points = 2
    return c
