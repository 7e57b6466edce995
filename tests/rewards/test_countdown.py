"""Countdown scoring by hand: o1jax's own rule (each given number at most once; 0.1 partial
credit for a valid expression over the given numbers with another value), and where it differs
from TinyZero's (every number exactly once; 0.1 for any well-formed equation)."""

from o1jax.rewards.countdown import countdown_score


def test_countdown_partial_credit():
    assert countdown_score("\\boxed{(3+5)*3}", [3, 5, 3], 24) == 1.0
    assert countdown_score("\\boxed{3+5+3}", [3, 5, 3], 24) == 0.1   # valid, wrong value
    assert countdown_score("\\boxed{3*8}", [3, 5, 3], 24) == 0.0      # 8 is not given
    assert countdown_score("\\boxed{3^2}", [3, 2], 9) == 0.0          # ^ not allowed
    assert countdown_score("(3+5)*3", [3, 5, 3], 24) == 0.0           # no boxed answer
    assert countdown_score("\\boxed{(3+5)*3 = 24}", [3, 5, 3], 24) == 1.0


def test_where_the_rule_differs_from_tinyzero():
    # a subset of the numbers reaching the target is right (TinyZero: every number, so 0.1)
    assert countdown_score("\\boxed{3+5}", [3, 5, 3], 8) == 1.0
    assert countdown_score("\\boxed{12/4}", [12, 4, 7, 9], 3) == 1.0
    # a number that is not given, or one used twice, scores 0 (TinyZero: 0.1, well-formed)
    assert countdown_score("\\boxed{3*5*7}", [3, 5, 3], 24) == 0.0
    assert countdown_score("\\boxed{5+5+3}", [3, 5, 3], 13) == 0.0
    assert countdown_score("\\boxed{5+5}", [3, 5, 3], 24) == 0.0
