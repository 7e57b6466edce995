"""Self-play's countdown_search form: the referee's accept/reject table, its verdicts against a
plain brute force under Countdown's rules, the level, held-out problems by their split key (not
their text), duplicates, and the level shares the run logs."""

import functools
import importlib
import itertools
import json
import random

import pytest

from o1jax.data.examples import split_of
from o1jax.data.tasks import generate
from o1jax.selfplay import problems
from o1jax.selfplay.problems import Bounds
from o1jax.selfplay.referee import SEARCH, Referee
from o1jax.selfplay.search_problems import judge, with_solution
from o1jax.selfplay.step import judge_of


def _key(numbers, target):
    return "(" + " ".join(map(str, sorted(numbers))) + f") {target}"


def _train(text):
    """A proposal whose problem is in the train partition (by its split key)."""
    nums, target = text.removeprefix("Use ").split(" to make ")
    assert split_of(_key([int(n) for n in nums.split(",")], int(target))) == "train", text
    return text


def _combine(a, b):
    """Every positive integer up to 99 (the task's largest value) two positive integers make
    with + - * /."""
    out = {a + b, a * b, abs(a - b)} - {0}
    out |= {x // y for x, y in ((a, b), (b, a)) if x % y == 0}
    return {v for v in out if v <= 99}


@functools.lru_cache(maxsize=None)
def _reachable(numbers: tuple) -> frozenset:
    """Every value of an expression over a sub-multiset of ``numbers`` (each at most once), by
    combining the values of two disjoint parts (not the solver's move search)."""
    out = set(numbers)
    idx = range(len(numbers))
    for k in range(1, len(numbers)):
        for left in itertools.combinations(idx, k):
            rest = tuple(numbers[i] for i in idx if i not in left)
            for a in _reachable(tuple(numbers[i] for i in left)):
                for b in _reachable(rest):
                    out |= _combine(a, b)
    return frozenset(out)


def _reference(numbers, target) -> str:
    """The verdict by the rules as the task states them."""
    if not (3 <= len(numbers) <= 5):
        return "malformed"
    if not (all(1 <= n <= 20 for n in numbers) and 10 <= target <= 99):
        return "out_of_range"
    one_move = set().union(*(_combine(a, b) for a, b in itertools.combinations(numbers, 2)))
    if target in numbers or target in one_move:
        return "trivial"
    if target not in _reachable(tuple(sorted(numbers))):
        return "unsolvable"
    return "held_out" if split_of(_key(numbers, target)) == "test" else "accepted"


@pytest.mark.parametrize("text, status", [
    (_train("Use 3, 5, 7 to make 22"), "accepted"),               # 3*5+7
    ("  Use 3 ,5,  7  to make 22 ", "accepted"),                    # spacing is normalised
    (_train("Use 2, 9, 11, 12 to make 97"), "accepted"),
    (_train("Use 1, 2, 3, 4, 6 to make 99"), "accepted"),
    ("Use 3, 5 to make 8", "malformed"),                            # 2 numbers
    ("Use 1, 2, 3, 4, 5, 6 to make 99", "malformed"),               # 6 numbers
    ("Use 3, 5, 7 to make", "malformed"),
    ("use 3, 5, 7 to make 22", "malformed"),
    ("3*5+7=?", "malformed"),                                       # another form's text
    ("Use 3, 5, 7 to make 22; import os", "malformed"),
    ("Use -3, 5, 7 to make 22", "malformed"),
    ("", "malformed"),
    ("Use 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 to make 50", "enormous"),   # over max_chars
    ("Use 3, 5, 21 to make 22", "out_of_range"),                    # a number over 20
    ("Use 0, 5, 7 to make 22", "out_of_range"),
    ("Use 3, 5, 7 to make 9", "out_of_range"),                      # target under 10
    ("Use 3, 5, 7 to make 101", "out_of_range"),
    ("Use 3, 10, 7 to make 10", "trivial"),                         # one of the numbers
    ("Use 3, 5, 7 to make 15", "trivial"),                          # one move: 3*5
    ("Use 1, 1, 2 to make 97", "unsolvable"),
    ("Use 7, 11, 12 to make 99", "unsolvable"),
    ("Use 4, 5, 9, 10 to make 47", "unsolvable"),                   # only through a fraction
])
def test_accept_reject_table(text, status):
    p = judge(text, Bounds(max_chars=40))
    assert p.status == status, p
    if status == "accepted":
        assert p.task == "countdown_search" and p.question and p.key


def test_the_rules_are_countdowns_not_the_rational_countdown_forms():
    """The arithmetic forms' countdown reaches 47 from 4, 5, 9, 10 through a fraction; under
    countdown_search's rules (positive integer intermediates) it is unsolvable."""
    assert problems.judge("Use 4, 5, 9, 10 to make 47").status in ("accepted", "held_out")
    assert judge("Use 4, 5, 9, 10 to make 47").status == "unsolvable"


def test_verdicts_match_brute_force_on_random_proposals():
    rng = random.Random(0)
    seen = set()
    for _ in range(600):
        numbers = [rng.randint(0, 13) for _ in range(rng.randint(2, 5))]
        target = rng.randint(8, 102)
        text = f"Use {', '.join(map(str, numbers))} to make {target}"
        p = judge(text)
        assert p.status == _reference(numbers, target), text
        seen.add(p.status)
    assert seen >= {"accepted", "out_of_range", "trivial", "unsolvable", "held_out"}


def test_an_accepted_problem_is_a_countdown_search_example_with_its_level():
    for text, level in [(_train("Use 7, 3, 5 to make 22"), 1),
                        (_train("Use 2, 9, 11, 12 to make 97"), 2),
                        (_train("Use 1, 2, 3, 4, 6 to make 99"), 3)]:
        p = judge(text)
        numbers = [int(n) for n in text[4:text.index(" to")].split(", ")]
        target = int(text.rsplit(" ", 1)[1])
        assert (p.status, p.level, p.features()[-1]) == ("accepted", level, float(level))
        assert p.example() == {"task": "countdown_search", "question": text,
                               "answer": str(target), "meta": p.meta}
        assert json.loads(p.meta) == {"numbers": numbers, "target": target,
                                      "split_key": _key(numbers, target)}
        assert p.key == _key(numbers, target) and p.operators == len(numbers) - 1


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_the_generators_train_problems_are_accepted_with_their_level(difficulty):
    for ex in generate("countdown_search", "train", 30, seed=1, difficulty=difficulty):
        p = judge(ex["question"])
        meta = json.loads(ex["meta"])
        assert (p.status, p.level) == ("accepted", difficulty), ex["question"]
        assert json.loads(p.meta) == {k: meta[k] for k in ("numbers", "target", "split_key")}


def test_held_out_by_split_key_in_any_order_of_the_numbers():
    """Every held-out and hard-split problem of the data is rejected, whichever order its
    numbers are written in, even where that text alone would hash to the train partition;
    and a train problem whose text alone would hash to test is accepted."""
    texts = []
    for difficulty in (1, 2):     # the held-out split and the hard split of thinking.py
        for ex in generate("countdown_search", "test", 20, seed=0, difficulty=difficulty):
            meta = json.loads(ex["meta"])
            for order in itertools.permutations(meta["numbers"]):
                texts.append(f"Use {', '.join(map(str, order))} to make {meta['target']}")
    assert any(split_of(t) == "train" for t in texts)   # the text's hash would let these in
    assert {judge(t).status for t in texts} == {"held_out"}
    assert judge(texts[0], held_out_ok=True).status == "accepted"
    by_text = next(ex["question"] for ex in generate("countdown_search", "train", 400, seed=0)
                   if split_of(ex["question"]) == "test")
    assert judge(by_text).status == "accepted"


class _Pool:
    """A stand-in worker pool: runs the named judge in this process."""

    def map(self, fn, args, timeout):
        module, name = fn.split(":")
        return [getattr(importlib.import_module(module), name)(*a) for a in args]


def test_duplicates_by_numbers_and_target_in_any_order():
    assert judge_of("countdown_search", False) == SEARCH
    referee = Referee(Bounds(), {judge(_train("Use 2, 9, 11, 12 to make 97")).key},
                      pool=_Pool(), judge_fn=SEARCH)
    out = referee.judge([_train("Use 3, 5, 7 to make 22"), "Use 7, 3, 5 to make 22",
                         "Use 12, 11, 9, 2 to make 97", _train("Use 3, 5, 7, 1 to make 22"),
                         "Use 3, 5, 7 to make 15"], [True] * 5)
    assert [p.status for p in out] == ["accepted", "duplicate", "duplicate", "accepted",
                                       "trivial"]
    # the reward finds the accepted problem by its question, as a countdown_search example
    assert referee.problem("Use 3, 5, 7 to make 22").example()["task"] == "countdown_search"


@pytest.mark.parametrize("text, status, question", [
    (_train("Use 3, 5, 7 to make 22"), "accepted", "Use 3, 5, 7 to make 22"),
    ("Use 3, 5, 7 to make 3*5+7", "accepted", "Use 3, 5, 7 to make 22"),
    ("Use 3, 5, 7 to make (7 + 5) * 3", "accepted", "Use 3, 5, 7 to make 36"),
    ("Use 2, 9, 11, 12 to make (11*9)-2", "accepted", "Use 2, 9, 11, 12 to make 97"),
    ("Use 3, 5, 7 to make 3*5+8", "malformed", ""),           # 8 is not given
    ("Use 3, 5, 7 to make 3*5+3", "malformed", ""),           # 3 used twice
    ("Use 3, 5, 7 to make 3*x+7", "malformed", ""),
    ("Use 3, 5, 7 to make (3+5", "malformed", ""),
    ("Use 3, 5, 7 to make 7/5*3", "out_of_range", ""),        # 21/5 is no integer
    ("Use 3, 5, 7 to make 3-5-7", "out_of_range", ""),        # negative
    ("Use 3, 5, 7 to make 3*5", "trivial", ""),               # one move
    ("Use 3, 5, 7 to make __import__('os')", "malformed", ""),
    # the expression form: its numbers and those after "with", sorted; nothing to copy
    ("Make 3*5+7", "accepted", "Use 3, 5, 7 to make 22"),
    ("Make 7+(5*3)", "accepted", "Use 3, 5, 7 to make 22"),
    ("Make (11*9)-2 with 12", "accepted", "Use 2, 9, 11, 12 to make 97"),
    ("Make 3*5+7 with 2, 9", "accepted", "Use 2, 3, 5, 7, 9 to make 22"),
    ("Make 3*5+7 with", "malformed", ""),
    ("Make 3*5+7 with 2, 2, 2, 2, 2", "malformed", ""),        # 8 numbers
    ("Make 3*5", "malformed", ""),                             # 2 numbers: no level
    ("Make 7/5*3", "out_of_range", ""),
    ("Make 3*5+7 with 22", "out_of_range", ""),                # 22 > 20
    ("Make 3*5 with 7", "trivial", ""),
    ("Make __import__('os')", "malformed", ""),
])
def test_a_proposal_that_states_its_solution(text, status, question):
    p = judge(text, Bounds(max_chars=72))
    assert (p.status, p.question) == (status, question), p


def _random_expression(rng, numbers):
    """A random expression over a sub-multiset of ``numbers``, its exact value and the numbers
    it leaves unused, built as a tree (no text is parsed); None where it divides by zero."""
    from fractions import Fraction
    order = rng.sample(numbers, len(numbers))
    k = rng.randint(2, len(numbers))
    used, unused = order[:k], sorted(order[k:])
    leaves = [(str(n), Fraction(n)) for n in used]
    while len(leaves) > 1:
        (ea, a), (eb, b) = leaves.pop(rng.randrange(len(leaves))), \
            leaves.pop(rng.randrange(len(leaves)))
        op = rng.choice("+-*/")
        if op == "/" and b == 0:
            return None
        value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
        leaves.append((f"({ea}{op}{eb})", value))
    return (*leaves[0], unused)


@pytest.mark.parametrize("form", ["listed", "expression"])
def test_stated_solutions_get_the_verdict_of_their_value(form):
    """A random expression over the numbers is judged as its value written as the target is
    (the brute-force reference), or out of range when that value is not an integer."""
    rng = random.Random(2)
    seen = set()
    for _ in range(400):
        numbers = [rng.randint(1, 20) for _ in range(rng.randint(3, 4))]
        built = _random_expression(rng, numbers)
        if built is None:
            continue
        text, value, unused = built
        proposal = (f"Use {', '.join(map(str, numbers))} to make {text}" if form == "listed"
                    else f"Make {text}" + (f" with {', '.join(map(str, unused))}" * bool(unused)))
        p = judge(proposal, Bounds(max_chars=72))
        want = (_reference(numbers, int(value)) if value.denominator == 1
                else "out_of_range")
        assert p.status == want, (numbers, text, value)
        seen.add(p.status)
    assert seen >= {"accepted", "out_of_range", "trivial"}


@pytest.mark.parametrize("form", ["listed", "expression"])
@pytest.mark.parametrize("difficulty", [1, 2])
def test_with_solution_states_a_solution_the_referee_accepts(difficulty, form):
    """The proposer's demonstrations under ``proposal_form``: each train problem's question
    with its target replaced by a solver's expression, judged back to the same problem."""
    for i, ex in enumerate(generate("countdown_search", "train", 40, seed=3,
                                    difficulty=difficulty)):
        stated = with_solution(ex["question"], form, seed=i)
        start = "Use " + ex["question"].split(" make")[0][4:] if form == "listed" else "Make "
        assert stated != ex["question"] and stated.startswith(start)
        p = judge(stated, Bounds(max_chars=72))
        assert (p.status, p.question, p.level) == ("accepted", ex["question"], difficulty)
    assert with_solution("Use 3, 5, 7 to make 22", "target") == "Use 3, 5, 7 to make 22"
    with pytest.raises(ValueError, match="unsolvable"):
        with_solution("Use 1, 1, 2 to make 97", form)
    with pytest.raises(ValueError, match="not a countdown_search question or a form"):
        with_solution("Use 3, 5, 7 to make 22", "stated")
