"""Self-play's form for ``countdown_search`` (``o1jax.data.search_tasks``): the proposer writes
``Use a, b, c to make T`` and the referee checks it exactly under that task's rules. A
proposal may state a solution instead (the forms SFT teaches the proposer with
``selfplay.proposal_form``): ``listed``, T an expression over the numbers listed
(``Use 3, 5, 7 to make 3*5+7``); ``expression``, the expression alone and the numbers it leaves
unused (``Make 3*5+7 with 2``: the numbers are its own and those after ``with``, nothing to
copy). The referee takes the target as its value (through the whitelisting parser); the solver
sees ``Use 3, 5, 7 to make 22`` (``Use 2, 3, 5, 7 to make 22``: sorted, as the task writes them).

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
from o1jax.selfplay.config import PROPOSAL_FORMS
from o1jax.selfplay.problems import Bounds, Problem

TASK = "countdown_search"
LEVELS = (1, 2, 3)       # 3, 4, 5 numbers

_PROPOSAL = re.compile(r"^Use\s+(?P<nums>\d{1,4}(?:\s*,\s*\d{1,4}){0,9})\s+to\s+make\s+"
                       r"(?P<target>\d{1,4}|[0-9+\-*/() ]{3,80})$")
_EXPRESSION = re.compile(r"^Make\s+(?P<target>[0-9+\-*/() ]{3,80}?)"
                         r"(?:\s+with\s+(?P<nums>\d{1,4}(?:\s*,\s*\d{1,4}){0,3}))?$")


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
    m = _PROPOSAL.match(text) or _EXPRESSION.match(text)
    if not m:
        return Problem("malformed")
    numbers = [int(n) for n in re.findall(r"\d+", m["nums"] or "")]
    if m.re is _EXPRESSION:         # the expression's own numbers and the unused ones, sorted
        numbers = sorted(numbers + [int(n) for n in re.findall(r"\d+", m["target"])])
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


def with_solution(question: str, form: str, seed: int = 0) -> str:
    """``Use a, b, c to make T`` (a solvable problem's question) written as a proposal in
    ``form`` (``PROPOSAL_FORMS``): T replaced by an expression over the numbers that reaches it
    under the task's rules (a depth-first solver's; the first move order ``seed`` shuffles)."""
    m = _PROPOSAL.match(question.strip())
    if form not in PROPOSAL_FORMS or not m or not m["target"].isdigit():
        raise ValueError(f"not a countdown_search question or a form of {PROPOSAL_FORMS}: "
                         f"{question!r}, {form!r}")
    if form == "target":
        return question
    numbers = [int(n) for n in re.findall(r"\d+", m["nums"])]
    lines, found = search_trace(numbers, int(m["target"]), "random", random.Random(seed))
    if not found:
        raise ValueError(f"unsolvable: {question!r}")
    expression = last_boxed(lines[-1])
    if form == "listed":
        return f"Use {', '.join(map(str, numbers))} to make {expression}"
    unused = list(numbers)
    for n in re.findall(r"\d+", expression):
        unused.remove(int(n))
    return f"Make {expression}" + (f" with {', '.join(map(str, unused))}" if unused else "")
