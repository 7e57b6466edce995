"""The Countdown task's score, o1jax's own rule: reach a target with the given numbers, each at
most once. Runs in the verifier's worker processes, like ``verifier.is_equivalent``.

It differs from TinyZero's countdown reward, which requires every given number exactly once and
gives its 0.1 format score to any well-formed equation, other numbers included: here a subset of
the numbers may reach the target (1.0), and an expression using a number that is not given (or
one given number twice) scores 0. The scores are kept as they are: the demo's figures use them."""

from __future__ import annotations

import re
from typing import Sequence

from o1jax.rewards.answers import extract_answer, last_boxed, latex_to_plain
from o1jax.rewards.parsing import ParseError, parse_expression, tokenize


def countdown_score(response: str, numbers: Sequence[int], target: int) -> float:
    """1.0 if the final answer is an expression over ``numbers`` (each used at most once, with
    + - * / and parentheses only) that evaluates to ``target``; 0.1 if it is such an expression
    with another value (o1jax's partial credit for a valid expression); else 0.0."""
    answer = extract_answer(response) if last_boxed(response) is not None else None
    if answer is None:
        return 0.0
    answer = re.sub(r"\s*=\s*-?\d+\s*$", "", answer.strip())
    value = expression_value(latex_to_plain(answer), numbers)
    if value is None:
        return 0.0
    return 1.0 if value == target else 0.1


def expression_value(text: str, numbers: Sequence[int]):
    """The exact value (a sympy rational) of ``text`` if it is an expression over ``numbers``,
    each used at most once, with + - * / and parentheses only; else None. Nothing is evaluated
    but through the whitelisting parser."""
    try:
        tokens = tokenize(text)
    except ParseError:
        return None
    if not tokens or any(k == "name" or v in ("^", "**", ",") for k, v in tokens):
        return None
    used = [int(v) for k, v in tokens if k == "num" if v.isdigit()]
    if len(used) != sum(k == "num" for k, _ in tokens):
        return None  # decimals or exponents are not allowed
    pool = list(numbers)
    for u in used:
        if u not in pool:
            return None
        pool.remove(u)
    try:
        return parse_expression(text)
    except (ParseError, ZeroDivisionError):
        return None
