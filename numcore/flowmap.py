"""The exact probability-flow map Phi_{t->s} of a Gaussian mixture, without torch.

The PF-ODE dx/dt = -x - s(x, t) is integrated backwards in time in the coordinates

    y = e^t x,   rho = log sigma_VE = 1/2 log(e^{2t} - 1),   dy/drho = -2 sinh(t) s(e^{-t} y, t),

where the field stays smooth down to t = delta, by classical RK4 with equal steps in rho of size at most
``step`` between consecutive requested times: the scheme of :mod:`flowcert.distill.teacher`, run in one
compiled kernel per segment (:func:`numcore.kernels._flow_rk4`), every point integrated on its own with the
score of :mod:`numcore.kernels`.  The marginal's spectral data (:func:`numcore.marginal.at_time`) is
tabulated once per segment at the 2m + 1 stage times of its m steps.
"""

from __future__ import annotations

import math

import numpy as np

from .io import no_progress
from .marginal import LOG_2PI, as_points
from .mixture import GaussianMixture
from .units import rho_from_t, t_from_rho

DEFAULT_STEP = 0.01  # RK4 step in rho = log sigma_VE of every exact teacher (step halving changes ring8 endpoints by ~1e-6)
MAX_TABLE_BYTES = 2**28  # per-component precisions per stage time: above this, segments are split


def tables(mix: GaussianMixture, t: np.ndarray):
    """Spectral data of p_t at each time of ``t`` (M,): inv_s (M, K, d), mrot (M, K, d), logc (M, K) and
    mats (1, G, d, d) for the identity or a shared basis, (M, K, d, d) precisions for per-component bases,
    exactly as :func:`numcore.marginal.at_time` builds them one time at a time."""
    t = np.asarray(t, float)
    alpha = np.exp(-t)[:, None, None]
    s = alpha**2 * mix.eigvals[None] + (-np.expm1(-2.0 * t))[:, None, None]
    G = mix.basis.shape[0]
    if G == 0:
        mrot, mats = alpha * mix.means[None], mix.basis[None]
    elif G == 1:
        mrot, mats = alpha * (mix.means @ mix.basis[0])[None], mix.basis[None]
    else:
        U = mix.basis
        mrot = alpha * mix.means[None]
        mats = np.einsum("kij,mkj,klj->mkil", U, 1.0 / s, U)
    logc = np.log(mix.weights)[None] - 0.5 * np.log(s).sum(2) - 0.5 * mix.d * LOG_2PI
    c = np.ascontiguousarray
    return c(1.0 / s), c(mrot), c(logc), c(mats)


def _segment(mix: GaussianMixture, y: np.ndarray, t0: float, t1: float, step: float) -> None:
    """y (VE coordinates, C-contiguous) carried from t0 to t1 < t0 in place."""
    from . import kernels as kn

    r0, r1 = (float(r) for r in rho_from_t(np.array([t0, t1])))
    m = max(1, math.ceil(abs(r1 - r0) / step - 1e-9))
    per_time = mix.K * mix.d * mix.d * 8 if mix.basis.shape[0] > 1 else 0
    if per_time * (2 * m + 1) > MAX_TABLE_BYTES:  # split so the precision tables stay small
        parts = math.ceil(per_time * (2 * m + 1) / MAX_TABLE_BYTES)
        cuts = t_from_rho(np.linspace(r0, r1, parts + 1))
        cuts[0], cuts[-1] = t0, t1
        for a, b in zip(cuts, cuts[1:]):
            _segment(mix, y, float(a), float(b), step)
        return
    h = (r1 - r0) / m
    t = t_from_rho(r0 + 0.5 * h * np.arange(2 * m + 1))
    t[0], t[-1] = t0, t1
    inv_s, mrot, logc, mats = tables(mix, t)
    coef = -2.0 * np.sinh(t)
    scale = np.exp(-t)
    size, nch = kn._chunks(y.shape[0])
    kn._flow_rk4(y, h, coef, scale, inv_s, mrot, logc, mats, size, nch)


def _times(times) -> list[float]:
    times = [float(t) for t in np.asarray(times, float).ravel()]
    if len(times) < 2 or any(b >= a for a, b in zip(times, times[1:])) or not times[-1] > 0:
        raise ValueError("times must be >= 2 strictly decreasing positive OU times")
    return times


def trajectory(mix: GaussianMixture, x, times, *, step: float = DEFAULT_STEP, progress=None) -> np.ndarray:
    """States of the exact flow at each of ``times`` (descending OU times; x is at times[0]).

    Args:
        mix: the mixture.
        x: (n, d) points at times[0] (OU scale).
        times: (M,) strictly decreasing OU times > 0.
        step: largest RK4 step in rho = log sigma_VE (0.01: endpoints to ~1e-6 relative on the built-ins).
        progress: an object with ``update(1)``, advanced once per segment.

    Returns:
        (n, M, d) float64: Phi_{times[0] -> times[j]}(x) at every requested time (OU scale).
    """
    times = _times(times)
    y = np.array(as_points(x, mix.d), order="C", copy=True) * math.exp(times[0])
    out = np.empty((y.shape[0], len(times), mix.d))
    out[:, 0] = y * math.exp(-times[0])
    for j, (t0, t1) in enumerate(zip(times, times[1:]), start=1):
        _segment(mix, y, t0, t1, step)
        out[:, j] = y * math.exp(-t1)
        if progress is not None:
            progress.update(1)
    return out


def flow(mix: GaussianMixture, x, t: float, s: float, *, step: float = DEFAULT_STEP, segments: int = 1,
         progress=no_progress) -> np.ndarray:
    """Phi_{t->s}(x), shape (n, d): the exact flow map from OU time t down to s (0 < s < t).

    ``segments`` intermediate stops equally spaced in log sigma_VE only report progress (``progress`` is a
    factory ``progress(total, desc)``); the RK4 steps are the same.
    """
    r0, r1 = rho_from_t(np.array([t, s]))
    rho = np.linspace(float(r0), float(r1), int(segments) + 1)
    times = t_from_rho(rho)
    times[0], times[-1] = t, s
    with progress(int(segments), "exact flow map") as bar:
        return trajectory(mix, x, times, step=step, progress=bar)[:, -1]


def endpoints(mix: GaussianMixture, x, T: float, delta: float, *, step: float = DEFAULT_STEP, check: int = 256,
              segments: int = 16, progress=no_progress):
    """Phi_{T->delta}(x) with an estimate of its own integration error.

    The first ``check`` points are integrated again with half the step; RK4's error then is about
    |y_h - y_{h/2}| * 16/15, reported as a relative RMS error sqrt(sum |.|^2 / sum |y|^2).

    Returns:
        (y (n, d), error): the end points (OU scale) and the estimated relative RMS integration error.
    """
    y = flow(mix, x, T, delta, step=step, segments=segments, progress=progress)
    m = min(int(check), y.shape[0])
    if m == 0:
        return y, float("nan")
    fine = flow(mix, as_points(x, mix.d)[:m], T, delta, step=step / 2)
    err = 16.0 / 15.0 * math.sqrt(float(np.sum((y[:m] - fine) ** 2)) / float(np.sum(fine**2)))
    return y, err
