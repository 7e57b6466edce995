"""Difficulty bins and results rows."""

import numpy as np

from o1jax.search.results import difficulty_bins, result_rows
from o1jax.search.strategies import Scores


def test_bins_come_from_the_task_levels_else_from_the_pass_rate():
    mixed = [{"difficulty": 2}, {"difficulty": 3}, {"difficulty": 2}]
    assert difficulty_bins(mixed, np.array([1.0, 0.0, 0.5])) == [
        "difficulty2", "difficulty3", "difficulty2"]
    same = [{"difficulty": 2}] * 6
    rates = np.array([1.0, 0.81, 0.8, 0.5, 0.2, 0.0])
    assert difficulty_bins(same, rates) == ["level1", "level1", "level2", "level3", "level5",
                                            "level5"]
    assert difficulty_bins(same, None) is None


def test_rows_per_bin_average_their_problems():
    s = Scores(accuracy=np.array([1.0, 0.0, 1.0, 1.0]), tokens=np.array([1.0, 2, 3, 4]),
               prompt_tokens=np.ones(4), prefill_flops=np.ones(4), decode_flops=np.ones(4),
               verifier_flops=np.zeros(4), seconds=np.zeros(4))
    rows = result_rows("greedy", 1, s, ["a", "b", "a", "b"])
    assert [(r["bin"], r["problems"], r["accuracy"], r["tokens"]) for r in rows] == [
        ("all", 4, 0.75, 2.5), ("a", 2, 1.0, 2.0), ("b", 2, 0.5, 3.0)]
    assert all(r["flops"] == 2.0 for r in rows)
