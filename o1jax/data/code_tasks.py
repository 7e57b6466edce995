"""A synthetic code task: write a small Python function from its description, checked by running
unit tests on it in the sandbox (``o1jax.rewards.code``).

A problem describes an integer pipeline in words, one operation per clause; at higher levels a
branch on the input's parity picks one of two pipelines. The demonstration writes the function one
operation per line, each under a comment that restates its clause, so that a small model copies
the clause (the constant with it) from the question and translates it from the line above::

    Write f(x): if x is even, x times 3, plus 2; otherwise x minus 1, modulo 4.
    ```python
    def f(x):
        if x % 2 == 0:
            # x times 3
            y = x * 3
            # plus 2
            y = y + 2
        else:
            # x minus 1
            y = x - 1
            # modulo 4
            y = y % 4
        return y
    ```

Level d (``difficulty``): d + 1 operations on one path at levels 1-2; from level 3 a parity
branch with d - 1 operations on each side. Tests: ``NUM_TESTS`` asserts on inputs from
-20..20, the expected values computed here by the same operations in plain Python (the generator's
own arithmetic, never a model's text).
"""

from __future__ import annotations

import random
from typing import Callable, NamedTuple

from o1jax.data.examples import example, slipper

NUM_TESTS = 5
INPUTS = (-20, 20)


class Op(NamedTuple):
    words: str                       # the clause, "{k}" for the constant
    code: str                        # the statement: y from "{v}" (x, then y) and "{k}"
    apply: Callable[[int, int], int]
    constants: tuple[int, int]       # the constant's range
    bug: str = ""                    # what a sloppy demonstrator writes instead, if anything


OPS = (
    Op("plus {k}", "y = {v} + {k}", lambda y, k: y + k, (1, 9)),
    Op("minus {k}", "y = {v} - {k}", lambda y, k: y - k, (1, 9), "y = {k} - {v}"),
    Op("times {k}", "y = {v} * {k}", lambda y, k: y * k, (2, 5)),
    Op("divided by {k} rounded down", "y = {v} // {k}", lambda y, k: y // k, (2, 5),
       "y = int({v} / {k})"),         # rounds towards zero: wrong for negative y
    Op("modulo {k}", "y = {v} % {k}", lambda y, k: y % k, (2, 9)),
    Op("squared", "y = {v} * {v}", lambda y, k: y * y, (0, 0)),
)


def _pipeline(rng: random.Random, n: int) -> list[tuple[Op, int]]:
    return [(op, rng.randint(*op.constants)) for op in rng.choices(OPS, k=n)]


def _words(steps, start: str = "x") -> str:
    return ", ".join([f"{start} {steps[0][0].words.format(k=steps[0][1])}"] +
                     [op.words.format(k=k) for op, k in steps[1:]])


def _code(steps, indent: str, slip: Callable[[], bool]) -> list[str]:
    lines = []
    for i, (op, k) in enumerate(steps):
        clause = ("x " if i == 0 else "") + op.words.format(k=k)
        statement = (op.bug if op.bug and slip() else op.code).format(v="y" if i else "x", k=k)
        lines += [f"{indent}# {clause}", indent + statement]
    return lines


def _run(steps, x: int) -> int:
    y = x
    for op, k in steps:
        y = op.apply(y, k)
    return y


def code_function(rng: random.Random, difficulty: int, slip_rate: float = 0.0) -> dict:
    """A function-writing problem at level ``difficulty`` (see the module docstring).

    ``slip_rate`` > 0 makes the *solution* that of a sloppy demonstrator who writes each
    subtraction with its operands swapped and each rounded-down division as ``int(y / k)``
    with that probability (Op.bug); the tests stay those of the described function. The slips
    come from their own stream seeded by the question, so the questions are the same at every
    rate."""
    d = max(1, difficulty)
    if d <= 2:
        paths = [_pipeline(rng, d + 1)]
        question = f"Write f(x): {_words(paths[0])}."
    else:
        paths = [_pipeline(rng, d - 1), _pipeline(rng, d - 1)]
        question = (f"Write f(x): if x is even, {_words(paths[0])}; otherwise "
                    f"{_words(paths[1])}.")
    slip = slipper(question, slip_rate)
    if d <= 2:
        body = _code(paths[0], "    ", slip)
    else:
        body = (["    if x % 2 == 0:"] + _code(paths[0], "        ", slip) + ["    else:"]
                + _code(paths[1], "        ", slip))
    value = lambda x: _run(paths[x % 2] if d > 2 else paths[0], x)   # noqa: E731
    xs = rng.sample(range(INPUTS[0], INPUTS[1] + 1), NUM_TESTS)
    tests = [f"assert f({x}) == {value(x)}" for x in xs]
    code = "\n".join(["def f(x):", *body, "    return y"])
    solution = f"```python\n{code}\n```"
    return example("code_functions", question, code, solution, d,
                   {"tests": tests, "entry_point": "f"})
