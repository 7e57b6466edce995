"""Selection rules on hand-built generations: a perfect verifier makes best-of-N pass@N; equal
weights make weighted majority plain majority."""

import numpy as np
import pytest

from o1jax.models import preset
from o1jax.search import strategies, voting


def _generation(correct, classes_of=None):
    n, g = correct.shape
    return strategies.Generation(
        texts=[["x"] * g for _ in range(n)], answers=[["1"] * g for _ in range(n)],
        tokens=np.zeros((n * g, 4), np.int32), mask=np.ones((n * g, 4), bool),
        correct=correct.astype(float), finished=np.ones((n, g), bool),
        lengths=np.full((n, g), 3), prompt_lengths=np.full(n, 1), seconds=1.0,
        warmup_seconds=0.0)


def test_best_of_n_with_a_perfect_verifier_is_pass_at_n():
    rng = np.random.default_rng(0)
    correct = (rng.random((40, 8)) < 0.3).astype(float)
    gen = _generation(correct)
    cfg = preset("tiny")
    for k in (1, 2, 4, 8):
        best = strategies.score("best_of_n", k, gen, cfg, verifier_scores=correct, verifier=cfg)
        # k divides 8: every sample is in one block; a block is solved iff it holds a correct one
        blocks = correct.reshape(40, 8 // k, k).max(axis=2).mean(axis=1)
        np.testing.assert_allclose(best.accuracy, blocks)
    full = strategies.score("best_of_n", 8, gen, cfg, verifier_scores=correct, verifier=cfg)
    want = [voting.pass_at_k(8, int(c), 8) for c in correct.sum(axis=1)]
    np.testing.assert_allclose(full.accuracy, want)
    assert (full.verifier_flops > 0).all()


def test_weighted_majority_with_equal_weights_is_majority():
    rng = np.random.default_rng(1)
    classes = rng.integers(-1, 3, size=(50, 8)).tolist()
    correct = np.array([[float(c == 0) for c in row] for row in classes])
    gen = _generation(correct)
    cfg = preset("tiny")
    for k in (1, 2, 4, 8):
        plain = strategies.score("majority", k, gen, cfg, classes)
        weighted = strategies.score("weighted_majority", k, gen, cfg, classes,
                                    np.full((50, 8), 0.7), cfg)
        np.testing.assert_allclose(weighted.accuracy, plain.accuracy)


def test_a_verifier_strategy_without_scores_is_an_error():
    gen = _generation(np.ones((2, 2)))
    with pytest.raises(ValueError, match="needs a verifier"):
        strategies.score("best_of_n", 2, gen, preset("tiny"))
