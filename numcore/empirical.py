"""Brute-force statistics of ||J(x, t)||_op: what the bounds L(t) must exceed.

Points are i.i.d. samples of p_t plus points on the lines through pairs of
scaled means alpha mu_k and alpha mu_j: dense on the segment between them
(where two modes compete and the Jacobian peaks) and far out on both sides
(where one weight dominates), refined around the best point of each line.  The sup is
taken over all of them; the mean over the p_t samples only (a Monte-Carlo
average with its standard error).

With ``refine`` > 0 the oracle is stronger: projected gradient ascent of ||J||_op (and of
lambda_max(-J)) inside the ball ||x|| <= radius, started from the best sample and line points and
from random points inside the ball and on its sphere (where per-component pairs peak: the
difference of two scores grows linearly in x while their weights stay balanced along a saddle).
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
    growth_mean: float = float("nan")  # p_t-average of lambda_max(-J): the along-trajectory rate's mean
    growth_mean_se: float = float("nan")
    growth_p99: float = float("nan")


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


def _objective(mix, x, t, growth):
    ev = jacobian_spectrum(mix, x, t)
    return -ev[:, 0] if growth else np.abs(ev).max(1)


def local_max(mix: GaussianMixture, t: float, x0, radius: float | None = None, iters: int = 40,
              growth: bool = False):
    """Projected gradient ascent of ||J(x, t)||_op (``growth``: of lambda_max(-J)) from each row of x0.

    Gradients by central differences (2d kernel evaluations per point), a step per point that grows
    by 1.5 after a success and shrinks by 0.3 after a failure; with ``radius`` every iterate is
    projected onto the ball ||x|| <= radius.  Returns (points (n, d), values (n,)); values never
    decrease, so the result is at least the best start."""
    x = np.array(x0, float, copy=True)
    n, d = x.shape

    def proj(z):
        if radius is None:
            return z
        nr = np.linalg.norm(z, axis=1, keepdims=True)
        return np.where(nr > radius, z * (radius / np.maximum(nr, 1e-300)), z)

    x = proj(x)
    f = _objective(mix, x, t, growth)
    scale = 1.0 + (radius if radius is not None else float(np.abs(x).max()))
    step = np.full(n, 0.05 * scale)
    eye = np.eye(d)
    for _ in range(iters):
        h = 1e-6 * (1.0 + np.abs(x).max(1))
        pts = np.concatenate([x[:, None, :] + h[:, None, None] * eye, x[:, None, :] - h[:, None, None] * eye], 1)
        fv = _objective(mix, pts.reshape(-1, d), t, growth).reshape(n, 2 * d)
        g = (fv[:, :d] - fv[:, d:]) / (2.0 * h[:, None])
        direction = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
        xn = proj(x + step[:, None] * direction)
        fn = _objective(mix, xn, t, growth)
        ok = fn > f
        x[ok], f[ok] = xn[ok], fn[ok]
        step = np.where(ok, step * 1.5, step * 0.3)
    return x, f


def _saddle_points(mix, t, radius, angles: int = 720, max_pairs: int = 64):
    """Points on the sphere ||x|| = radius where two components balance (l_k = l_j), in the planes spanned by
    an eigenvector of P_k(t) - P_j(t) with a positive and one with a negative eigenvalue.  There l_k - l_j is a
    saddle and the score difference is largest on the sphere while both weights stay equal; the crossings
    are found on a grid of angles and refined by bisection (they are too narrow for a gradient ascent to
    find from afar)."""
    if radius is None or mix.K < 2 or mix.structure != "component":
        return np.zeros((0, mix.d))
    alpha = np.exp(-t)
    s = mix.marginal_eigvals(t)
    G = mix.basis.shape[0]
    if G == 0:
        P = np.zeros((mix.K, mix.d, mix.d))
        P[:, np.arange(mix.d), np.arange(mix.d)] = 1.0 / s
    else:
        U = mix.basis[mix.group]
        P = (U / s[:, None, :]) @ np.swapaxes(U, 1, 2)
    logc = np.log(mix.weights) - 0.5 * np.log(s).sum(1)
    m = alpha * mix.means
    k, j = np.triu_indices(mix.K, 1)
    if k.size > max_pairs:
        k, j = k[:max_pairs], j[:max_pairs]
    _, E = np.linalg.eigh(P[k] - P[j])

    def phi(x, p):  # l_k - l_j at points x (n, d) for pair index p
        out = np.zeros(x.shape[0])
        for c, sgn in ((k[p], 1.0), (j[p], -1.0)):
            r = x - m[c]
            out += sgn * (logc[c] - 0.5 * np.einsum("na,ab,nb->n", r, P[c], r))
        return out

    th = np.linspace(0.0, 2 * np.pi, angles + 1)
    planes = [(up, down) for up, down in ((-1, 0), (-2, 1), (-1, 1), (-2, 0))
              if -up <= mix.d and down < mix.d and mix.d + up != down]
    if not planes:
        return np.zeros((0, mix.d))
    found = []
    for p in range(k.size):
        e1 = np.stack([E[p, :, up] for up, _ in planes])  # (planes, d)
        e2 = np.stack([E[p, :, down] for _, down in planes])

        def point(a, which):  # a (n,), which (n,) plane index
            return radius * (np.cos(a)[:, None] * e1[which] + np.sin(a)[:, None] * e2[which])

        which = np.repeat(np.arange(len(planes)), th.size)
        f = phi(point(np.tile(th, len(planes)), which), p).reshape(len(planes), th.size)
        pl, cross = np.nonzero(np.sign(f[:, :-1]) * np.sign(f[:, 1:]) <= 0)
        if cross.size == 0:
            continue
        lo, hi, flo = th[cross], th[cross + 1], f[pl, cross]
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            fm = phi(point(mid, pl), p)
            left = np.sign(fm) == np.sign(flo)
            lo, flo, hi = np.where(left, mid, lo), np.where(left, fm, flo), np.where(left, hi, mid)
        found.append(point(0.5 * (lo + hi), pl))
    return np.concatenate(found) if found else np.zeros((0, mix.d))


def _refined(mix, t, cand, radius, refine, rng):
    """Best ||J||_op and lambda_max(-J) after local maximisation from ``refine`` starts."""
    d = mix.d
    cand = np.concatenate([cand, _saddle_points(mix, t, radius)])
    starts = []
    for growth in (False, True):
        f = _objective(mix, cand, t, growth) if cand.shape[0] else np.zeros(0)
        top = cand[np.argsort(f)[-(refine // 2):]] if cand.shape[0] else np.zeros((0, d))
        starts.append(top)
    scale = radius if radius is not None else float(np.abs(cand).max(initial=1.0)) * 1.5
    z = rng.standard_normal((refine, d))
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-300)
    shell = z[: refine // 2] * scale
    inner = z[refine // 2:] * scale * rng.uniform(0, 1, (refine - refine // 2, 1)) ** (1.0 / d)
    x0 = np.concatenate(starts + [shell, inner])
    _, fn = local_max(mix, t, x0, radius, growth=False)
    _, fg = local_max(mix, t, x0, radius, growth=True)
    return float(fn.max()), float(fg.max())


CHUNK_FLOATS = 2**22  # samples are drawn and evaluated in chunks of this many floats (32 MiB)
KEEP_GROWTH = 2**13  # growth values kept for the p99 of the along-trajectory rate


def jacobian_stats(mix: GaussianMixture, t: float, n: int, rng=0, per_segment: int = 257,
                   radius: float | None = None, progress=None, refine: int = 0) -> JacobianStats:
    """Sup and mean of ||J||_op at time t from n samples of p_t and the mean segments.

    Samples are drawn and evaluated in chunks of CHUNK_FLOATS floats, so memory stays bounded for
    any n (``progress.update`` is called per chunk with its size).  With ``radius``, the sup only
    counts points with ||x|| <= radius (for bounds that hold on a ball).  With ``refine`` > 0,
    :func:`local_max` from that many starts (best samples and line points, random points in and on the ball,
    balanced points on pair saddles) raises the sup further."""
    rng = np.random.default_rng(rng)
    chunk = max(1, CHUNK_FLOATS // max(mix.d, 1))
    sup = growth = -np.inf
    total = 0.0
    mean = 0.0
    m2 = 0.0  # running sum of squared deviations (Chan et al.'s parallel update)
    gmean = gm2 = 0.0  # the same for lambda_max(-J), the along-trajectory rate
    gkeep = []  # growth values of the first KEEP_GROWTH samples (i.i.d., so their p99 estimates p_t's)
    kept = 0
    cand = None  # starting points for the local maximisation (the first chunk's samples in the ball)
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
        g = -ev[:, 0]
        gc = float(g.mean())
        gdelta = gc - gmean
        gmean += gdelta * k / tot
        gm2 += float(((g - gc) ** 2).sum()) + gdelta * gdelta * total * k / tot
        if kept < KEEP_GROWTH:
            gkeep.append(g[: KEEP_GROWTH - kept])
            kept += gkeep[-1].size
        if cand is None and refine > 0:
            cand = x[inside]
        total = tot
        done += k
        if progress is not None:
            progress.update(k)
    seg_sup, seg_growth, nseg = -np.inf, -np.inf, 0
    seg_pts = np.zeros((0, mix.d))
    if mix.K > 1:
        seg_pts, ev_seg = _line_spectra(mix, t, per_segment, 0)
        if radius is not None:
            keep = np.linalg.norm(seg_pts, axis=1) <= radius
            seg_pts, ev_seg = seg_pts[keep], ev_seg[keep]
        if ev_seg.shape[0]:
            seg_sup, seg_growth, nseg = np.abs(ev_seg).max(), (-ev_seg[:, 0]).max(), ev_seg.shape[0]
    if refine > 0:
        rsup, rgrowth = _refined(mix, t, np.concatenate([cand, seg_pts]), radius, int(refine), rng)
        sup, growth = max(sup, rsup), max(growth, rgrowth)
    return JacobianStats(
        t=float(t),
        sup=float(max(sup, seg_sup)),
        sup_growth=float(max(growth, seg_growth)),
        mean=float(mean),
        mean_se=float(np.sqrt(m2 / (n - 1) / n)) if n > 1 else float("nan"),
        n_samples=n,
        n_segment_points=nseg,
        growth_mean=float(gmean),
        growth_mean_se=float(np.sqrt(gm2 / (n - 1) / n)) if n > 1 else float("nan"),
        growth_p99=float(np.quantile(np.concatenate(gkeep), 0.99)),
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
