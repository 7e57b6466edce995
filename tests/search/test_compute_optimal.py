"""Compute-optimal choice: predicted bins from scores alone, choices from the other fold."""

import numpy as np

from o1jax.search import compute_optimal
from o1jax.search.strategies import Scores


def _scores(acc, cost):
    n = len(acc)
    return Scores(accuracy=np.asarray(acc, float), tokens=np.full(n, cost),
                  prompt_tokens=np.ones(n), prefill_flops=np.full(n, cost),
                  decode_flops=np.full(n, cost), verifier_flops=np.zeros(n),
                  seconds=np.zeros(n))


def test_predicted_bins_are_equal_count_quantiles_of_the_mean_score():
    scores = np.linspace(1, 0, 20)[:, None].repeat(4, axis=1)   # problem 0 looks easiest
    scores[:, 3] = 5.0   # beyond the probes: ignored
    bins = compute_optimal.predicted_bins(scores, probes=3)
    assert bins.tolist() == [b for b in range(5) for _ in range(4)]


def test_each_fold_uses_the_other_folds_best_strategy_per_bin():
    n = 20
    bins = np.repeat(np.arange(5), 4)
    easy = bins == 0
    a = _scores(np.where(easy, 1.0, 0.0), 1.0)        # A: right on easy problems only
    b = _scores(np.where(easy, 0.5, 0.5), 2.0)        # B: half right everywhere
    probe = _scores(np.zeros(n), 10.0)
    chosen, choices = compute_optimal.choose({"A": a, "B": b}, bins, probe)
    assert choices[1] == ["A", "A"] and all(choices[k] == ["B", "B"] for k in (2, 3, 4, 5))
    np.testing.assert_allclose(chosen.accuracy, np.where(easy, 1.0, 0.5))
    np.testing.assert_allclose(chosen.tokens, np.where(easy, 11.0, 12.0))  # probes paid for
    # a bin's choice never sees its own fold: the fold that alone favours B keeps A's choice
    rigged = _scores(np.where(easy & (np.arange(n) % 2 == 0), 0.0, a.accuracy), 1.0)
    _, choices = compute_optimal.choose({"A": rigged, "B": b}, bins, probe)
    assert choices[1] == ["A", "B"]   # fold 0 looks at fold 1 (A still perfect there)
