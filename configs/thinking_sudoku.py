"""Thinking that pays, on the task where sequential search is expected to win: mini Sudoku
written as a stream of search (o1jax/data/sudoku.py), configs/thinking.py's model and stages.

A 4x4 puzzle with 10 blanks (level 1; the hard split has 12): each line is the grid with one
more digit, then ``open``, ``dead`` (a blank has no candidate left) or ``goal``; a back-up is an
earlier grid then ``back``; the solved grid boxed. Responses run about 270-340 tokens
(Countdown's about 90-130), so SFT reads 448-token rows and RL writes up to 512 tokens.
Sequential against parallel (one long search against majority over samples, at equal FLOPs):
``python -m o1jax.evaluate --workdir W --strategies greedy,sample,majority --budgets
1,2,4,8,16 --temperature 0.7``.

Measured (seed 0, 52 minutes on 2 cores, docs/results.md): SFT 33.0% held-out greedy, GRPO
33.0% (maj@8 39.0%); on the hard split budget forcing rises from 0.0% at 64 tokens to 23.0% at
1,024 (``--answer-after-give-up --answer-at-line-end``, the command in docs/results.md). Seed 1:
35.0% -> 33.0% (maj@8 45.0%), hard split 0.0% -> 18.0% (85.5% boxed at 1,024). Re-runs on one
core each (other floating point): 36.5% -> 31.0% and 34.0% -> 36.5%, hard split 0.0% -> 16.5%
and 14.0% with ``--stop-loops 2`` (100% and 93.0% boxing a grid). SFT on 8,000 searches for
800 steps (29 minutes) gave 28.0% -> 33.5% and 9.5% on the hard split. RL samples at 0.7: at
1.0 an earlier SFT policy's samples solved 1-3%.

    python -m o1jax.train --config configs/thinking_sudoku.py --workdir /tmp/thinking_sudoku
"""

import ml_collections

from configs import thinking


def get_config() -> ml_collections.ConfigDict:
    c = thinking.get_config()
    c.data.task = "sudoku"
    c.data.difficulty = 1             # 4x4 with 10 blanks; the hard split 12
    c.data.num_train = 16000          # at 8,000 and 800 SFT steps the SFT loss was still falling
    c.data.max_prompt_len = 40        # "Sudoku 4x4: ..../.41./..32/...." and the template

    c.sft.num_steps = 1600
    c.sft.batch_size = 16
    c.sft.max_len = 448

    c.rl.num_iterations = 20
    c.rl.batch_prompts = 8
    c.rl.max_new_tokens = 512
    c.rl.temperature = 0.7            # at 1.0 an earlier SFT policy's samples solved 1-3%

    c.eval.max_new_tokens = 512
    c.eval.curve_points = 2
    return c
