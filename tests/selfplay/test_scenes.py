"""The cross-modal referee's accept/reject table for picture proposals, and its answers against
hand counts of the specification."""

import json

import numpy as np
import pytest

from o1jax.data import visual
from o1jax.data.tasks import split_of
from o1jax.selfplay.problems import STATUSES, Bounds
from o1jax.selfplay.scenes import image_of, judge, proposal_text

WIDE = Bounds(max_chars=200)


def _accepted(text):
    """judge(text) with the held-out partition allowed (the table is about the grammar)."""
    return judge(text, WIDE, held_out_ok=True)


@pytest.mark.parametrize("text, status", [
    ("", "empty"),
    ("scene: ? red objects", "empty"),
    ("chart: ? bar 1", "empty"),
    ("scene: red circle 0 1 ; blue square 0 1 ? red objects", "overlap"),
    ("scene: red circle 4 1 ? red objects", "out_of_range"),
    ("chart: 3 12 ? bar 1", "out_of_range"),
    ("sum: 12345 + 1", "out_of_range"),
    ("scene: " + "; ".join(f"red circle {x} {y}" for x in range(3) for y in range(3))
     + " ? red objects", "enormous"),
    ("chart: 1 2 3 4 5 6 7 ? bar 1", "enormous"),
    ("scene: purple circle 0 0 ? red objects", "malformed"),
    ("scene: red circle 0 0", "malformed"),                 # no question
    ("scene: red circle 0 0 ? objects", "malformed"),       # asks nothing of the contents
    ("scene: red circle 0 0 ? __import__('os')", "malformed"),
    ("chart: 3 5 ? bar 3", "malformed"),                    # no bar 3
    ("chart: 3 5 ? bar 1 - bar 1", "malformed"),
    ("sum: 12 + 30 ? bar 1", "malformed"),
    ("paint: red", "malformed"),
])
def test_rejections_name_their_reason(text, status):
    assert status in STATUSES
    assert _accepted(text).status == status


def test_too_long_text_is_enormous():
    assert judge("scene: red circle 0 0 ? red objects", Bounds(max_chars=10)).status == "enormous"


@pytest.mark.parametrize("text, task, answer", [
    ("scene: red circle 0 1; blue square 2 3; red square 3 3 ? red objects", "count", "2"),
    ("scene: red circle 0 1; blue square 2 3; red square 3 3 ? squares", "count", "2"),
    ("scene: red circle 0 1; blue square 2 3; red square 3 3 ? blue circles", "count", "0"),
    ("chart: 3 5 2 ? bar 2", "chart", "5"),
    ("chart: 3 5 2 ? bar 1 - bar 2", "chart", "-2"),
    ("sum: 23 + 45", "pixel_sum", "68"),
    ("sum: 7 - 40", "pixel_sum", "-33"),
])
def test_accepted_answers_equal_hand_counts(text, task, answer):
    p = _accepted(text)
    assert (p.status, p.task, p.answer) == ("accepted", task, answer)
    assert np.isfinite(p.magnitude) and p.digits >= 1 and p.operators >= 1
    # the solver sees the picture and the question only, never the specification
    assert json.loads(p.meta)["spec"] not in p.question and ":" not in p.question


@pytest.mark.parametrize("text, level", [
    ("scene: red circle 0 1; blue square 2 3 ? red objects", 1),
    ("scene: red circle 0 0; red circle 1 0; red circle 2 0; red circle 3 0; "
     "red circle 0 1 ? circles", 2),                       # 5 objects: the hard split's
    ("chart: 3 5 2 ? bar 2", 1),
    ("chart: 3 5 2 ? bar 1 - bar 2", 2),                   # two bars compared
    ("chart: 3 5 2 7 1 4 ? bar 2", 4),
    ("sum: 123 + 4", 3),
])
def test_an_accepted_picture_has_its_difficulty_level(text, level):
    assert _accepted(text).level == level


def test_same_problem_same_key_whatever_the_spelling():
    a = _accepted("scene: red circle 0 1;blue square 2 3 ?  red   objects")
    b = _accepted("scene: red circle 0 1; blue square 2 3 ? red objects")
    assert a.key == b.key == "scene: red circle 0 1; blue square 2 3 ? red objects"


def test_held_out_pictures_are_rejected():
    """A proposal equal to a test-split example is rejected (it would train on evaluation)."""
    test = list(visual.generate("count", "test", 5, seed=3, difficulty=1))
    for ex in test:
        text = proposal_text(ex)
        assert split_of(ex["meta"] + ex["question"]) == "test"
        assert judge(text, WIDE).status == "held_out"
        assert judge(text, WIDE, held_out_ok=True).answer == ex["answer"]


def test_image_is_the_specifications_rendering():
    p = _accepted("scene: green triangle 1 2 ? triangles")
    img = image_of(p, 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(
        img, visual.render(visual.parse_spec("scene: green triangle 1 2")))


def test_hostile_text_never_raises():
    rng = np.random.default_rng(0)
    alphabet = list("scenechartsum:;?-+ 0123456789redbluecirclesquare\\x00'\"()")
    for _ in range(300):
        text = "".join(rng.choice(alphabet, rng.integers(0, 80)))
        assert judge(text, WIDE).status in STATUSES
