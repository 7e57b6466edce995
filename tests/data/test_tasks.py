"""Synthetic tasks: reference solutions verify, perturbed answers do not, splits are disjoint."""

import json

import pytest

from o1jax.data import tasks
from o1jax.rewards import verify_batch
from o1jax.rewards.functions import correctness
from o1jax.rewards.api import default_pool

N = 150


@pytest.mark.parametrize("task", ["arithmetic", "multiplication", "linear", "fractions"])
def test_reference_solutions_verify_and_perturbed_answers_fail(task):
    exs = [ex for d in (1, 2, 3) for ex in tasks.generate(task, "train", N // 3, seed=d,
                                                           difficulty=d)]
    assert len(exs) == N
    assert all(verify_batch([e["solution"] for e in exs], [e["answer"] for e in exs]))
    # the same solution with the final answer changed by one is wrong
    perturbed = [e["solution"].rsplit("\\boxed{", 1)[0] + f"\\boxed{{{e['answer']}+1}}"
                 for e in exs]
    assert not any(verify_batch(perturbed, [e["answer"] for e in exs]))


def test_countdown_reference_scores_and_perturbations():
    exs = list(tasks.generate("countdown", "train", N, seed=3, difficulty=2))
    finished = [True] * N
    pool = default_pool()
    assert correctness([e["solution"] for e in exs], exs, finished, pool).tolist() == [1.0] * N
    for e in exs[:40]:
        m = json.loads(e["meta"])
        nums = m["numbers"]
        expr = e["solution"].rsplit("\\boxed{", 1)[1].rstrip("}")
        # the reference written another way is accepted (here: in parentheses)
        alt = f"\\boxed{{({expr})}}"
        wrong_target = f"\\boxed{{({expr})+1}}"                # 1 is not available or reused
        reuse = f"\\boxed{{({expr})+{nums[0]}-{nums[0]}}}"    # reuses numbers
        scores = correctness([alt, wrong_target, reuse], [e] * 3, [True] * 3, pool)
        assert scores.tolist() == [1.0, 0.0, 0.0], (e, scores)


@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_splits_are_disjoint_and_deterministic(task):
    train = list(tasks.generate(task, "train", 300, seed=0))
    test = list(tasks.generate(task, "test", 30, seed=0))
    assert not {e["question"] for e in train} & {e["question"] for e in test}
    assert len({e["question"] for e in train}) == 300
    assert list(tasks.generate(task, "train", 300, seed=0)) == train
    assert list(tasks.generate(task, "train", 300, seed=1)) != train
    # a test question is never produced by a train generator with another seed either
    other = {e["question"] for e in tasks.generate(task, "train", 300, seed=7)}
    assert not other & {e["question"] for e in test}


def test_difficulty_grows_numbers():
    easy = list(tasks.generate("arithmetic", "train", 50, difficulty=1))
    hard = list(tasks.generate("arithmetic", "train", 50, difficulty=5))
    size = lambda exs: sum(len(e["answer"]) for e in exs)  # noqa: E731
    assert size(hard) > 2 * size(easy)


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        next(tasks.generate("nope", "train", 1))


def _forgetful(a: int, b: int, op: str) -> int:
    """What a demonstrator who forgets every carry and borrow writes: each column on its own,
    mod 10 (a plain reference, independent of the task's step writer)."""
    out, i = 0, 0
    while a or b:
        col = (a % 10 + b % 10) if op == "+" else (a % 10 - b % 10)
        out += (col % 10) * 10 ** i
        a, b, i = a // 10, b // 10, i + 1
    return out


def test_sloppy_demonstrator_forgets_carries_and_borrows():
    clean = list(tasks.generate("arithmetic", "train", 300, seed=0))
    sloppy = list(tasks.generate("arithmetic", "train", 300, seed=0, slip_rate=1.0))
    # the same questions and true answers: only the demonstrations change
    assert [(e["question"], e["answer"]) for e in sloppy] == \
        [(e["question"], e["answer"]) for e in clean]
    checked = 0
    for e in sloppy:
        q = e["question"][:-2]
        if "*" in q:
            assert e["solution"].endswith(f"\\boxed{{{e['answer']}}}")
            continue
        op = "+" if "+" in q else "-"
        a, b = map(int, q.split(op))
        boxed = e["solution"].rsplit("\\boxed{", 1)[1][:-1]
        assert int(boxed) == _forgetful(a, b, op), e
        checked += 1
    assert checked > 150
    # at rate 0.5 some, not all, of the carrying/borrowing demonstrations are wrong
    half = list(tasks.generate("arithmetic", "train", 300, seed=0, slip_rate=0.5))
    wrong = [e["solution"].rsplit("\\boxed{", 1)[1][:-1] != e["answer"] for e in half]
    hard = [e["answer"] != str(_forgetful(*map(int, e["question"][:-2].split(op)), op))
            for e in half for op in "+-" if op in e["question"]]
    assert 0.3 * sum(hard) < sum(wrong) < 0.7 * sum(hard)


def test_slip_rate_errors():
    sloppy = "tasks \\['arithmetic', 'code_functions', 'count'\\] only"
    with pytest.raises(ValueError, match=sloppy):
        next(tasks.generate("linear", "train", 1, slip_rate=0.1))
    with pytest.raises(ValueError, match="slip_rate must be in"):
        next(tasks.generate("arithmetic", "train", 1, slip_rate=1.5))


def test_multiplication_calls_the_tool_in_a_quarter_of_its_demonstrations():
    from o1jax.rollout import tools as tools_lib
    exs = list(tasks.generate("multiplication", "train", 400, difficulty=2))
    calls = [e for e in exs if "<tool>" in e["solution"]]
    assert 0.18 < len(calls) / len(exs) < 0.32
    for e in exs:
        a, b = e["question"][:-2].split("*")
        assert 10 <= int(a) <= 99 and 2 <= int(b) <= 9 and int(e["answer"]) == int(a) * int(b)
    for e in calls:   # the program prints the product; the output shows it, as the tool would
        work = e["solution"].split("<output>")[0]
        assert tools_lib.program_of(work) == f"print({e['question'][:-2]})"
        assert f"<output>{e['answer']}</output>" in e["solution"]
