"""Voting groups equivalent answers; pass@k against brute force over subsets; Wilson bounds."""

import itertools
import math
import random

import numpy as np
import pytest

from o1jax.rewards.api import default_pool
from o1jax.search import voting


def test_equivalent_answers_form_one_class():
    answers = [["1/2", "0.5", "\\frac{1}{2}", "2", None, "0.50", "\\dfrac12", "x", "2.0"],
               ["3", "3", "4", None], [None, None], ["$1,234", "1234", "1234.0"]]
    assert voting.group_answers(answers, default_pool()) == [
        [0, 0, 0, 1, -1, 0, 0, 2, 1], [0, 0, 1, -1], [-1, -1], [0, 0, 0]]


def test_sympy_forms_are_grouped_by_the_verifier():
    answers = [["x^2 - 1", "(x-1)(x+1)", "\\sqrt{4}", "2", "(x+1)^2"]]
    assert voting.group_answers(answers, default_pool()) == [[0, 0, 1, 1, 2]]


def test_majority_counts_classes_and_breaks_ties_by_first_appearance():
    assert voting.majority([0, 1, 1, 0, 0, -1]) == 0
    assert voting.majority([-1, 1, 0, 1, 0]) == 1    # classes 1 and 0 tie: class 1 came first
    assert voting.majority([2, 1, 1, 2]) == 0        # positions, not class ids, set the order
    assert voting.majority([-1, -1]) is None and voting.majority([]) is None
    assert voting.majority([0, 1, 1], weights=[0.9, 0.2, 0.3]) == 0
    assert voting.majority([3, 0, 0, 3], weights=[0.5, 1.0, 0.0, 0.5]) == 0  # 1.0 ties 1.0


def _majority_reference(block, weights=None):
    """Plain majority over one block: count each class's votes, the winner the class with the
    most whose first answer comes first in the block; the index of that first answer."""
    weights = [1.0] * len(block) if weights is None else list(weights)
    votes = {}
    for c, w in zip(block, weights):
        if c != -1:
            votes[c] = votes.get(c, 0.0) + w
    if not votes:
        return None
    best = max(votes.values())
    for i, c in enumerate(block):
        if c != -1 and votes[c] == best:
            return i


def test_majority_ties_are_local_to_the_block_against_a_plain_loop():
    """Rows numbered as group_answers numbers them (first appearance over the whole row), cut
    into blocks of k: every block's winner depends on the block alone."""
    rng = np.random.default_rng(0)
    differ = 0
    for _ in range(400):
        g, k = 8, int(rng.choice([2, 3, 4, 8]))
        raw = rng.integers(-1, 3, size=g).tolist()
        first = {c: n for n, c in enumerate(dict.fromkeys(c for c in raw if c >= 0))}
        row = [first[c] if c >= 0 else -1 for c in raw]
        weights = rng.choice([0.25, 0.5, 1.0], size=g).tolist()  # exact sums: weighted ties
        for lo in range(0, g - k + 1, k):
            block, w = row[lo:lo + k], weights[lo:lo + k]
            assert voting.majority(block) == _majority_reference(block)
            assert voting.majority(block, w) == _majority_reference(block, w)
            ids = [c for c in block if c >= 0]
            differ += _majority_reference(block) != (None if not ids else block.index(
                min(c for c in set(ids) if ids.count(c) == max(map(ids.count, ids)))))
    assert differ > 20   # blocks where the smallest row-wide id would have won the tie


def test_extracted_answers_skip_truncated_responses():
    texts = ["so \\boxed{1/2}", "\\boxed{0.5}", "so \\boxed{ 7 }.", "no answer at all"]
    assert voting.extract_answers(texts, [True, False, True, True], default_pool()) == [
        "1/2", None, "7", None]


@pytest.mark.parametrize("n,c", [(1, 0), (1, 1), (5, 2), (6, 0), (6, 6), (7, 3), (8, 1)])
def test_unbiased_pass_at_k_is_the_mean_over_all_k_subsets(n, c):
    correct = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(correct, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert voting.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        voting.pass_at_k(n, c, n + 1)


def test_wilson_interval_against_a_direct_solution_of_its_quadratic():
    for p, n in [(0.5, 10), (0.0, 20), (1.0, 7), (0.685, 200)]:
        lo, hi = voting.wilson_interval(p, n)
        z = 1.959964
        # the bounds are the q with |p - q| = z sqrt(q (1 - q) / n)
        for q in (lo, hi):
            assert abs(p - q) == pytest.approx(z * math.sqrt(q * (1 - q) / n), abs=1e-9)
        assert lo <= p <= hi


def test_paired_bootstrap_against_a_plain_loop():
    rng = random.Random(3)
    a = [rng.random() < 0.6 for _ in range(120)]
    b = [x if rng.random() < 0.7 else not x for x in a]
    d, lo, hi = voting.paired_bootstrap(a, b, resamples=4000, seed=1)
    assert d == pytest.approx(sum(a) / 120 - sum(b) / 120)
    # the same interval from a plain-Python bootstrap (its own resampling)
    means = []
    for _ in range(4000):
        idx = [rng.randrange(120) for _ in range(120)]
        means.append(sum(a[i] - b[i] for i in idx) / 120)
    means.sort()
    assert lo == pytest.approx(means[100], abs=0.012) and hi == pytest.approx(means[3899], abs=0.012)
    assert lo < d < hi
    same = voting.paired_bootstrap(a, a)
    assert same == (0.0, 0.0, 0.0)          # no difference: a zero-width interval
    with pytest.raises(ValueError, match="equal-length"):
        voting.paired_bootstrap([], [])
