"""Monte-Carlo L^p(p_t) error of approximate scores, with a confidence interval.

    ||s_hat - s||_{L^p(p_t)} = (E_{x ~ p_t} ||s_hat(x, t) - s(x, t)||_2^p)^{1/p}

estimated from n i.i.d. samples of p_t.  The p-th powers e_i = ||s_hat - s||^p
have sample mean m and standard error se = sd / sqrt(n); the CLT interval
[m - z se, m + z se] (lower end clipped at 0) is mapped through the monotone
u -> u^{1/p}, which keeps its coverage.  The estimate is m^{1/p}.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict

import numpy as np
from statistics import NormalDist

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


def _estimate(part: np.ndarray, n: int, p: float, level: float) -> LpEstimate:
    s1, s2 = part[:, 0].sum(), part[:, 1].sum()
    m = s1 / n
    var = max(s2 / n - m * m, 0.0) * n / max(n - 1, 1)
    se = np.sqrt(var / n)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    lo, hi = max(m - z * se, 0.0), m + z * se
    return LpEstimate(float(m ** (1 / p)), float(lo ** (1 / p)), float(hi ** (1 / p)), level, n, p)


def lp_error(s_hat, s_true, p: float = 2.0, level: float = 0.95) -> LpEstimate:
    """L^p error of score values s_hat against s_true at the same samples (both (n, d))."""
    from . import kernels as kn

    a = np.ascontiguousarray(s_hat, dtype=np.float64)
    b = np.ascontiguousarray(s_true, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"score arrays have shapes {a.shape} and {b.shape}: expected equal (n, d)")
    size, nch = kn._chunks(a.shape[0])
    part = np.zeros((nch, 2))
    kn._lp_sums(a, b, float(p), size, nch, part)
    return _estimate(part, a.shape[0], p, level)


def score_lp_sums(mix: GaussianMixture, x, t: float, s_hat, p: float = 2.0) -> np.ndarray:
    """(sum of e, sum of e^2) with e = ||s_hat - s(x, t)||^p over the rows (fused exact-score kernel).

    Sums from several batches add up; :func:`estimate_from_sums` turns them into an estimate."""
    from . import kernels as kn
    from .marginal import at_time, as_points

    m = at_time(mix, t)
    x = as_points(x, mix.d)
    s_hat = np.ascontiguousarray(s_hat, dtype=np.float64)
    if s_hat.shape != x.shape:
        raise ValueError(f"s_hat has shape {s_hat.shape}: expected {x.shape}")
    size, nch = kn._chunks(x.shape[0])
    part = np.zeros((nch, 2))
    kn._score_lp_sums(x, s_hat, float(p), m.inv_s, m.mrot, m.logc, m.mats, size, nch, part)
    return part.sum(0)


def estimate_from_sums(sums, n: int, p: float = 2.0, level: float = 0.95) -> LpEstimate:
    """The L^p estimate and interval from (sum e, sum e^2) over n samples."""
    return _estimate(np.asarray(sums, float).reshape(1, 2), n, p, level)


def score_lp_error(mix: GaussianMixture, x, t: float, s_hat, p: float = 2.0, level: float = 0.95) -> LpEstimate:
    """L^p(p_t) error of s_hat at samples x of p_t against the exact score (fused kernel)."""
    n = np.shape(x)[0]
    return estimate_from_sums(score_lp_sums(mix, x, t, s_hat, p), n, p, level)
