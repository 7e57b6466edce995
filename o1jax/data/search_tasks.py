"""Countdown written as a stream of search (Gandhi et al. 2024, "Stream of Search"): a solution is
the search itself, one move per line, dead ends abandoned for an earlier state.

The rules are Countdown's: combine two of the numbers with + - * /, every intermediate value a
positive integer; the result replaces them. The target is reached when it is one of the numbers
(each given number is used at most once, as ``o1jax.rewards.countdown`` scores it). A solution::

    12-7=5 (3 5)          a move, and the state it leads to
    5*3=15 dead           a last number that is not the target (the state is the result): a
    5+3=8 dead            dead end
    back (3 7 12)         every move from (3 5) failed: back up to an earlier open state
    7*3=21 (12 21)
    21+12=33 goal         the target is reached
    \\boxed{(7*3)+12}

Demonstrations come from solvers with several strategies (``STRATEGIES``: best-first by distance
to the target, depth-first in the listed order, random order, breadth-limited) and budgets (a
line budget that runs out, or a breadth limit that leaves no move, writes ``stuck`` and boxes
the closest value found), so that SFT
teaches the search rather than the answer. Difficulty d has d + 2 numbers from 1..12; the
target (10..100) needs at least two moves. ``solvable`` is the exact label of any state;
``replay`` parses a written search back into its steps (model text is hostile: regular
expressions over bounded integers, nothing evaluated).
"""

from __future__ import annotations

import functools
import random
import re
from typing import NamedTuple

from o1jax.data.examples import example

MAX_NUMBER = 12
TARGETS = (10, 100)
STRATEGIES = ("best_first", "depth_first", "random", "breadth_limited")
# how often each strategy writes a demonstration, and how often a line budget cuts it short
MIX = {"best_first": 0.25, "depth_first": 0.25, "random": 0.35, "breadth_limited": 0.15}
BUDGET_CUT = 0.1
OPS = "+-*/"


def moves(state: tuple[int, ...]) -> list[tuple[int, str, int, int, tuple[int, ...]]]:
    """Every legal move from ``state`` (sorted numbers): (a, op, b, result, new sorted state),
    a >= b, results positive integers; x*1 and x/1 (which only drop the 1) are left out."""
    out = []
    for i in range(len(state)):
        for j in range(i):
            a, b = state[i], state[j]          # state is sorted: a >= b
            rest = state[:j] + state[j + 1:i] + state[i + 1:]
            for op in OPS:
                if op == "-" and a == b or op in "*/" and b == 1 or op == "/" and a % b:
                    continue
                r = {"+": a + b, "-": a - b, "*": a * b, "/": a // max(b, 1)}[op]
                out.append((a, op, b, r, tuple(sorted(rest + (r,)))))
    return out


@functools.lru_cache(maxsize=1 << 20)
def solvable(state: tuple[int, ...], target: int) -> bool:
    """Whether ``target`` can be reached from ``state`` (sorted): the exact step label."""
    return target in state or any(solvable(new, target) for *_, new in moves(state))


def fmt_state(state) -> str:
    return "(" + " ".join(map(str, sorted(state))) + ")"


def _compose(ea: str, op: str, eb: str) -> str:
    wrap = lambda e: e if e.isdigit() else f"({e})"   # noqa: E731
    return f"{wrap(ea)}{op}{wrap(eb)}"


def search_trace(numbers, target: int, strategy: str, rng: random.Random,
                 max_lines: int | None = None, breadth: int = 3) -> tuple[list[str], bool]:
    """A solver's search written as lines (the last one ``\\boxed{...}``), and whether it found
    the target. ``strategy`` orders the moves tried at each state (``STRATEGIES``);
    ``breadth_limited`` tries only the ``breadth`` best-first moves at each state;
    ``max_lines``: a budget of move lines, after which it is stuck."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {STRATEGIES}")
    lines: list[str] = []
    closest = [abs(max(numbers) - target), str(max(numbers))]

    def order(state):
        ms = moves(state)
        if strategy == "random":
            rng.shuffle(ms)
        elif strategy != "depth_first":
            ms.sort(key=lambda m: abs(m[3] - target))
            if strategy == "breadth_limited":
                ms = ms[:breadth]
        return ms

    def dfs(items: dict) -> str | None:      # items: value -> expression (a multiset: list)
        state = tuple(sorted(v for v, _ in items))
        for a, op, b, r, new in order(state):
            if max_lines is not None and sum(not ln.startswith("back") for ln in lines) >= \
                    max_lines:
                raise _OutOfBudget
            rest = list(items)
            ea = rest.pop(next(k for k, (v, _) in enumerate(rest) if v == a))[1]
            eb = rest.pop(next(k for k, (v, _) in enumerate(rest) if v == b))[1]
            expr = _compose(ea, op, eb)
            if abs(r - target) < closest[0]:
                closest[:] = [abs(r - target), expr]
            if r == target:
                lines.append(f"{a}{op}{b}={r} goal")
                return expr
            if len(new) == 1:
                lines.append(f"{a}{op}{b}={r} dead")
                continue
            lines.append(f"{a}{op}{b}={r} {fmt_state(new)}")
            found = dfs(rest + [(r, expr)])
            if found:
                return found
            lines.append(f"back {fmt_state(state)}")
        return None

    try:
        found = dfs([(n, str(n)) for n in numbers])
    except _OutOfBudget:
        found = None
    if found is None:
        lines.append("stuck")
        return lines + [f"\\boxed{{{closest[1]}}}"], False
    return lines + [f"\\boxed{{{found}}}"], True


class _OutOfBudget(Exception):
    pass


def countdown_search(rng: random.Random, difficulty: int) -> dict:
    """Countdown with ``difficulty + 2`` numbers from 1..12 and a target in 10..100 that needs
    at least two moves; the solution a demonstrator's search (see the module docstring)."""
    n = max(1, difficulty) + 2
    while True:
        numbers = sorted(rng.randint(1, MAX_NUMBER) for _ in range(n))
        target = rng.randint(*TARGETS)
        state = tuple(numbers)
        if target in state or any(r == target for *_, r, _ in moves(state)):
            continue
        if solvable(state, target):
            break
    strategy = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    budget = rng.randint(2, 12 * n) if rng.random() < BUDGET_CUT else None
    lines, _ = search_trace(numbers, target, strategy, rng, budget)
    shown = numbers[:]
    rng.shuffle(shown)
    question = f"Use {', '.join(map(str, shown))} to make {target}"
    # the split follows the problem, not the order its numbers are shown in
    return example("countdown_search", question, target, "\n".join(lines), difficulty,
                   {"numbers": shown, "target": target, "strategy": strategy,
                    "split_key": f"{fmt_state(numbers)} {target}"})


class Step(NamedTuple):
    """One line of a written search, replayed: ``end`` its end offset in the text; ``kind``
    "move", "back", "answer" or "other"; ``state`` the sorted state after it (moves, backs);
    ``valid`` whether the line is legal and states the state it leads to; ``solvable`` the
    exact label of that state (False for an invalid line); ``verdict`` what the line claims
    ("goal", "dead" or "")."""
    end: int
    kind: str
    state: tuple[int, ...]
    valid: bool
    solvable: bool
    verdict: str


_MOVE = re.compile(r"(\d{1,6})([-+*/])(\d{1,6})=(\d{1,7})(?: \(([\d ]{0,60})\))?(?: (goal|dead))?")
_BACK = re.compile(r"back \(([\d ]{0,60})\)")


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(sorted(int(t) for t in text.split()))


def replay(numbers, target: int, text: str, max_lines: int = 4000) -> list[Step]:
    """The steps of a written search from the start state ``numbers``. A move is valid when its
    operands are in the current state, its result is right (a positive integer) and the stated
    state is the one it leads to; a back-up is valid when it returns to a state visited on the
    current path (which then becomes the current state)."""
    path = [tuple(sorted(numbers))]
    steps, pos = [], 0
    for line in text.split("\n")[:max_lines]:
        end = pos + len(line)
        pos = end + 1
        line = line.strip()
        m, b = _MOVE.fullmatch(line), _BACK.fullmatch(line)
        if m:
            a, op, bb, r = int(m[1]), m[2], int(m[3]), int(m[4])
            legal = [mv for mv in moves(path[-1]) if mv[:4] == (a, op, bb, r)]
            stated = _numbers(m[5]) if m[5] is not None else legal[0][4] if legal else ()
            # a verdict line may leave its state out; any other line must state it
            valid = bool(legal) and legal[0][4] == stated and (m[5] is not None or bool(m[6]))
            label = valid and solvable(stated, target)
            steps.append(Step(end, "move", stated, valid, label, m[6] or ""))
            if valid and m[6] != "dead":   # a dead leaf is left at once: siblings follow
                path.append(stated)
        elif b:
            stated = _numbers(b[1])
            valid = stated in path[:-1]
            if valid:
                del path[path.index(stated) + 1:]
            steps.append(Step(end, "back", stated, valid, valid and solvable(stated, target),
                              ""))
        elif line.startswith("\\boxed"):
            steps.append(Step(end, "answer", path[-1], True, False, ""))
        elif line:
            steps.append(Step(end, "other", path[-1], False, False, ""))
    return steps


def search_stats(text: str) -> dict:
    """What a written search did, from its text alone (no replay): move lines, back-ups,
    dead ends stated, and whether it gave up."""
    lines = text.split("\n")
    return {"moves": sum(bool(_MOVE.fullmatch(ln.strip())) for ln in lines),
            "backups": sum(bool(_BACK.fullmatch(ln.strip())) for ln in lines),
            "dead_ends": sum(ln.strip().endswith(" dead") for ln in lines),
            "gave_up": any(ln.strip() == "stuck" for ln in lines)}
