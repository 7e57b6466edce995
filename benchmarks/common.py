"""Shared benchmark helpers: the machine's measured matmul peak and a wall-clock timer."""

from __future__ import annotations

import statistics
import time

import jax

from o1jax.flops import matmul_peak_flops  # noqa: F401  (re-exported for the benchmarks)


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
