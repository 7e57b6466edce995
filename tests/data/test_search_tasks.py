"""Countdown as a stream of search: the solver against brute force, demonstrations that replay to
their stated states, exact step labels."""

import functools
import itertools
import json
import random

import pytest

from o1jax.data import search_tasks as st
from o1jax.rewards.countdown import countdown_score


def _combine(a, b):
    """Brute force's own rule: every value two positive integers make (positive integers up
    to the task's largest value)."""
    out = {a + b, a * b}
    if a != b:
        out.add(abs(a - b))
    if a % b == 0:
        out.add(a // b)
    if b % a == 0:
        out.add(b // a)
    return {v for v in out if v <= st.MAX_VALUE}


@functools.lru_cache(maxsize=None)
def _values(numbers: tuple) -> frozenset:
    """Every value an expression using each of ``numbers`` exactly once makes, by splitting the
    multiset into two non-empty parts in every way (a different algorithm from the solver's
    move search)."""
    if len(numbers) == 1:
        return frozenset(numbers)
    out = set()
    idx = range(len(numbers))
    for k in range(1, len(numbers)):
        for left in itertools.combinations(idx, k):
            lhs = tuple(sorted(numbers[i] for i in left))
            rhs = tuple(sorted(numbers[i] for i in idx if i not in left))
            for a in _values(lhs):
                for b in _values(rhs):
                    out |= _combine(a, b)
    return frozenset(out)


def _reachable(numbers) -> set:
    """Values of expressions over any non-empty sub-multiset (each number at most once)."""
    out = set()
    for k in range(1, len(numbers) + 1):
        for sub in itertools.combinations(sorted(numbers), k):
            out |= _values(sub)
    return out


def test_solver_matches_brute_force_on_every_three_numbers():
    for nums in itertools.combinations_with_replacement(range(1, 13), 3):
        reach = _reachable(nums)
        for target in range(1, 101):
            assert st.solvable(nums, target) == (target in reach), (nums, target)


def test_solver_matches_brute_force_on_generated_four_numbers():
    rng = random.Random(0)
    for _ in range(2000):
        ex = st.countdown_search(rng, 2)
        meta = json.loads(ex["meta"])
        nums = tuple(sorted(meta["numbers"]))
        assert len(nums) == 4 and meta["target"] in _reachable(nums)
        other = rng.randint(1, 100)
        assert st.solvable(nums, other) == (other in _reachable(nums)), (nums, other)


@pytest.mark.parametrize("difficulty", [1, 2])
def test_demonstrations_replay_to_their_stated_states(difficulty):
    rng = random.Random(difficulty)
    strategies, backups = set(), 0
    for _ in range(300 if difficulty == 1 else 60):
        ex = st.countdown_search(rng, difficulty)
        meta = json.loads(ex["meta"])
        steps = st.replay(meta["numbers"], meta["target"], ex["solution"])
        assert steps[-1].kind == "answer"
        assert all(s.valid for s in steps if s.kind in ("move", "back")), ex["solution"]
        for s in steps:
            if s.verdict == "dead":        # a stated dead end is one exactly
                assert not s.solvable and len(s.state) <= 2
            if s.verdict == "goal":        # reached, or one checked move away
                assert s.solvable and len(s.state) <= 2
            if s.kind == "back" or s.verdict == "dead":   # a state abandoned for an earlier one
                backups += 1
        stats = st.search_stats(ex["solution"])
        assert stats["backups"] == sum(s.kind == "back" or s.verdict == "dead" for s in steps)
        gave_up = stats["gave_up"]
        score = countdown_score(ex["solution"], meta["numbers"], meta["target"])
        assert (score == 1.0) == (not gave_up), ex["solution"]
        strategies.add(meta["strategy"])
    assert strategies == set(st.STRATEGIES) and backups > 0


def test_step_labels_are_exact_on_random_states():
    rng = random.Random(3)
    for _ in range(300):
        nums = sorted(rng.randint(1, 12) for _ in range(4))
        target = rng.randint(10, 100)
        a, op, b, r, new = rng.choice(st.moves(tuple(nums)))
        (step,) = st.replay(nums, target, f"{a}{op}{b}={r} {st.fmt_state(new)}")
        assert step.valid and step.state == new
        assert step.solvable == (target in _reachable(new))


def test_replay_rejects_wrong_moves():
    nums, target = [3, 7, 12], 33
    bad = ["12-7=6 (3 6)",        # wrong arithmetic
           "12-7=5 (3 6)",        # wrong stated state
           "9+3=12 (7 12)",       # 9 is not in the state
           "7-12=-5 (3 5)",       # not a positive result, not the a >= b form
           "12-7=5",              # a move that is not a verdict must state its state
           "12-7=5 (3 5): 8 2 15 | 34 dead",   # the target restated wrong
           "12-7=5 (3 5): 8 2 15 dead",        # the target not restated
           "12-7=5 (3 5): 8 2 | 33 dead",      # a value left out of the check
           "12-7=5 (3 5) | 33",                # a target without a check
           "12+9=21 (12 21): 33 9 | 33 dead",  # 9 is not in the state
           "7*3=21 (12 21): 33 9 | 33 dead",   # the target is among the values: a false verdict
           "back (1 2)"]          # not a state on the path
    for line in bad:
        (step,) = st.replay(nums, target, line)
        assert not step.valid and not step.solvable, line
    steps = st.replay(nums, target, "12-7=5 (3 5)\n5*3=15 dead\nback (3 7 12)\n"
                                    "7*3=21 (12 21)\n21+12=33 goal\n\\boxed{(7*3)+12}")
    assert [s.kind for s in steps] == ["move", "move", "back", "move", "move", "answer"]
    assert all(s.valid for s in steps)
    assert [s.solvable for s in steps[:5]] == [False, False, True, True, True]
    checked = st.replay(nums, target, "12-7=5 (3 5): 8 2 15 | 33 dead\n"
                                      "7*3=21 (12 21): 33 9 | 33 goal\n\\boxed{(7*3)+12}")
    assert [(s.valid, s.solvable, s.verdict) for s in checked[:2]] == [
        (True, False, "dead"), (True, True, "goal")]


def test_hostile_text_is_parsed_in_bounded_time():
    steps = st.replay([3, 7, 12], 33, ("9" * 5000 + "+1=2 (2)\n") * 50 + "back (" + "1 " * 9000)
    assert not any(s.valid for s in steps)


def _flatten(nested: str) -> str:
    """A nested search written as ``countdown_search`` writes it: each pair's move and check
    on one line, the back-up after a dead check left out (the flat form's dead line is it)."""
    out, lines = [], nested.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("(") and out:
            out[-1] = f"{out[-1].rsplit(' (', 1)[0]} {line}"
        elif line.startswith("back") and lines[i - 1].endswith(" dead") and \
                lines[i - 1].startswith("("):
            continue
        else:
            out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("difficulty", [1, 2])
def test_nested_demonstrations_are_the_same_searches_and_replay(difficulty):
    """countdown_nested writes the search countdown_search writes for the same draws, each
    pair a state of its own; every line replays valid, each check's label exact."""
    backups = 0
    for seed in range(200 if difficulty == 1 else 40):
        flat = st.countdown_search(random.Random(seed), difficulty)
        ex = st.countdown_search(random.Random(seed), difficulty, nested=True)
        assert ex["task"] == "countdown_nested" and ex["meta"] == flat["meta"]
        assert _flatten(ex["solution"]) == flat["solution"]
        meta = json.loads(ex["meta"])
        steps = st.replay(meta["numbers"], meta["target"], ex["solution"])
        assert all(s.valid for s in steps if s.kind != "other"), ex["solution"]
        for s in (s for s in steps if s.kind == "check"):
            assert len(s.state) == 2
            assert s.solvable == (s.verdict == "goal") == (meta["target"] in _reachable(s.state))
        stats = st.search_stats(ex["solution"])
        assert stats["backups"] == sum(s.kind == "back" or s.kind == "move" and
                                       s.verdict == "dead" for s in steps)
        assert stats["dead_ends"] == sum(s.verdict == "dead" for s in steps)
        backups += stats["backups"]
    assert backups > 0


def test_replay_rejects_wrong_checks():
    nums, target = [3, 7, 12], 33
    start = "12-7=5 (3 5)\n"
    bad = ["(3 5): 8 2 15 | 34 dead",     # the target restated wrong
           "(3 5): 8 2 | 33 dead",        # a value left out
           "(3 6): 9 3 18 2 | 33 dead",   # not the current pair
           "(3 5): 8 2 15 | 33 goal"]     # a false verdict
    for line in bad:
        steps = st.replay(nums, target, start + line)
        assert steps[0].valid and not steps[1].valid and not steps[1].solvable, line
    (top,) = st.replay(nums, target, "(3 7 12): 19 5 84 | 33 dead")   # a check of no pair
    assert top.kind == "check" and not top.valid
    steps = st.replay(nums, target, start + "(3 5): 8 2 15 | 33 dead\nback (3 7 12)\n"
                      "7*3=21 (12 21)\n(12 21): 33 9 | 33 goal\n\\boxed{(7*3)+12}")
    assert [s.kind for s in steps] == ["move", "check", "back", "move", "check", "answer"]
    assert all(s.valid for s in steps)
    assert [s.solvable for s in steps[:5]] == [False, False, True, True, True]
