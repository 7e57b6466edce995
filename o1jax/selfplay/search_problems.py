"""Self-play's form for ``countdown_search`` (``o1jax.data.search_tasks``): the proposer writes
``Use a, b, c to make T`` and the referee checks it exactly under that task's rules. T may be
an expression over the numbers instead (``Use 3, 5, 7 to make 3*5+7``, the form SFT teaches
the proposer with ``selfplay.propose_solution``): the proposal then states a solution, the
referee takes the target as its value (through the whitelisting parser), and the solver sees
``... to make 22``.

    numbers   3 to 5 of them (level = numbers - 2: levels 1-3), each in 1..MAX_NUMBER
    target    in TARGETS, not one of the numbers and not one move away (trivial), reachable
              with positive integer intermediates (``search_tasks.solvable``)
    held out  its split key (the sorted numbers and the target) in the test partition, by the
              data's own rule (``examples.split_of_example``): the held-out and hard splits
              come from that partition, so proposing it would train on them

Pure and free of JAX (``judge`` runs in the verifier's worker processes, under their time
limit); the text is matched by one strict pattern of bounded strings, and a stated solution
goes to the whitelisting parser (``countdown.expression_value``) and nowhere else.
"""

from __future__ import annotations

import json
import math
import random
import re

from o1jax.data.examples import split_of_example
from o1jax.data.search_tasks import MAX_NUMBER, TARGETS, fmt_state, moves, search_trace, solvable
from o1jax.rewards.answers import last_boxed
from o1jax.rewards.countdown import expression_value
from o1jax.selfplay.problems import Bounds, Problem

TASK = "countdown_search"
LEVELS = (1, 2, 3)       # 3, 4, 5 numbers

_PROPOSAL = re.compile(r"^Use\s+(?P<nums>\d{1,4}(?:\s*,\s*\d{1,4}){0,9})\s+to\s+make\s+"
                       r"(?P<target>\d{1,4}|[0-9+\-*/() ]{3,80})$")


def judge(text: str, bounds=Bounds(), held_out_ok: bool = False) -> Problem:
    """Checks one proposal (already stripped of its stop token). Never raises on any text.
    ``bounds.max_chars`` bounds the text; the numbers' and the target's ranges are the task's.
    ``held_out_ok``: a problem of the held-out partition is accepted (never for self-play)."""
    try:
        return _judge(text.strip(), Bounds(*bounds), held_out_ok)
    except (ValueError, TypeError, RecursionError):
        return Problem("malformed")


def _judge(text: str, b: Bounds, held_out_ok: bool) -> Problem:
    if len(text) > b.max_chars:
        return Problem("enormous")
    m = _PROPOSAL.match(text)
    if not m:
        return Problem("malformed")
    numbers = [int(n) for n in re.findall(r"\d+", m["nums"])]
    level = len(numbers) - 2
    if level not in LEVELS:
        return Problem("malformed")
    if m["target"].isdigit():
        target = int(m["target"])
    else:       # a stated solution: the target is its value
        value = expression_value(m["target"], numbers)
        if value is None:
            return Problem("malformed")
        if not value.is_integer:
            return Problem("out_of_range")
        target = int(value)
    if not (all(1 <= n <= MAX_NUMBER for n in numbers) and TARGETS[0] <= target <= TARGETS[1]):
        return Problem("out_of_range")
    state = tuple(sorted(numbers))
    if target in state or any(r == target for *_, r, _ in moves(state)):
        return Problem("trivial")
    if not solvable(state, target):
        return Problem("unsolvable")
    question = f"Use {', '.join(map(str, numbers))} to make {target}"
    key = f"{fmt_state(state)} {target}"
    meta = json.dumps({"numbers": numbers, "target": target, "split_key": key})
    if not held_out_ok and split_of_example({"question": question, "meta": meta}) == "test":
        return Problem("held_out")
    return Problem("accepted", TASK, question, str(target), meta, key,
                   re.sub(r"\d+", "N", question), max(len(str(n)) for n in numbers + [target]),
                   len(numbers) - 1, math.log10(1 + target), level)


def with_solution(question: str, seed: int = 0) -> str:
    """``Use a, b, c to make T`` (a solvable problem's question) written as a proposal that
    states a solution: T replaced by an expression over the numbers that reaches it under the
    task's rules (a depth-first solver's; the first move order ``seed`` shuffles)."""
    m = _PROPOSAL.match(question.strip())
    if not m or not m["target"].isdigit():
        raise ValueError(f"not a countdown_search question: {question!r}")
    numbers = [int(n) for n in re.findall(r"\d+", m["nums"])]
    lines, found = search_trace(numbers, int(m["target"]), "random", random.Random(seed))
    if not found:
        raise ValueError(f"unsolvable: {question!r}")
    return f"Use {', '.join(map(str, numbers))} to make {last_boxed(lines[-1])}"
