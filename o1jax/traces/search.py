"""A solution of a task written as a stream of search (``countdown_search``,
``countdown_nested``, ``sudoku``) replayed line by line for the trace page: each line's state,
whether it is legal, its exact label (the state still solvable, or a dead end: the task's solver
decides, ``replay``), the dead ends it states, each back-up and the line it returns to, the
give-up line.

The problem is read from the question as the task writes it ("Use 3, 5, 7 to make 24";
"Sudoku 4x4: 1.../.41./..32/...."), so a ``--problem`` and a held-out example are read alike.
Model text is hostile: lines are escaped wherever they are shown.
"""

from __future__ import annotations

import html
import re

from o1jax.data import search_tasks, sudoku
from o1jax.rewards.grid import parse_grid

SEARCH_TASKS = ("countdown_search", "countdown_nested", "sudoku")
GIVE_UP = "stuck"
_COUNTDOWN = re.compile(r"Use ((?:\d{1,6}, ){0,19}\d{1,6}) to make (\d{1,7})")
_SUDOKU = re.compile(r"Sudoku ([1-9])x\1: ([1-9./]{1,100})")


def search_problem(task: str, question: str) -> dict | None:
    """The start of the search a question asks for: {"numbers" (sorted), "target"} for
    countdown_search, {"puzzle", "size"} for sudoku; None for another task or a question that
    is not one of the task's."""
    if task in ("countdown_search", "countdown_nested") and (
            m := _COUNTDOWN.fullmatch(question.strip())):
        return {"numbers": sorted(int(x) for x in m[1].split(", ")), "target": int(m[2])}
    if task == "sudoku" and (m := _SUDOKU.fullmatch(question.strip())):
        size = int(m[1])
        if parse_grid(m[2], size) is not None:
            return {"puzzle": m[2], "size": size}
    return None


def search_lines(task: str, question: str, response: str) -> list[dict] | None:
    """Each non-empty line of ``response`` replayed from the question's start state: {"text",
    "kind" (move, back, check, answer, other), "state" (as the task writes it), "valid", "solvable"
    (the exact label of the state it leads or returns to), "verdict" (the line's claim: goal,
    dead or ""), "returns_to" (a valid back-up: the 1-based number of the line that reached
    the state it returns to, 0 for the start; else None)}. None when the question is not a
    problem of a search task."""
    problem = search_problem(task, question)
    if problem is None:
        return None
    if task == "sudoku":
        size = problem["size"]
        start = parse_grid(problem["puzzle"], size)
        steps = sudoku.replay(problem["puzzle"], response)
        show = lambda state: sudoku.fmt_grid(state, size)  # noqa: E731
    else:
        start = tuple(problem["numbers"])
        steps = search_tasks.replay(problem["numbers"], problem["target"], response)
        show = search_tasks.fmt_state
    path = [(start, 0)]          # the states of the current path and the line that reached each
    out = []
    for i, s in enumerate(steps, 1):
        returns_to = None
        if s.kind == "move" and s.valid and s.verdict != "dead":
            path.append((s.state, i))
        elif s.kind == "back" and s.valid:
            k = [state for state, _ in path].index(s.state)
            returns_to = path[k][1]
            del path[k + 1:]
        out.append(dict(text=response[response.rfind("\n", 0, s.end) + 1:s.end].strip(),
                        kind=s.kind, state=show(s.state), valid=s.valid, solvable=s.solvable,
                        verdict=s.verdict, returns_to=returns_to))
    return out


def line_mark(line: dict) -> str:
    """What a replayed line is, in words: a move to a solvable state or into a dead end, a
    back-up (to which line), the answer, the give-up line, or an invalid line."""
    if line["kind"] == "other":
        return "gives up" if line["text"] == GIVE_UP else "invalid: not a line of the search"
    if not line["valid"]:
        return {"back": "invalid back-up: not to a state on the current path",
                "check": "invalid check: not the current pair's values, target or verdict"}.get(
                    line["kind"], "invalid move: illegal, or not the state it leads to")
    if line["kind"] == "answer":
        return "the answer"
    label = "solvable" if line["solvable"] else "dead end"
    if line["kind"] == "back":
        to = "the start" if line["returns_to"] == 0 else f"line {line['returns_to']}"
        return f"back-up to {to}: {label}"
    claim = f" (says {line['verdict']})" if line["verdict"] else ""
    return f"{'check' if line['kind'] == 'check' else 'move'}: {label}{claim}"


def summary(lines: list[dict]) -> dict:
    """Counts of a replayed search: moves, back-ups, dead ends stated, moves into a state that
    cannot reach the answer, invalid lines, and whether it gave up."""
    moves = [ln for ln in lines if ln["kind"] == "move"]
    return {"moves": len(moves), "backups": sum(ln["kind"] == "back" for ln in lines),
            "dead_ends_stated": sum(ln["verdict"] == "dead" and ln["kind"] in ("move", "check")
                                    for ln in lines),
            "unsolvable_moves": sum(ln["valid"] and not ln["solvable"] for ln in moves),
            "invalid": sum("invalid" in line_mark(ln) for ln in lines),
            "gave_up": any(ln["kind"] == "other" and ln["text"] == GIVE_UP for ln in lines)}


# the first key a line's mark holds names its row's class (an invalid back-up is invalid)
_ROW_CLASS = {"invalid": "invalid", "back-up": "backup", "gives up": "stuck", "dead end": "dead"}
STYLE = ("<style>.search td { text-align: left; font-family: monospace; } "
         ".search tr.dead { background: #fde4e4; } .search tr.backup { background: #e3eefc; } "
         ".search tr.invalid { background: #fff1c9; } .search tr.stuck { background: #eee; }"
         "</style>")


def search_html(lines: list[dict]) -> str:
    """The replayed search as an HTML table (a line, its state, what it is), rows coloured by
    kind: dead ends red, back-ups blue, invalid lines yellow, the give-up grey."""
    esc = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    rows = []
    for i, ln in enumerate(lines, 1):
        mark = line_mark(ln)
        cls = next((c for key, c in _ROW_CLASS.items() if key in mark), "")
        state = esc(ln["state"]) if ln["kind"] in ("move", "back") and ln["valid"] else ""
        rows.append(f'<tr class="{cls}"><td>{i}</td><td>{esc(ln["text"])}</td><td>{state}</td>'
                    f"<td>{esc(mark)}</td></tr>")
    s = summary(lines)
    return (f"{STYLE}<p>The search, replayed line by line: {s['moves']} moves "
            f"({s['unsolvable_moves']} into a state from which the answer cannot be reached, "
            f"{s['dead_ends_stated']} stated dead), {s['backups']} back-ups, {s['invalid']} "
            f"invalid lines{', gave up' if s['gave_up'] else ''}. Each label is exact: the "
            "task's solver decides whether the state can still reach the answer.</p>"
            '<table class="search"><tr><th>line</th><th>text</th><th>state</th><th>what it is'
            f"</th></tr>{''.join(rows)}</table>")
