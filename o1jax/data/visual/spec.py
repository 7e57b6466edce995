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
import re

import numpy as np


IMAGE_SIZE = 32
GRID = 4
MAX_OBJECTS = 8
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
           "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
MAX_BARS, MAX_HEIGHT = 6, 9
MAX_DIGITS = 3
BACKGROUND = (255, 255, 255)
TASKS = ("count", "chart", "pixel_sum", "count_chart")
# a task that mixes others: each example is one of these, drawn uniformly (its "task" field
# names the kind it is, so its answer check and metrics are that kind's)
MIXES = {"count_chart": ("count", "chart")}

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
            x1 = round((x + 1) * cell - cell * 0.15) - 1
            y1 = round((y + 1) * cell - cell * 0.15) - 1
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
