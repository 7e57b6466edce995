"""The search metrics logged during RL: the shares counted in the compiled program equal a
plain count of the responses' lines, on one device and split over a mesh; other tasks log
none."""

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import sharding
from o1jax.data import search_tasks, sudoku
from o1jax.rl.search_metrics import NAMES, with_search_metrics
from o1jax.rollout.sampler import Rollout
from o1jax.tokenizer import byte_tokenizer


def _responses(task: str, n: int) -> list[str]:
    """Demonstrations (some with back-ups, some cut short by a budget: stuck) and hand-written
    lines, some of them only looking like search lines."""
    rng = random.Random(0)
    make = search_tasks.countdown_search if task == "countdown_search" else sudoku.sudoku
    texts = [make(rng, 1 + i % 2)["solution"] for i in range(n - 2)]
    back = "back (3 4)" if task == "countdown_search" else "12../..../..../.... back"
    return texts + ["back up (1 2)\nI am stuck\n\\boxed{3}", f"  stuck  \n{back}\n{back}"]


def _is_backup(line: str, task: str) -> bool:
    """A back-up: a move line that ends in a dead end (the search goes on from the state
    before it), or a back-up line naming the state it returns to (Countdown: "back " and
    numbers in parentheses; Sudoku: a grid's digits, dots and slashes, then " back")."""
    line = line.strip()
    if task == "sudoku":
        grid, _, word = line.rpartition(" ")
        return word in ("dead", "back") and bool(grid) and set(grid) <= set("123456789./")
    if line.endswith(" dead") and line[:1].isalnum() and "=" in line:
        return True
    rest = line[5:]
    return (line.startswith("back ") and bool(rest) and rest[0] + rest[-1] == "()"
            and set(rest[1:-1]) <= set("0123456789 "))


def _reference(texts: list[str], task: str) -> dict:
    """Back-ups and give-ups counted from the lines' text; the give-up line is "stuck"."""
    backups = [sum(_is_backup(ln, task) for ln in t.split("\n")) for t in texts]
    stuck = [any(ln.strip() == "stuck" for ln in t.split("\n")) for t in texts]
    return {"search/backup_share": np.mean([b > 0 for b in backups]),
            "search/backups_mean": np.mean(backups), "search/stuck_share": np.mean(stuck)}


def _rollout(tok, texts):
    ids = [tok.encode(t, add_special_tokens=False) + [tok.stop_ids[0]] for t in texts]
    tokens = np.full((len(ids), max(map(len, ids)) + 2), tok.pad_id, np.int32)
    mask = np.zeros_like(tokens, bool)
    for i, row in enumerate(ids):
        tokens[i, 2:2 + len(row)] = row
        mask[i, 2:2 + len(row)] = True
    return tokens, mask


def _program(fn):
    @jax.jit
    def program(tokens, mask, ids):
        roll = Rollout(tokens=tokens, mask=mask, response_mask=mask, logprobs=None,
                       lengths=None, finished=jnp.ones(tokens.shape[0], bool), num_steps=None)
        return fn(roll, ids)
    return program


def _constant_reward(roll, example_ids):
    return jnp.zeros(roll.tokens.shape[0]), {"reward/correctness": jnp.float32(0.5)}


@pytest.mark.parametrize("task, mesh_shape", [("countdown_search", None), ("sudoku", None),
                                               ("countdown_search", (2, 2, 2))])
def test_search_metrics_equal_a_plain_count_of_the_lines(task, mesh_shape):
    tok = byte_tokenizer()
    texts = _responses(task, 16)
    expected = _reference(texts, task)
    assert 0 < expected["search/backup_share"] < 1 and expected["search/stuck_share"] > 0
    mesh = sharding.make_mesh(mesh_shape) if mesh_shape else None
    fn = with_search_metrics(_constant_reward, tok, task, mesh)
    tokens, mask = _rollout(tok, texts)
    rewards, metrics = _program(fn)(tokens, mask, np.arange(16))
    assert float(metrics["reward/correctness"]) == 0.5 and rewards.shape == (16,)
    for name in NAMES:
        assert float(metrics[name]) == pytest.approx(expected[name], rel=1e-6), name


def test_other_tasks_log_no_search_metrics():
    assert with_search_metrics(_constant_reward, byte_tokenizer(), "countdown") \
        is _constant_reward
