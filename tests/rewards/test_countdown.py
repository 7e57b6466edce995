"""Countdown scoring by hand: a right equation, TinyZero's format credit, rule violations."""

from o1jax.rewards.countdown import countdown_score


def test_countdown_format_credit():
    assert countdown_score("\\boxed{(3+5)*3}", [3, 5, 3], 24) == 1.0
    assert countdown_score("\\boxed{3+5+3}", [3, 5, 3], 24) == 0.1   # well-formed, wrong value
    assert countdown_score("\\boxed{3*8}", [3, 5, 3], 24) == 0.0      # 8 is not given
    assert countdown_score("\\boxed{3^2}", [3, 2], 9) == 0.0          # ^ not allowed
    assert countdown_score("(3+5)*3", [3, 5, 3], 24) == 0.0           # no boxed answer
    assert countdown_score("\\boxed{(3+5)*3 = 24}", [3, 5, 3], 24) == 1.0
