"""Mini Sudoku written as a stream of search, in the format of ``search_tasks`` (Countdown): one
move per line, the state it leads to, dead ends abandoned for an earlier state.

A grid is written row by row, rows separated by "/", "." for a blank (``o1jax.rewards.grid``).
A move is the grid with one more digit in one blank, then a word for the state it leads to, so
that every line of a 4x4 search is 24 characters::

    Sudoku 4x4: ..../.41./..32/....    the question
    1.../.41./..32/.... open           a move (a 1 in row 1, column 1): the grid after it
    12../.41./..32/.... open
    124./.41./..32/.... dead           a blank is left with no candidate (r4c3): a dead end
    1.../.41./..32/.... back           every digit of r1c3 failed: back up to an earlier grid
    13../.41./..32/.... open
    ...
    1324/2413/4132/3241 goal           the grid is full
    \\boxed{1324/2413/4132/3241}

The move is stated by the grid rather than by coordinates (an earlier format, ``r1c1=1`` before
the grid, left the policy to turn a cell's row and column into its place in the grid above:
after SFT it wrote digits into given cells; a check before each move, the cell and the digits
its row, column and box hold, ``r1c1 ...4 GRID``, was wrong in most lines after SFT:
docs/results.md). Here a line is the one above copied with one blank filled, and a digit's
row, column and box lie at fixed offsets from it in that grid.

Demonstrations come from solvers with several strategies (``STRATEGIES``: the blank with the
fewest candidates first, blanks in reading order, random blanks and digits) that try only digits
that clash with nothing, and budgets (a line budget that runs out writes ``stuck`` and boxes the
current grid with its blanks guessed, never the solution). Levels (``LEVELS``): 1 = 4x4 with 10
blanks, 2 = 4x4 with 12 (4 givens, the fewest that fix a 4x4 solution), 3-5 = 6x6 with 18, 20,
22, each with a unique solution (how often each level's searches back up: docs/tasks.md).
Reading order is the commonest strategy (``MIX``; with random blanks commonest, greedy decoding
copied the grid unfilled).

``solvable`` is the exact label of any partial grid; ``replay`` parses a written search back
into ``streams.Step``s (model text is hostile: bounded regular expressions, nothing evaluated);
``sudoku_stats`` counts its lines.
"""

from __future__ import annotations

import functools
import random
import re

from o1jax.data.examples import example
from o1jax.data.streams import Step, stream_stats, written_lines
from o1jax.rewards.grid import is_solution, parse_grid, units

LEVELS = {1: (4, 10), 2: (4, 12), 3: (6, 18), 4: (6, 20), 5: (6, 22)}  # level -> size, blanks
STRATEGIES = ("most_constrained", "row_order", "random")
# how often each strategy writes a demonstration, and how often a line budget cuts it short
MIX = {"most_constrained": 0.2, "row_order": 0.6, "random": 0.2}
BUDGET_CUT = 0.1

Grid = tuple[int, ...]   # size * size cells in reading order, 0 for a blank


@functools.cache
def peers(size: int) -> tuple[tuple[int, ...], ...]:
    """For each cell, the other cells of its row, column and box."""
    out = [set() for _ in range(size * size)]
    for unit in units(size):
        for i in unit:
            out[i].update(unit)
    return tuple(tuple(sorted(p - {i})) for i, p in enumerate(out))


def candidates(grid: Grid, size: int, cell: int) -> list[int]:
    """The digits that ``cell`` can take without clashing with its row, column or box."""
    used = {grid[p] for p in peers(size)[cell]}
    return [d for d in range(1, size + 1) if d not in used]


def fmt_grid(grid: Grid, size: int) -> str:
    text = "".join(str(d) if d else "." for d in grid)
    return "/".join(text[r * size:(r + 1) * size] for r in range(size))


def _consistent(grid: Grid, size: int) -> bool:
    return all(grid[p] != d for i, d in enumerate(grid) if d for p in peers(size)[i])


def _dead(grid: Grid, size: int) -> bool:
    """Whether some blank of ``grid`` has no candidate left."""
    return any(not d and not candidates(grid, size, i) for i, d in enumerate(grid))


def count_solutions(grid: Grid, size: int, limit: int = 2) -> int:
    """How many valid Sudokus complete ``grid`` (a consistent one), counted up to ``limit``."""
    cells = list(grid)

    def count() -> int:
        blanks = [(len(ds), i, ds) for i, d in enumerate(cells) if not d
                  for ds in [candidates(tuple(cells), size, i)]]
        if not blanks:
            return 1
        _, cell, digits = min(blanks)       # the fewest candidates: none means no completion
        total = 0
        for d in digits:
            cells[cell] = d
            total += count()
            if total >= limit:
                break
        cells[cell] = 0
        return total

    return count()


@functools.lru_cache(maxsize=1 << 16)
def solvable(grid: str, size: int) -> bool:
    """Whether the partial grid (written as in a question) can still be completed to a valid
    Sudoku that keeps its digits: the exact step label. False for text that is not a grid."""
    cells = parse_grid(grid, size)
    return cells is not None and _consistent(cells, size) and count_solutions(cells, size, 1) > 0


def _choose(grid: Grid, size: int, strategy: str, rng: random.Random) -> tuple[int, list[int]]:
    """The blank a strategy fills next, and the order it tries that blank's candidates in."""
    blanks = [i for i, d in enumerate(grid) if not d]
    if strategy == "most_constrained":
        cell = min(blanks, key=lambda i: len(candidates(grid, size, i)))
    elif strategy == "row_order":
        cell = blanks[0]
    else:
        cell = rng.choice(blanks)
    digits = candidates(grid, size, cell)
    if strategy == "random":
        rng.shuffle(digits)
    return cell, digits


def _guess(grid: Grid, size: int) -> Grid:
    """A give-up's answer: each blank its first candidate (or 1), never the solution (the last
    blank is changed when the guess would happen to solve the puzzle)."""
    blanks = [i for i, d in enumerate(grid) if not d]
    guess = list(grid)
    for i in blanks:
        guess[i] = (candidates(grid, size, i) or [1])[0]
    if is_solution(tuple(guess), size):
        guess[blanks[-1]] = guess[blanks[-1]] % size + 1
    return tuple(guess)


class _OutOfBudget(Exception):
    def __init__(self, grid: Grid):
        self.grid = grid


def search_trace(puzzle: Grid, size: int, strategy: str, rng: random.Random,
                 max_lines: int | None = None) -> tuple[list[str], bool]:
    """A solver's search written as lines (the last one ``\\boxed{...}``), and whether it solved
    the puzzle. ``strategy`` picks the cell and the digit order at each grid (``STRATEGIES``);
    ``max_lines``: a budget of move lines, after which it is stuck."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {STRATEGIES}")
    lines: list[str] = []
    n_moves = [0]

    def dfs(grid: Grid) -> Grid | None:
        cell, digits = _choose(grid, size, strategy, rng)
        for d in digits:
            if max_lines is not None and n_moves[0] >= max_lines:
                raise _OutOfBudget(grid)
            n_moves[0] += 1
            new = grid[:cell] + (d,) + grid[cell + 1:]
            move = fmt_grid(new, size)
            verdict = "goal" if 0 not in new else "dead" if _dead(new, size) else "open"
            lines.append(f"{move} {verdict}")
            if verdict == "goal":
                return new
            if verdict == "open":
                if found := dfs(new):
                    return found
                lines.append(f"{fmt_grid(grid, size)} back")
        return None

    try:
        found = dfs(puzzle)
    except _OutOfBudget as out:
        lines.append("stuck")
        return lines + [f"\\boxed{{{fmt_grid(_guess(out.grid, size), size)}}}"], False
    if found is None:
        raise ValueError(f"unsolvable puzzle {fmt_grid(puzzle, size)}")
    return lines + [f"\\boxed{{{fmt_grid(found, size)}}}"], True


def random_solution(rng: random.Random, size: int) -> Grid:
    """A uniformly drawn digit order at each cell, filled depth-first: a random full grid."""
    cells = [0] * (size * size)

    def fill(i: int) -> bool:
        if i == len(cells):
            return True
        digits = candidates(tuple(cells), size, i)
        rng.shuffle(digits)
        for d in digits:
            cells[i] = d
            if fill(i + 1):
                return True
        cells[i] = 0
        return False

    fill(0)
    return tuple(cells)


def make_puzzle(rng: random.Random, size: int, blanks: int) -> tuple[Grid, Grid]:
    """A puzzle with ``blanks`` blanks and a unique solution, and that solution: cells of a random
    full grid are blanked in random order, each kept only if the solution stays unique."""
    while True:
        solution = random_solution(rng, size)
        grid, order = list(solution), rng.sample(range(size * size), size * size)
        removed = 0
        for i in order:
            if removed == blanks:
                break
            grid[i] = 0
            if count_solutions(tuple(grid), size) == 1:
                removed += 1
            else:
                grid[i] = solution[i]
        if removed == blanks:
            return tuple(grid), solution


def sudoku(rng: random.Random, difficulty: int) -> dict:
    """A mini Sudoku at level ``difficulty`` (``LEVELS``, clamped to 1..5); the solution a
    demonstrator's search (see the module docstring)."""
    size, blanks = LEVELS[min(max(difficulty, 1), max(LEVELS))]
    puzzle, solution = make_puzzle(rng, size, blanks)
    strategy = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    budget = rng.randint(1, 2 * blanks) if rng.random() < BUDGET_CUT else None
    lines, _ = search_trace(puzzle, size, strategy, rng, budget)
    shown = fmt_grid(puzzle, size)
    return example("sudoku", f"Sudoku {size}x{size}: {shown}", fmt_grid(solution, size),
                   "\n".join(lines), difficulty,
                   {"puzzle": shown, "size": size, "strategy": strategy})


_MOVE = re.compile(r"([1-9./]{1,80}) (open|goal|dead)")
_BACK = re.compile(r"([1-9./]{1,80}) back")


def replay(puzzle: str, text: str, max_lines: int = 4000) -> list[Step]:
    """The steps of a written search from the question's grid ``puzzle``. A move is valid when
    its grid is the current one with one blank filled by a digit that clashes with nothing; it
    becomes the current grid unless it says ``dead`` (the search stays where it was). A back-up
    is valid when it returns to a grid on the current path (which then becomes the current
    grid). ``Step.state``: the grid's cells."""
    size = puzzle.count("/") + 1
    start = parse_grid(puzzle, size)
    if start is None:
        raise ValueError(f"not a puzzle: {puzzle!r}")
    path = [start]
    steps = []
    for end, line in written_lines(text, max_lines):
        m, b = _MOVE.fullmatch(line), _BACK.fullmatch(line)
        if m:
            stated, cur = parse_grid(m[1], size), path[-1]
            changed = [i for i, (a, b) in enumerate(zip(cur, stated or ())) if a != b]
            valid = (stated is not None and len(changed) == 1 and not cur[changed[0]] and
                     stated[changed[0]] in candidates(cur, size, changed[0]))
            label = valid and solvable(m[1], size)
            verdict = "" if m[2] == "open" else m[2]
            steps.append(Step(end, "move", stated or cur, valid, label, verdict))
            if valid and verdict != "dead":
                path.append(stated)
        elif b:
            stated = parse_grid(b[1], size)
            valid = stated in path[:-1]
            if valid:
                del path[path.index(stated) + 1:]
            steps.append(Step(end, "back", stated or path[-1], valid,
                              valid and solvable(b[1], size), ""))
        elif line.startswith("\\boxed"):
            steps.append(Step(end, "answer", path[-1], True, False, ""))
        elif line:
            steps.append(Step(end, "other", path[-1], False, False, ""))
    return steps


def sudoku_stats(text: str) -> dict:
    """``streams.stream_stats`` of a written Sudoku search (a dead move: the search goes
    on from the grid before it)."""
    return stream_stats(text, _MOVE, _BACK)
