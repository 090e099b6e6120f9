"""Monte-Carlo L^p(p_t) error of approximate scores, with a confidence interval.

    ||s_hat - s||_{L^p(p_t)} = (E_{x ~ p_t} ||s_hat(x, t) - s(x, t)||_2^p)^{1/p}

estimated from n i.i.d. samples of p_t.  The p-th powers e_i = ||s_hat - s||^p
have sample mean m and standard error se = sd / sqrt(n); the Student-t interval
[m - q se, m + q se] (the CLT interval for large n; lower end clipped at 0) is
mapped through the monotone u -> u^{1/p}, which keeps its coverage.  The
estimate is m^{1/p}.  Sums are kept scaled by the largest error M (e / M^p), so
that e = ||.||^p neither underflows (errors 1e-8 at p = 64) nor overflows.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict

import numpy as np

from .mixture import GaussianMixture


@dataclass(frozen=True)
class LpEstimate:
    """An L^p error estimate: value, confidence interval, level, sample size, p."""

    value: float
    ci_low: float
    ci_high: float
    level: float
    n_samples: int
    p: float

    def as_dict(self) -> dict:
        return asdict(self)


def add_sums(a, b, p: float) -> np.ndarray:
    """Two scaled sums (M, sum (e/M^p), sum (e/M^p)^2) of e = ||.||^p combined into one."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    M = max(a[0], b[0])
    if M == 0.0:
        return np.array([0.0, a[1] + b[1], a[2] + b[2]])
    fa = (a[0] / M) ** p if a[0] > 0 else 0.0
    fb = (b[0] / M) ** p if b[0] > 0 else 0.0
    return np.array([M, a[1] * fa + b[1] * fb, a[2] * fa * fa + b[2] * fb * fb])


def _combine(part: np.ndarray, p: float) -> np.ndarray:
    out = np.zeros(3)
    for row in part:
        out = add_sums(out, row, p)
    return out


def _estimate(sums: np.ndarray, n: int, p: float, level: float) -> LpEstimate:
    """The estimate (E e)^{1/p} and its interval from scaled sums: with u = e / M^p,
    E e = M^p E u, so every p-th root is taken of E u (never under- or overflowing) times M.

    The interval for E u is Student-t with n - 1 degrees of freedom (the CLT interval for large
    n); it needs n >= 2."""
    from scipy.stats import t as student_t

    if n < 2:
        raise ValueError(f"n = {n}: an interval needs at least 2 samples")
    M, s1, s2 = (float(v) for v in sums)
    m = s1 / n
    var = max(s2 / n - m * m, 0.0) * n / (n - 1)
    se = np.sqrt(var / n)
    q = float(student_t.ppf(0.5 + level / 2, n - 1))
    lo, hi = max(m - q * se, 0.0), m + q * se
    root = lambda u: M * u ** (1.0 / p)  # noqa: E731
    return LpEstimate(float(root(m)), float(root(lo)), float(root(hi)), level, n, p)


def lp_error(s_hat, s_true, p: float = 2.0, level: float = 0.95) -> LpEstimate:
    """L^p error of score values s_hat against s_true at the same samples (both (n, d), n >= 2)."""
    from . import kernels as kn

    a = np.ascontiguousarray(s_hat, dtype=np.float64)
    b = np.ascontiguousarray(s_true, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"score arrays have shapes {a.shape} and {b.shape}: expected equal (n, d)")
    size, nch = kn._chunks(a.shape[0])
    part = np.zeros((nch, 3))
    kn._lp_sums(a, b, float(p), size, nch, part)
    return _estimate(_combine(part, p), a.shape[0], p, level)


def score_lp_sums(mix: GaussianMixture, x, t: float, s_hat, p: float = 2.0) -> np.ndarray:
    """Scaled sums (M, sum e/M^p, sum (e/M^p)^2) of e = ||s_hat - s(x, t)||^p over the rows, M the
    largest ||s_hat - s|| (fused exact-score kernel): e itself underflows for small errors at
    large p (1e-8^64), the scaled terms do not.

    Sums from several batches combine with :func:`add_sums`; :func:`estimate_from_sums` turns
    them into an estimate."""
    from . import kernels as kn
    from .marginal import at_time, as_points

    m = at_time(mix, t)
    x = as_points(x, mix.d)
    s_hat = np.ascontiguousarray(s_hat, dtype=np.float64)
    if s_hat.shape != x.shape:
        raise ValueError(f"s_hat has shape {s_hat.shape}: expected {x.shape}")
    size, nch = kn._chunks(x.shape[0])
    part = np.zeros((nch, 3))
    kn._score_lp_sums(x, s_hat, float(p), m.inv_s, m.mrot, m.logc, m.mats, size, nch, part)
    return _combine(part, p)


def estimate_from_sums(sums, n: int, p: float = 2.0, level: float = 0.95) -> LpEstimate:
    """The L^p estimate and interval from the scaled sums of :func:`score_lp_sums` over n samples."""
    return _estimate(np.asarray(sums, float).reshape(3), n, p, level)


def score_lp_error(mix: GaussianMixture, x, t: float, s_hat, p: float = 2.0, level: float = 0.95) -> LpEstimate:
    """L^p(p_t) error of s_hat at samples x of p_t against the exact score (fused kernel)."""
    n = np.shape(x)[0]
    return estimate_from_sums(score_lp_sums(mix, x, t, s_hat, p), n, p, level)
