"""The referee's verdict on one proposal: the accept/reject table, exact answers, and the
countdown search against a plain brute force."""

import itertools
import json
import math
from fractions import Fraction

import pytest

from o1jax.data.tasks import generate, split_of
from o1jax.selfplay.problems import STATUSES, Bounds, judge, level_shares, reachable


def _train(question):
    assert split_of(question) == "train", f"pick another example: {question} is held out"
    return question


@pytest.mark.parametrize("text, status, answer", [
    (_train("12+35=?"), "accepted", "47"),
    ("  12 + 35 = ?  ", "accepted", "47"),                 # spacing is normalised
    (_train("(12+3)*4=?"), "accepted", "60"),
    (_train("3/4+1/6=?"), "accepted", "11/12"),
    (_train("Solve 3x+4=13"), "accepted", "3"),
    (_train("Solve 2x+3=x"), "accepted", "-3"),
    ("12+34", "malformed", None),                          # not a question
    ("hello world", "malformed", None),
    ("Solve 3y+4=10", "malformed", None),                  # not in x
    ("Solve x*x=4", "malformed", None),                    # not linear
    ("", "malformed", None),
    ("__import__('os').system('ls')=?", "unsafe", None),
    ("os.system(1)", "unsafe", None),
    ("exec(1+1)=?", "unsafe", None),
    ("1+1; import os", "unsafe", None),
    ("123456+1=?", "enormous", None),                      # a number over max_digits
    ("1+2+3+4+5=?", "enormous", None),                     # over max_operators
    ("1" * 50 + "=?", "enormous", None),                   # over max_chars
    ("7/0=?", "non_finite", None),
    ("5/(3-3)=?", "non_finite", None),
    ("Solve 0x+1=2", "non_finite", None),                  # no solution
    ("Solve 2x+1=2x+1", "non_finite", None),               # every x
    ("9999*9999=?", "out_of_range", None),                 # answer over max_answer
    ("Use 1, 1, 2 to make 100", "unsolvable", None),
    ("Use 3, 5 to make 8", "malformed", None),             # countdown takes 3 or 4 numbers
    ("12+0=?", "trivial", None),
    ("1*45=?", "trivial", None),
    ("45=?", "trivial", None),
    ("Solve x=4", "trivial", None),
    ("Use 3, 5, 7 to make 7", "trivial", None),
])
def test_accept_reject_table(text, status, answer):
    p = judge(text, Bounds(max_chars=40, max_digits=4, max_operators=3, max_answer=1e6))
    assert p.status == status, p
    if answer is not None:
        assert p.answer == answer and p.question and p.key and p.pattern


def test_held_out_questions_are_rejected_in_either_order():
    held = next(ex["question"] for ex in generate("arithmetic", "test", 50, seed=0)
                if "+" in ex["question"])
    a, b = held[:-2].split("+")
    assert judge(held).status == "held_out"
    assert judge(f"{b}+{a}=?").status == "held_out"


def test_answers_and_forms_agree_with_the_task_generators():
    """Every form tasks.py writes is read back with the generator's own answer."""
    for task in ("arithmetic", "fractions", "linear", "countdown"):
        for ex in generate(task, "train", 40, seed=3, difficulty=2):
            p = judge(ex["question"], Bounds(max_chars=60, max_operators=4))
            if p.status == "trivial":   # the generators do write 0+n now and then
                continue
            if p.status == "held_out":  # a train question whose other order is held out
                a, op, b = ex["question"][:-2].partition("+" if "+" in ex["question"] else "*")
                assert split_of(f"{b}{op}{a}=?") == "test"
                continue
            assert p.status == "accepted", (ex["question"], p)
            assert p.task == task and p.question == ex["question"]
            if task == "countdown":
                assert json.loads(p.meta) == json.loads(ex["meta"])
            assert Fraction(p.answer) == Fraction(ex["answer"]), ex


def test_features_and_keys():
    a, b = judge(_train("12+35=?")), judge("35+12=?")
    assert a.key == b.key and a.pattern == "N+N=?"
    assert (a.digits, a.operators) == (2, 1)
    assert judge(_train("(12+3)*4=?")).operators == 2


def _brute(numbers, target):
    """Every expression tree over ordered subsets, as Fractions."""
    def values(nums):
        if len(nums) == 1:
            yield Fraction(nums[0])
            return
        for i in range(1, len(nums)):
            for a in values(nums[:i]):
                for b in values(nums[i:]):
                    yield from (a + b, a - b, a * b)
                    if b:
                        yield a / b
    return any(v == target for k in range(1, len(numbers) + 1)
               for sub in itertools.permutations(numbers, k) for v in values(list(sub)))


@pytest.mark.parametrize("numbers, target", [([3, 5, 7], 22), ([1, 1, 2], 100),
                                             ([2, 3, 4, 6], 50), ([8, 3, 8, 3], 24),
                                             ([5, 5, 5, 1], 24), ([1, 2, 3], 11)])
def test_countdown_search_matches_brute_force(numbers, target):
    assert reachable(numbers, target) == _brute(numbers, target)


def test_never_raises_on_garbage():
    for text in ["((((((((((1", ")=?", "=?", "Solve =", "Use , , to make", "\x00\xff=?",
                 "1e999999=?", "2**99999=?", "9" * 10000]:
        assert judge(text).status in STATUSES


def test_level_shares():
    assert level_shares([1, 2, 2, 1, 3, 2, 1, 1], (1, 2, 3)) == {
        "proposer/accepted_level_1": 0.5, "proposer/accepted_level_2": 0.375,
        "proposer/accepted_level_3": 0.125}
    assert level_shares([4, 1], (1, 2, 3, 4))["proposer/accepted_level_4"] == 0.5
    assert all(math.isnan(v) for v in level_shares([], (1, 2, 3)).values())
