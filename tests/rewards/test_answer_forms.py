"""Answer forms of MATH-style problems, each from both sides: accepted when equal, rejected
when it differs in one place (sign, bracket, order where it matters, relation direction, one
digit). Every verdict below was decided by hand."""

import pytest

from o1jax.rewards import verify_batch
from o1jax.rewards.answers import extract_answer


def B(s):
    return f"We work it out step by step. Therefore the answer is \\boxed{{{s}}}."


T, F = True, False
FORMS = [
    # numbers: separators, decimal comma, thin spaces
    (B("1,000,000"), "1000000", T), (B("1\\,000\\,000"), "1000000", T),
    (B("11,\\!111"), "11111", T), (B("1,000,001"), "1000000", F),
    # fractions, mixed numbers, percentages
    (B("\\frac{10}{9}"), "10/9", T), (B("-\\frac{10}{9}"), "-10/9", T),
    (B("\\frac{10}{9}"), "-10/9", F), (B("\\frac{9}{10}"), "10/9", F),
    (B("2\\frac{1}{2}"), "5/2", T), (B("2\\frac{1}{3}"), "5/2", F),
    (B("2 100/101"), "302/101", T), (B("2 100/101"), "2100/101", F),  # not a thin-space 2100
    (B("1/3000000"), "0", F), (B("0.0000001"), "0.000000", T),  # rounding only for decimals
    (B("28\\%"), "28\\%", T), (B("29\\%"), "28\\%", F),
    # radicals, pi, exp, log
    (B("\\frac{1+\\sqrt{5}}{2}"), "\\frac{1+\\sqrt{5}}{2}", T),
    (B("\\frac{1-\\sqrt{5}}{2}"), "\\frac{1+\\sqrt{5}}{2}", F),
    (B("\\frac{\\pi}{3}"), "\\frac{\\pi}{3}", T), (B("\\frac{\\pi}{6}"), "\\frac{\\pi}{3}", F),
    (B("e^{2}"), "e^2", T), (B("e^{3}"), "e^2", F),
    (B("\\log_2 8"), "3", T), (B("\\log_2 16"), "3", F),
    # plus-minus: a set of two
    (B("\\pm 2"), "2,-2", T), (B("\\pm 3"), "2,-2", F), (B("-2, 2"), "\\pm 2", T),
    # intervals: open and closed ends matter; unions
    (B("(0,9)"), "(0,9)", T), (B("[0,9)"), "(0,9)", F), (B("(0,9]"), "(0,9)", F),
    (B("(-\\infty, 2) \\cup (3, \\infty)"), "(-\\infty,2)\\cup(3,\\infty)", T),
    (B("(-\\infty, 2] \\cup (3, \\infty)"), "(-\\infty,2)\\cup(3,\\infty)", F),
    # sets: order does not matter
    (B("\\{1, 2, 3\\}"), "\\{3, 2, 1\\}", T), (B("\\{1, 2, 4\\}"), "\\{3, 2, 1\\}", F),
    # tuples: order matters
    (B("(1, 2)"), "(1,2)", T), (B("(2, 1)"), "(1,2)", F), (B("(1, -2)"), "(1,2)", F),
    # lists of tuples (a set of solutions)
    (B("(1,2),(3,4)"), "(1,2),(3,4)", T), (B("(3,4),(1,2)"), "(1,2),(3,4)", T),
    (B("(1,2),(3,5)"), "(1,2),(3,4)", F), (B("1234"), "(1,2),(3,4)", F),
    # matrices and vectors
    (B("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"),
     "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", T),
    (B("\\begin{pmatrix} 1 & 2 \\\\ 4 & 3 \\end{pmatrix}"),
     "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", F),
    # equations, chained equations, named left sides
    (B("x = 5"), "5", T), (B("x = 6"), "5", F),
    (B("x = 5+5+1 = 11"), "11", T), (B("x = 5+5+1 = 12"), "11", F),
    (B("x_1 = 3"), "3", T), (B("f(x) = 2x+1"), "2x+1", T), (B("f(x) = 2x-1"), "2x+1", F),
    # inequalities and relations: direction matters
    (B("x > 5"), "x > 5", T), (B("5 < x"), "x > 5", T), (B("x < 5"), "x > 5", F),
    (B("x \\geq 5"), "x \\ge 5", T), (B("x \\leq 5"), "x \\ge 5", F),
    # symbolic expressions
    (B("\\frac{x}{7}+\\frac{2}{7}"), "\\frac{x+2}{7}", T),
    (B("\\frac{x}{7}+\\frac{3}{7}"), "\\frac{x+2}{7}", F),
    (B("\\sec^2(y)"), "\\tan^2(y)+1", T),
    # text answers
    (B("\\text{(C)}"), "C", T), (B("\\text{(D)}"), "C", F),
    (B("\\text{Monday}"), "Monday", T), (B("\\text{Tuesday}"), "Monday", F),
]

UNBOXED = [
    # answers in $...$ or \( \) instead of \boxed{}
    ("So the interval is $[0,1)$.", "[0,1)", T), ("So the interval is $(0,1)$.", "[0,1)", F),
    ("Hence \\(\\frac{3}{4}\\) of them.", "3/4", T),
    ("Hence \\(\\frac{3}{5}\\) of them.", "3/4", F),
    ("1 000", "1000", T), ("1 001", "1000", F),
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", "1/2", T),
    ("The final answer is $\\frac{1}{3}$. I hope it is correct.", "1/2", F),
    # the last-number fallback only for plain-number golds, never out of words or fractions
    ("She has 12 apples left.", "12", T), ("She has 13 apples left.", "12", F),
    ("AZYUK2A", "2", F), ("so \\frac{1+\\sqrt{5}}{2}", "2", F),
    ("so it is 12 = 1 + 11", "x + 2", F),
    ("It costs $5 and then $7", "7", T),
    ("So the answer is $18. Each day she earns $2 more.", "18", T),
]


@pytest.mark.parametrize("table", [FORMS, UNBOXED], ids=["boxed", "unboxed"])
def test_answer_forms_both_ways(table):
    got = verify_batch([r for r, _, _ in table], [g for _, g, _ in table], timeout=5.0)
    wrong = [(g, r, e) for (r, g, e), v in zip(table, got) if v != e]
    assert not wrong, f"{len(wrong)} wrong verdicts: {wrong}"


def test_extraction_order():
    assert extract_answer("$1$ then \\boxed{2} then $3$") == "2"
    assert extract_answer("#### 72\n$5$") == "72"
    assert extract_answer("The final answer is $x^2$. I hope it is correct.") == "x^2"
    assert extract_answer("we had $x=3$, so $y=4$") == "y=4"
    assert extract_answer("12 apples", reference="\\frac{1}{2}") is None
    assert extract_answer("12 apples", reference="12") == "12"
