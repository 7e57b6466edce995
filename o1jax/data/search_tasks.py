"""Countdown written as a stream of search (Gandhi et al. 2024, "Stream of Search"): a solution is
the search itself, one move per line, dead ends abandoned for an earlier state.

The rules are Countdown's: combine two of the numbers with + - * /, every intermediate value a
positive integer (here at most 99, so that the arithmetic stays what a small model learns in
minutes); the result replaces them. The target is reached when it is one of the numbers
(each given number is used at most once, as ``o1jax.rewards.countdown`` scores it). A solution::

    12+7=19 (3 19): 22 16 57 | 33 dead   a move, the state it leads to and its check: with
    12-7=5 (3 5): 8 2 15 | 33 dead       two numbers left, every value one more move makes,
    12*3=36 (7 36): 43 29 | 33 dead      then the target restated beside them; the target
    7*3=21 (12 21): 33 9 | 33 goal       is not among them (a dead end) or is
    \\boxed{(7*3)+12}

With more numbers, a move to a state of three or more is written with its state alone and the
search goes on from there; when every move from it failed, ``back (3 7 9 12)`` returns to an
earlier open state.

``countdown_nested`` writes the same searches with each pair a state of its own: the move to it
(``12+7=19 (3 19)``), its check on a line of its own (``(3 19): 22 16 57 | 33 dead``), then
``back (3 7 12)`` when dead, so that a search one level deeper is written with the same lines.

Demonstrations come from solvers with several strategies (``STRATEGIES``: best-first by distance
to the target, depth-first in the listed order, random order, breadth-limited) and budgets (a
line budget that runs out, or a breadth limit that leaves no move, writes ``stuck`` and boxes
the closest value found), so that SFT
teaches the search rather than the answer. Difficulty d has d + 2 numbers from 1..20; the
target (10..99) needs at least two moves. ``solvable`` is the exact label of any state;
``replay`` parses a written search back into its steps (model text is hostile: regular
expressions over bounded integers, nothing evaluated).
"""

from __future__ import annotations

import functools
import random
import re

from o1jax.data.examples import example
from o1jax.data.streams import Step, stream_stats, written_lines

MAX_NUMBER = 20
MAX_VALUE = 99          # every intermediate value too: the arithmetic a small model can learn
TARGETS = (10, 99)
STRATEGIES = ("best_first", "depth_first", "random", "breadth_limited")
# how often each strategy writes a demonstration, and how often a line budget cuts it short
MIX = {"depth_first": 0.6, "best_first": 0.2, "random": 0.1, "breadth_limited": 0.1}
BUDGET_CUT = 0.1
OPS = "+-*/"


def moves(state: tuple[int, ...]) -> list[tuple[int, str, int, int, tuple[int, ...]]]:
    """Every legal move from ``state`` (sorted numbers), each once: (a, op, b, result, new
    sorted state), a >= b, results positive integers up to MAX_VALUE; x*1 and x/1 (which
    only drop the 1) are left out."""
    out = []
    for i in range(len(state)):
        for j in range(i):
            a, b = state[i], state[j]          # state is sorted: a >= b
            rest = state[:j] + state[j + 1:i] + state[i + 1:]
            for op in OPS:
                if op == "-" and a == b or op in "*/" and b == 1 or op == "/" and a % b:
                    continue
                r = {"+": a + b, "-": a - b, "*": a * b, "/": a // max(b, 1)}[op]
                if r > MAX_VALUE:
                    continue
                move = (a, op, b, r, tuple(sorted(rest + (r,))))
                if move not in out:            # equal numbers make the same move once
                    out.append(move)
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


def check_line(state: tuple[int, ...], target: int) -> tuple[str, bool]:
    """The check of a two-number state: every value one move makes, in ``moves``'s order,
    and whether the target is among them (the state's exact label)."""
    values = [r for _, _, _, r, _ in moves(state)]
    return " ".join(map(str, values)), target in values


def search_trace(numbers, target: int, strategy: str, rng: random.Random,
                 max_lines: int | None = None, breadth: int = 3, nested: bool = False
                 ) -> tuple[list[str], bool]:
    """A solver's search written as lines (the last one ``\\boxed{...}``), and whether it found
    the target. ``strategy`` orders the moves tried at each state (``STRATEGIES``);
    ``breadth_limited`` tries only the ``breadth`` best-first moves at each state;
    ``max_lines``: a budget of move lines, after which it is stuck. ``nested``: a pair is
    written as every other state is (its move, then its check on a line of its own, then
    ``back`` to the state before it when dead), so that each level of a deeper search is
    written with the same lines."""
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

    def take(items, a, b):
        rest = list(items)
        ea = rest.pop(next(k for k, (v, _) in enumerate(rest) if v == a))[1]
        eb = rest.pop(next(k for k, (v, _) in enumerate(rest) if v == b))[1]
        return ea, eb, rest

    def note(value, expr):
        if abs(value - target) < closest[0]:
            closest[:] = [abs(value - target), expr]

    def dfs(items: list) -> str | None:      # items: (value, expression) pairs, a multiset
        state = tuple(sorted(v for v, _ in items))
        for a, op, b, r, new in order(state):
            if max_lines is not None and sum(not ln.startswith(("back", "(")) for ln in lines) \
                    >= max_lines:
                raise _OutOfBudget
            ea, eb, rest = take(items, a, b)
            expr = _compose(ea, op, eb)
            note(r, expr)
            move = f"{a}{op}{b}={r}"
            if r == target:
                lines.append(f"{move} goal")
                return expr
            if len(new) == 1:
                lines.append(f"{move} dead")
                continue
            if len(new) == 2:                  # one move from the end: check every value
                values, hit = check_line(new, target)
                # the target restated next to the values, so that the verdict compares
                # neighbouring tokens rather than values with a number in the question
                check = f"{fmt_state(new)}: {values} | {target} {'goal' if hit else 'dead'}"
                lines.extend([f"{move} {fmt_state(new)}", check] if nested else
                             [f"{move} {check}"])
                if nested and not hit:
                    lines.append(f"back {fmt_state(state)}")
                pair = rest + [(r, expr)]
                for a2, op2, b2, r2, _ in moves(new):
                    e2a, e2b, _ = take(pair, a2, b2)
                    note(r2, _compose(e2a, op2, e2b))
                    if r2 == target:
                        return _compose(e2a, op2, e2b)
                continue
            lines.append(f"{move} {fmt_state(new)}")
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


def countdown_search(rng: random.Random, difficulty: int, nested: bool = False) -> dict:
    """Countdown with ``difficulty + 2`` numbers from 1..20 and a target in 10..99 that needs
    at least two moves; the solution a demonstrator's search (see the module docstring), its
    pairs written as states of their own with ``nested`` (task ``countdown_nested``)."""
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
    lines, _ = search_trace(numbers, target, strategy, rng, budget, nested=nested)
    # shown in increasing order, the order every state lists them in (a small model copies
    # them from the question; sorting them in its head first costs it much of SFT)
    shown = numbers
    question = f"Use {', '.join(map(str, shown))} to make {target}"
    # the split follows the problem, whatever order its numbers are shown in
    return example("countdown_nested" if nested else "countdown_search", question, target,
                   "\n".join(lines), difficulty,
                   {"numbers": shown, "target": target, "strategy": strategy,
                    "split_key": f"{fmt_state(numbers)} {target}"})


_MOVE = re.compile(r"(\d{1,6})([-+*/])(\d{1,6})=(\d{1,7})(?: \(([\d ]{0,60})\))?"
                   r"(?:: ([\d ]{0,80}?)(?: \| (\d{1,6}))?)?(?: (goal|dead))?")
_BACK = re.compile(r"back \(([\d ]{0,60})\)")
_CHECK = re.compile(r"\(([\d ]{0,60})\): ([\d ]{0,80}?) \| (\d{1,6}) (goal|dead)")


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(sorted(int(t) for t in text.split()))


def _move_step(m: re.Match, path: list, target: int, end: int) -> Step:
    """A move line replayed from ``path[-1]``: legal, its stated state (a verdict line may leave
    it out) the one it leads to, its check (``check_line``, then the target) right, its verdict
    true."""
    a, op, b, r = int(m[1]), m[2], int(m[3]), int(m[4])
    legal = [mv for mv in moves(path[-1]) if mv[:4] == (a, op, b, r)]
    new = legal[0][4] if legal else ()
    stated = _numbers(m[5]) if m[5] is not None else new
    verdict = m[8] or ""
    valid = bool(legal) and stated == new and (m[5] is not None or bool(verdict))
    if m[6] is not None:
        values, hit = check_line(new, target) if len(new) == 2 else ("", False)
        valid = (valid and len(new) == 2 and " ".join(m[6].split()) == values
                 and m[7] is not None and int(m[7]) == target)
        reached = hit or target in new
    else:
        valid = valid and m[7] is None
        reached = target in new
    if verdict:
        valid = valid and (verdict == "goal") == reached and (reached or m[6] is not None or
                                                               len(new) == 1)
    label = valid and solvable(new, target)
    return Step(end, "move", new if valid else stated, valid, label, verdict)


def replay(numbers, target: int, text: str, max_lines: int = 4000) -> list[Step]:
    """The steps of a written search from the start state ``numbers``. A move is valid when its
    operands are in the current state, its result is right (a positive integer), the stated
    state is the one it leads to, a check lists that state's one-move values and a verdict is
    true ("dead" only for a checked pair or a last number); a back-up is valid when it returns
    to a state visited on the current path (which then becomes the current state); a check on a
    line of its own (``countdown_nested``) when the current state is the pair it states and the
    rest is as a move's check."""
    path = [tuple(sorted(numbers))]
    steps = []
    for end, line in written_lines(text, max_lines):
        m, b = _MOVE.fullmatch(line), _BACK.fullmatch(line)
        if m:
            steps.append(_move_step(m, path, target, end))
            if steps[-1].valid and not steps[-1].verdict:   # a verdict line is left at once
                path.append(steps[-1].state)
        elif b:
            stated = _numbers(b[1])
            valid = stated in path[:-1]
            if valid:
                del path[path.index(stated) + 1:]
            steps.append(Step(end, "back", stated, valid, valid and solvable(stated, target),
                              ""))
        elif c := _CHECK.fullmatch(line):
            pair, (values, hit) = path[-1], check_line(path[-1], target)
            valid = (len(pair) == 2 and _numbers(c[1]) == pair and " ".join(c[2].split()) ==
                     values and int(c[3]) == target and (c[4] == "goal") == hit)
            steps.append(Step(end, "check", pair, valid, valid and hit, c[4]))
        elif line.startswith("\\boxed"):
            steps.append(Step(end, "answer", path[-1], True, False, ""))
        elif line:
            steps.append(Step(end, "other", path[-1], False, False, ""))
    return steps


def search_stats(text: str) -> dict:
    """``stream_stats`` of a written Countdown search (either task's lines)."""
    return stream_stats(text, _MOVE, _BACK, _CHECK)
