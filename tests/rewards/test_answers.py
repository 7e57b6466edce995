"""Final-answer extraction and the plain-text normal form, against answers written by hand."""

import pytest

from o1jax.rewards.answers import extract_answer, last_boxed, normalize


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"), ("x \\boxed{a{b{c}}} y", "a{b{c}}"),
    ("\\boxed{1} and \\boxed{2}", "2"), ("#### 72", "72"), ("The answer is 5.", "5"),
    ("values 1, 2 and 3.5", "3.5"), ("nothing", None), ("\\boxed{unclosed", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_last_boxed_nested():
    assert last_boxed("\\boxed{\\frac{\\sqrt{2}}{2}}") == "\\frac{\\sqrt{2}}{2}"


@pytest.mark.parametrize("answer, expected", [
    ("1,234,567", "1234567"), ("$5.", "5"), ("12 dollars", "12"), ("\\frac{3}{4}", "((3)/(4))"),
])
def test_normalize(answer, expected):
    assert normalize(answer) == expected
