"""Reward functions over a batch of decoded responses, computed on the host in parallel.

A reward function has the signature ``fn(responses, examples, finished, pool) -> np.ndarray``
(float32, one value per response). Add one with ``@register("name")``; configs refer to rewards
by name with a weight. The verifier calls run in the time-limited worker pool.
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np

from o1jax.config import datasets
from o1jax.rewards.api import EQUIVALENCE, default_pool
from o1jax.rewards.pool import ERROR, TIMEOUT, CheckPool
from o1jax.rewards.answers import last_boxed

RewardFn = Callable[[Sequence[str], Sequence[dict], Sequence[bool], CheckPool], np.ndarray]
REWARDS: dict[str, RewardFn] = {}
COUNTDOWN = "o1jax.rewards.countdown:countdown_score"
GRID = "o1jax.rewards.grid:grid_score"
CODE = "o1jax.rewards.code:code_check"
CODE_TIMEOUT = 10.0    # the sandbox's own wall clock (5 s) and its start-up


def register(name: str):
    """Decorator that makes a reward function available to configs under ``name``."""
    def wrap(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = fn
        return fn
    return wrap


@register("correctness")
def correctness(responses, examples, finished, pool) -> np.ndarray:
    """1 if the final answer is right (countdown: a valid expression reaching the target; a
    grid: a valid completion of the puzzle), else 0. A truncated response earns nothing: an
    answer before the reasoning ended is not credited."""
    jobs, fns = [], []
    for resp, ex in zip(responses, examples):
        check = datasets.answer_check(ex.get("task") or "")   # the registry's check
        if check == "countdown":
            meta = json.loads(ex["meta"])
            jobs.append((resp, meta["numbers"], meta["target"]))
            fns.append(COUNTDOWN)
        elif check == "grid":
            meta = json.loads(ex["meta"])
            jobs.append((resp, meta["puzzle"], meta["size"]))
            fns.append(GRID)
        elif check == "code":
            meta = json.loads(ex["meta"])
            jobs.append((resp, meta["tests"], meta["entry_point"]))
            fns.append(CODE)
        else:
            jobs.append((resp, ex["answer"]))
            fns.append(EQUIVALENCE)
    out = np.zeros(len(jobs), np.float32)
    for fn in set(fns):
        idx = [i for i, f in enumerate(fns) if f == fn]
        if fn == CODE:
            results = [share for share, _ in _code_checks(pool, [jobs[i] for i in idx])]
        else:
            results = pool.map(fn, [jobs[i] for i in idx])
        for i, r in zip(idx, results):
            value = 0.0 if r in (TIMEOUT, ERROR) else float(r)
            out[i] = 1.0 if value == 1.0 else 0.0
    return out * np.asarray(finished, np.float32)


_last_code_checks: dict = {}   # the latest batch's results: correctness and tests_passed share


def _code_checks(pool: CheckPool, jobs: list) -> list[tuple[float, str]]:
    """(share of tests passed, reason) of each code job, run in the sandbox from the pool's
    workers, each job once per batch whichever rewards ask (the latest batch's results are
    kept); each reason counted in ``pool.stats`` as ``code/REASON``."""
    global _last_code_checks
    keys = [(r, tuple(t), e) for r, t, e in jobs]
    todo = sorted({k for k in keys if k not in _last_code_checks})
    done = {}
    for k, r in zip(todo, pool.map(CODE, todo, timeout=CODE_TIMEOUT)):
        share, reason = (0.0, "timeout" if r == TIMEOUT else "error") if isinstance(r, str) \
            else r
        pool.stats[f"code/{reason}"] = pool.stats.get(f"code/{reason}", 0) + 1
        done[k] = (share, reason)
    out = [done.get(k) or _last_code_checks[k] for k in keys]
    _last_code_checks = dict(zip(keys, out))
    return out


@register("tests_passed")
def tests_passed(responses, examples, finished, pool) -> np.ndarray:
    """The share of a code answer's tests it passes (partial credit; weight it beside
    ``correctness``, which pays only when all pass). Code tasks only: 0 for other tasks."""
    out = np.zeros(len(responses), np.float32)
    idx = [i for i, ex in enumerate(examples)
           if datasets.answer_check(ex.get("task") or "") == "code"]
    metas = [json.loads(examples[i]["meta"]) for i in idx]
    jobs = [(responses[i], m["tests"], m["entry_point"]) for i, m in zip(idx, metas)]
    for i, (share, _) in zip(idx, _code_checks(pool, jobs)):
        out[i] = share
    return out * np.asarray(finished, np.float32)


@register("format")
def format_reward(responses, examples, finished, pool) -> np.ndarray:
    """1 if the response finished and contains a non-empty \\boxed{} answer."""
    return np.array([float(bool(f) and bool((last_boxed(r) or "").strip()))
                     for r, f in zip(responses, finished)], np.float32)


@register("countdown")
def countdown_reward(responses, examples, finished, pool) -> np.ndarray:
    """o1jax's Countdown score (``o1jax.rewards.countdown``, not TinyZero's rule): 1 correct,
    0.1 a well-formed expression over the given numbers with another value, 0 otherwise."""
    jobs = [(r, json.loads(ex["meta"])["numbers"], json.loads(ex["meta"])["target"])
            for r, ex in zip(responses, examples)]
    results = pool.map(COUNTDOWN, jobs)
    vals = [0.0 if r in (TIMEOUT, ERROR) else float(r) for r in results]
    return np.asarray(vals, np.float32) * np.asarray(finished, np.float32)


def reward_parts(responses: Sequence[str], examples: Sequence[dict], finished: Sequence[bool],
                 names: Sequence[str], pool: CheckPool | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each named reward [R], and the verifier's timeout and error counts over these checks."""
    unknown = set(names) - set(REWARDS)
    if unknown:
        raise ValueError(f"unknown reward(s) {sorted(unknown)}; registered: {sorted(REWARDS)}")
    pool = pool or default_pool()
    before = dict(pool.stats)
    parts = {name: REWARDS[name](responses, examples, finished, pool) for name in names}
    counts = {f"verifier/{k}": float(v - before.get(k, 0)) for k, v in pool.stats.items()
              if k != "checks"}
    return parts, counts


def weighted_sum(parts: dict[str, np.ndarray], weights: dict[str, float], rows: int
                 ) -> tuple[np.ndarray, dict[str, float]]:
    """The one aggregation of named rewards: their weighted sum [rows] f32, and each weighted
    reward's mean as ``reward/NAME`` (0 over no rows)."""
    total = np.zeros(rows, np.float32)
    means = {}
    for name, w in weights.items():
        means[f"reward/{name}"] = float(np.mean(parts[name])) if rows else 0.0
        total += w * parts[name]
    return total, means


def compute_rewards(responses: Sequence[str], examples: Sequence[dict],
                    finished: Sequence[bool], weights: dict[str, float],
                    pool: CheckPool | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """Weighted sum of named rewards [R] and per-reward means + verifier counters."""
    parts, counts = reward_parts(responses, examples, finished, list(weights), pool)
    total, means = weighted_sum(parts, weights, len(responses))
    return total, dict(means, **counts)
