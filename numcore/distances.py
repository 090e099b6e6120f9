"""Errors of a sampler against a reference, each with its Monte-Carlo uncertainty.

relative MSE      R = sum_i ||x_i - x*_i||^2 / sum_i ||x*_i||^2   (paired samples), with a delta-method CI
sliced W2         SW_2(P, Q) = ( E_theta W_2^2(theta.P, theta.Q) )^{1/2}, theta uniform on the sphere,
                  each 1-D W_2 from the sorted projections (quantile functions for unequal sizes),
                  with a bootstrap interval from :func:`sliced_wasserstein_ci`.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np
from scipy.special import stdtrit  # Student's t quantile (scipy.stats.t.ppf's own, without importing scipy.stats)

from . import jitcache


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
    z = float(stdtrit(n - 1, 0.5 + level / 2))
    return Estimate(float(R), float(max(R - z * se, 0.0)), float(R + z * se), level, n)


def directions(d: int, n: int, rng) -> np.ndarray:
    """n directions uniform on the unit sphere in R^d, shape (n, d)."""
    th = np.random.default_rng(rng).standard_normal((n, d))
    return th / np.linalg.norm(th, axis=1, keepdims=True)


def sorted_projections(x, theta) -> np.ndarray:
    """The projections theta . x_i, sorted per direction: shape (directions, n)."""
    return sort_rows(np.asarray(theta, float) @ np.asarray(x, float).T)


def sort_rows(a) -> np.ndarray:
    """Each row of a (k, n) sorted ascending, as float64: the values of ``np.sort(a, axis=1)`` (a sorted row is
    unique but for the order of -0.0 and 0.0, which compare equal, and of NaNs: negative ones come first here),
    by a radix sort on order-preserving integer keys (:func:`_radix_sort_rows`): 3.2x faster than numpy's sort on
    64 x 10^4 (the sliced W2 of a study's row, which sorts one such array per row)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"sort_rows: a has shape {a.shape}: expected (rows, n)")
    out = np.empty_like(a)
    _radix_sort_rows(a.view(np.uint64), out.view(np.uint64))
    return out


_TOP = np.uint64(1) << np.uint64(63)
_DIGIT = np.uint64(2047)


_LOW = np.uint64(33)  # the radix passes order the keys' top 31 bits (3 passes: 11, 11 and 9 bits)
_RUN = 32  # ... then runs of equal top bits up to this long get an insertion sort, longer ones a full sort


@nb.njit(cache=jitcache.enabled(), nogil=True)
def _radix_sort_rows(bits, out):
    """Sort each row of float64 bit patterns ``bits`` (k, n) into ``out``.  The key of a float is its bits with the
    sign bit set (x >= +0) or all bits flipped (x < 0, and -0.0), which orders keys as the floats.  Three stable
    LSD passes order the keys by their top 31 bits (sign, exponent and 19 bits of mantissa: a relative resolution
    of 2e-6), every digit's counts taken in one read of the row; the runs of equal top bits, which a sample rarely
    has, are then sorted on the whole key (insertion sort, or a full sort for a run over ``_RUN``)."""
    k, n = bits.shape
    keys = np.empty(n, np.uint64)
    tmp = np.empty(n, np.uint64)
    count = np.empty((3, 2048), np.int64)
    for r in range(k):
        count[:, :] = 0
        for i in range(n):
            u = bits[r, i]
            u = ~u if u & _TOP else u | _TOP
            keys[i] = u
            for j in range(3):
                count[j, (u >> (_LOW + np.uint64(11 * j))) & _DIGIT] += 1
        for j in range(3):
            total = 0
            for b in range(2048):
                c = count[j, b]
                count[j, b] = total
                total += c
        for j in range(3):
            shift = _LOW + np.uint64(11 * j)
            for i in range(n):
                u = keys[i]
                b = (u >> shift) & _DIGIT
                tmp[count[j, b]] = u
                count[j, b] += 1
            keys, tmp = tmp, keys
        i = 0
        while i < n:
            top = keys[i] >> _LOW
            e = i + 1
            while e < n and keys[e] >> _LOW == top:
                e += 1
            if e - i > _RUN:
                keys[i:e] = np.sort(keys[i:e])
            else:
                for m in range(i + 1, e):
                    u = keys[m]
                    p = m - 1
                    while p >= i and keys[p] > u:
                        keys[p + 1] = keys[p]
                        p -= 1
                    keys[p + 1] = u
            i = e
        for i in range(n):
            u = keys[i]
            out[r, i] = u & ~_TOP if u & _TOP else ~u


def sliced_wasserstein(x, y, theta, y_sorted=None) -> float:
    """SW_2 between the empirical measures of x (n, d) and y (m, d) along the directions theta (k, d).

    Equal sizes pair the sorted projections; unequal sizes integrate (F_x^{-1}(u) - F_y^{-1}(u))^2 over
    u in (0, 1) exactly (both quantile functions are steps, on the union of their breakpoints).
    ``y_sorted``: :func:`sorted_projections` of y, when y is compared with many x (computed once).
    """
    x, theta = np.asarray(x, float), np.asarray(theta, float)
    if y_sorted is None:
        y = np.asarray(y, float)
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or theta.shape[-1] != x.shape[1]:
            raise ValueError(f"sliced_wasserstein: shapes {x.shape} and {y.shape} do not match")
        py = sorted_projections(y, theta)
    else:
        py = np.asarray(y_sorted, float)
        if x.ndim != 2 or py.ndim != 2 or py.shape[0] != len(theta) or theta.shape[-1] != x.shape[1]:
            raise ValueError(f"sliced_wasserstein: shapes {x.shape} and {py.shape} (sorted) do not match")
    px = sorted_projections(x, theta)
    return float(np.sqrt(np.mean(_w2_sq_sorted(px.T, py.T))))


def _w2_sq_sorted(px, py) -> np.ndarray:
    """W_2^2 per column between sorted samples px (n, k) and py (m, k)."""
    n, m = px.shape[0], py.shape[0]
    if n == m:
        return np.mean((px - py) ** 2, axis=0)
    edges = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
    mid, w = 0.5 * (edges[:-1] + edges[1:]), np.diff(edges)
    ix = np.minimum((mid * n).astype(int), n - 1)
    iy = np.minimum((mid * m).astype(int), m - 1)
    return w @ (px[ix] - py[iy]) ** 2


def sliced_wasserstein_ci(x, y, theta, rng, boots: int = 200, level: float = 0.95) -> Estimate:
    """SW_2(x, y) with a bias-corrected percentile bootstrap interval (both samples resampled, directions fixed).

    Resampling with replacement repeats points, which inflates a Wasserstein distance: the percentile
    interval is shifted down by the bootstrap estimate of that bias (mean of the replicates - value),
    so that it brackets the estimate; at distances near the sampling noise it stays only indicative.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    value = sliced_wasserstein(x, y, theta)
    rng = np.random.default_rng(rng)
    px, py = x @ theta.T, y @ theta.T
    vals = np.empty(boots)
    for b in range(boots):
        bx = sort_rows(px[rng.integers(0, px.shape[0], px.shape[0])].T).T
        by = sort_rows(py[rng.integers(0, py.shape[0], py.shape[0])].T).T
        vals[b] = np.sqrt(np.mean(_w2_sq_sorted(bx, by)))
    lo, hi = np.quantile(vals, [0.5 - level / 2, 0.5 + level / 2]) - (vals.mean() - value)
    return Estimate(value, float(max(lo, 0.0)), float(hi), level, int(x.shape[0]))
