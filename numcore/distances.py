"""Errors of a sampler against a reference, each with its Monte-Carlo uncertainty.

relative MSE      R = sum_i ||x_i - x*_i||^2 / sum_i ||x*_i||^2   (paired samples), with a delta-method CI
sliced W2         SW_2(P, Q) = ( E_theta W_2^2(theta.P, theta.Q) )^{1/2}, theta uniform on the sphere,
                  each 1-D W_2 from sorted projections of equal-size samples.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import t as student_t


class Estimate(NamedTuple):
    value: float
    ci_low: float
    ci_high: float
    level: float
    n_samples: int


def relative_mse(x, ref, level: float = 0.95) -> Estimate:
    """R = mean ||x - ref||^2 / mean ||ref||^2 with a delta-method confidence interval (Student-t
    quantile with n - 1 degrees of freedom; needs n >= 2)."""
    x, ref = np.asarray(x, float), np.asarray(ref, float)
    e = np.sum((x - ref) ** 2, axis=1)
    q = np.sum(ref**2, axis=1)
    n = e.size
    R = e.mean() / q.mean()
    se = np.std(e - R * q, ddof=1) / np.sqrt(n) / q.mean()
    z = float(student_t.ppf(0.5 + level / 2, n - 1))
    return Estimate(float(R), float(max(R - z * se, 0.0)), float(R + z * se), level, n)


def directions(d: int, n: int, rng) -> np.ndarray:
    """n directions uniform on the unit sphere in R^d, shape (n, d)."""
    th = np.random.default_rng(rng).standard_normal((n, d))
    return th / np.linalg.norm(th, axis=1, keepdims=True)


def sorted_projections(x, theta) -> np.ndarray:
    """The projections theta . x_i, sorted per direction: shape (directions, n)."""
    return np.sort(np.asarray(theta, float) @ np.asarray(x, float).T, axis=1)


def sliced_wasserstein(x, y, theta, y_sorted=None) -> float:
    """SW_2 between the empirical measures of x and y (same size) along the directions theta.

    ``y_sorted``: :func:`sorted_projections` of y, when y is compared with many x (computed once)."""
    x = np.asarray(x, float)
    py = sorted_projections(y, theta) if y_sorted is None else y_sorted
    if py.shape != (len(theta), x.shape[0]) or (y_sorted is None and np.shape(y) != x.shape):
        raise ValueError(f"sliced_wasserstein: shapes {x.shape} and {np.shape(y)} differ")
    px = sorted_projections(x, theta)
    return float(np.sqrt(np.mean((px - py) ** 2)))
