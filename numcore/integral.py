"""The stability integral Lambda(t) = int_delta^t L(u) du and its inverse.

Lambda is computed by adaptive composite Gauss-Kronrod (7-15) quadrature on
panels in log t (panels whose |K15 - G7| exceeds their share of the tolerance
are halved; kinks of max/abs in L(t) get small panels) (the integrand t L(t) in log t is smooth and bounded where
L blows up like 1/t or 1/(sigma^2 + 2t)^2), with the per-panel estimate
|K15 - G7| summed into a conservative error estimate.  Flow maps then obey

    ||Phi_{t->s}(x) - Phi_{t->s}(y)|| <= exp(Lambda(t) - Lambda(s)) ||x - y||.

:meth:`StabilityIntegral.invert` solves Lambda(t) = level by bisection in
log t, the basis of the stability-balanced grid.

The Gauss-Kronrod sums are one (panels x 15) matrix-vector product in numpy:
the cost is in evaluating L (generated numpy code), and a compiled kernel here
would add numba's ~0.35 s start-up to every `flowcert grid` call.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# 15-point Kronrod nodes on [-1, 1] (symmetric) with Kronrod and embedded 7-point Gauss weights
_XK = np.array([
    0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
    0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
    0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
    0.207784955007898467600689403773245, 0.000000000000000000000000000000000,
])
_WK = np.array([
    0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
    0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
    0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
    0.204432940075298892414161999234649, 0.209482141084727828012999174891714,
])
_WG = np.array([0.129484966168869693270611432679082, 0.279705391489276667901467771423780,
                0.381830050505118944950369775488975, 0.417959183673469387755102040816327])
NODES = np.concatenate([-_XK[:-1], _XK[::-1]])  # 15 nodes, ascending
W_KRONROD = np.concatenate([_WK[:-1], _WK[::-1]])
W_GAUSS = np.zeros(15)
W_GAUSS[[1, 3, 5, 7, 9, 11, 13]] = np.concatenate([_WG[:-1], _WG[::-1]])


def _gk(L: Callable, lo: np.ndarray, hi: np.ndarray):
    """int_lo^hi L(t) dt for each pair of ends, in u = log t: (integrals, error estimates)."""
    ulo, uhi = np.log(lo), np.log(hi)
    half = 0.5 * (uhi - ulo)
    u = 0.5 * (uhi + ulo)[:, None] + half[:, None] * NODES[None, :]
    t = np.exp(u)
    vals = np.ascontiguousarray((np.asarray(L(t.ravel()), float).reshape(t.shape)) * t)
    if not np.all(np.isfinite(vals)):
        raise FloatingPointError("L(t) is not finite on the integration window")
    return half * (vals @ W_KRONROD), half * np.abs(vals @ (W_KRONROD - W_GAUSS))


class StabilityIntegral:
    """Lambda(t) = int_delta^t L(u) du for t in [delta, T].

    Parameters
    ----------
    L : vectorised function of t (OU time) returning the rate L(t) (1/time units).
    delta, T : the window, 0 < delta < T.
    panels : initial number of log-uniform Gauss-Kronrod panels.
    rtol : target relative error of Lambda(T) for the adaptive refinement.
    """

    def __init__(self, L: Callable, delta: float, T: float, panels: int = 256, rtol: float = 1e-13):
        self.L, self.delta, self.T = L, float(delta), float(T)
        edges = np.geomspace(self.delta, self.T, panels + 1)
        edges[0], edges[-1] = self.delta, self.T
        lo, hi = edges[:-1], edges[1:]
        integ, err = _gk(L, lo, hi)
        for _ in range(60):  # halve (in log t) the panels whose error estimate is above their share
            tol = rtol * abs(integ.sum())
            bad = err > tol / integ.size
            if err.sum() <= tol or not bad.any():
                break
            mids = np.sqrt(lo[bad] * hi[bad])
            new_lo, new_hi = np.concatenate([lo[bad], mids]), np.concatenate([mids, hi[bad]])
            new_integ, new_err = _gk(L, new_lo, new_hi)  # only the new panels: the others keep their values
            keep = ~bad
            lo, hi = np.concatenate([lo[keep], new_lo]), np.concatenate([hi[keep], new_hi])
            integ, err = np.concatenate([integ[keep], new_integ]), np.concatenate([err[keep], new_err])
            order = np.argsort(lo, kind="stable")
            lo, hi, integ, err = lo[order], hi[order], integ[order], err[order]
        edges = np.concatenate([lo, hi[-1:]])
        self.edges = edges
        self.cumulative = np.concatenate([[0.0], np.cumsum(integ)])
        self.cumulative_error = np.concatenate([[0.0], np.cumsum(err)])

    @property
    def total(self) -> float:
        """Lambda(T)."""
        return float(self.cumulative[-1])

    @property
    def error(self) -> float:
        """Conservative estimate of |Lambda(T) - computed|: sum of |K15 - G7| over panels."""
        return float(self.cumulative_error[-1])

    def __call__(self, t) -> np.ndarray:
        """Lambda at each t in [delta, T]."""
        t = np.atleast_1d(np.asarray(t, float))
        if np.any(t < self.delta * (1 - 1e-12)) or np.any(t > self.T * (1 + 1e-12)):
            raise ValueError(f"t outside [{self.delta}, {self.T}]")
        t = np.clip(t, self.delta, self.T)
        i = np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, self.edges.size - 2)
        part, _ = _gk(self.L, self.edges[i], t)
        return self.cumulative[i] + part

    def invert(self, levels) -> np.ndarray:
        """t in [delta, T] with Lambda(t) = level (levels in [0, Lambda(T)]), by bisection in log t."""
        levels = np.atleast_1d(np.asarray(levels, float))
        i = np.clip(np.searchsorted(self.cumulative, levels, side="right") - 1, 0, self.edges.size - 2)
        lo, hi = np.log(self.edges[i]), np.log(self.edges[i + 1])
        target = levels - self.cumulative[i]
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            val, _ = _gk(self.L, self.edges[i], np.exp(mid))
            below = val < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out = np.exp(0.5 * (lo + hi))
        out[levels <= 0] = self.delta
        out[levels >= self.total] = self.T
        return out
