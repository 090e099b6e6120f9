"""Brute-force statistics of ||J(x, t)||_op: what the bounds L(t) must exceed.

Points are i.i.d. samples of p_t plus points on the lines through pairs of
scaled means alpha mu_k and alpha mu_j: dense on the segment between them
(where two modes compete and the Jacobian peaks) and far out on both sides
(where one weight dominates), refined around the best point of each line.  The sup is
taken over all of them; the mean over the p_t samples only (a Monte-Carlo
average with its standard error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .marginal import jacobian_spectrum, sample
from .mixture import GaussianMixture

MAX_SEGMENT_PAIRS = 2000
MAX_LINE_FLOATS = 2**24  # memory cap for the points on mean lines


@dataclass(frozen=True)
class JacobianStats:
    t: float
    sup: float  # max ||J||_op over samples and segment points
    sup_growth: float  # max lambda_max(-J): the one-sided backward growth rate
    mean: float  # p_t-average of ||J||_op (samples only)
    mean_se: float  # its standard error
    n_samples: int
    n_segment_points: int


def _line_params(per_segment: int) -> np.ndarray:
    """Positions lam on the line mu_k + lam (mu_j - mu_k): dense on [0, 1], then out to
    1e8 segment lengths on both sides, where the weights become one-hot."""
    far = np.logspace(-2, 8, 41)
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, per_segment), -far, 1.0 + far]))


def _pairs(mix: GaussianMixture, rng):
    """Pairs of components whose mean lines are probed (a random subset when there are many)."""
    k, j = np.triu_indices(mix.K, 1)
    cap = int(min(MAX_SEGMENT_PAIRS, max(1, MAX_LINE_FLOATS // (400 * mix.d))))
    if k.size > cap:
        pick = np.random.default_rng(rng).choice(k.size, cap, replace=False)
        k, j = k[pick], j[pick]
    return k, j


def _on_lines(mix, t, k, j, lam):
    """alpha (mu_k + lam (mu_j - mu_k)) for each pair (rows of lam belong to pairs)."""
    a = np.exp(-t)
    mk, mj = mix.means[k], mix.means[j]
    lam = np.broadcast_to(lam, (k.size, lam.shape[-1]))
    return (a * (mk[:, None, :] + lam[:, :, None] * (mj - mk)[:, None, :])).reshape(-1, mix.d)


def _line_spectra(mix, t, per_segment, rng):
    """Points on the mean lines (coarse, then refined) and J's extreme eigenvalues there."""
    k, j = _pairs(mix, rng)
    if k.size == 0:
        return np.zeros((0, mix.d)), np.zeros((0, 2))
    lam = _line_params(per_segment)
    pts = _on_lines(mix, t, k, j, lam[None, :])
    ev = jacobian_spectrum(mix, pts, t).reshape(k.size, lam.size, 2)
    nrm = np.abs(ev).max(2)
    best = nrm.argmax(1)
    # refine between the neighbours of each line's best point
    lo = lam[np.maximum(best - 1, 0)]
    hi = lam[np.minimum(best + 1, lam.size - 1)]
    lam_f = lo[:, None] + np.linspace(0.0, 1.0, 129)[None, :] * (hi - lo)[:, None]
    pf = _on_lines(mix, t, k, j, lam_f)
    evf = jacobian_spectrum(mix, pf, t)
    allpts = np.concatenate([pts, pf])
    allev = np.concatenate([ev.reshape(-1, 2), evf])
    return allpts, allev


CHUNK_FLOATS = 2**22  # samples are drawn and evaluated in chunks of this many floats (32 MiB)


def jacobian_stats(mix: GaussianMixture, t: float, n: int, rng=0, per_segment: int = 257,
                   radius: float | None = None, progress=None) -> JacobianStats:
    """Sup and mean of ||J||_op at time t from n samples of p_t and the mean segments.

    Samples are drawn and evaluated in chunks of CHUNK_FLOATS floats, so memory stays bounded for
    any n (``progress.update`` is called per chunk with its size).  With ``radius``, the sup only
    counts points with ||x|| <= radius (for bounds that hold on a ball)."""
    rng = np.random.default_rng(rng)
    chunk = max(1, CHUNK_FLOATS // max(mix.d, 1))
    sup = growth = -np.inf
    total = 0.0
    mean = 0.0
    m2 = 0.0  # running sum of squared deviations (Chan et al.'s parallel update)
    done = 0
    while done < n:
        k = min(chunk, n - done)
        x = sample(mix, t, k, rng)
        ev = jacobian_spectrum(mix, x, t)
        nrm = np.abs(ev).max(1)
        inside = np.ones(k, bool) if radius is None else (np.linalg.norm(x, axis=1) <= radius)
        if inside.any():
            sup = max(sup, float(nrm[inside].max()))
            growth = max(growth, float((-ev[inside, 0]).max()))
        cm = float(nrm.mean())
        cm2 = float(((nrm - cm) ** 2).sum())
        tot = total + k
        delta = cm - mean
        mean += delta * k / tot
        m2 += cm2 + delta * delta * total * k / tot
        total = tot
        done += k
        if progress is not None:
            progress.update(k)
    seg_sup, seg_growth, nseg = -np.inf, -np.inf, 0
    if mix.K > 1:
        pts, ev_seg = _line_spectra(mix, t, per_segment, 0)
        if radius is not None:
            keep = np.linalg.norm(pts, axis=1) <= radius
            ev_seg = ev_seg[keep]
        if ev_seg.shape[0]:
            seg_sup, seg_growth, nseg = np.abs(ev_seg).max(), (-ev_seg[:, 0]).max(), ev_seg.shape[0]
    return JacobianStats(
        t=float(t),
        sup=float(max(sup, seg_sup)),
        sup_growth=float(max(growth, seg_growth)),
        mean=float(mean),
        mean_se=float(np.sqrt(m2 / (n - 1) / n)) if n > 1 else float("nan"),
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
