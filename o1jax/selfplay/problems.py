"""A proposed problem's text -> a checked problem with its exact answer, or why it is rejected.

Pure and free of JAX (it runs in the verifier's worker processes, under their time and memory
limits). The text is never evaluated: each form is matched by a strict pattern first, and the
arithmetic goes through the whitelisting parser (``o1jax.rewards.parsing``) to exact sympy
rationals. The forms are those of ``o1jax.data.tasks``:

    arithmetic   EXPR=?            integers with + - * and parentheses
    fractions    EXPR=?            the same with /, the answer a reduced fraction
    linear       Solve LHS=RHS     linear in x, integer coefficients, one rational solution
    countdown    Use a, b, c to make T   3 or 4 numbers, T reachable using each at most once

``countdown_search`` writes the countdown text under Countdown's own rules (positive integer
intermediates): that form is ``o1jax.selfplay.search_problems``'.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import NamedTuple, Sequence

import sympy

from o1jax.data.tasks import split_of
from o1jax.rewards.parsing import ParseError, parse_expression

# why a proposal was rejected, by code (0: accepted); the order is the metrics' order
STATUSES = ("accepted", "unfinished", "malformed", "unsafe", "enormous", "non_finite",
            "out_of_range", "unsolvable", "trivial", "held_out", "duplicate", "timeout", "error",
            "empty", "overlap")      # the last two: pictures (``o1jax.selfplay.scenes``)
CODE = {name: i for i, name in enumerate(STATUSES)}
FORMS = ("arithmetic", "fractions", "linear", "countdown")
FEATURES = ("digits", "operators", "answer_magnitude", "level")

_EXPR = r"[0-9+\-*/() ]+"
_ARITH = re.compile(rf"^(?P<expr>{_EXPR})=\s*\?$")
_LINEAR = re.compile(r"^Solve\s+(?P<lhs>[0-9x+\-*/() ]+)=(?P<rhs>[0-9x+\-*/() ]+)$")
_COUNTDOWN = re.compile(r"^Use\s+(?P<nums>\d+(?:\s*,\s*\d+)*)\s+to\s+make\s+(?P<target>\d+)$")
# text that looks like a program rather than a problem: names called or dotted, dunders,
# statement separators, quotes, brackets, backslashes
_UNSAFE = re.compile(r"__|[;`'\"\\\[\]{}@$]|(?<![A-Za-z])(?!Solve\b|x\b)[A-Za-z_]\w*\s*[(.]"
                     r"|\b(?:import|exec|eval|lambda|open|system|compile|getattr)\b")
# an identity operand makes a problem trivial: 0 with + - *, 1 with * /
_IDENTITY = re.compile(r"(?<![\d)])0[+\-*]|[+\-*]0(?![\d(])|\*1(?![\d(])|(?<![\d)])1\*|/1(?![\d(])")


class Problem(NamedTuple):
    """A judged proposal. ``status``: a name of STATUSES; for an accepted (or duplicate)
    problem ``question`` is its canonical text (what the solver sees), ``key`` its normalised
    form (duplicates share it), ``pattern`` the question with every number as N, ``level`` its
    difficulty level where the form has levels (``search_problems``: numbers - 2), else 0."""
    status: str
    task: str = ""
    question: str = ""
    answer: str = ""
    meta: str = "{}"
    key: str = ""
    pattern: str = ""
    digits: int = 0
    operators: int = 0
    magnitude: float = 0.0
    level: int = 0

    def example(self) -> dict:
        """The problem as a dataset example (what the reward functions take)."""
        return {"task": self.task, "question": self.question, "answer": self.answer,
                "meta": self.meta}

    def features(self) -> list[float]:
        return [float(self.digits), float(self.operators), float(self.magnitude),
                float(self.level)]


class Bounds(NamedTuple):
    max_chars: int = 40
    max_digits: int = 4
    max_operators: int = 3
    max_answer: float = 1e6


def judge(text: str, bounds=Bounds(), held_out_ok: bool = False) -> Problem:
    """Checks one proposal (already stripped of its stop token). Never raises on any text.
    ``held_out_ok``: a question of the held-out partition is accepted (to read an evaluation
    problem's answer, never for self-play)."""
    try:
        return _judge(text, Bounds(*bounds), held_out_ok)
    except (ParseError, ValueError, TypeError, ZeroDivisionError, RecursionError):
        return Problem("malformed")


def _judge(text: str, b: Bounds, held_out_ok: bool) -> Problem:
    text = text.strip()
    if not text:
        return Problem("malformed")
    if len(text) > b.max_chars:
        return Problem("enormous")
    if _UNSAFE.search(text):
        return Problem("unsafe")
    numbers = re.findall(r"\d+", text)
    if any(len(n.lstrip("0") or "0") > b.max_digits for n in numbers):
        return Problem("enormous")
    if m := _ARITH.match(text):
        return _expression(_squash(m["expr"]), b, held_out_ok)
    if m := _LINEAR.match(text):
        return _linear(_squash(m["lhs"]), _squash(m["rhs"]), b, held_out_ok)
    if m := _COUNTDOWN.match(text):
        return _countdown([int(n) for n in re.findall(r"\d+", m["nums"])], int(m["target"]), b,
                          held_out_ok)
    return Problem("malformed")


def _squash(s: str) -> str:
    """Whitespace removed and numbers without leading zeros."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), re.sub(r"\s+", "", s))


def _count_ops(expr: str) -> int:
    """Binary operators (a sign after an operator or "(" is unary and not counted)."""
    return len(re.findall(r"(?<=[\d)x])[+\-*/]", expr))


def _magnitude(value: sympy.Rational) -> float:
    return math.log10(1 + max(abs(int(value.p)), int(value.q)))


def _in_range(value: sympy.Rational, b: Bounds) -> bool:
    return abs(int(value.p)) <= b.max_answer and int(value.q) <= b.max_answer


def _held_out(*questions: str) -> bool:
    """A question of the held-out partition (``tasks.split_of``): proposing it would train on
    the evaluation set (the test and hard splits alike)."""
    return any(split_of(q) == "test" for q in questions)


def _commuted(expr: str) -> str | None:
    """``b+a`` for ``a+b`` (and ``*``): the other spelling of a one-operator commutative
    problem, or None."""
    m = re.fullmatch(r"(\d+)([+*])(\d+)", expr)
    return f"{m[3]}{m[2]}{m[1]}" if m else None


def _expression(expr: str, b: Bounds, held_out_ok: bool) -> Problem:
    ops = _count_ops(expr)
    if ops > b.max_operators:
        return Problem("enormous")
    if ops == 0 or _IDENTITY.search(expr):
        return Problem("trivial")
    try:
        value = parse_expression(expr)
    except ParseError as e:
        return Problem("non_finite" if "division by zero" in str(e) else "malformed")
    if not value.is_Rational:
        return Problem("malformed")
    if not _in_range(value, b):
        return Problem("out_of_range")
    question = f"{expr}=?"
    swapped = _commuted(expr)
    if not held_out_ok and _held_out(question, *([f"{swapped}=?"] if swapped else [])):
        return Problem("held_out")
    key = min(expr, swapped or expr)
    return Problem("accepted", "fractions" if "/" in expr else "arithmetic", question, str(value),
                   "{}", key, re.sub(r"\d+", "N", question), _max_digits(expr), ops,
                   _magnitude(value))


def _max_digits(text: str) -> int:
    return max((len(n) for n in re.findall(r"\d+", text)), default=0)


def _linear(lhs: str, rhs: str, b: Bounds, held_out_ok: bool) -> Problem:
    ops = _count_ops(lhs) + _count_ops(rhs)
    if ops > b.max_operators:
        return Problem("enormous")
    if "x" not in lhs + rhs:
        return Problem("malformed")
    if (lhs == "x" and _count_ops(rhs) == 0 and "x" not in rhs) or (
            rhs == "x" and _count_ops(lhs) == 0 and "x" not in lhs):
        return Problem("trivial")  # the answer is given: x=3
    x = sympy.Symbol("x")
    diff = sympy.expand(parse_expression(lhs) - parse_expression(rhs))
    if diff.free_symbols - {x} or not diff.is_polynomial(x) or sympy.degree(diff, x) > 1:
        return Problem("malformed")
    a, c = diff.coeff(x, 1), diff.coeff(x, 0)
    if a == 0:
        return Problem("non_finite")  # no solution, or every x is one
    root = -c / a
    if not (root.is_Rational and _in_range(root, b)):
        return Problem("out_of_range")
    question = f"Solve {lhs}={rhs}"
    if not held_out_ok and _held_out(question):
        return Problem("held_out")
    return Problem("accepted", "linear", question, str(root), "{}", question,
                   re.sub(r"\d+", "N", question), _max_digits(question), ops, _magnitude(root))


def reachable(numbers: list[int], target: int) -> bool:
    """Whether + - * / over some of ``numbers`` (each used at most once) make ``target``:
    exhaustive search over exact rationals."""
    def search(values: tuple) -> bool:
        if any(v == target for v in values):
            return True
        for i, j in itertools.permutations(range(len(values)), 2):
            rest = tuple(v for k, v in enumerate(values) if k not in (i, j))
            a, c = values[i], values[j]
            results = [a + c, a - c, a * c] + ([a / c] if c != 0 else [])
            if any(search(rest + (r,)) for r in results):
                return True
        return False
    return search(tuple(sympy.Integer(n) for n in numbers))


def _countdown(numbers: list[int], target: int, b: Bounds, held_out_ok: bool) -> Problem:
    if not 3 <= len(numbers) <= 4:
        return Problem("malformed")
    if not 0 < target <= b.max_answer or min(numbers) < 1:
        return Problem("out_of_range")
    if target in numbers:
        return Problem("trivial")
    if not reachable(numbers, target):
        return Problem("unsolvable")
    question = f"Use {', '.join(map(str, numbers))} to make {target}"
    if not held_out_ok and _held_out(question):
        return Problem("held_out")
    key = f"countdown:{sorted(numbers)}:{target}"
    return Problem("accepted", "countdown", question, str(target),
                   json.dumps({"numbers": numbers, "target": target}), key,
                   re.sub(r"\d+", "N", question), _max_digits(question), len(numbers) - 1,
                   _magnitude(sympy.Integer(target)))


def level_shares(levels: Sequence[int], known: Sequence[int]) -> dict[str, float]:
    """``proposer/accepted_level_K`` for each level K of ``known`` (the form's): the share of
    this iteration's accepted proposals (their ``levels``) at level K; NaN when none was."""
    n = len(levels)
    return {f"proposer/accepted_level_{k}": sum(x == k for x in levels) / n if n else math.nan
            for k in known}
