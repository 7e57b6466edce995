"""Visual tasks with checkable answers: ``spec`` (the specification grammar self-play's proposer
writes, its checks and its pixels), ``questions`` (questions, answers, solutions, generation)."""

from o1jax.data.visual.questions import (ask_example, count_answer, count_question, example_for,
                                         generate, level_of, random_spec, spec_of)
from o1jax.data.visual.spec import (BACKGROUND, COLOURS, GRID, IMAGE_SIZE, MAX_BARS, MAX_HEIGHT,
                                    MAX_OBJECTS, SHAPES, TASKS, Chart, PixelSum, Scene, Spec,
                                    SpecError, parse_spec, render)

__all__ = ["ask_example", "count_answer", "count_question", "example_for", "generate", "level_of",
           "random_spec", "spec_of", "BACKGROUND", "COLOURS", "GRID", "IMAGE_SIZE", "MAX_BARS",
           "MAX_HEIGHT", "MAX_OBJECTS", "SHAPES", "TASKS", "Chart", "PixelSum", "Scene", "Spec",
           "SpecError", "parse_spec", "render"]
