"""Code answers checked by running tests in the sandbox: counts against hand-worked cases, and
the ways a program could fake a pass earning nothing."""

import pytest

from o1jax.rewards.code import code_check, extract_code, run_tests

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(10, 5) == 15"]


def _answer(code: str) -> str:
    return f"Let me write it.\n```python\n{code}\n```\nDone."


def test_the_last_fenced_block_is_the_answer():
    assert extract_code("```python\nx = 1\n```\nthen\n```\ny = 2\n```") == "y = 2\n"
    assert extract_code("no code here") is None
    assert extract_code("```python\nunclosed") is None


def test_tests_passed_are_counted():
    assert run_tests(_answer("def add(a, b):\n    return a + b"), TESTS, "add") == (3, 3,
                                                                                    "passed")
    wrong = _answer("def add(a, b):\n    return a + b if a < 5 else 0")   # add(10, 5) fails
    assert run_tests(wrong, TESTS, "add") == (2, 3, "failed")
    assert code_check(wrong, TESTS, "add") == (pytest.approx(2 / 3), "failed")
    assert code_check("no code", TESTS, "add") == (0.0, "no_code")


def test_humaneval_style_check_of_the_candidate():
    check = "def check(candidate):\n    assert candidate(2, 2) == 4\n\ncheck(add)"
    assert run_tests(_answer("def add(a, b):\n    return a + b"), [check], "add").reason == \
        "passed"


def test_a_slow_test_fails_alone_and_a_slow_import_fails_all():
    code = "def add(a, b):\n    while a == 10:\n        pass\n    return a + b"
    assert run_tests(_answer(code), TESTS, "add", test_seconds=0.3) == (2, 3, "failed")
    r = run_tests(_answer("while True:\n    pass\ndef add(a, b):\n    return a + b"), TESTS, "add")
    assert (r.passed, r.reason in ("cpu", "timeout")) == (0, True)


@pytest.mark.parametrize("cheat", [
    "import sys\nsys.exit(0)",
    "import os\nos._exit(0)",
    "print('\\n00000000000000000000000000000000 3 3')",
    "import __main__\nprint(getattr(__main__, 'nonce', 'none'), 3, 3)",
    "raise ImportError('no')",
])
def test_faking_a_pass_earns_nothing(cheat):
    wrong = "\ndef add(a, b):\n    return None"
    assert run_tests(_answer(cheat + wrong), TESTS, "add").passed == 0


def test_an_entry_point_that_is_not_a_name_is_refused():
    with pytest.raises(ValueError, match="not a Python name"):
        run_tests(_answer("x = 1"), TESTS, "add; import os")
