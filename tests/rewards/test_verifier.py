"""verify(): extraction, an equivalence table, injection attempts, pathological inputs."""

import os
import time


from o1jax.rewards import verify_batch
from o1jax.rewards.pool import CheckPool


def B(s):  # a response whose final answer is boxed
    return f"Let me think step by step. ... so the result is \\boxed{{{s}}}."


T, F = True, False
EQUIVALENCE = [
    # integers and signs
    (B("42"), "42", T), (B("042"), "42", T), (B("-7"), "-7", T), (B("+7"), "7", T),
    (B("43"), "42", F), (B("-42"), "42", F), (B("0"), "0", T), (B("0"), "-0", T),
    # decimals and precision
    (B("0.5"), "1/2", T), (B("0.50"), "0.5", T), (B(".5"), "0.5", T), (B("3.14"), "3.14", T),
    (B("3.14"), "3.1415", F), (B("2.0"), "2", T), (B("1.999999"), "2", F),
    # a decimal equals a value it matches to 6 places (Math-Verify's rule)
    (B("0.333333"), "1/3", T), (B("0.333334"), "1/3", F), (B("0.33333333333333"), "1/3", T),
    # thousands separators
    (B("1,000"), "1000", T), (B("1,234,567"), "1234567", T), (B("12,345.5"), "12345.5", T),
    (B("1{,}000"), "1000", T), (B("1\\,000"), "1000", T), (B("1,001"), "1000", F),
    # currency and units
    (B("\\$18"), "18", T), (B("$18.00"), "18", T), (B("18 dollars"), "18", T),
    (B("5\\text{ cm}"), "5", T), (B("5 cm"), "5", T), (B("12 \\mbox{ inches}"), "12", T),
    (B("6 hours"), "6", T), (B("\\$19"), "18", F), (B("3 km"), "4", F),
    (B("90^\\circ"), "90", T), (B("90^{\\circ}"), "90", T), (B("45°"), "45", T),
    # fractions
    (B("\\frac{1}{2}"), "1/2", T), (B("\\dfrac{3}{4}"), "0.75", T), (B("\\tfrac12"), "0.5", T),
    (B("\\frac{2}{4}"), "1/2", T), (B("\\frac{1}{3}"), "1/2", F), (B("6/8"), "3/4", T),
    (B("-\\frac{1}{2}"), "-0.5", T), (B("\\frac{-1}{2}"), "-1/2", T), (B("\\frac{1}{-2}"), "1/2", F),
    (B("\\frac{\\frac{1}{2}}{2}"), "1/4", T), (B("\\frac{10}{4}"), "5/2", T),
    # mixed numbers
    (B("3 1/2"), "7/2", T), (B("3\\frac{1}{2}"), "7/2", T), (B("2 3/4"), "2.75", T),
    (B("-1 1/2"), "-3/2", T), (B("3 1/2"), "3/2", F),
    # percentages
    (B("50\\%"), "50", T), (B("50\\%"), "0.5", T), (B("50%"), "50", T), (B("12.5\\%"), "0.125", T),
    (B("50\\%"), "5", F), (B("25%"), "0.5", F),
    # scientific notation
    (B("1.5e3"), "1500", T), (B("1.5 \\times 10^{3}"), "1500", T), (B("1.5\\cdot10^3"), "1500", T),
    (B("2E-2"), "0.02", T), (B("1e3"), "100", F), (B("6.02\\times10^{23}"), "6.02e23", T),
    # roots, pi, powers, cdot
    (B("\\sqrt{8}"), "2\\sqrt{2}", T), (B("2\\sqrt{2}"), "\\sqrt{8}", T), (B("\\sqrt{2}"), "1.41421356237", T),
    (B("\\sqrt{3}"), "\\sqrt{2}", F), (B("\\sqrt[3]{27}"), "3", T), (B("2\\pi"), "2*pi", T),
    (B("\\pi"), "3.14159265358979", T), (B("\\pi"), "3.14", F), (B("2^{10}"), "1024", T),
    (B("2^10"), "1024", T), (B("3\\cdot 4"), "12", T), (B("3 \\times 4"), "12", T),
    (B("\\left(2+3\\right)^2"), "25", T), (B("(2+3)^2"), "26", F), (B("10 \\div 4"), "5/2", T),
    (B("\\frac{\\sqrt{3}}{2}"), "sqrt(3)/2", T), (B("\\frac{\\pi}{4}"), "0.785398163397448", T),
    (B("e^{2}"), "exp(2)", T), (B("\\sin(\\pi/6)"), "1/2", T), (B("\\ln(e)"), "1", T),
    # symbolic expressions
    (B("2x+2"), "2(x+1)", T), (B("x^2-1"), "(x-1)(x+1)", T), (B("(x+1)^2"), "x^2+2x+1", T),
    (B("x^2+1"), "(x+1)^2", F), (B("\\frac{x}{2}"), "0.5x", T), (B("a+b"), "b+a", T),
    (B("2a"), "a+a", T), (B("\\frac{x^2-1}{x-1}"), "x+1", T), (B("xy"), "yx", T),
    (B("3x"), "3y", F), (B("\\sqrt{x^2}"), "x", F), (B("\\frac{1}{x}+\\frac{1}{y}"), "(x+y)/(xy)", T),
    # equations
    (B("x = 3"), "3", T), (B("x=3"), "x=3", T), (B("y = -2"), "-2", T), (B("x = 4"), "3", F),
    (B("3"), "x = 3", T), (B("y=2x+1"), "2x+1=y", T), (B("2y=4x+2"), "y=2x+1", T),
    (B("y=2x+1"), "y=2x+2", F),
    # tuples, sets, intervals
    (B("(1, 2)"), "(1,2)", T), (B("(2, 1)"), "(1,2)", F), (B("(1,2,3)"), "(1,2)", F),
    (B("\\left(\\frac{1}{2}, 3\\right)"), "(0.5, 3)", T), (B("\\{1,2,3\\}"), "\\{3,2,1\\}", T),
    (B("\\{1,2\\}"), "\\{1,3\\}", F), (B("1, 2, 3"), "1,2,3", T), (B("3, 2, 1"), "\\{1,2,3\\}", T),
    (B("[1, 5)"), "[1,5)", T), (B("[1, 5]"), "[1,5)", F), (B("(0, \\infty)"), "(0,\\infty)", T),
    (B("(1, 4]"), "(1,4]", T), (B("x=1, x=2"), "1,2", T),
    # text answers
    (B("\\text{yes}"), "yes", T), (B("No"), "no", T), (B("yes"), "no", F), (B("Monday"), "Tuesday", F),
    # extraction: #### and 'the answer is', last number, last boxed wins
    ("so 5+5=10\n#### 10", "10", T), ("#### 1,250", "1250", T), ("#### 11", "10", F),
    ("Therefore the answer is 12.", "12", T), ("The answer is: $3.50", "3.5", T),
    ("The answer is 7/2.", "3.5", T), ("I get 3 then 4 then 5", "5", T), ("I get 3 then 4 then 5", "3", F),
    ("first \\boxed{3} then actually \\boxed{4}", "4", T), ("first \\boxed{3} then \\boxed{4}", "3", F),
    ("\\boxed{\\frac{1}{\\sqrt{4}}}", "1/2", T), ("a \\fbox{12} b", "12", T), ("50%", "0.5", T),
    # degenerate answers never match
    ("", "0", F), ("no numbers here", "0", F), (B(""), "0", F), ("\\boxed{", "1", F),
    (B(" "), "", F), ("the answer is", "", F), (B("1"), "", F), (B("1/0"), "1", F),
    # gold answers that cannot be parsed are never matched by default
    (B("3"), "\\unknowncommand{3}", F), (B("anything"), "\\frac{1", F),
    # precision of large and small numbers
    (B("123456789"), "123456789", T), (B("123456788"), "123456789", F),
    (B("0.000001"), "1e-6", T), (B("0.000002"), "1e-6", F), (B("1000000"), "10^6", T),
    # negatives and parentheses
    (B("-(3)"), "-3", T), (B("(-3)"), "-3", T), (B("--3"), "3", T), (B("-\\left(-3\\right)"), "3", T),
    # implicit multiplication and spacing
    (B("2 \\cdot \\pi \\cdot r"), "2pi r", T), (B("4 \\pi r^2"), "4*pi*r^2", T),
    (B("2(3+4)"), "14", T), (B("2 (3 + 4)"), "15", F),
    # near misses across categories
    (B("\\frac{2}{3}"), "0.66", F), (B("1,000"), "100", F), (B("\\$18.01"), "18", F),
    (B("7/2"), "2 1/2", F), (B("0.2%"), "0.2%", T), (B("20%"), "0.02", F), (B("1.5e4"), "1500", F),
    (B("\\sqrt{16}"), "5", F), (B("2\\pi"), "6.28", F), (B("x^3"), "x^2", F), (B("x+1"), "x-1", F),
    (B("(1,2)"), "\\{1,2,3\\}", F), (B("[0,1]"), "(0,1)", F), (B("\\{2\\}"), "1", F),
    (B("x = 5"), "x = -5", F), (B("-5"), "5", F), (B("10^{3}"), "10^{4}", F), (B("a"), "b", F),
]


def test_table_size_and_balance():
    assert len(EQUIVALENCE) >= 150
    assert sum(e for *_, e in EQUIVALENCE) > 50 and sum(not e for *_, e in EQUIVALENCE) > 50


def test_equivalence_table():
    got = verify_batch([g for g, _, _ in EQUIVALENCE], [r for _, r, _ in EQUIVALENCE])
    wrong = [(g, r, e) for (g, r, e), v in zip(EQUIVALENCE, got) if v != e]
    assert not wrong, f"{len(wrong)} wrong verdicts: {wrong}"


def _injections(marker: str) -> list[str]:
    """Answers that would create the file ``marker`` (or reach Python objects) if any part of
    the checker evaluated them."""
    chrs = "+".join(f"chr({ord(c)})" for c in marker)   # the path with no quote to escape
    return [
        f"__import__('os').system('touch {marker}')",
        f"\\boxed{{__import__('os').system('touch {marker}')}}",
        "().__class__.__bases__[0].__subclasses__()",
        "\\boxed{().__class__.__bases__[0].__subclasses__()}",
        f"(lambda: __import__('os').system('touch {marker}'))()",
        f"\\boxed{{(lambda: open('{marker}', 'w'))()}}",
        f"eval(\"open('{marker}','w')\")", f"\\boxed{{exec('open(\"{marker}\",\"w\")')}}",
        "x.__globals__", "\\boxed{x.__dict__}", "\\boxed{[c for c in ().__class__.__mro__]}",
        f"the answer is __import__('subprocess').call(['touch', '{marker}'])",
        "\\boxed{getattr(__builtins__, 'eval')('1')}", "\\boxed{Symbol('x').__class__}",
        f"\\boxed{{\\text{{__import__('os').system('touch {marker}')}}}}",
        "\\boxed{1; import os}", "\\boxed{lambda x: x}", "\\boxed{{1:2}}",
        # latex2sympy2 turns \\hat{...} text into a symbol name; sympy's infinite-sum evalf
        # would lambdify it into Python source (found by auditing math-verify's LaTeX path)
        "\\boxed{\\{\\sum_{n=0}^{\\infty}\\frac{\\hat{\x0cif\x0copen(" + chrs +
        ",chr(119))\x0celse\x0c0}^{n}}{n!}\\}}",
        "$\\sum_{n=0}^{\\infty}\\frac{\\hat{\rimport os;os.system('touch " + marker +
        "')\r}^{n}}{n!}$",
    ]


def test_injection_runs_nothing_and_is_false(tmp_path):
    marker = str(tmp_path / "injection_marker")   # this test's own: concurrent runs never meet
    injections = _injections(marker)
    got = verify_batch(injections, ["7"] * len(injections))
    assert got == [False] * len(injections)
    got = verify_batch(injections, ["\\pi"] * len(injections))  # a gold that makes sympy evalf
    assert got == [False] * len(injections)
    # against a reference that is the code text itself: a gold that is not mathematics is
    # matched only as the same text, and one changed name makes it unequal
    got = verify_batch(injections, injections)
    assert not os.path.exists(marker)
    changed = [s.replace("os", "oz").replace("__class__", "__klass__") for s in injections[:5]]
    assert not any(verify_batch(injections[:5], changed))


PATHOLOGICAL = [
    "\\boxed{9**9**9**9}", "\\boxed{9^{9^{9^{9}}}}", "\\boxed{factorial(10**8)}",
    "\\boxed{10^{10^{10}}}", "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
    "\\boxed{" + "\\frac{" * 300 + "1" + "}{2}" * 300 + "}", "1" * 1_000_000,
    "\\boxed{" + "x+" * 200_000 + "1}", "\\boxed{1e999999999}", "\\boxed{2^{-10^{9}}}",
    "\\boxed{\\sqrt{" * 500 + "2" + "}" * 500, "9" * 100_000, "\\boxed{" + "1" * 100_000 + "}",
    "the answer is " + "\\frac{1}{2}" * 20000,
    "\\boxed{(1.1^1000)^1000}", "\\boxed{(1.1^{1000})^{1000}}", "\\boxed{((3/2)^999)^999}",
    "\\boxed{10.0^{10^{12}}}", "\\boxed{}", "\\boxed{\\frac{1}{2}", "}{\\boxed{{{",
    "x" * 100_000 + "\\boxed{3",
]


def test_pathological_inputs_are_false_within_the_time_limit():
    t = time.monotonic()
    with CheckPool(num_workers=2, timeout=1.0) as pool:
        start = time.monotonic() - t     # starting workers, on this machine under its load now
        t = time.monotonic()
        got = verify_batch(PATHOLOGICAL, ["3"] * len(PATHOLOGICAL), pool=pool)
        elapsed = time.monotonic() - t
        assert got == [False] * len(PATHOLOGICAL)
        # each check is bounded by its 1 s, each kill by a worker's start (measured above, with
        # a factor 2); no credit for the 2 workers, which a loaded 2-core machine may not give.
        # An unbounded check (9**9**9**9 evaluated) would take far longer.
        assert elapsed < len(PATHOLOGICAL) * 1.0 + pool.stats["timeouts"] * 2 * start + 20
        assert pool.stats["checks"] == len(PATHOLOGICAL)
        assert pool.stats["timeouts"] >= 1  # the slow ones are counted, not silent
        procs = [w.proc for w in pool._workers]
    for p in procs:  # no worker left behind
        p.wait(timeout=10)
        assert p.poll() is not None
