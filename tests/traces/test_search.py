"""A search task's solution on the trace page: each line's state, its exact label against brute
force, back-ups and the line they return to against the written lines, invalid lines, the
give-up line, and the page's HTML escaped."""

import html
import functools
import itertools
import json
import random

import pytest

from o1jax.data import search_tasks, sudoku
from o1jax.traces.search import line_mark, search_html, search_lines, search_problem, summary
from o1jax.traces.view import trace_html

# numbers 2, 3, 4, target 24: every kind of line, its mark worked out by hand
HAND = ["4-3=1 (1 2)", "2+1=3 dead", "back (2 3 4)", "3*2=6 (4 6)", "6+4=10 (10)",
        "back (4 7)", "back (4 6)", "6*4=25 goal", "<b>I think</b>", "6*4=24 goal", "stuck",
        "\\boxed{(3*2)*4}"]
HAND_MARKS = ["move: dead end", "move: dead end (says dead)", "back-up to the start: solvable",
              "move: solvable", "move: dead end",
              "invalid back-up: not to a state on the current path",
              "back-up to line 4: solvable", "invalid move: illegal, or not the state it leads to",
              "invalid: not a line of the search", "move: solvable (says goal)", "gives up",
              "the answer"]


def reaches(numbers: list[int], target: int) -> bool:
    """Brute force: some sequence of + - * / on two of the numbers (positive integer results)
    leaves the target among them."""
    if target in numbers:
        return True
    for i, j in itertools.permutations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        rest = [n for k, n in enumerate(numbers) if k not in (i, j)]
        for r in (a + b, a - b, a * b, a // b if a % b == 0 else 0):
            if r > 0 and reaches(rest + [r], target):
                return True
    return False


def test_every_kind_of_line_is_marked_as_worked_out_by_hand():
    lines = search_lines("countdown_search", "Use 4, 2, 3 to make 24", "\n".join(HAND) + "\n")
    assert [ln["text"] for ln in lines] == HAND
    assert [line_mark(ln) for ln in lines] == HAND_MARKS
    assert [ln["state"] for ln in lines[:5]] == ["(1 2)", "(3)", "(2 3 4)", "(4 6)", "(10)"]
    assert summary(lines) == dict(moves=6, backups=3, dead_ends_stated=1, unsolvable_moves=3,
                                  invalid=3, gave_up=True)


def _back_state(task: str, text: str) -> str:
    """The state a back-up line names, as written."""
    return text.removesuffix(" back") if task == "sudoku" else text.removeprefix("back ")


def _wrote(task: str, text: str, state: str) -> bool:
    """Whether a line is a move that wrote ``state`` and went on from it (not a dead end)."""
    if task == "sudoku":
        return text == state + " open"
    return not text.startswith("back ") and text.endswith(" " + state)


def _returns_to(task: str, texts: list[str], i: int, start: str) -> int:
    """The line a back-up (line i, 0-based) returns to, read from the text: the latest earlier
    move that wrote the state it names and did not end there, else the start (0)."""
    state = _back_state(task, texts[i])
    if state == start:
        return 0
    return max(j + 1 for j in range(i) if _wrote(task, texts[j], state))


@pytest.mark.parametrize("task", ["countdown_search", "countdown_nested", "sudoku"])
def test_demonstrations_replay_with_their_states_labels_and_back_ups(task):
    rng = random.Random(1)
    make = {"countdown_search": search_tasks.countdown_search, "sudoku": sudoku.sudoku,
            "countdown_nested": functools.partial(search_tasks.countdown_search, nested=True)
            }[task]
    backups = 0
    for _ in range(40):
        ex = make(rng, 1 + (rng.random() < 0.5))
        meta = json.loads(ex["meta"])
        problem = search_problem(task, ex["question"])
        if task == "sudoku":
            assert problem == {"puzzle": meta["puzzle"], "size": meta["size"]}
            start = meta["puzzle"]
        else:
            assert problem == {"numbers": sorted(meta["numbers"]), "target": meta["target"]}
            start = search_tasks.fmt_state(meta["numbers"])
        texts = ex["solution"].split("\n")
        lines = search_lines(task, ex["question"], ex["solution"])
        assert [ln["text"] for ln in lines] == texts
        for i, (text, ln) in enumerate(zip(texts, lines)):
            assert "invalid" not in line_mark(ln), text
            if ln["kind"] == "move" and ln["verdict"] != "dead" and ln["verdict"] != "goal":
                assert _wrote(task, text, ln["state"])      # the state the line wrote
            if ln["kind"] in ("move", "check") and task != "sudoku":
                numbers = [int(x) for x in ln["state"].strip("()").split()]
                assert ln["solvable"] == reaches(numbers, meta["target"]), text
            if ln["verdict"] == "dead":
                assert not ln["solvable"], text
            if ln["kind"] == "back":
                backups += 1
                assert ln["returns_to"] == _returns_to(task, texts, i, start), text
                assert ln["state"] == _back_state(task, text)
        assert lines[-1]["kind"] == "answer"
        assert summary(lines)["gave_up"] == ("stuck" in texts)
    assert backups > 5


def test_a_nested_check_is_marked():
    # (1 2) makes 3 and 1 (x*1 and x/1 are not moves); (4 6) makes 24: "dead" is false
    text = ("4-3=1 (1 2)\n(1 2): 3 1 | 24 dead\nback (2 3 4)\n3*2=6 (4 6)\n"
            "(4 6): 10 2 24 | 24 dead")
    lines = search_lines("countdown_nested", "Use 4, 2, 3 to make 24", text)
    assert [line_mark(ln) for ln in lines] == [
        "move: dead end", "check: dead end (says dead)", "back-up to the start: solvable",
        "move: solvable", "invalid check: not the current pair's values, target or verdict"]
    assert summary(lines)["dead_ends_stated"] == 2     # stated, the false one too


def test_other_tasks_and_other_questions_have_no_search_view():
    assert search_lines("countdown", "Use 4, 2, 3 to make 24", "4*6=24") is None
    assert search_lines("countdown_search", "What is 2+2?", "4") is None
    assert search_lines("sudoku", "Sudoku 4x4: 12/34", "stuck") is None
    assert search_problem("sudoku", "Sudoku 4x4: 1.../.41./..32/....")["size"] == 4


def test_the_page_escapes_the_lines_and_colours_them_by_kind():
    hostile = '<script>alert("x")</script>'
    text = "\n".join(HAND[:8] + [hostile])
    lines = search_lines("countdown_search", "Use 2, 3, 4 to make 24", text)
    shown = search_html(lines)
    assert "<script>" not in shown and html.escape(hostile) in shown
    classes = [row.split('"')[1] for row in shown.split("<tr class=")[1:]]
    assert classes == ["dead", "dead", "backup", "", "dead", "invalid", "backup", "invalid",
                       "invalid"]
    tr = dict(problem="Use 2, 3, 4 to make 24", answer="24", correct=False, values=None,
              response=text, steps=[], before=[], after=[], attention={}, search=lines)
    page = trace_html(tr, {})
    assert shown in page and "<script>" not in page
    assert "The search, replayed" not in trace_html(dict(tr, search=None), {})
