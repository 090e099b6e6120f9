"""Brute-force statistics of ||J(x, t)||_op: what the bounds L(t) must exceed.

Points are i.i.d. samples of p_t plus points on the segments between the
scaled means alpha mu_k and alpha mu_j (where two modes compete and the
Jacobian peaks), refined around the best point of each segment.  The sup is
taken over all of them; the mean over the p_t samples only (a Monte-Carlo
average with its standard error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .marginal import jacobian_spectrum, sample
from .mixture import GaussianMixture

MAX_SEGMENT_PAIRS = 2000


@dataclass(frozen=True)
class JacobianStats:
    t: float
    sup: float  # max ||J||_op over samples and segment points
    sup_growth: float  # max lambda_max(-J): the one-sided backward growth rate
    mean: float  # p_t-average of ||J||_op (samples only)
    mean_se: float  # its standard error
    n_samples: int
    n_segment_points: int


def segment_points(mix: GaussianMixture, t: float, per_segment: int = 257, rng=0) -> np.ndarray:
    """Points alpha (mu_k + lam (mu_j - mu_k)), lam in [0, 1], for pairs k < j."""
    k, j = np.triu_indices(mix.K, 1)
    if k.size > MAX_SEGMENT_PAIRS:
        pick = np.random.default_rng(rng).choice(k.size, MAX_SEGMENT_PAIRS, replace=False)
        k, j = k[pick], j[pick]
    lam = np.linspace(0.0, 1.0, per_segment)
    a = np.exp(-t)
    mk, mj = mix.means[k], mix.means[j]
    return (a * (mk[:, None, :] + lam[None, :, None] * (mj - mk)[:, None, :])).reshape(-1, mix.d), k.size


def _refined_segment_sup(mix, t, per_segment, rng):
    pts, npair = segment_points(mix, t, per_segment, rng)
    if npair == 0:
        return -np.inf, -np.inf, 0
    ev = jacobian_spectrum(mix, pts, t).reshape(npair, per_segment, 2)
    nrm = np.abs(ev).max(2)
    best = nrm.argmax(1)
    # refine in the two intervals around each segment's best point
    lam = np.linspace(0.0, 1.0, per_segment)
    h = 1.0 / (per_segment - 1)
    fine = np.linspace(-h, h, 129)
    lam_f = np.clip(lam[best][:, None] + fine[None, :], 0.0, 1.0)
    k, j = np.triu_indices(mix.K, 1)
    if k.size > npair:
        pick = np.random.default_rng(rng).choice(k.size, MAX_SEGMENT_PAIRS, replace=False)
        k, j = k[pick], j[pick]
    a = np.exp(-t)
    mk, mj = mix.means[k], mix.means[j]
    pf = (a * (mk[:, None, :] + lam_f[:, :, None] * (mj - mk)[:, None, :])).reshape(-1, mix.d)
    evf = jacobian_spectrum(mix, pf, t)
    sup = max(nrm.max(), np.abs(evf).max())
    growth = max(-ev[..., 0].min(), -evf[:, 0].min())
    return sup, growth, pts.shape[0] + pf.shape[0]


def jacobian_stats(mix: GaussianMixture, t: float, n: int, rng=0, per_segment: int = 257,
                   radius: float | None = None) -> JacobianStats:
    """Sup and mean of ||J||_op at time t from n samples of p_t and the mean segments.

    With ``radius``, the sup only counts points with ||x|| <= radius (for bounds
    that hold on a ball)."""
    rng = np.random.default_rng(rng)
    x = sample(mix, t, n, rng)
    ev = jacobian_spectrum(mix, x, t)
    nrm = np.abs(ev).max(1)
    inside = np.ones(n, bool) if radius is None else (np.linalg.norm(x, axis=1) <= radius)
    sup = nrm[inside].max() if inside.any() else -np.inf
    growth = (-ev[inside, 0]).max() if inside.any() else -np.inf
    seg_sup, seg_growth, nseg = _refined_segment_sup(mix, t, per_segment, 0)
    if radius is not None and nseg:
        # segment points lie in the convex hull of alpha mu_k: inside the ball iff all means are
        if np.exp(-t) * np.linalg.norm(mix.means, axis=1).max() > radius:
            seg_sup, seg_growth, nseg = -np.inf, -np.inf, 0
    return JacobianStats(
        t=float(t),
        sup=float(max(sup, seg_sup)),
        sup_growth=float(max(growth, seg_growth)),
        mean=float(nrm.mean()),
        mean_se=float(nrm.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        n_samples=n,
        n_segment_points=nseg,
    )


def jacobian_table(mix: GaussianMixture, ts, n: int, seed: int = 0, per_segment: int = 257,
                   progress=None) -> list[JacobianStats]:
    """:func:`jacobian_stats` at each time in ts, seeds derived from ``seed``."""
    seeds = np.random.SeedSequence(seed).spawn(len(ts))
    out = []
    for tt, ss in zip(ts, seeds):
        out.append(jacobian_stats(mix, float(tt), n, np.random.default_rng(ss), per_segment))
        if progress is not None:
            progress.update(1)
    return out
