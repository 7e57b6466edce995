"""What every task written as a stream of search shares (``search_tasks``' Countdown,
``sudoku``): a line replayed (``Step``), the walk over a written search's lines and the counts
of what it did, from its text alone."""

from __future__ import annotations

import re
from typing import NamedTuple


class Step(NamedTuple):
    """One line of a written search, replayed: ``end`` its end offset in the text; ``kind``
    "move", "back", "check" (a pair's check on a line of its own: ``countdown_nested``),
    "answer" or "other"; ``state`` the sorted state after it (moves, backs);
    ``valid`` whether the line is legal and states the state it leads to; ``solvable`` the
    exact label of that state (False for an invalid line); ``verdict`` what the line claims
    ("goal", "dead" or "")."""
    end: int
    kind: str
    state: tuple[int, ...]
    valid: bool
    solvable: bool
    verdict: str


def written_lines(text: str, max_lines: int):
    """(end offset in ``text``, stripped line) of each of the first ``max_lines`` lines: the
    walk every task's ``replay`` makes over a written search."""
    pos = 0
    for line in text.split("\n")[:max_lines]:
        yield pos + len(line), line.strip()
        pos += len(line) + 1


def stream_stats(text: str, move: re.Pattern, back: re.Pattern,
                 check: re.Pattern | None = None) -> dict:
    """What a written search did, from its text alone (no replay), for a task whose move and
    back-up lines match ``move`` and ``back``: move lines, back-ups (states abandoned for an
    earlier one: a dead end, after which the search goes on from the state before it, or a
    back-up line), dead ends stated (on a move line, or on a ``check`` line, which its back-up
    line follows), and whether it gave up (``stuck``)."""
    lines = [ln.strip() for ln in text.split("\n")]
    dead = sum(ln.endswith(" dead") and bool(move.fullmatch(ln)) for ln in lines)
    checked = sum(ln.endswith(" dead") and bool(check.fullmatch(ln)) for ln in lines) if check \
        else 0
    return {"moves": sum(bool(move.fullmatch(ln)) for ln in lines),
            "backups": dead + sum(bool(back.fullmatch(ln)) for ln in lines),
            "dead_ends": dead + checked, "gave_up": "stuck" in lines}
