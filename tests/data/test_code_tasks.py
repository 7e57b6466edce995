"""The synthetic code task: every demonstration passes its own tests when run in the sandbox (the
expected values come from the generator's arithmetic, the pass from Python running the written
code), levels have the stated shape, and the splits hold."""

import json
import random

from o1jax.data import code_tasks, tasks
from o1jax.rewards.code import run_tests


def test_demonstrations_pass_their_tests_and_levels_have_their_shape():
    rng = random.Random(3)
    for level in (1, 2, 3, 4):
        for _ in range(3):
            ex = code_tasks.code_function(rng, level)
            meta = json.loads(ex["meta"])
            assert len(meta["tests"]) == code_tasks.NUM_TESTS and meta["entry_point"] == "f"
            assert run_tests(ex["solution"], meta["tests"], "f").reason == "passed", ex
            ops = [ln for ln in ex["solution"].splitlines() if ln.strip().startswith("y = ")]
            assert len(ops) == (level + 1 if level <= 2 else 2 * (level - 1))
            assert ("if x % 2 == 0:" in ex["solution"]) == (level >= 3)
            assert ex["question"].count(",") + ex["question"].count(";") >= len(ops) - 1


def test_a_wrong_function_fails_the_generated_tests():
    ex = code_tasks.code_function(random.Random(0), 2)
    meta = json.loads(ex["meta"])
    wrong = ex["solution"].replace("    return y", "    return y + 1")
    assert run_tests(wrong, meta["tests"], "f").passed == 0


def test_splits_do_not_overlap():
    train = {e["question"] for e in tasks.generate("code_functions", "train", 200, difficulty=2)}
    test = {e["question"] for e in tasks.generate("code_functions", "test", 20, difficulty=2)}
    assert len(train) == 200 and len(test) == 20 and not train & test


def test_a_sloppy_demonstrator_swaps_subtractions_and_truncates_divisions():
    """slip_rate: the same questions and tests, solutions with Op.bug at that rate; a slipped
    demonstration is a different function, which its tests catch (run in the sandbox)."""
    clean = list(tasks.generate("code_functions", "train", 200, difficulty=2))
    always = list(tasks.generate("code_functions", "train", 200, difficulty=2, slip_rate=1.0))
    half = list(tasks.generate("code_functions", "train", 200, difficulty=2, slip_rate=0.5))
    assert [e["question"] for e in always] == [e["question"] for e in clean]
    assert [e["meta"] for e in always] == [e["meta"] for e in clean]
    lines = lambda ex: [ln.strip() for ln in ex["solution"].splitlines() if "y = " in ln]  # noqa
    buggy = right = 0
    for c, a, h in zip(clean, always, half):
        for lc, la, lh in zip(lines(c), lines(a), lines(h)):
            _, _, v, op, k = lc.split()
            want = {"-": f"y = {k} - {v}", "//": f"y = int({v} / {k})"}.get(op, lc)
            assert la == want and lh in (lc, want)
            if want != lc:
                buggy += lh == want
                right += lh == lc
    assert 0.4 < buggy / (buggy + right) < 0.6
    slipped = [a for a, c in zip(always, clean) if a["solution"] != c["solution"]][:12]
    caught = 0
    for ex in slipped:
        tests = json.loads(ex["meta"])["tests"]
        want = all(_by_hand(lines(ex), int(t.split("(")[1].split(")")[0])) == int(t.split()[-1])
                   for t in tests)
        assert (run_tests(ex["solution"], tests, "f").reason == "passed") == want, ex
        caught += not want
    assert len(slipped) == 12 and caught >= 3


def _by_hand(lines: list[str], x: int) -> int:
    """A level-1/2 demonstration's statements evaluated without Python running them."""
    y = x
    for line in lines:
        if line.startswith("y = int("):
            a, b = line[len("y = int("):-1].split(" / ")
            a, b = (x if a == "x" else y if a == "y" else int(a)), int(b)
            y = abs(a) // b * (1 if a >= 0 else -1)
            continue
        _, _, a, op, b = line.split()
        a, b = [x if t == "x" else y if t == "y" else int(t) for t in (a, b)]
        y = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "//": int.__floordiv__,
             "%": int.__mod__}[op](a, b)
    return y
