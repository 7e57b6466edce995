"""Synthetic verifiable math tasks, generated with sympy, deterministic per seed.

Every example is a dict of strings and ints::

    task, question, answer, solution (step by step, ending in \\boxed{answer}), difficulty,
    meta (JSON: task-specific data, e.g. countdown's numbers and target)

Splits never overlap: an example belongs to the test split iff a hash of its question says so,
whatever the seed, so train and test generators can never produce the same question.
"""

from __future__ import annotations

import functools
import random
from typing import Callable, Iterator

import sympy

from o1jax.config import datasets
from o1jax.data import code_tasks, search_tasks, sudoku
# split_of and TEST_FRACTION keep their documented home here too
from o1jax.data.examples import TEST_FRACTION, split_of, split_of_example  # noqa: F401
from o1jax.data.examples import example as _example, slipper

# --------------------------------------------------------------------------- arithmetic
def _digits(n: int) -> list[int]:
    return [int(c) for c in str(n)][::-1]


def _addition_steps(a: int, b: int, slip: Callable[[], bool]) -> tuple[list[str], int]:
    """Column addition, and the number the steps write. ``slip()`` True: that carry is
    forgotten (a sloppy demonstrator), so the written result is wrong."""
    da, db = _digits(a), _digits(b)
    steps, carry, written = [], 0, []
    for i in range(max(len(da), len(db))):
        x, y = (da[i] if i < len(da) else 0), (db[i] if i < len(db) else 0)
        s = x + y + carry
        expr = f"{x}+{y}" + (f"+{carry}" if carry else "")
        steps.append(f"{expr}={s}, write {s % 10}" + (", carry 1" if s >= 10 else ""))
        written.append(s % 10)
        carry = 0 if slip() else s // 10
    if carry:
        steps.append("write the carry 1")
        written.append(1)
    return steps, int("".join(map(str, written[::-1])))


def _subtraction_steps(a: int, b: int, slip: Callable[[], bool]) -> tuple[list[str], int]:
    """Column subtraction (a >= b >= 0) with borrows, and the number the steps write.
    ``slip()`` True: that borrow is forgotten in the next column."""
    da, db = _digits(a), _digits(b)
    steps, borrow, written = [], 0, []
    for i in range(len(da)):
        x, y = da[i] - borrow, (db[i] if i < len(db) else 0)
        if x < y:
            steps.append(f"{x}-{y} needs a borrow: {x + 10}-{y}={x + 10 - y}")
            written.append(x + 10 - y)
            borrow = 0 if slip() else 1
        else:
            steps.append(f"{x}-{y}={x - y}")
            written.append(x - y)
            borrow = 0
    return steps, int("".join(map(str, written[::-1])))


def arithmetic(rng: random.Random, difficulty: int, slip_rate: float = 0.0) -> dict:
    """Add, subtract or multiply two numbers of up to ``difficulty`` digits (difficulty 1-6).

    ``slip_rate`` > 0 makes the *solution* that of a sloppy demonstrator who forgets each carry
    or borrow with that probability (its boxed result is then what it wrote, hence wrong);
    ``answer`` stays the true result. The slips come from their own stream seeded by the
    question, so the questions are the same at every rate."""
    op = rng.choice("+-*")
    hi = 10 ** max(1, difficulty) - 1
    a, b = rng.randint(0, hi), rng.randint(0, hi)
    if op == "*":
        b = rng.randint(0, 10 ** max(1, (difficulty + 1) // 2) - 1)
    if op == "-" and a < b:
        a, b = b, a
    result = sympy.Integer(a) + b if op == "+" else (sympy.Integer(a) - b if op == "-"
                                                       else sympy.Integer(a) * b)
    question = f"{a}{op}{b}=?"
    slip = slipper(question, slip_rate)
    written = result
    if op == "+":
        steps, written = _addition_steps(a, b, slip)
    elif op == "-":
        steps, written = _subtraction_steps(a, b, slip)
    else:
        steps, partials = [], []
        for i, d in enumerate(_digits(b)):
            p = a * d * 10 ** i
            partials.append(p)
            steps.append(f"{a}*{d * 10 ** i}={p}")
        if len(partials) > 1:
            steps.append("+".join(map(str, partials)) + f"={sum(partials)}")
    solution = "\n".join(steps + [f"\\boxed{{{written}}}"])
    return _example("arithmetic", question, result, solution, difficulty)


TOOL_SHARE = 0.25     # multiplication's demonstrations that call the Python tool


def multiplication(rng: random.Random, difficulty: int) -> dict:
    """A ``difficulty``-digit number times a digit from 2 to 9: the tool-call demo's task
    (configs/tool_grpo.py). A quarter of the solutions (chosen by the question) call the
    Python tool, ``<tool>print(a*b)</tool><output>...</output>`` (the output is what the
    rollout's tool writes, o1jax/rollout/tools.py); the others answer in one line, as the
    arithmetic task writes its products."""
    a = rng.randint(10 ** (max(1, difficulty) - 1), 10 ** max(1, difficulty) - 1)
    b = rng.randint(2, 9)
    question, result = f"{a}*{b}=?", a * b
    if random.Random(f"tool-{question}").random() < TOOL_SHARE:
        work = f"<tool>print({a}*{b})</tool><output>{result}</output>"
    else:
        work = f"{a}*{b}={result}"
    return _example("multiplication", question, sympy.Integer(result),
                    f"{work}\n\\boxed{{{result}}}", difficulty)


# ------------------------------------------------------------------------------- linear
def linear(rng: random.Random, difficulty: int) -> dict:
    """a*x + b = c with integer solution; coefficients grow with difficulty."""
    x = sympy.Symbol("x")
    hi = 5 * max(1, difficulty)
    a = rng.choice([i for i in range(-hi, hi + 1) if i not in (0,)])
    sol = rng.randint(-hi, hi)
    b = rng.randint(-hi * 3, hi * 3)
    c = a * sol + b
    eq = sympy.Eq(a * x + b, c)
    (root,) = sympy.solve(eq, x)
    lhs = f"{a}x" + (f"+{b}" if b > 0 else (f"-{-b}" if b < 0 else ""))
    steps = []
    if b:
        steps.append(f"{'Subtract' if b > 0 else 'Add'} {abs(b)}: {a}x={c - b}")
    steps.append(f"Divide by {a}: x={root}")
    solution = "\n".join(steps + [f"\\boxed{{{root}}}"])
    return _example("linear", f"Solve {lhs}={c}", root, solution, difficulty)


# ----------------------------------------------------------------------------- fractions
def fractions(rng: random.Random, difficulty: int) -> dict:
    """p/q (+|-|*) r/s, answer a reduced fraction."""
    hi = 3 + 3 * max(1, difficulty)
    p, r = rng.randint(1, hi), rng.randint(1, hi)
    q, s = rng.randint(2, hi), rng.randint(2, hi)
    op = rng.choice("+-*")
    f1, f2 = sympy.Rational(p, q), sympy.Rational(r, s)
    if op == "*":
        result = f1 * f2
        steps = [f"Multiply: ({p}*{r})/({q}*{s})={p * r}/{q * s}"]
    else:
        den = sympy.ilcm(q, s)
        n1, n2 = p * (den // q), r * (den // s)
        total = n1 + n2 if op == "+" else n1 - n2
        result = sympy.Rational(total, den)
        steps = [f"Common denominator {den}: {n1}/{den}{op}{n2}/{den}={total}/{den}"]
    steps.append(f"Simplify: {result}")
    solution = "\n".join(steps + [f"\\boxed{{{result}}}"])
    return _example("fractions", f"{p}/{q}{op}{r}/{s}=?", result, solution, difficulty)


# ----------------------------------------------------------------------------- countdown
def countdown(rng: random.Random, difficulty: int) -> dict:
    """Reach a target with + - * / using each given number at most once (3 numbers at
    difficulty 1, 4 at 2 and above)."""
    n = 3 if difficulty <= 1 else 4
    while True:
        nums = [rng.randint(1, 12 if difficulty <= 2 else 50) for _ in range(n)]
        expr = str(nums[0])
        value = sympy.Integer(nums[0])
        for v in nums[1:]:
            op = rng.choice("+-*/")
            if op == "/" and (v == 0 or value % v != 0):
                op = "+"
            value = {"+": value + v, "-": value - v, "*": value * v, "/": value / v}[op]
            expr = f"({expr}){op}{v}" if op in "*/" and any(c in expr for c in "+-") else \
                f"{expr}{op}{v}"
        if value.is_Integer and 0 < value <= 1000:
            break
    shown = nums[:]
    rng.shuffle(shown)
    question = f"Use {', '.join(map(str, shown))} to make {value}"
    solution = f"{expr}={value}\n\\boxed{{{expr}}}"
    return _example("countdown", question, value, solution, difficulty,
                    {"numbers": shown, "target": int(value)})


TASKS: dict[str, Callable[[random.Random, int], dict]] = {
    "arithmetic": arithmetic, "multiplication": multiplication, "linear": linear,
    "fractions": fractions, "countdown": countdown,
    "countdown_search": search_tasks.countdown_search,
    "countdown_nested": functools.partial(search_tasks.countdown_search, nested=True),
    "sudoku": sudoku.sudoku,
    "code_functions": code_tasks.code_function}


def check_slip_rate(task: str, slip_rate: float) -> None:
    """ValueError unless ``slip_rate`` is in [0, 1] and, when nonzero, ``task`` has a sloppy
    demonstrator (the registry's tasks that take a ``slip_rate``)."""
    if not 0.0 <= slip_rate <= 1.0:
        raise ValueError(f"slip_rate must be in [0, 1], got {slip_rate}")
    sloppy = datasets.sloppy()
    if slip_rate and task not in sloppy:
        raise ValueError(f"slip_rate is defined for the tasks {sloppy} only, not {task!r}")


def generate(task: str, split: str, num: int, seed: int = 0, difficulty: int = 2,
             slip_rate: float = 0.0) -> Iterator[dict]:
    """``num`` distinct examples of ``task`` in ``split`` ("train" or "test"); ``slip_rate``:
    see ``arithmetic`` and ``code_tasks.code_function`` (the tasks with a sloppy demonstrator)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    check_slip_rate(task, slip_rate)
    make = functools.partial(TASKS[task], slip_rate=slip_rate) if slip_rate else TASKS[task]
    rng = random.Random(f"{task}-{seed}-{difficulty}")
    seen: set[str] = set()
    attempts = 0
    while len(seen) < num:
        attempts += 1
        if attempts > 200 * num + 10000:
            raise ValueError(f"{task} at difficulty {difficulty} has fewer than {num} distinct "
                             f"{split} questions")
        ex = make(rng, difficulty)
        if ex["question"] in seen or split_of_example(ex) != split:
            continue
        seen.add(ex["question"])
        yield ex
