"""The solver registry: every few-step solver flowcert runs, as data.

Every solver here is affine in (y_T, D_0, D_1, ...) with coefficients fixed by the grid, in the VE coordinates

    y = e^t x,   sigma = sqrt(e^{2t} - 1),   dy/dsigma = (y - D(y, sigma)) / sigma,   D the denoiser.

On a grid sigma_0 > ... > sigma_N > 0 a solver is a straight-line program of R rows: row 0 is y_T, and row
r >= 1 is

    X_r = sum_{w < W} cx[r, w] X_{r-1-w} + cd[r, w] D_{r-1-w},

where D_r = D(X_r, ev[r]) when ev[r] > 0 (row r is evaluated at that sigma) and row r's D is never referenced
when ev[r] = 0 (a corrector's state, or the output).  The last row X_{R-1} is the end point at sigma_N; W is
the solver's ``history`` (the band width of the program).

A solver's ``scheme(sig, ev, cx, cd)`` fills the zero-initialised ev (R,), cx (R, W), cd (R, W) from
sig (N + 1,).  Schemes use only complex-analytic operations (+ - * /, ``np.log``, ``np.exp``, :func:`expm1`;
no abs, min, max or comparisons of values), so one compiled scheme also runs on complex128 grids: the
gradient kernels differentiate it by complex steps.  The program is run by :func:`numcore.samplers.run`
(any denoiser, numpy or torch) and by the compiled kernels of :mod:`numcore.kernels` (the exact mixture
denoiser, and the reverse-mode gradient of the end-point error).

Adding a solver is one :class:`Solver` entry in :data:`SOLVERS` plus its scheme.  This module imports no
numba: :attr:`Solver.scheme` compiles the scheme on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .checks import choice


def expm1(x):
    """e^x - 1, exact for real x (no cancellation near 0) and complex-analytic for complex x (numpy's and, once
    compiled, :mod:`numcore.kernels`' expm1(a + ib) = expm1(a) cos b - 2 sin^2(b/2) + i e^a sin b)."""
    return np.expm1(x)


# ----------------------------------------------------------------------------------------------- schemes
# Each fills row by row; i is the step from sig[i] to sig[i+1], comments give the step as the sampler writes it.


def euler(sig, ev, cx, cd):
    """Euler (k-diffusion sample_euler): d = (x - D(x, sigma_i)) / sigma_i, x <- x + d (sigma_{i+1} - sigma_i).
    Rows X_0, ..., X_N."""
    N = sig.shape[0] - 1
    for i in range(N):
        a = sig[i + 1] / sig[i]
        ev[i] = sig[i]  # D(row i)
        cx[i + 1, 0] = a  # row i+1 = a row i + (1 - a) D(row i)
        cd[i + 1, 0] = 1.0 - a


def heun(sig, ev, cx, cd):
    """Heun (k-diffusion sample_heun without a step to 0): d = (x - D(x, sigma_i)) / sigma_i, dt = sigma_{i+1}
    - sigma_i, x_2 = x + d dt, d_2 = (x_2 - D(x_2, sigma_{i+1})) / sigma_{i+1}, x <- x + (d + d_2) / 2 dt.
    Rows X_0, P_0, X_1, P_1, ..., X_N (P_i = x_2, the predictor, evaluated at sigma_{i+1})."""
    N = sig.shape[0] - 1
    for i in range(N):
        x, p, nxt = 2 * i, 2 * i + 1, 2 * i + 2
        dt = sig[i + 1] - sig[i]
        ev[x] = sig[i]  # D(X_i)
        cx[p, 0] = 1.0 + dt / sig[i]  # P_i = X_i + dt (X_i - D(X_i)) / sigma_i
        cd[p, 0] = -dt / sig[i]
        ev[p] = sig[i + 1]  # D(P_i)
        cx[nxt, 0] = 0.5 * dt / sig[i + 1]  # X_{i+1} = X_i + dt/2 [(X_i - D(X_i)) / sigma_i
        cd[nxt, 0] = -0.5 * dt / sig[i + 1]  # + (P_i - D(P_i)) / sigma_{i+1}]
        cx[nxt, 1] = 1.0 + 0.5 * dt / sig[i]
        cd[nxt, 1] = -0.5 * dt / sig[i]


def dpmpp_2m(sig, ev, cx, cd):
    """DPM-Solver++(2M) (k-diffusion sample_dpmpp_2m on sigma_N > 0): the exponential integrator in
    lambda = -log sigma, h = lambda_{i+1} - lambda_i, r = h_{i-1} / h,
    D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1} (D' = D_i on the first step), x <- (sigma_{i+1}/sigma_i) x - expm1(-h) D'.
    Rows X_0, ..., X_N."""
    N = sig.shape[0] - 1
    for i in range(N):
        h = np.log(sig[i]) - np.log(sig[i + 1])
        em = expm1(-h)
        ev[i] = sig[i]  # D(row i)
        cx[i + 1, 0] = sig[i + 1] / sig[i]  # row i+1 = (sigma_{i+1}/sigma_i) row i - expm1(-h) D'
        if i == 0:
            cd[i + 1, 0] = -em  # first step: D' = D(row 0)
        else:
            half_r = 0.5 * h / (np.log(sig[i - 1]) - np.log(sig[i]))  # 1/(2r) = h / (2 h_{i-1})
            cd[i + 1, 0] = -em * (1.0 + half_r)  # D' = (1 + 1/(2r)) D(row i) - 1/(2r) D(row i-1)
            cd[i + 1, 1] = em * half_r


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Solver:
    """One solver: its names, its order, the shape of its program and its scheme (the plain Python function;
    :attr:`scheme` is the compiled one)."""

    name: str
    label: str  # as a reader knows it: "DPM-Solver++(2M)"
    order: int  # order of accuracy (global error O(h^order))
    history: int  # W: the band width of the program (rows reach back W rows)
    rows: Callable[[int], int]  # R for N steps
    evaluations: Callable[[int], int]  # model evaluations for N steps (== rows with ev > 0)
    py_scheme: Callable  # scheme(sig, ev, cx, cd), plain Python
    source: str  # whose algorithm it is

    @property
    def scheme(self):
        """The scheme compiled by numba for float64 and complex128 grids (on first use, then cached)."""
        return _compiled(self.py_scheme)

    def program(self, sig, *, compiled: bool = False):
        """(ev (R,), cx (R, W), cd (R, W)) on the sigma grid sig (N + 1,), float64 (complex128 if sig is complex)."""
        sig = np.ascontiguousarray(sig, dtype=complex if np.iscomplexobj(sig) else float)
        R, W = self.rows(sig.size - 1), self.history
        ev, cx, cd = np.zeros(R, sig.dtype), np.zeros((R, W), sig.dtype), np.zeros((R, W), sig.dtype)
        (self.scheme if compiled else self.py_scheme)(sig, ev, cx, cd)
        return ev, cx, cd


@functools.cache
def _compiled(py_scheme):
    import numba as nb

    from . import jitcache
    from . import kernels  # noqa: F401  (registers the compiled expm1)

    f1, f2 = nb.float64[::1], nb.float64[:, ::1]
    c1, c2 = nb.complex128[::1], nb.complex128[:, ::1]
    return nb.njit([nb.none(f1, f1, f2, f2), nb.none(c1, c1, c2, c2)], cache=jitcache.enabled(), fastmath=False,
                   nogil=True)(py_scheme)


SOLVERS: dict[str, Solver] = {
    s.name: s
    for s in (
        Solver("euler", "Euler", 1, 1, lambda N: N + 1, lambda N: N, euler,
               "k-diffusion sample_euler (diffusers EulerDiscreteScheduler)"),
        Solver("heun", "Heun", 2, 2, lambda N: 2 * N + 1, lambda N: 2 * N, heun,
               "k-diffusion sample_heun (Karras et al. 2022, Algorithm 1)"),
        Solver("dpmpp_2m", "DPM-Solver++(2M)", 2, 2, lambda N: N + 1, lambda N: N, dpmpp_2m,
               "k-diffusion sample_dpmpp_2m (diffusers DPMSolverMultistepScheduler, midpoint)"),
    )
}
NAMES = tuple(SOLVERS)


def check(name) -> Solver:
    """The registered solver called ``name`` (a :class:`Solver` is returned as it is); InputError otherwise."""
    if isinstance(name, Solver):
        return name
    return SOLVERS[choice("solver", name, tuple(SOLVERS))]
