"""Visual tasks with checkable answers: a scene, a bar chart or a sum drawn as pixels, each from a
small text specification that is also the source of the answer (never a model).

Specifications (the grammar self-play's proposer writes; ``parse_spec`` checks and bounds it):

    scene:  "scene: red circle 0 1; blue square 2 3"     objects as colour shape column row on a
            GRID x GRID grid, at most one per cell, 1..MAX_OBJECTS of them
    chart:  "chart: 3 5 2 7"                             bar heights 0..9, left to right, 2..6 bars
    sum:    "sum: 23 + 45"                               two numbers of 1..3 digits, + or -

Questions ask about a specification: how many objects of a colour / shape / both (scene), the
height of bar k or the difference of two bars (chart), the result (sum). ``render`` draws a
specification as a [S, S, 3] uint8 image with Pillow (no anti-aliasing, digits from a fixed 3x5
bitmap font): the same specification always gives the same pixels.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re

import numpy as np

from o1jax.data.tasks import _addition_steps, _example, _subtraction_steps, split_of

IMAGE_SIZE = 32
GRID = 4
MAX_OBJECTS = 8
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
           "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
MAX_BARS, MAX_HEIGHT = 6, 9
MAX_DIGITS = 3
BACKGROUND = (255, 255, 255)
TASKS = ("count", "chart", "pixel_sum")

# 3x5 bitmap digits and signs, rows top to bottom ("#" = ink)
GLYPHS = {
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    "+": ("...", ".#.", "###", ".#.", "..."), "-": ("...", "...", "###", "...", "..."),
}


class SpecError(ValueError):
    """A specification outside the grammar or its bounds; ``reason`` is a short tag
    (malformed, empty, too_many, out_of_bounds, overlap) that self-play's referee counts."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Scene:
    objects: tuple[tuple[str, str, int, int], ...]     # (colour, shape, column, row)

    def text(self) -> str:
        return "scene: " + "; ".join(f"{c} {s} {x} {y}" for c, s, x, y in self.objects)


@dataclasses.dataclass(frozen=True)
class Chart:
    heights: tuple[int, ...]

    def text(self) -> str:
        return "chart: " + " ".join(map(str, self.heights))


@dataclasses.dataclass(frozen=True)
class PixelSum:
    a: int
    op: str
    b: int

    def text(self) -> str:
        return f"sum: {self.a} {self.op} {self.b}"

    @property
    def value(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b


Spec = Scene | Chart | PixelSum
_MAX_SPEC_CHARS = 400


def parse_spec(text: str) -> Spec:
    """A specification from its text (model output: only regular expressions and int() on
    short digit strings touch it). Raises ``SpecError`` naming what is wrong."""
    if not isinstance(text, str) or len(text) > _MAX_SPEC_CHARS:
        raise SpecError("too_many", f"a specification is at most {_MAX_SPEC_CHARS} characters")
    kind, sep, body = text.strip().partition(":")
    if not sep or kind.strip() not in ("scene", "chart", "sum"):
        raise SpecError("malformed", "a specification starts with 'scene:', 'chart:' or 'sum:'")
    kind, body = kind.strip(), body.strip()
    if kind == "scene":
        return _parse_scene(body)
    if kind == "chart":
        return _parse_chart(body)
    m = re.fullmatch(r"(\d{1,6})\s*([+-])\s*(\d{1,6})", body)
    if not m:
        raise SpecError("malformed" if body else "empty", "a sum is 'sum: A + B' or 'sum: A - B'")
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    if max(a, b) >= 10 ** MAX_DIGITS:
        raise SpecError("out_of_bounds", f"sum operands have at most {MAX_DIGITS} digits")
    return PixelSum(a, op, b)


def _parse_scene(body: str) -> Scene:
    parts = [p.strip() for p in body.split(";") if p.strip()]
    if not parts:
        raise SpecError("empty", "a scene needs at least one object")
    if len(parts) > MAX_OBJECTS:
        raise SpecError("too_many", f"a scene has at most {MAX_OBJECTS} objects")
    objects, cells = [], set()
    for p in parts:
        m = re.fullmatch(r"([a-z]+)\s+([a-z]+)\s+(\d{1,3})\s+(\d{1,3})", p)
        if not m or m.group(1) not in COLOURS or m.group(2) not in SHAPES:
            raise SpecError("malformed", f"object {p[:40]!r}: 'colour shape column row' with a "
                                         f"colour of {sorted(COLOURS)}, a shape of {SHAPES}")
        x, y = int(m.group(3)), int(m.group(4))
        if not (0 <= x < GRID and 0 <= y < GRID):
            raise SpecError("out_of_bounds", f"object {p!r}: column and row are 0..{GRID - 1}")
        if (x, y) in cells:
            raise SpecError("overlap", f"two objects at column {x}, row {y}")
        cells.add((x, y))
        objects.append((m.group(1), m.group(2), x, y))
    return Scene(tuple(objects))


def _parse_chart(body: str) -> Chart:
    if not body:
        raise SpecError("empty", "a chart needs bar heights")
    if not re.fullmatch(r"\d{1,3}(\s+\d{1,3})*", body):
        raise SpecError("malformed", "a chart is 'chart: H1 H2 ...' (integers)")
    heights = tuple(int(h) for h in body.split())
    if not 2 <= len(heights) <= MAX_BARS:
        raise SpecError("too_many" if len(heights) > MAX_BARS else "empty",
                        f"a chart has 2..{MAX_BARS} bars")
    if max(heights) > MAX_HEIGHT:
        raise SpecError("out_of_bounds", f"bar heights are 0..{MAX_HEIGHT}")
    return Chart(heights)


# ------------------------------------------------------------------------------- rendering
def render(spec: Spec, size: int = IMAGE_SIZE) -> np.ndarray:
    """The specification drawn on a white size x size canvas: [size, size, 3] uint8."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    if isinstance(spec, Scene):
        cell = size / GRID
        for colour, shape, x, y in spec.objects:
            x0, y0 = round(x * cell + cell * 0.15), round(y * cell + cell * 0.15)
            x1, y1 = round((x + 1) * cell - cell * 0.15) - 1, round((y + 1) * cell - cell * 0.15) - 1
            fill = COLOURS[colour]
            if shape == "circle":
                draw.ellipse((x0, y0, x1, y1), fill=fill)
            elif shape == "square":
                draw.rectangle((x0, y0, x1, y1), fill=fill)
            else:
                draw.polygon(((x0 + x1) / 2, y0, x1, y1, x0, y1), fill=fill)
    elif isinstance(spec, Chart):
        slot = size // MAX_BARS
        unit = (size - 2) // MAX_HEIGHT
        draw.line((0, size - 1, size - 1, size - 1), fill=(0, 0, 0))     # the axis
        for i, h in enumerate(spec.heights):
            if h:
                draw.rectangle((i * slot + 1, size - 1 - h * unit, (i + 1) * slot - 1, size - 2),
                               fill=(60, 60, 60))
    else:
        text = f"{spec.a}{spec.op}{spec.b}"
        scale = max(1, size // (4 * len(text)))
        x = (size - 4 * scale * len(text) + scale) // 2
        y = (size - 5 * scale) // 2
        for ch in text:
            for r, row in enumerate(GLYPHS[ch]):
                for c, ink in enumerate(row):
                    if ink == "#":
                        draw.rectangle((x + c * scale, y + r * scale, x + (c + 1) * scale - 1,
                                        y + (r + 1) * scale - 1), fill=(0, 0, 0))
            x += 4 * scale
    return np.asarray(img, np.uint8)


# ------------------------------------------------------------------------ questions, answers
def scene_question(rng: random.Random, scene: Scene) -> tuple[str, dict]:
    """A counting question about the scene and its filter {colour?, shape?}: three times in
    four about the colour / shape of an object in the scene, else any (an answer of 0 is then
    about as common as in CLEVR-count, not the majority)."""
    colour, shape = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
    if rng.random() < 0.75:
        colour, shape = rng.choice(scene.objects)[:2]
    kind = rng.choice(("colour", "shape", "both"))
    filt = {"colour": colour} if kind == "colour" else (
        {"shape": shape} if kind == "shape" else {"colour": colour, "shape": shape})
    return count_question(filt), filt


def count_question(filt: dict) -> str:
    noun = "objects" if "shape" not in filt else filt["shape"] + "s"
    what = (filt["colour"] + " " + noun) if "colour" in filt else noun
    return f"How many {what} are in the image?"


def count_answer(scene: Scene, filt: dict) -> tuple[int, str]:
    """(count, solution): what to count as a two-letter code (the colour's and the shape's
    initial, upper case, "*" for any: "R*" red objects, "*C" circles, "RC" red circles), the
    scene read cell by cell into grids of colours and of shapes (rows top to bottom separated
    by "/", a cell its colour's or shape's initial, "." when empty), then a grid that counts
    the matching cells as it goes (a matching cell shows the count so far), then the count:
    "R* colours .r../.... shapes .c../.... count .1../.... total 1. \\boxed{1}".

    The image sits right before the answer (``data.template`` "{question}\\n<image>") and the
    code and every grid have fixed lengths, so cell k of each grid is always the same distance
    from image token k and from cell k of the grids before it, and the code is the only upper
    case in the answer: a policy trained from scratch reads its image and counts by
    fixed-offset lookups, one lookup by content and "the last number written", the easiest
    things attention learns."""
    counted, n = [["."] * GRID for _ in range(GRID)], 0
    for c, s, x, y in sorted(scene.objects, key=lambda o: (o[3], o[2])):
        if filt.get("colour", c) == c and filt.get("shape", s) == s:
            n += 1
            counted[y][x] = str(n)
    code = "".join(filt[k][0].upper() if k in filt else "*" for k in ("colour", "shape"))
    return n, (f"{code} colours {grid(scene, 0)} shapes {grid(scene, 1)} count "
               f"{'/'.join(''.join(row) for row in counted)} total {n}. \\boxed{{{n}}}")


def grid(scene: Scene, attribute: int) -> str:
    """The scene's GRID x GRID cells, rows "/"-separated: each object's colour (attribute 0)
    or shape (1) initial, "." for an empty cell."""
    cells = [["."] * GRID for _ in range(GRID)]
    for obj in scene.objects:
        cells[obj[3]][obj[2]] = obj[attribute][0]
    return "/".join("".join(row) for row in cells)


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
    """A random specification; difficulty 1.. raises the object count, bar count, digits."""
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


def example_for(spec: Spec, rng: random.Random, difficulty: int) -> dict:
    """A task example (question, answer, solution, meta with the specification) about spec,
    its question drawn with ``rng``."""
    if isinstance(spec, Scene):
        return ask_example(spec, scene_question(rng, spec)[1], difficulty)
    if isinstance(spec, Chart):
        k = rng.randint(1, len(spec.heights))
        ask = (k,) if difficulty <= 1 or rng.random() < 0.5 else (
            k, rng.choice([j for j in range(1, len(spec.heights) + 1) if j != k]))
        return ask_example(spec, ask, difficulty)
    return ask_example(spec, None, difficulty)


def ask_example(spec: Spec, ask, difficulty: int = 0) -> dict:
    """The example asking ``ask`` about spec: a filter {colour?, shape?} of a scene, the bar
    numbers (k,) or (k, j) of a chart (1-based, checked by the caller), None for a sum."""
    if isinstance(spec, Scene):
        question = count_question(ask)
        answer, solution = count_answer(spec, ask)
        return _example("count", question, answer, solution, difficulty,
                        {"spec": spec.text(), "filter": ask})
    if isinstance(spec, Chart):
        answer, solution = chart_answer(spec, ask)
        return _example("chart", chart_question(ask), answer, solution, difficulty,
                        {"spec": spec.text(), "ask": list(ask)})
    return _example("pixel_sum", SUM_QUESTION, spec.value, sum_solution(spec), difficulty,
                    {"spec": spec.text()})


def generate(task: str, split: str, num: int, seed: int = 0, difficulty: int = 1,
             image_size: int = IMAGE_SIZE):
    """``num`` examples of ``split`` with their images ("image": [S, S, 3] uint8). An example
    belongs to the test split iff a hash of its specification and question says so."""
    rng = random.Random(f"{task}-{seed}-{split}-{difficulty}")
    made, tries = 0, 0
    while made < num:
        tries += 1
        if tries > 200 * num + 1000:
            raise ValueError(f"cannot draw {num} distinct {split} examples of {task} at "
                             f"difficulty {difficulty}; ask for fewer")
        spec = random_spec(task, rng, difficulty)
        ex = example_for(spec, rng, difficulty)
        if split_of(ex["meta"] + ex["question"]) != split:
            continue
        made += 1
        yield dict(ex, image=render(spec, image_size))


def spec_of(example: dict) -> Spec:
    return parse_spec(json.loads(example["meta"])["spec"])
