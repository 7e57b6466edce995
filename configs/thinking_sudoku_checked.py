"""Mini Sudoku written as a search with each move after its check (task ``sudoku_checked``,
o1jax/data/sudoku.py): ``r3c1 1.34 1234/4321/2..2/3... open``, the cell and the digits its row,
column and box already hold, then the grid with the digit written. configs/thinking_sudoku.py's
model and stages; lines are 34 characters instead of 24, so SFT reads 576-token rows and RL
writes up to 640 tokens.

    python -m o1jax.train --config configs/thinking_sudoku_checked.py --workdir /tmp/sudoku_checked
"""

import ml_collections

from configs import thinking_sudoku


def get_config() -> ml_collections.ConfigDict:
    c = thinking_sudoku.get_config()
    c.data.task = "sudoku_checked"
    c.sft.max_len = 576               # level 1's demonstrations: median 377, 95th pct 568
    c.rl.max_new_tokens = 640
    c.eval.max_new_tokens = 640
    return c
