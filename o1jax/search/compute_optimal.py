"""Compute-optimal test-time strategy (Snell et al. 2024): per predicted difficulty, the strategy
whose accuracy is best at the budget.

Difficulty is *predicted*, never read from the labels: the verifier's mean outcome score over a
problem's first few samples (``probes``), cut into five equal-count bins. The choice per bin is
made by two-fold cross-validation: problems are split by index parity, and each half uses the
strategy that did best on the other half's problems of the same bin, so no problem's own result
picks its strategy. Every problem also pays for its probes (their generation and verifier
passes), whether or not the chosen strategy reuses them.
"""

from __future__ import annotations

import numpy as np

from o1jax.search.strategies import Scores

LEVELS = 5


def predicted_bins(scores: np.ndarray, probes: int) -> np.ndarray:
    """Bin 0 (predicted easiest: highest mean score) to LEVELS - 1 per problem, equal counts;
    scores: [N, G] verifier outcome scores of each problem's samples."""
    mean = scores[:, :probes].mean(axis=1)
    order = np.argsort(-mean, kind="stable")
    bins = np.empty(len(mean), int)
    bins[order] = np.arange(len(mean)) * LEVELS // max(len(mean), 1)
    return bins


def choose(candidates: dict[str, Scores], bins: np.ndarray, probe_cost: Scores
           ) -> tuple[Scores, dict]:
    """Per-problem Scores of the compute-optimal choice among ``candidates`` (strategy name ->
    Scores at one budget), with ``probe_cost`` added; and the choices, {bin: [the strategy
    fold 0 used, fold 1's]}."""
    names = sorted(candidates)
    n = len(bins)
    fold = np.arange(n) % 2
    picked = np.empty(n, object)
    choices: dict[int, list[str]] = {}
    for f in (0, 1):
        for b in range(LEVELS):
            mine = (fold == f) & (bins == b)
            if not mine.any():
                continue
            ref = (fold != f) & (bins == b)
            if not ref.any():
                ref = fold != f
            best = max(names, key=lambda s: (candidates[s].accuracy[ref].mean(), -names.index(s)))
            picked[mine] = best
            choices.setdefault(b + 1, ["-", "-"])[f] = best
    fields = {}
    for field in Scores._fields:
        chosen = np.array([getattr(candidates[picked[i]], field)[i] for i in range(n)], float)
        fields[field] = chosen if field == "accuracy" else chosen + getattr(probe_cost, field)
    return Scores(**fields), choices
