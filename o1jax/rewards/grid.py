"""The Sudoku task's score: an exact check of a boxed grid. Runs in the verifier's worker
processes, like ``countdown.countdown_score``, so it is a plain module-level function.

A grid is written row by row, rows separated by "/", a digit 1..size per cell and "." for a
blank: ``12.4/..../3..1/.2..``. Boxes are 2x2 in a 4x4 grid and 2 rows x 3 columns in a 6x6 one.
Model output is hostile: the answer is read character by character, never evaluated, and one
over ``MAX_ANSWER_CHARS`` is rejected unread.
"""

from __future__ import annotations

import re

from o1jax.rewards.answers import last_boxed

BOX_SHAPES = {4: (2, 2), 6: (2, 3)}   # grid size -> (box rows, box columns)
MAX_ANSWER_CHARS = 200


def parse_grid(text: str, size: int, blanks: bool = True) -> tuple[int, ...] | None:
    """The ``size * size`` cells of a grid written as rows separated by "/", in reading order,
    0 for a blank ("." when ``blanks``, else not allowed); None if ``text`` is not such a grid."""
    if size not in BOX_SHAPES:
        raise ValueError(f"grid size must be one of {tuple(BOX_SHAPES)}, got {size}")
    cell = f"[1-{size}{'.' if blanks else ''}]"
    if len(text) > MAX_ANSWER_CHARS or not re.fullmatch(
            f"{cell}{{{size}}}(?:/{cell}{{{size}}}){{{size - 1}}}", text):
        return None
    return tuple(0 if ch == "." else int(ch) for ch in text if ch != "/")


def units(size: int) -> list[list[int]]:
    """Every row, column and box of a ``size`` grid, each as its cells' reading-order indices."""
    br, bc = BOX_SHAPES[size]
    rows = [[r * size + c for c in range(size)] for r in range(size)]
    cols = [[r * size + c for r in range(size)] for c in range(size)]
    boxes = [[(r0 + r) * size + c0 + c for r in range(br) for c in range(bc)]
             for r0 in range(0, size, br) for c0 in range(0, size, bc)]
    return rows + cols + boxes


def is_solution(cells: tuple[int, ...], size: int) -> bool:
    """Whether the filled grid ``cells`` has every row, column and box a permutation of 1..size."""
    digits = set(range(1, size + 1))
    return all({cells[i] for i in unit} == digits for unit in units(size))


def grid_score(response: str, puzzle: str, size: int) -> float:
    """1.0 if the last \\boxed{} of ``response`` is a filled ``size`` grid that is a valid Sudoku
    and keeps every given cell of ``puzzle`` (the question's grid, "." for blanks); else 0.0."""
    given = parse_grid(puzzle, size)
    if given is None:
        raise ValueError(f"not a {size}x{size} puzzle: {puzzle!r}")
    answer = last_boxed(response)
    if answer is None or len(answer) > MAX_ANSWER_CHARS:
        return 0.0
    cells = parse_grid(answer.strip(), size, blanks=False)
    if cells is None or any(g and g != c for g, c in zip(given, cells)):
        return 0.0
    return 1.0 if is_solution(cells, size) else 0.0
