"""Questions about a visual specification, their answers and worked solutions (computed from the
specification), and the seeded generation of a visual task's split with its images."""

from __future__ import annotations

import json
import random

from o1jax.config.datasets import COUNT_ASKS
from o1jax.data.examples import slipper
from o1jax.data.tasks import (_addition_steps, _example, _subtraction_steps, check_slip_rate,
                              split_of)
from o1jax.data.visual.spec import (COLOURS, GRID, IMAGE_SIZE, MAX_BARS, MAX_DIGITS, MAX_HEIGHT,
                                    MAX_OBJECTS, MIXES, SHAPES, TASKS, Chart, PixelSum, Scene, Spec,
                                    parse_spec, render)


# ------------------------------------------------------------------------ questions, answers
def scene_question(rng: random.Random, scene: Scene, asks: str = "") -> tuple[str, dict]:
    """A counting question about the scene and its filter {colour?, shape?}: three times in
    four about the colour / shape of an object in the scene, else any (an answer of 0 is then
    about as common as in CLEVR-count, not the majority). ``asks``: the kinds of question,
    comma-separated names of COUNT_ASKS ("" for all)."""
    colour, shape = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
    if rng.random() < 0.75:
        colour, shape = rng.choice(scene.objects)[:2]
    kind = rng.choice(tuple(asks.split(",")) if asks else COUNT_ASKS)
    filt = {"colour": colour} if kind == "colour" else (
        {"shape": shape} if kind == "shape" else {"colour": colour, "shape": shape})
    return count_question(filt), filt


def count_question(filt: dict) -> str:
    noun = "objects" if "shape" not in filt else filt["shape"] + "s"
    what = (filt["colour"] + " " + noun) if "colour" in filt else noun
    return f"How many {what} are in the image?"


def count_answer(scene: Scene, filt: dict, slip_rate: float = 0.0) -> tuple[int, str]:
    """(count, solution): what to count as a two-letter code (the colour's and the shape's
    initial, upper case, "*" for any: "R*" red objects, "*C" circles, "RC" red circles), the
    scene read cell by cell into a grid of each attribute the code names (colours, then
    shapes; the GRID x GRID cells row by row with no separator, a cell its object's colour or
    shape initial, "." when empty), a grid of the cells that match the code ("y", else "."), a
    grid of running counts (every cell: the count up to and including it), then the count:
    "R* colours .r......b....... match .y.............. count 0111111111111111 total 1.
    \\boxed{1}".

    The image sits right before the answer (``data.template`` "{question}\\n<image>") and the
    code and every grid have fixed lengths and no row separators, so cell k of each grid is
    the same distance from image token k and from cell k of the grids before it for every k
    (with "/" between rows that distance grew by one a row), and the code is the only upper
    case in the answer. Each cell then takes one step a small transformer learns from scratch:
    copy the image token a fixed distance back (the first grid), compare cells a fixed
    distance back with the code (match), or add a match to the cell just before (count).
    Measured (docs/results.md): with "/" between rows, a policy that wrote colours and then
    shapes for every question read whichever grid came first right and the second at chance,
    while its image tokens told the shapes apart to a linear probe's 100%; without separators
    it reads both. The solution reads only the attributes the question names.

    ``slip_rate`` > 0 makes the *solution* that of a sloppy counter who overlooks each matching
    object with that probability (its match cell "."; the running counts and the boxed count
    follow the grid it wrote); the returned count stays the true one. The slips come from a
    stream seeded by the scene and the filter, so scenes are the same at every rate."""
    slip = slipper(f"{scene.text()} {sorted(filt.items())}", slip_rate)
    matched, true = ["."] * (GRID * GRID), 0
    for c, s, x, y in sorted(scene.objects, key=lambda o: (o[3], o[2])):
        if filt.get("colour", c) == c and filt.get("shape", s) == s:
            true += 1
            if not slip():
                matched[y * GRID + x] = "y"
    running, n = "", 0
    for cell in matched:
        n += cell == "y"
        running += str(n)
    code = "".join(filt[k][0].upper() if k in filt else "*" for k in ("colour", "shape"))
    reads = "".join(f" {name}s {grid(scene, i)}" for i, name in enumerate(("colour", "shape"))
                    if name in filt)
    return true, (f"{code}{reads} match {''.join(matched)} count "
                  f"{running} total {n}. \\boxed{{{n}}}")


def grid(scene: Scene, attribute: int) -> str:
    """The scene's GRID x GRID cells row by row: each object's colour (attribute 0) or shape
    (1) initial, "." for an empty cell."""
    cells = ["."] * (GRID * GRID)
    for obj in scene.objects:
        cells[obj[3] * GRID + obj[2]] = obj[attribute][0]
    return "".join(cells)


def chart_answer(chart: Chart, ask: tuple[int, ...]) -> tuple[int, str]:
    """ask = (k,): the height of bar k (1-based); (k, j): bar k minus bar j."""
    h = chart.heights
    if len(ask) == 1:
        v = h[ask[0] - 1]
        return v, f"bar {ask[0]} reaches {v}. \\boxed{{{v}}}"
    a, b = h[ask[0] - 1], h[ask[1] - 1]
    return a - b, (f"bar {ask[0]} reaches {a}, bar {ask[1]} reaches {b}, {a}-{b}={a - b}. "
                   f"\\boxed{{{a - b}}}")


def chart_question(ask: tuple[int, ...]) -> str:
    if len(ask) == 1:
        return f"How tall is bar {ask[0]} (from the left)?"
    return f"How much taller is bar {ask[0]} than bar {ask[1]} (from the left)?"


SUM_QUESTION = "What is the result of the sum in the image?"


def sum_solution(s: PixelSum) -> str:
    """Column arithmetic, as the text arithmetic task writes it."""
    never = lambda: False  # noqa: E731
    if s.op == "+":
        steps, _ = _addition_steps(s.a, s.b, never)
        body = "; ".join(steps)
    elif s.a >= s.b:
        steps, _ = _subtraction_steps(s.a, s.b, never)
        body = "; ".join(steps)
    else:
        steps, _ = _subtraction_steps(s.b, s.a, never)
        body = f"{s.b}-{s.a}: " + "; ".join(steps) + ", negative"
    return f"the image shows {s.a}{s.op}{s.b}. {body}. \\boxed{{{s.value}}}"


# ------------------------------------------------------------------------------ generation
def random_spec(task: str, rng: random.Random, difficulty: int) -> Spec:
    """A random specification; difficulty 1.. raises the object count, bar count, digits. A
    mixed task (MIXES) draws which kind first."""
    if task in MIXES:
        task = rng.choice(MIXES[task])
    if task == "count":
        n = rng.randint(1, min(MAX_OBJECTS, 2 + 2 * difficulty))
        cells = rng.sample([(x, y) for x in range(GRID) for y in range(GRID)], n)
        return Scene(tuple((rng.choice(sorted(COLOURS)), rng.choice(SHAPES), x, y)
                           for x, y in cells))
    if task == "chart":
        bars = min(MAX_BARS, 2 + difficulty)
        return Chart(tuple(rng.randint(0, MAX_HEIGHT) for _ in range(bars)))
    if task == "pixel_sum":
        digits = min(MAX_DIGITS, difficulty)
        lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10 ** digits - 1
        return PixelSum(rng.randint(lo, hi), rng.choice("+-"), rng.randint(lo, hi))
    raise ValueError(f"unknown visual task {task!r}; known: {TASKS}")


def level_of(spec: Spec, ask=None) -> int:
    """A specification's difficulty level, with its ask: the lowest difficulty whose draws
    (``random_spec``, ``example_for``) are as large. A scene's object count (difficulty d
    draws up to 2 + 2d), a chart's bars (2 + d; two bars compared from difficulty 2), a sum's
    digits (d). Self-play's proposer earns a bonus per level above the training one."""
    if isinstance(spec, Scene):
        return max(1, -(-(len(spec.objects) - 2) // 2))
    if isinstance(spec, Chart):
        return max(1, len(spec.heights) - 2, 2 if ask is not None and len(ask) == 2 else 1)
    return max(1, len(str(abs(spec.a))), len(str(abs(spec.b))))


def example_for(spec: Spec, rng: random.Random, difficulty: int, slip_rate: float = 0.0,
                asks: str = "") -> dict:
    """A task example (question, answer, solution, meta with the specification) about spec,
    its question drawn with ``rng`` (a scene's: of the kinds ``asks``, see scene_question)."""
    if isinstance(spec, Scene):
        return ask_example(spec, scene_question(rng, spec, asks)[1], difficulty, slip_rate)
    if isinstance(spec, Chart):
        k = rng.randint(1, len(spec.heights))
        ask = (k,) if difficulty <= 1 or rng.random() < 0.5 else (
            k, rng.choice([j for j in range(1, len(spec.heights) + 1) if j != k]))
        return ask_example(spec, ask, difficulty)
    return ask_example(spec, None, difficulty)


def ask_example(spec: Spec, ask, difficulty: int = 0, slip_rate: float = 0.0) -> dict:
    """The example asking ``ask`` about spec: a filter {colour?, shape?} of a scene, the bar
    numbers (k,) or (k, j) of a chart (1-based, checked by the caller), None for a sum."""
    if isinstance(spec, Scene):
        question = count_question(ask)
        answer, solution = count_answer(spec, ask, slip_rate)
        return _example("count", question, answer, solution, difficulty,
                        {"spec": spec.text(), "filter": ask})
    if isinstance(spec, Chart):
        answer, solution = chart_answer(spec, ask)
        return _example("chart", chart_question(ask), answer, solution, difficulty,
                        {"spec": spec.text(), "ask": list(ask)})
    return _example("pixel_sum", SUM_QUESTION, spec.value, sum_solution(spec), difficulty,
                    {"spec": spec.text()})


def generate(task: str, split: str, num: int, seed: int = 0, difficulty: int = 1,
             image_size: int = IMAGE_SIZE, slip_rate: float = 0.0, asks: str = ""):
    """``num`` examples of ``split`` with their images ("image": [S, S, 3] uint8). An example
    belongs to the test split iff a hash of its specification and question says so."""
    check_slip_rate(task, slip_rate)
    rng = random.Random(f"{task}-{seed}-{split}-{difficulty}")
    made, tries = 0, 0
    while made < num:
        tries += 1
        if tries > 200 * num + 1000:
            raise ValueError(f"cannot draw {num} distinct {split} examples of {task} at "
                             f"difficulty {difficulty}; ask for fewer")
        spec = random_spec(task, rng, difficulty)
        ex = example_for(spec, rng, difficulty, slip_rate, asks)
        if split_of(ex["meta"] + ex["question"]) != split:
            continue
        made += 1
        yield dict(ex, image=render(spec, image_size))


def spec_of(example: dict) -> Spec:
    return parse_spec(json.loads(example["meta"])["spec"])
