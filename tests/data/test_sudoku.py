"""Mini Sudoku as a stream of search: the solver against brute-force enumeration, demonstrations
that replay to their stated grids, exact step labels, and the grid score of every
demonstration."""

import itertools
import json
import random
import re

import pytest

from o1jax.data import sudoku as S
from o1jax.rewards.grid import grid_score

BOXES = {4: (2, 2), 6: (2, 3)}


def _valid(cells, size) -> bool:
    """Brute force's own check of a full grid: rows, columns and boxes hold 1..size each."""
    rows = [cells[r * size:(r + 1) * size] for r in range(size)]
    br, bc = BOXES[size]
    boxes = [[rows[r0 + r][c0 + c] for r in range(br) for c in range(bc)]
             for r0 in range(0, size, br) for c0 in range(0, size, bc)]
    want = list(range(1, size + 1))
    return all(sorted(u) == want for u in rows + [list(c) for c in zip(*rows)] + boxes)


ALL_4X4 = [g for g in (sum(rows, ()) for rows in itertools.product(
    itertools.permutations(range(1, 5)), repeat=4)) if _valid(g, 4)]


def _completions_4x4(cells) -> int:
    """How many of all 288 valid 4x4 Sudokus keep every digit of ``cells``."""
    return sum(all(c in (0, g) for c, g in zip(cells, full)) for full in ALL_4X4)


def _completions_by_rows(cells, size) -> int:
    """How many valid Sudokus keep every digit of ``cells``: every row a permutation that keeps
    the row's digits (itertools), stacked row by row, the full grids checked at the end."""
    rows = [[p for p in itertools.permutations(range(1, size + 1))
             if all(c in (0, d) for c, d in zip(cells[r * size:(r + 1) * size], p))]
            for r in range(size)]
    def stack(done: list) -> int:
        if len(done) == size:
            return _valid(sum(done, ()), size)
        total = 0
        for p in rows[len(done)]:
            if all(p[c] != row[c] for row in done for c in range(size)):   # columns, early
                total += stack(done + [p])
        return total

    return stack([])


def _clashes(cells, size, i, d) -> bool:
    """Whether digit ``d`` in cell ``i`` meets the same digit in its row, column or box."""
    br, bc = BOXES[size]
    r, c = divmod(i, size)
    return any(cells[j] == d for j in range(size * size) if j != i and (
        j // size == r or j % size == c or
        (j // size // br, j % size // bc) == (r // br, c // bc)))


def _partial(rng, solution, size, blanks, noise):
    """``solution`` with ``blanks`` cells blanked and ``noise`` givens changed, mostly to a digit
    that clashes with nothing (often no longer completable), else at random."""
    cells = list(solution)
    for i in rng.sample(range(size * size), blanks):
        cells[i] = 0
    filled = [i for i, c in enumerate(cells) if c]
    for i in rng.sample(filled, min(noise, len(filled))):
        quiet = [d for d in range(1, size + 1) if not _clashes(cells, size, i, d)]
        cells[i] = rng.choice(quiet) if quiet and rng.random() < 0.75 else rng.randint(1, size)
    return tuple(cells)


def test_4x4_solver_matches_enumeration_of_all_288_grids():
    assert len(ALL_4X4) == 288
    rng = random.Random(0)
    for _ in range(600):
        cells = _partial(rng, rng.choice(ALL_4X4), 4, rng.randint(0, 16), rng.randint(0, 2))
        brute = _completions_4x4(cells)
        assert S.solvable(S.fmt_grid(cells, 4), 4) == (brute > 0), cells
        if S._consistent(cells, 4):
            assert S.count_solutions(cells, 4, limit=1000) == brute, cells


def test_6x6_solver_matches_enumeration_by_rows():
    rng = random.Random(1)
    for _ in range(150):
        solution = S.random_solution(rng, 6)
        assert _valid(solution, 6)
        cells = _partial(rng, solution, 6, rng.randint(0, 22), rng.randint(0, 2))
        brute = _completions_by_rows(cells, 6)
        assert S.solvable(S.fmt_grid(cells, 6), 6) == (brute > 0), cells
        if S._consistent(cells, 6):
            assert S.count_solutions(cells, 6, limit=10 ** 6) == brute, cells


@pytest.mark.parametrize("difficulty", sorted(S.LEVELS))
def test_puzzles_have_unique_solutions_and_the_stated_shape(difficulty):
    rng = random.Random(difficulty)
    size, blanks = S.LEVELS[difficulty]
    for _ in range(40 if size == 4 else 10):
        ex = S.sudoku(rng, difficulty)
        meta = json.loads(ex["meta"])
        assert ex["question"] == f"Sudoku {size}x{size}: {meta['puzzle']}"
        assert (ex["task"], ex["difficulty"], meta["size"]) == ("sudoku", difficulty, size)
        assert meta["strategy"] in S.STRATEGIES
        assert meta["puzzle"].count(".") == blanks
        cells = S.parse_grid(meta["puzzle"], size)
        count = _completions_4x4(cells) if size == 4 else _completions_by_rows(cells, size)
        assert count == 1, meta["puzzle"]
        answer = S.parse_grid(ex["answer"], size, blanks=False)
        assert _valid(answer, size) and all(c in (0, a) for c, a in zip(cells, answer))


def _dead(cells, size) -> bool:
    """Brute force's dead end: some blank that every digit makes clash (its row, column, box)."""
    return any(not v and all(_clashes(cells, size, i, d) for d in range(1, size + 1))
               for i, v in enumerate(cells))


@pytest.mark.parametrize("difficulty,n", [(1, 300), (2, 300), (3, 30)])
def test_demonstrations_replay_to_their_stated_grids(difficulty, n):
    rng = random.Random(100 + difficulty)
    strategies, backups, stuck = set(), 0, 0
    for k in range(n):
        ex = S.sudoku(rng, difficulty)
        meta = json.loads(ex["meta"])
        size, text = meta["size"], ex["solution"]
        steps = S.replay(meta["puzzle"], text)
        lines = text.split("\n")
        assert len(steps) == len(lines)
        stats = S.sudoku_stats(text)
        strategies.add(meta["strategy"])
        backups += stats["backups"] > 0
        stuck += stats["gave_up"]
        for step, line in zip(steps, lines):
            assert text[:step.end].endswith(line)
            if step.kind == "other":
                assert line == "stuck" and stats["gave_up"]
                continue
            assert step.valid, (line, text)
            if step.kind == "move":
                assert step.verdict == ("goal" if 0 not in step.state else
                                        "dead" if _dead(step.state, size) else "")
                if k < 40:   # the exact label, against brute force
                    brute = (_completions_4x4(step.state) if size == 4 else
                             _completions_by_rows(step.state, size))
                    assert step.solvable == (brute > 0), line
        assert lines[-1].startswith("\\boxed{") and steps[-1].kind == "answer"
        assert stats["moves"] == sum(s.kind == "move" for s in steps)
        assert stats["backups"] == sum(s.kind == "back" or s.verdict == "dead" for s in steps)
        assert stats["dead_ends"] == sum(s.verdict == "dead" for s in steps)
        if stats["gave_up"]:
            assert lines[-2] == "stuck" and grid_score(text, meta["puzzle"], size) == 0.0
        else:
            assert lines[-1] == f"\\boxed{{{ex['answer']}}}"
            assert steps[-2].verdict == "goal"
            assert S.fmt_grid(steps[-1].state, size) == ex["answer"]
            assert grid_score(text, meta["puzzle"], size) == 1.0
    assert strategies == set(S.STRATEGIES)
    assert 0 < stuck < n / 4
    if difficulty == 2:
        assert backups >= 0.25 * n      # real back-ups, not only the straight line


def test_replay_rejects_what_breaks_the_rules():
    puzzle = "1.../..../..../...."
    start = "12../..../..../.... open"
    text = "\n".join([
        start,                               # valid
        "1.3./..../..../.... open",          # drops the 2 for a 3: invalid
        "14../..../..../.... open",          # r1c2 is no longer blank: invalid
        "12../1.../..../.... open",          # 1 clashes in its column: invalid
        "12../3.../..../.... dead",          # valid, claims dead: the search stays at 12..
        "12../4.../..../.... open",          # valid from 12.. (the dead line was left)
        "12../3.../..../.... back",          # not on the path: invalid
        "1.../..../..../.... back",          # the start: valid
        "1.../..../..../.... open",          # fills no blank: invalid
        "12../..../.... open",               # a grid of the wrong shape: invalid
        "x" * 10_000,                        # hostile text: another kind of line
        "\\boxed{1234/3412/2143/4321}"])
    steps = S.replay(puzzle, text)
    assert [s.kind for s in steps] == ["move"] * 6 + ["back"] * 2 + ["move"] * 2 + [
        "other", "answer"]
    assert [s.valid for s in steps[:10]] == [True, False, False, False, True, True, False,
                                              True, False, False]
    assert steps[4].verdict == "dead" and steps[-1].state == S.parse_grid(puzzle, 4)
    # the exact labels of the valid lines, against brute force
    for s in (steps[0], steps[4], steps[5], steps[7]):
        assert s.solvable == (_completions_4x4(s.state) > 0)


def test_a_stuck_guess_is_never_the_solution():
    rng = random.Random(5)
    for _ in range(50):
        puzzle, solution = S.make_puzzle(rng, 4, 1)   # one blank: the first candidate is right
        lines, solved = S.search_trace(puzzle, 4, "row_order", rng, max_lines=0)
        text = "\n".join(lines)
        assert not solved and lines[0] == "stuck" and len(lines) == 2
        assert grid_score(text, S.fmt_grid(puzzle, 4), 4) == 0.0
        assert re.fullmatch(r"\\boxed\{[1-4]{4}(/[1-4]{4}){3}\}", lines[1])
        assert S.search_trace(puzzle, 4, "random", rng)[0][-1] == \
            f"\\boxed{{{S.fmt_grid(solution, 4)}}}"
