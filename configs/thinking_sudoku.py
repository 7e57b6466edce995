"""Thinking that pays, on the task where sequential search is expected to win: mini Sudoku
written as a stream of search (o1jax/data/sudoku.py), configs/thinking.py's model and stages.

A 4x4 puzzle with 10 blanks (level 1; the hard split has 12): one digit per line with the whole
grid after it, ``dead`` when a blank is left with no candidate, ``back GRID`` to an earlier grid,
the solved grid boxed. Searches are about 3x Countdown's length (median 334 characters), so SFT
reads 448-token rows and RL writes up to 512 tokens; the sequential-against-parallel comparison
(one long search against majority over samples at equal FLOPs) is README command 4's
evaluation with ``--strategies greedy,majority``.

Measured (seed 0, docs/results.md): after SFT's 500 steps the policy solves no held-out puzzle
(greedy 0/200, pass@8 0/100); it copies grids but writes digits into given cells, so RL has no
reward to learn from. It is not yet a working demo.

    python -m o1jax.train --config configs/thinking_sudoku.py --workdir /tmp/thinking_sudoku
"""

import ml_collections

from configs import thinking


def get_config() -> ml_collections.ConfigDict:
    c = thinking.get_config()
    c.data.task = "sudoku"
    c.data.difficulty = 1             # 4x4 with 10 blanks; the hard split 12
    c.data.num_train = 4000
    c.data.max_prompt_len = 40        # "Sudoku 4x4: ..../.41./..32/...." and the template

    c.sft.num_steps = 500
    c.sft.batch_size = 16
    c.sft.max_len = 448

    c.rl.num_iterations = 20
    c.rl.batch_prompts = 8
    c.rl.max_new_tokens = 512

    c.eval.max_new_tokens = 512
    c.eval.curve_points = 2
    return c
