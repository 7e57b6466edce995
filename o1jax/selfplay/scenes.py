"""Cross-modal self-play's problems: the proposer writes a picture's specification and a
question as text; the referee checks and bounds it (``o1jax.data.visual.parse_spec``), draws
the picture and computes the answer from the specification; the solver sees only the picture
and the question.

    scene: red circle 0 1; blue square 2 3 ? red objects    (or: ? circles, ? red circles)
    chart: 3 5 2 7 ? bar 2                                   (or: ? bar 2 - bar 4)
    sum: 23 + 45                                             (the question is always the sum)

Pure and free of JAX (``judge`` runs in the verifier's time-limited worker processes); only
regular expressions and ``int`` on short digit strings touch the text. A specification error
is a counted rejection by its reason; the difficulty features the metrics report under the
text forms' names are: ``digits`` the picture's size (objects, bars, or the sum's digits),
``operators`` the question's conditions (filter terms, bars compared, 1 for a sum),
``answer_magnitude`` log10(1 + |answer|), ``level`` the difficulty that draws such a picture
(``visual.level_of``: the hard split's pictures are one level above the training ones).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from o1jax.data import visual
from o1jax.data.tasks import split_of
from o1jax.selfplay.problems import Bounds, Problem

LEVELS = (1, 2, 3, 4)     # visual.level_of's: up to 8 objects, 6 bars, 3 digits
# SpecError reason -> the referee's status
_REASONS = {"malformed": "malformed", "empty": "empty", "too_many": "enormous",
            "out_of_bounds": "out_of_range", "overlap": "overlap"}
_SCENE_ASK = re.compile(rf"^(?:(?P<colour>{'|'.join(visual.COLOURS)})\s+)?"
                        rf"(?P<noun>objects|{'|'.join(s + 's' for s in visual.SHAPES)})$")
_CHART_ASK = re.compile(r"^bar\s+(?P<k>\d)(?:\s*-\s*bar\s+(?P<j>\d))?$")


def proposal_text(example: dict) -> str:
    """A visual example's problem as the proposer writes it (its demonstrations, the buffer)."""
    meta = json.loads(example["meta"])
    spec = meta["spec"]
    if "filter" in meta:
        f = meta["filter"]
        noun = f["shape"] + "s" if "shape" in f else "objects"
        return f"{spec} ? {f['colour'] + ' ' if 'colour' in f else ''}{noun}"
    if "ask" in meta:
        return f"{spec} ? " + " - ".join(f"bar {k}" for k in meta["ask"])
    return spec


def judge(text: str, bounds=Bounds(), held_out_ok: bool = False) -> Problem:
    """Checks one proposal (already stripped of its stop token). Never raises on any text.
    ``bounds.max_chars`` bounds the text; the picture's own bounds are the grammar's."""
    try:
        return _judge(text.strip(), Bounds(*bounds), held_out_ok)
    except (ValueError, TypeError, KeyError, RecursionError):
        return Problem("malformed")


def _judge(text: str, b: Bounds, held_out_ok: bool) -> Problem:
    if not text:
        return Problem("empty")
    if len(text) > b.max_chars:
        return Problem("enormous")
    spec_text, _, ask_text = (part.strip() for part in text.partition("?"))
    try:
        spec = visual.parse_spec(spec_text)
    except visual.SpecError as e:
        return Problem(_REASONS[e.reason])
    ask = _ask(spec, ask_text)
    if ask is False:
        return Problem("malformed")
    example = visual.ask_example(spec, ask)
    if not held_out_ok and split_of(example["meta"] + example["question"]) == "test":
        return Problem("held_out")
    answer = int(example["answer"])
    if isinstance(spec, visual.Scene):
        size, conditions = len(spec.objects), len(ask)
    elif isinstance(spec, visual.Chart):
        size, conditions = len(spec.heights), len(ask)
    else:
        size, conditions = max(len(str(spec.a)), len(str(spec.b))), 1
    canonical = proposal_text(example)
    return Problem("accepted", example["task"], example["question"], example["answer"],
                   example["meta"], canonical, re.sub(r"\d+", "N", canonical), size,
                   conditions, math.log10(1 + abs(answer)), visual.level_of(spec, ask))


def _ask(spec, text: str):
    """The question's ask (``visual.ask_example``'s), or False when it does not fit spec."""
    if isinstance(spec, visual.PixelSum):
        return None if not text else False
    if isinstance(spec, visual.Scene):
        m = _SCENE_ASK.match(text)
        if not m:
            return False
        filt = {"colour": m["colour"]} if m["colour"] else {}
        if m["noun"] != "objects":
            filt["shape"] = m["noun"][:-1]
        return filt or False      # "objects" alone asks nothing of the picture's contents
    m = _CHART_ASK.match(text)
    if not m:
        return False
    ask = tuple(int(v) for v in (m["k"], m["j"]) if v)
    if not all(1 <= k <= len(spec.heights) for k in ask) or len(set(ask)) < len(ask):
        return False
    return ask


def image_of(problem: Problem, size: int) -> np.ndarray:
    """The accepted problem's picture, [size, size, 3] uint8 (drawn again from its meta)."""
    return visual.render(visual.parse_spec(json.loads(problem.meta)["spec"]), size)
