"""Fits of accuracy against compute: ScaleRL's sigmoid and a log-linear line, per run and over
runs (seeds) with a 95% band.

    sigmoid     R(C) = R0 + (A - R0) / (1 + (C_mid / C) ** B)      (Khatri et al. 2025)
    log-linear  R(C) = a + b * log10(C)                              (b: gain per decade)

R0 is the accuracy before any training compute (the start of the run), A the asymptote, B the
efficiency, C_mid the compute at which half of the gain A - R0 is reached. C in FLOPs.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Sequence

import numpy as np


class SigmoidFit(NamedTuple):
    r0: float
    a: float           # asymptote
    b: float           # efficiency (slope in log compute)
    c_mid: float       # FLOPs at half the gain
    rmse: float

    def __call__(self, c) -> np.ndarray:
        c = np.asarray(c, np.float64)
        return self.r0 + (self.a - self.r0) / (1.0 + (self.c_mid / c) ** self.b)


class LogLinearFit(NamedTuple):
    intercept: float   # accuracy at 1 FLOP, extrapolated
    per_decade: float  # accuracy gained per 10x compute
    r2: float

    def __call__(self, c) -> np.ndarray:
        return self.intercept + self.per_decade * np.log10(np.asarray(c, np.float64))


def fit_sigmoid(flops: Sequence[float], accuracy: Sequence[float], r0: float) -> SigmoidFit:
    """Least squares in (A, B, log10 C_mid) with R0 fixed; points at C > 0 only. Raises
    ValueError with fewer than 3 such points (three parameters)."""
    from scipy import optimize   # why here: scipy costs every command ~1 s to import
    c, y = _positive(flops, accuracy)
    if len(c) < 3:
        raise ValueError(f"a sigmoid fit needs at least 3 points with compute > 0, got {len(c)}")
    x = np.log10(c)

    def model(x, a, b, m):
        return r0 + (a - r0) / (1.0 + 10.0 ** (b * (m - x)))
    lo = [min(r0, y.min()) - 1.0, 1e-3, x.min() - 3.0]
    hi = [1.5, 20.0, x.max() + 3.0]
    best = None
    for m0 in np.linspace(x.min(), x.max(), 5):        # a few starts: the fit is not convex
        for b0 in (0.5, 1.0, 3.0):
            try:
                with warnings.catch_warnings():  # a flat stretch leaves no covariance: fine
                    warnings.simplefilter("ignore", optimize.OptimizeWarning)
                    p, _ = optimize.curve_fit(model, x, y, p0=[max(y.max(), r0 + 1e-3), b0, m0],
                                              bounds=(lo, hi), maxfev=20000)
            except (RuntimeError, ValueError):
                continue
            err = float(np.sqrt(np.mean((model(x, *p) - y) ** 2)))
            if best is None or err < best[1]:
                best = (p, err)
    if best is None:
        raise ValueError("the sigmoid fit did not converge")
    (a, b, m), err = best
    return SigmoidFit(float(r0), float(a), float(b), float(10.0 ** m), err)


def fit_log_linear(flops: Sequence[float], accuracy: Sequence[float]) -> LogLinearFit:
    """Ordinary least squares of accuracy on log10 FLOPs (points at C > 0), with R^2."""
    c, y = _positive(flops, accuracy)
    if len(c) < 2:
        raise ValueError(f"a line needs at least 2 points with compute > 0, got {len(c)}")
    x = np.log10(c)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / total if total > 0 else float("nan")
    return LogLinearFit(float(intercept), float(slope), r2)


def _positive(flops, accuracy) -> tuple[np.ndarray, np.ndarray]:
    c, y = np.asarray(flops, np.float64), np.asarray(accuracy, np.float64)
    keep = c > 0
    return c[keep], y[keep]


def interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean over runs (NaN bounds for one run)."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    from scipy import stats
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return mean, mean - float(half), mean + float(half)


def band(fits: Sequence, grid: np.ndarray, confidence: float = 0.95
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve of several runs' fits on ``grid`` and its pointwise t interval."""
    curves = np.stack([f(grid) for f in fits])
    out = [interval(curves[:, j], confidence) for j in range(len(grid))]
    return tuple(np.array(col) for col in zip(*out))
