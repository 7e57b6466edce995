"""The exact grid check: what it accepts and rejects, and against brute force over every valid
4x4 Sudoku."""

import itertools
import random

import pytest

from o1jax.rewards.grid import grid_score

SOLVED = "1234/3412/2143/4321"
PUZZLE = "12.4/..../2..3/.3.."      # two solutions: the check keeps the givens, no answer key
SOLVED_6 = "123456/456123/231564/564231/312645/645312"
PUZZLE_6 = "1.3.5./456123/231564/564231/312645/64531."


def _valid_4x4(rows) -> bool:
    """Brute force's own check: rows, columns and 2x2 boxes each hold 1..4."""
    boxes = [[rows[r0 + r][c0 + c] for r in (0, 1) for c in (0, 1)]
             for r0 in (0, 2) for c0 in (0, 2)]
    return all(sorted(u) == [1, 2, 3, 4] for u in list(rows) + list(zip(*rows)) + boxes)


@pytest.mark.parametrize("response,score", [
    (f"\\boxed{{{SOLVED}}}", 1.0),
    (f"{SOLVED} goal\n\\boxed{{{SOLVED}}}", 1.0),
    (f"\\boxed{{ {SOLVED} }}", 1.0),                           # spaces around the grid
    ("\\boxed{1234/3421/2143/4312}", 1.0),                      # the other solution
    (f"\\boxed{{1234/3412/2143/4312}} then \\boxed{{{SOLVED}}}", 1.0),   # the last box counts
    (f"\\boxed{{{SOLVED}}} then \\boxed{{1234/3412/2143/4312}}", 0.0),
    (SOLVED, 0.0),                                              # not boxed
    ("\\boxed{}", 0.0),
    ("\\boxed{1234/3412/2143}", 0.0),                           # too few rows
    ("\\boxed{1234/3412/2143/4321/1234}", 0.0),                 # too many rows
    ("\\boxed{12345/34125/21435/43215}", 0.0),                  # rows too long
    ("\\boxed{1234/3412/2143/432}", 0.0),                       # a row too short
    (f"\\boxed{{{SOLVED_6}}}", 0.0),                            # a 6x6 grid for a 4x4 puzzle
    ("\\boxed{1234/3142/2413/4321}", 0.0),                      # a Latin square, boxes clash
    ("\\boxed{1234/3412/2143/4312}", 0.0),                      # columns clash
    ("\\boxed{2143/3412/1234/4321}", 0.0),                      # valid Sudoku, givens changed
    ("\\boxed{1234/3412/2143/432.}", 0.0),                      # a blank left
    ("\\boxed{1234/3412/2143/4320}", 0.0),                      # 0 is not a digit here
    ("\\boxed{1234/3412/2143/4325}", 0.0),                      # 5 is not a 4x4 digit
    ("\\boxed{1234/3412/2143/432a}", 0.0),
    ("\\boxed{1234 3412 2143 4321}", 0.0),                      # rows not separated by /
    ("\\boxed{1234/3412/2143/4321/}", 0.0),
    ("\\boxed{1234/3412/2143/4321", 0.0),                       # unbalanced braces
    ("\\boxed{{1234/3412/2143/4321}", 0.0),
    ("\\boxed{{1234/3412/2143/4321}}", 0.0),
    (f"\\boxed{{{SOLVED}{' ' * 200}}}", 0.0),                   # over 200 characters
    (f"\\boxed{{{SOLVED}{' ' * 150}}}", 1.0),
])
def test_accepts_and_rejects(response, score):
    assert grid_score(response, PUZZLE, 4) == score


def test_6x6_boxes_are_two_rows_by_three_columns():
    assert grid_score(f"\\boxed{{{SOLVED_6}}}", PUZZLE_6, 6) == 1.0
    assert grid_score(f"\\boxed{{{SOLVED}}}", PUZZLE_6, 6) == 0.0
    # its transpose has 3x2 boxes valid; as 2x3 boxes its first box holds 1 4 2 / 2 5 3
    rows = SOLVED_6.split("/")
    transposed = "/".join("".join(col) for col in zip(*rows))
    assert grid_score(f"\\boxed{{{transposed}}}", "." * 6 + ("/" + "." * 6) * 5, 6) == 0.0
    assert grid_score(f"\\boxed{{{SOLVED_6}}}", "2" + PUZZLE_6[1:], 6) == 0.0  # a given changed


def test_malformed_puzzles_and_sizes_raise():
    with pytest.raises(ValueError):
        grid_score(f"\\boxed{{{SOLVED}}}", PUZZLE, 5)
    with pytest.raises(ValueError):
        grid_score(f"\\boxed{{{SOLVED}}}", "12.4/..../3..1", 4)


def test_matches_brute_force_over_all_4x4_grids():
    """For random puzzles, the grids scoring 1.0 among all 288 valid 4x4 Sudokus, 3,000 grids of
    permuted rows and 500 random digit grids are exactly the valid Sudokus keeping the givens."""
    perms = list(itertools.permutations((1, 2, 3, 4)))
    rng = random.Random(0)
    full = list(itertools.product(perms, repeat=4))
    valid = [rows for rows in full if _valid_4x4(rows)]
    assert len(valid) == 288
    for _ in range(4):
        solution = rng.choice(valid)
        givens = set(rng.sample(range(16), rng.randint(0, 8)))
        puzzle = "/".join("".join(str(solution[r][c]) if 4 * r + c in givens else "."
                                  for c in range(4)) for r in range(4))
        grids = rng.sample(full, 3000) + valid
        grids += [tuple(tuple(rng.randint(1, 4) for _ in range(4)) for _ in range(4))
                  for _ in range(500)]
        for rows in grids:
            text = "/".join("".join(map(str, r)) for r in rows)
            keeps = all(rows[i // 4][i % 4] == solution[i // 4][i % 4] for i in givens)
            assert grid_score(f"\\boxed{{{text}}}", puzzle, 4) == float(
                _valid_4x4(rows) and keeps), (text, puzzle)
