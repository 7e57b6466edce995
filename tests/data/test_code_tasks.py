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
