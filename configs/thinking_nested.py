"""Thinking that pays, one level deeper: Countdown written as a nested stream of search
(``countdown_nested``, o1jax/data/search_tasks.py), configs/thinking.py's model, SFT and GRPO.

In ``countdown_search`` a three-number search goes straight from the start to checked pairs
(``12+7=19 (3 19): 22 16 57 | 33 dead``), so the hard split's four numbers need lines the policy
never saw: a move to a state of three numbers and ``back`` to an earlier state (it scores 2%
there whatever the budget, docs/results.md). Here a pair is written as every other state is:
its move, its check on a line of its own, then ``back`` to the state before it::

    12+7=19 (3 19)
    (3 19): 22 16 57 | 33 dead
    back (3 7 12)

so a four-number search is the same lines one level deeper. Demonstrations are about 1.5x
longer (192 characters on average at three numbers, 10% over 384), hence SFT rows of 384 tokens
(16 a batch, the thinking config's tokens a step) and 384 new tokens in RL and evaluation.

    python -m o1jax.train --config configs/thinking_nested.py --workdir /tmp/thinking_nested
"""

import ml_collections

from configs import thinking


def get_config() -> ml_collections.ConfigDict:
    c = thinking.get_config()
    c.data.task = "countdown_nested"
    c.sft.max_len = 384
    c.sft.batch_size = 16
    c.rl.max_new_tokens = c.eval.max_new_tokens = 384
    c.rl.num_iterations = 40
    c.eval.curve_points = 2
    return c
