"""The compute fits recover known parameters from noisy synthetic points."""

import numpy as np
import pytest

from o1jax.scaling import SigmoidFit, band, fit_log_linear, fit_sigmoid, interval


def test_sigmoid_recovers_known_parameters_from_noisy_points():
    truth = SigmoidFit(r0=0.4, a=0.8, b=1.5, c_mid=3e12, rmse=0.0)
    rng = np.random.default_rng(0)
    c = np.logspace(11, 14, 12)
    y = truth(c) + rng.normal(0, 0.005, c.shape)
    fit = fit_sigmoid(c, y, r0=0.4)
    assert fit.a == pytest.approx(0.8, abs=0.02)
    assert fit.b == pytest.approx(1.5, rel=0.15)
    assert np.log10(fit.c_mid) == pytest.approx(np.log10(3e12), abs=0.1)
    assert fit.rmse < 0.01


def test_log_linear_slope_per_decade_and_r2():
    c = np.logspace(10, 13, 7)
    y = 0.1 + 0.05 * np.log10(c)
    fit = fit_log_linear(c, y)
    assert fit.per_decade == pytest.approx(0.05) and fit.r2 == pytest.approx(1.0)
    noisy = y + np.random.default_rng(1).normal(0, 0.01, y.shape)
    assert 0.5 < fit_log_linear(c, noisy).r2 < 1.0


def test_too_few_points_are_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_sigmoid([0, 1e12, 2e12], [0.4, 0.5, 0.6], r0=0.4)   # C = 0 is not a point


def test_interval_and_band_over_seeds():
    mean, lo, hi = interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    fits = [SigmoidFit(0.4, a, 1.0, 1e12, 0.0) for a in (0.7, 0.8, 0.9)]
    m, lo, hi = band(fits, np.array([1e15]))
    assert m[0] == pytest.approx(0.8, abs=1e-3) and lo[0] < 0.8 < hi[0]
