"""Shared benchmark helpers: the machine's measured matmul peak and a wall-clock timer."""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from o1jax.flops import matmul_peak_flops


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


def start() -> tuple[bool, float]:
    """(--quick given, the measured f32 matmul peak in FLOP/s), the peak printed: the common
    opening of a benchmark that reports fractions of the machine's peak."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    quick = ap.parse_args().quick
    peak = matmul_peak_flops()
    print(f"measured f32 matmul peak (2048^3): {peak / 1e9:.1f} GFLOP/s")
    return quick, peak
