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


def test_rows_of_a_choosing_rule_carry_its_paired_difference_with_majority():
    ones = np.ones(4)
    scores = lambda acc: Scores(accuracy=np.array(acc), tokens=ones, prompt_tokens=ones,  # noqa
                                prefill_flops=ones, decode_flops=ones, verifier_flops=0 * ones,
                                seconds=0 * ones)
    rows = result_rows("best_of_n", 16, scores([1.0, 1.0, 1.0, 0.0]), ["a", "a", "b", "b"],
                       majority=scores([0.0, 1.0, 1.0, 0.0]))
    by_bin = {r["bin"]: r for r in rows}
    assert by_bin["all"]["vs_majority"] == 0.25 and by_bin["a"]["vs_majority"] == 0.5
    assert by_bin["b"]["vs_majority"] == 0.0
    # resampling 4 problems of which one differs by +1: the mean lies in 0..1
    assert 0.0 <= by_bin["all"]["vs_majority_low"] <= 0.25 <= by_bin["all"]["vs_majority_high"]
    assert "vs_majority" not in result_rows("greedy", 1, scores([1.0] * 4), None)[0]


def test_a_verifier_guided_row_is_paired_with_the_cheapest_vote_that_costs_as_much():
    ones = np.ones(4)
    scores = lambda acc, f: Scores(accuracy=np.array(acc), tokens=ones,  # noqa: E731
                                   prompt_tokens=ones, prefill_flops=f * ones,
                                   decode_flops=f * ones, verifier_flops=f * ones,
                                   seconds=0 * ones)
    vote = scores([0.0, 0.0, 1.0, 1.0], 2.0)
    row = result_rows("best_of_n", 8, scores([1.0, 1.0, 1.0, 1.0], 1.0), None,
                      costlier=(16, vote))[0]
    assert row["flops"] == 3.0 and row["vs_majority_at_flops_budget"] == 16
    assert row["vs_majority_at_flops"] == 0.5
    assert 0.0 <= row["vs_majority_at_flops_low"] <= 0.5 <= row["vs_majority_at_flops_high"]
    assert "vs_majority_at_flops" not in result_rows("best_of_n", 8, vote, None)[0]
