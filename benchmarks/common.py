"""Shared benchmark helpers: the machine's measured matmul peak and a wall-clock timer."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp


def block(x):
    return jax.block_until_ready(x)


def median_seconds(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` (its result is blocked on) after ``warmup`` calls."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
    """Achieved FLOP/s of one jitted dense n x n x n matmul: the peak we compare against."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    mm = jax.jit(lambda a, b: a @ b)
    return 2 * n ** 3 / median_seconds(lambda: mm(a, b), repeats=repeats)
