"""Visual tasks: the renderer is deterministic, every answer is what the pixels show (counted
back from the image by a flood fill and by bar heights, not by the generator's code), and the
specification grammar accepts and rejects what its table says."""

import json

import numpy as np
import pytest

from o1jax.data import visual

V = visual


def _objects(image: np.ndarray) -> list[tuple[tuple[int, ...], str]]:
    """(colour, shape) of each connected non-background region (4-neighbour flood fill, plain
    Python); the shape read from the region's pixels alone: a square fills its bounding box, a
    triangle's bottom row is wider than its top row, a circle's are equally wide and narrower
    than the box."""
    ink = np.any(image != np.asarray(V.BACKGROUND, np.uint8), axis=-1)
    seen = np.zeros_like(ink)
    found = []
    for y, x in zip(*np.nonzero(ink)):
        if seen[y, x]:
            continue
        colour, cells, stack = tuple(int(c) for c in image[y, x]), [], [(y, x)]
        while stack:
            a, b = stack.pop()
            if 0 <= a < ink.shape[0] and 0 <= b < ink.shape[1] and ink[a, b] and not seen[a, b]:
                assert tuple(int(c) for c in image[a, b]) == colour, "a region of two colours"
                seen[a, b] = True
                cells.append((a, b))
                stack += [(a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)]
        rows = [a for a, _ in cells]
        width = lambda row: sum(a == row for a in rows)  # noqa: E731
        box = (max(rows) - min(rows) + 1) * (max(b for _, b in cells) - min(b for _, b in cells)
                                             + 1)
        if len(cells) == box:
            shape = "square"
        elif width(max(rows)) > width(min(rows)):
            shape = "triangle"
        else:
            shape = "circle"
        found.append((colour, shape))
    return found


def _components(image: np.ndarray, colour) -> int:
    """Connected regions of exactly ``colour``."""
    return sum(c == tuple(colour) for c, _ in _objects(image))


def test_renderer_is_deterministic():
    for task in V.TASKS:
        a = list(V.generate(task, "train", 5, seed=3, difficulty=2))
        b = list(V.generate(task, "train", 5, seed=3, difficulty=2))
        for x, y in zip(a, b):
            assert x["question"] == y["question"] and x["answer"] == y["answer"]
            np.testing.assert_array_equal(x["image"], y["image"])
        assert a[0]["image"].dtype == np.uint8 and a[0]["image"].shape == (32, 32, 3)


def test_hand_counted_scene():
    scene = V.parse_spec("scene: red circle 0 0; red square 1 0; blue circle 2 2; "
                         "yellow triangle 3 3")
    assert V.count_answer(scene, {"colour": "red"})[0] == 2
    assert V.count_answer(scene, {"shape": "circle"})[0] == 2
    assert V.count_answer(scene, {"colour": "blue", "shape": "square"})[0] == 0
    n, solution = V.count_answer(scene, {"colour": "red"})
    # the grids by hand: (column, row) 0 0 and 1 0 on the top row, 2 2, 3 3
    assert solution == ("R* colours rr........b....y match yy.............. count "
                        "1222222222222222 total 2. \\boxed{2}")
    assert V.count_answer(scene, {"shape": "circle"})[1] == (
        "*C shapes cs........c....t match y.........y..... count 1111111111222222 total 2. "
        "\\boxed{2}")
    assert V.count_answer(scene, {"colour": "red", "shape": "circle"})[1] == (
        "RC colours rr........b....y shapes cs........c....t match y............... count "
        "1111111111111111 total 1. \\boxed{1}")
    assert V.count_answer(scene, {"colour": "blue", "shape": "circle"})[1].startswith("BC ")
    assert V.count_answer(scene, {"shape": "circle"})[1].startswith("*C ")
    image = V.render(scene)
    assert _components(image, V.COLOURS["red"]) == 2
    assert _components(image, V.COLOURS["blue"]) == 1
    assert _components(image, V.COLOURS["green"]) == 0


def test_a_sloppy_counter_overlooks_matching_objects_at_its_rate():
    """slip_rate: the same questions, images and answers; a slipped solution leaves a matching
    object out of its match grid, and its running counts and boxed count follow that grid."""
    clean = list(V.generate("count", "train", 300, seed=1, difficulty=2))
    always = list(V.generate("count", "train", 300, seed=1, difficulty=2, slip_rate=1.0))
    half = list(V.generate("count", "train", 300, seed=1, difficulty=2, slip_rate=0.5))
    for c, a, h in zip(clean, always, half):
        assert c["question"] == a["question"] == h["question"]
        assert c["answer"] == a["answer"] == h["answer"]
        np.testing.assert_array_equal(c["image"], h["image"])
        assert a["solution"].endswith("total 0. \\boxed{0}")     # every match overlooked
        assert "y" not in a["solution"].split(" match ")[1].split(" ")[0]
        match = h["solution"].split(" match ")[1].split(" ")[0]
        running = h["solution"].split(" count ")[1].split(" ")[0]
        # by hand: the running count of the grid the solution wrote
        n, expect = 0, ""
        for cell in match:
            n += cell == "y"
            expect += str(n)
        assert running == expect and h["solution"].endswith(f"\\boxed{{{n}}}")
        clean_match = c["solution"].split(" match ")[1].split(" ")[0]
        assert all(x == y or (x == "y" and y == ".") for x, y in zip(clean_match, match))
    matches = sum(c["solution"].split(" match ")[1].split(" ")[0].count("y") for c in clean)
    kept = sum(h["solution"].split(" match ")[1].split(" ")[0].count("y") for h in half)
    assert matches > 200 and 0.4 < 1 - kept / matches < 0.6


def test_asks_draws_only_those_kinds_of_question():
    kinds = lambda exs: {tuple(sorted(json.loads(e["meta"])["filter"])) for e in exs}  # noqa: E731
    assert kinds(V.generate("count", "train", 60, seed=2)) == {
        ("colour",), ("shape",), ("colour", "shape")}
    assert kinds(V.generate("count", "train", 60, seed=2, asks="colour")) == {("colour",)}
    assert kinds(V.generate("count", "train", 60, seed=2, asks="shape,both")) == {
        ("shape",), ("colour", "shape")}
    # a colour question's solution reads colours only
    ex = next(V.generate("count", "test", 1, seed=2, asks="colour"))
    assert " colours " in ex["solution"] and " shapes " not in ex["solution"]


def test_shapes_are_told_apart_by_their_pixels():
    scene = V.parse_spec("scene: red circle 0 0; red square 1 0; red triangle 2 0; "
                         "blue triangle 3 3; green circle 1 2")
    assert sorted(_objects(V.render(scene))) == sorted([
        (V.COLOURS["red"], "circle"), (V.COLOURS["red"], "square"),
        (V.COLOURS["red"], "triangle"), (V.COLOURS["blue"], "triangle"),
        (V.COLOURS["green"], "circle")])


def _counted(ex) -> int:
    """A count example's answer counted back from its image's pixels."""
    filt = json.loads(ex["meta"])["filter"]
    return sum((c == V.COLOURS[filt["colour"]] if "colour" in filt else True) and
               (s == filt["shape"] if "shape" in filt else True)
               for c, s in _objects(ex["image"]))


def _read_chart(ex) -> tuple[list[int], int]:
    """A chart example's bar heights and answer read back from its image's pixels."""
    unit = (V.IMAGE_SIZE - 2) // V.MAX_HEIGHT
    slot = V.IMAGE_SIZE // V.MAX_BARS
    ink = np.all(ex["image"][:-1] == 60, axis=-1)           # bars, above the axis row
    heights = [int(ink[:, i * slot + 2].sum()) // unit for i in range(V.MAX_BARS)]
    ask = json.loads(ex["meta"])["ask"]
    return heights, heights[ask[0] - 1] - (heights[ask[1] - 1] if len(ask) == 2 else 0)


def test_count_answers_match_the_pixels_on_fixed_seeds():
    """Every answer (colour, shape or both asked) is the number of objects counted back from the
    image's pixels."""
    asked = set()
    for seed in range(3):
        for ex in V.generate("count", "train", 20, seed=seed, difficulty=3):
            asked.add(tuple(sorted(json.loads(ex["meta"])["filter"])))
            assert _counted(ex) == int(ex["answer"]), (V.spec_of(ex), ex["question"])
    assert asked == {("colour",), ("shape",), ("colour", "shape")}   # every kind of question


def test_chart_answers_match_the_bar_heights_in_pixels():
    for ex in V.generate("chart", "train", 30, seed=1, difficulty=3):
        heights, answer = _read_chart(ex)
        assert heights[:len(V.spec_of(ex).heights)] == list(V.spec_of(ex).heights)
        assert int(ex["answer"]) == answer


def test_count_chart_mixes_scenes_and_charts_each_checked_by_its_pixels():
    """count_chart: each example a counting scene or a bar chart, about half each, its task
    field naming its kind (the answer check and metrics are that kind's); data.asks still
    picks the count questions."""
    exs = list(V.generate("count_chart", "train", 200, seed=0, difficulty=2, asks="colour"))
    kinds = [ex["task"] for ex in exs]
    assert set(kinds) == {"count", "chart"} and 70 < kinds.count("chart") < 130
    for ex in exs:
        if ex["task"] == "count":
            assert set(json.loads(ex["meta"])["filter"]) == {"colour"}
            assert _counted(ex) == int(ex["answer"])
        else:
            assert _read_chart(ex)[1] == int(ex["answer"])
    assert [ex["question"] for ex in V.generate("count_chart", "test", 20, seed=0)] != [
        ex["question"] for ex in V.generate("count", "test", 20, seed=0)]


def test_level_of_is_the_difficulty_that_draws_a_problem():
    """Every problem drawn at difficulty d has level <= d, and the largest at d are level d
    (hand-checked ends: 4 objects is level 1, 5 is 2; a chart of 3 bars asking two is 2)."""
    for task, top in (("count", 3), ("chart", 4), ("pixel_sum", 3)):
        for d in range(1, top + 1):
            levels = [V.level_of(V.spec_of(ex), json.loads(ex["meta"]).get("ask"))
                      for ex in V.generate(task, "train", 60, seed=d, difficulty=d)]
            assert max(levels) == d and min(levels) >= 1, (task, d, sorted(set(levels)))
    scene = lambda n: V.parse_spec("scene: " + "; ".join(  # noqa: E731
        f"red circle {i % 4} {i // 4}" for i in range(n)))
    assert [V.level_of(scene(n), {"colour": "red"}) for n in (1, 4, 5, 6, 7, 8)] == [
        1, 1, 2, 2, 3, 3]
    chart = V.parse_spec("chart: 3 5 2")
    assert V.level_of(chart, (1,)) == 1 and V.level_of(chart, (1, 2)) == 2


def test_pixel_sum_answers_and_glyphs():
    assert V.parse_spec("sum: 23 + 45").value == 68 and V.parse_spec("sum: 7 - 19").value == -12
    ex = next(V.generate("pixel_sum", "train", 1, seed=0, difficulty=2))
    spec = V.spec_of(ex)
    assert int(ex["answer"]) == spec.value and ex["solution"].endswith(f"\\boxed{{{spec.value}}}")
    # the image shows exactly the glyphs of the sum: ink columns in groups of 3 per character
    ink = np.any(np.all(ex["image"] == 0, axis=-1), axis=0)
    assert ink.sum() >= 2 * len(f"{spec.a}{spec.op}{spec.b}")
    assert not np.array_equal(V.render(V.parse_spec("sum: 12 + 34")),
                              V.render(V.parse_spec("sum: 12 + 35")))


@pytest.mark.parametrize("text, reason", [
    ("scene: red circle 0 0; blue square 3 3", None),
    ("chart: 0 9 4", None),
    ("sum: 999 - 1", None),
    ("scene:", "empty"),
    ("scene: ; ;", "empty"),
    ("chart: 5", "empty"),
    ("scene: " + "; ".join(f"red circle {i % 4} {i // 4}" for i in range(9)), "too_many"),
    ("chart: 1 2 3 4 5 6 7", "too_many"),
    ("x" * 1000, "too_many"),
    ("scene: red circle 4 0", "out_of_bounds"),
    ("chart: 3 10", "out_of_bounds"),
    ("sum: 1000 + 1", "out_of_bounds"),
    ("scene: red circle 1 1; blue square 1 1", "overlap"),
    ("scene: pink circle 0 0", "malformed"),
    ("scene: red hexagon 0 0", "malformed"),
    ("chart: 1, 2", "malformed"),
    ("sum: 2 * 3", "malformed"),
    ("sum: __import__('os')", "malformed"),
    ("draw a cat", "malformed"),
])
def test_spec_grammar_accepts_and_rejects(text, reason):
    if reason is None:
        spec = V.parse_spec(text)
        assert V.parse_spec(spec.text()) == spec          # the text form round-trips
        V.render(spec)
    else:
        with pytest.raises(V.SpecError) as e:
            V.parse_spec(text)
        assert e.value.reason == reason


def test_splits_do_not_overlap_and_difficulty_grows():
    train = {(e["meta"], e["question"]) for e in V.generate("chart", "train", 200, seed=0,
                                                             difficulty=2)}
    test = {(e["meta"], e["question"]) for e in V.generate("chart", "test", 30, seed=0,
                                                            difficulty=2)}
    assert not train & test
    easy = [len(V.spec_of(e).heights) for e in V.generate("chart", "train", 5, difficulty=1)]
    hard = [len(V.spec_of(e).heights) for e in V.generate("chart", "train", 5, difficulty=3)]
    assert max(easy) < min(hard)
