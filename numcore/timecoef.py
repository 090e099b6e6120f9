"""The scalar time coefficients of the OU mixture score and their sliced Chebyshev interpolants.

With Sigma_k = U_k diag(sigma_{k,i}^2) U_k^T all t-dependence of s(x, t) sits in

    alpha(t) = e^{-t},   f_sigma(t) = 1 / s_sigma(t),   ell_sigma(t) = -1/2 log s_sigma(t),
    s_sigma(t) = e^{-2t} sigma^2 + 1 - e^{-2t},

one f and one ell per distinct eigenvalue sigma^2.  On [delta, T] they are
interpolated on geometric slices: nodes tau_0 = delta, tau_j = delta 2^j
(j < S), tau_S = T, S = ceil(log2(T / delta)); hat functions hat_j (piecewise
linear, hat_j(tau_i) = [i = j], summing to one) blend per-slice Chebyshev
interpolants p_j of degree N on I_j = [tau_{j-1}, tau_{j+1}] (clamped):

    phi(t) ~ sum_j hat_j(t) p_j(zeta_j(t)),   zeta_j = affine map of I_j onto [-1, 1].

Because the hats are a partition of unity with hat_j = 0 off I_j, the error is at
most max_j sup_{I_j} |phi - p_j|, which :func:`ellipse_bound` bounds (proven: the
functions are analytic in Bernstein ellipses around each slice, away from the
singularities of 1/s and log s); the sup is also measured on a dense grid
(``GRID`` points per slice, Chebyshev-clustered plus uniform) as a check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev as C

GRID = 2001


def nodes(delta: float, T: float) -> np.ndarray:
    """tau_0 = delta < tau_1 = 2 delta < ... < tau_S = T."""
    S = max(1, math.ceil(math.log2(T / delta) - 1e-12))
    tau = delta * 2.0 ** np.arange(S + 1)
    tau[-1] = T
    return tau


def slices(tau: np.ndarray) -> np.ndarray:
    """(S+1, 2) intervals I_j = [tau_{j-1}, tau_{j+1}] clamped to [tau_0, tau_S]."""
    S = tau.size - 1
    lo = tau[np.maximum(np.arange(S + 1) - 1, 0)]
    hi = tau[np.minimum(np.arange(S + 1) + 1, S)]
    return np.stack([lo, hi], 1)


def alpha(t):
    return np.exp(-t)


def f_sigma(t, s2):
    return 1.0 / (np.exp(-2 * t) * s2 - np.expm1(-2 * t))


def ell_sigma(t, s2):
    return -0.5 * np.log(np.exp(-2 * t) * s2 - np.expm1(-2 * t))


@dataclass
class Coefficients:
    """Chebyshev coefficients (n_fun, S+1, N+1) of alpha, f_sigma, ell_sigma on every slice."""

    tau: np.ndarray
    intervals: np.ndarray
    sigma2: np.ndarray        # distinct eigenvalues
    N: int
    coef: np.ndarray          # rows: alpha, f_1..f_F, ell_1..ell_F
    error: np.ndarray         # measured sup error per function (over all slices)
    bound: np.ndarray         # proven sup-error bound per function (Bernstein ellipse + rounding margin)

    @property
    def F(self) -> int:
        return self.sigma2.size

    @property
    def eta_alpha(self) -> float:
        return float(self.bound[0])

    @property
    def eta_f(self) -> float:
        return float(self.bound[1:1 + self.F].max())

    @property
    def eta_ell(self) -> float:
        return float(self.bound[1 + self.F:].max())

    def evaluate(self, t) -> np.ndarray:
        """(n_fun, len(t)) values of the blended interpolants (reference, numpy)."""
        t = np.clip(np.atleast_1d(np.asarray(t, float)), self.tau[0], self.tau[-1])
        out = np.zeros((self.coef.shape[0], t.size))
        hats = hat_values(self.tau, t)
        for j, (lo, hi) in enumerate(self.intervals):
            z = np.clip((2 * t - lo - hi) / (hi - lo), -1, 1)
            out += hats[j] * C.chebval(z, self.coef[:, j, :].T)
        return out


def hat_values(tau, t) -> np.ndarray:
    """(S+1, len(t)) hat functions on the nodes tau."""
    eye = np.eye(tau.size)
    return np.stack([np.interp(t, tau, eye[j]) for j in range(tau.size)])


def functions(sigma2):
    fs = [alpha] + [lambda t, s=s: f_sigma(t, s) for s in sigma2] + [lambda t, s=s: ell_sigma(t, s) for s in sigma2]
    return fs


def _interpolant(fn, N):
    """Coefficients of the degree-N Chebyshev interpolant at the second-kind points x_j = cos(j pi / N).

    c_i = (2/N) sum''_j f(x_j) T_i(x_j) (end terms halved; c_0 and c_N halved too), evaluated as a
    direct sum.  (An exactly-zero coefficient drops its weights from the network; the size
    formulas count those as Z_c.)"""
    j = np.arange(N + 1)
    x = np.cos(np.pi * j / N)
    fx = fn(x) * np.where((j == 0) | (j == N), 0.5, 1.0)
    c = (2.0 / N) * (np.cos(np.pi * np.outer(j, j) / N) @ fx)
    c[0] *= 0.5
    c[N] *= 0.5
    return c


RHOS = np.geomspace(1.02, 200.0, 400)


def ellipse_bound(kind: str, s2: float, lo: float, hi: float, N: int) -> float:
    """Proven sup-error bound of the degree-N interpolant of alpha / f_sigma / ell_sigma on [lo, hi].

    Chebyshev interpolation of f analytic in the Bernstein ellipse E_rho (mapped onto [lo, hi]) with
    |f| <= M there errs by at most 4 M rho^{-N} / (rho - 1) (Trefethen, ATAP Thm 8.2); minimised
    over rho in RHOS.  On E_rho, Re z >= x_min = mid - half (rho + 1/rho)/2 and
    |Im z| <= b = half (rho - 1/rho)/2.  With s(z) = 1 - c e^{-2z}, c = 1 - sigma^2, a = |c| e^{-2 x_min}:
      alpha:  |e^{-z}| <= e^{-x_min};
      f:      |s| >= 1 - a (a < 1), or |s| >= 1 when c < 0 and b < pi/4 (Re(-c e^{-2z}) > 0);
      ell:    |log s| <= max(-log inf|s|, log(1 + a)) + pi/2 (Re s > 0 in both cases)."""
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    rho = RHOS
    xmin = mid - half * 0.5 * (rho + 1 / rho)
    b = half * 0.5 * (rho - 1 / rho)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if kind == "alpha":
            M = np.exp(-xmin)
        else:
            c = 1.0 - s2
            a = abs(c) * np.exp(-2 * xmin)
            if c == 0.0:
                low = np.ones_like(rho)
            else:
                low = np.where(a < 1.0, 1.0 - a, np.nan)
                if c < 0:
                    low = np.where(b < math.pi / 4, 1.0, low)
            M = 1.0 / low if kind == "f" else 0.5 * (np.maximum(-np.log(low), np.log1p(a)) + math.pi / 2)
        err = 4 * M * rho ** (-float(N)) / (rho - 1)
    err = err[np.isfinite(err)]
    return float(err.min()) if err.size else math.inf


def interpolate(delta: float, T: float, sigma2, N: int, measure: bool = True) -> Coefficients:
    """Interpolants of degree N on every slice, their proven error bounds and measured sup errors.

    ``bound`` (used by certificates) is the Bernstein-ellipse bound plus a float64 margin
    (N + 1) 1e-15 (sum |c_i| + 1) for the rounded coefficients and function values;
    ``error`` is the sup measured on a dense grid, a check that the bound holds (skipped,
    left at 0, when ``measure`` is False)."""
    tau = nodes(delta, T)
    iv = slices(tau)
    sigma2 = np.unique(np.asarray(sigma2, float))
    fs = functions(sigma2)
    kinds = ["alpha"] + ["f"] * sigma2.size + ["ell"] * sigma2.size
    s2s = [0.0] + list(sigma2) + list(sigma2)
    coef = np.zeros((len(fs), iv.shape[0], N + 1))
    err = np.zeros(len(fs))
    bound = np.zeros(len(fs))
    g = np.concatenate([np.cos(np.linspace(0, np.pi, GRID)), np.linspace(-1, 1, GRID)])
    V = C.chebvander(g, N) if measure else None
    for j, (lo, hi) in enumerate(iv):
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        c = np.stack([_interpolant(lambda z: fn(mid + half * z), N) for fn in fs])
        coef[:, j] = c
        if measure:
            tt = mid + half * g
            true = np.stack([fn(tt) for fn in fs])
            err = np.maximum(err, np.abs(c @ V.T - true).max(1))
        for r in range(len(fs)):
            proven = ellipse_bound(kinds[r], s2s[r], lo, hi, N) + (N + 1) * 1e-15 * (float(np.abs(c[r]).sum()) + 1.0)
            bound[r] = max(bound[r], proven)
    return Coefficients(tau, iv, sigma2, N, coef, err, bound)
