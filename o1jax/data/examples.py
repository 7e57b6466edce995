"""What every generated example is: a dict of strings and ints, and the split it belongs to.

    task, question, answer, solution (ending in \\boxed{answer}), difficulty,
    meta (JSON: task-specific data, e.g. countdown's numbers and target)

Splits never overlap: an example belongs to the test split iff a hash of its question says so,
whatever the seed, so train and test generators can never produce the same question.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Callable

TEST_FRACTION = 0.1


def split_of(question: str) -> str:
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return "test" if h % 1000 < TEST_FRACTION * 1000 else "train"


def split_of_example(ex: dict) -> str:
    """The split of a generated example: its question's, or its meta's ``split_key`` (a problem
    shown in several forms, e.g. its numbers in any order, keeps one split)."""
    return split_of(json.loads(ex["meta"]).get("split_key") or ex["question"])


def example(task, question, answer, solution, difficulty, meta=None) -> dict:
    return {"task": task, "question": question, "answer": str(answer), "solution": solution,
            "difficulty": int(difficulty), "meta": json.dumps(meta or {})}


def slipper(question: str, slip_rate: float) -> Callable[[], bool]:
    """A sloppy demonstrator's coin: True with probability ``slip_rate``, from a stream seeded
    by the question, so the questions (drawn from the task's own stream) are the same at every
    rate."""
    slips = random.Random(f"slips-{question}")
    return lambda: slips.random() < slip_rate
