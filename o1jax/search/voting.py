"""Choosing among sampled answers, and the statistics every strategy is reported with.

Answers are grouped by the verifier's equivalence, not by their text: ``1/2``, ``0.5`` and
``\\frac{1}{2}`` are one answer. Extraction and every comparison that needs sympy run in the
verifier's worker pool under its time limit (model text is hostile); plain numbers are compared
exactly in this process (``fractions.Fraction`` of a regex match, nothing evaluated).
"""

from __future__ import annotations

import fractions
import math
import re
from typing import Sequence

import numpy as np

from o1jax.rewards.answers import extract_answer
from o1jax.rewards.pool import ERROR, TIMEOUT, CheckPool

EQUIVALENT = "o1jax.rewards.verifier:answers_equivalent"
EXTRACT = "o1jax.search.voting:answer_of"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def answer_of(response: str) -> str | None:
    """The final answer of a response (``extract_answer``), stripped; run in the pool."""
    answer = extract_answer(response)
    return answer.strip() if answer is not None and answer.strip() else None


def extract_answers(texts: Sequence[str], finished: Sequence[bool], pool: CheckPool
                    ) -> list[str | None]:
    """The final answer of each finished response (None: truncated, none, or timed out)."""
    idx = [i for i, f in enumerate(finished) if f]
    found = pool.map(EXTRACT, [(texts[i],) for i in idx])
    out: list[str | None] = [None] * len(texts)
    for i, a in zip(idx, found):
        out[i] = a if isinstance(a, str) and a not in (TIMEOUT, ERROR) else None
    return out


def plain_number(answer: str) -> fractions.Fraction | None:
    """The exact value of a plain number (``-12``, ``0.5``, ``3/4``, ``$1,234``), else None."""
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", answer.replace("$", "").replace(" ", ""))
    if not _NUMBER.fullmatch(s):
        return None
    try:
        return fractions.Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def group_answers(answers: Sequence[Sequence[str | None]], pool: CheckPool
                  ) -> list[list[int]]:
    """Equivalence classes of each problem's answers: for answers [N][G], a class id [N][G]
    per answer (-1 for None), classes numbered in order of first appearance.

    Answers with the same text are one class; two different texts are compared once (plain
    numbers here, anything else by the verifier in the pool: all comparisons of all problems
    in one parallel batch), and an answer joins the first earlier class it is equivalent to."""
    distinct = [list(dict.fromkeys(a for a in row if a is not None)) for row in answers]
    pairs, jobs = [], []
    verdict: dict[tuple[int, int, int], bool] = {}
    for n, texts in enumerate(distinct):
        values = [plain_number(t) for t in texts]
        for j in range(len(texts)):
            for i in range(j):
                if values[i] is not None and values[j] is not None:
                    verdict[n, i, j] = values[i] == values[j]
                else:
                    pairs.append((n, i, j))
                    jobs.append((texts[j], texts[i]))
    for key, result in zip(pairs, pool.map(EQUIVALENT, jobs) if jobs else []):
        verdict[key] = result is True
    out = []
    for n, (row, texts) in enumerate(zip(answers, distinct)):
        cls: list[int] = []
        for j in range(len(texts)):
            cls.append(next((cls[i] for i in range(j) if verdict[n, i, j]), max(cls + [-1]) + 1))
        of_text = dict(zip(texts, cls))
        out.append([of_text[a] if a is not None else -1 for a in row])
    return out


def majority(classes: Sequence[int], weights: Sequence[float] | None = None) -> int | None:
    """Index of the first answer of the class with the most votes (``weights``: a vote's
    weight, default 1) among answers with a class (>= 0); a tie goes to the class whose first
    answer comes first in ``classes`` (only the order within the given votes counts, never
    the ids' values: a block of k samples is decided by its own answers). None when no
    answer has a class."""
    totals: dict[int, float] = {}   # insertion order: order of first appearance
    for i, c in enumerate(classes):
        if c >= 0:
            totals[c] = totals.get(c, 0.0) + (1.0 if weights is None else float(weights[i]))
    if not totals:
        return None
    best = max(totals.values())
    winner = next(c for c, v in totals.items() if v == best)
    return list(classes).index(winner)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021):
    1 - C(n - c, k) / C(n, k), the chance that k of the n drawn without replacement hold a
    correct one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def wilson_interval(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` measured on ``n`` trials."""
    if n == 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # p=0, 1: rounding


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10000,
                     seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same problems (per-problem accuracies [N]) and its percentile
    bootstrap interval: problems are resampled with replacement, each keeping its pair."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length, non-empty [N] arrays, got "
                         f"{np.shape(a)} and {np.shape(b)}")
    idx = np.random.default_rng(seed).integers(0, d.size, (resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(lo), float(hi)
