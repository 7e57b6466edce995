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


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32, repeats: int = 7) -> float:
    """FLOP/s of the fastest of ``repeats`` jitted dense n x n x n matmuls: the peak we compare
    against (the best run, since a peak is what the hardware can reach)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    mm = jax.jit(lambda a, b: a @ b)
    block(mm(a, b))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        block(mm(a, b))
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best
