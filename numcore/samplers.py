"""Few-step ODE solvers on a sigma grid: the solvers of :mod:`numcore.solvers` run with any denoiser, and with
the exact mixture denoiser in the compiled kernels (with the gradient of their end-point error).

All solvers integrate the probability-flow ODE in VE coordinates

    y = x / alpha = e^t x,   sigma = sqrt(e^{2t} - 1),   dy/dsigma = (y - D(y, sigma)) / sigma,

where D(y, sigma) = E[x_0 | x_t] is the denoiser.  Grids are descending and end at sigma_N > 0.  A ``model``
is a callable D(y, sigma) -> (n, d).
"""

from __future__ import annotations

import numpy as np

from .marginal import denoiser
from .solvers import check
from .units import t_from_sigma


def mixture_denoiser(mix):
    """The exact denoiser of a Gaussian mixture in VE coordinates: D(y, sigma) = E[x_0 | x_t = y / sqrt(1 + sigma^2)]."""

    def model(y, sigma):
        return denoiser(mix, y / np.sqrt(1.0 + sigma * sigma), float(t_from_sigma(sigma)))

    return model


class CountCalls:
    """Wraps a model and counts its evaluations (NFE)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, y, sigma):
        self.calls += 1
        return self.model(y, sigma)


def run(model, y, sig, solver):
    """The solver's program (:mod:`numcore.solvers`) on the sigma grid ``sig`` (N + 1, descending, > 0) from y
    (VE scale), with any denoiser ``model(y, sigma)``: numpy arrays or torch tensors alike (only +, * and
    indexing touch y).  Returns the end point at sig[-1], VE scale.

    Row 0 is y; row r is sum_w cx[r, w] X_{r-1-w} + cd[r, w] D_{r-1-w} (terms with a zero coefficient are left
    out), and D_r = model(X_r, ev[r]) where ev[r] > 0."""
    s = check(solver)
    return run_program(model, y, *s.program(np.asarray(sig, float)))


def run_program(model, y, ev, cx, cd, values=None):
    """A program (ev (R,), cx (R, W), cd (R, W), numpy) run from y with ``model(y, sigma)``; returns its last row.

    ``values``: (ev, cx, cd) of the same shapes whose entries are used instead of Python floats (e.g. torch
    tensors that carry gradients: :func:`models.flow.squared_error_and_grad` differentiates the end point with
    respect to the program this way); the numpy program still decides which terms and rows there are, so both
    run the same operations in the same order."""
    R, W = cx.shape
    if values is None:
        at_ev, at_cx, at_cd = (lambda r: float(ev[r])), (lambda r, w: float(cx[r, w])), (lambda r, w: float(cd[r, w]))
    else:
        vev, vcx, vcd = values
        at_ev, at_cx, at_cd = (lambda r: vev[r]), (lambda r, w: vcx[r, w]), (lambda r, w: vcd[r, w])
    X, D = [y] + [None] * (R - 1), [None] * R
    for r in range(R):
        if r > 0:
            acc = None
            for w in range(min(W, r)):
                for c, at, v in ((cx[r, w], at_cx, X[r - 1 - w]), (cd[r, w], at_cd, D[r - 1 - w])):
                    if c != 0.0:
                        term = at(r, w) * v
                        acc = term if acc is None else acc + term
            X[r] = acc
            if r > W:  # rows r - 1 - W and older are never read again
                X[r - 1 - W] = D[r - 1 - W] = None
        if ev[r] > 0.0:
            D[r] = model(X[r], at_ev(r))
    return X[R - 1]


PARALLEL_WORK = 2**16  # points x steps from which the compiled solver runs in parallel


def evaluated_tables(mix, ev, sig, t):
    """The marginal's tables for the program's evaluated rows: (tab (R,), two_sinh, scale, inv_s, mrot, logc,
    mats) as the kernels take them.  Tables 0..N are the grid nodes' (at t[k], for the rows evaluated at sig[k]);
    a row evaluated at a sigma that is no node gets its own table at t = 1/2 log(1 + sigma^2)."""
    from . import kernels as kn
    from .flowmap import tables

    tab = np.empty(ev.size, np.int64)
    times = t
    if kn._table_index(ev, sig, tab):
        off = np.flatnonzero(tab >= t.size)
        times = np.concatenate([t, 0.5 * np.log1p(ev[off] * ev[off])])
    return (tab, 2.0 * np.sinh(times), np.exp(-times), *tables(mix, times))


def sample_grid(mix, x_T, t, solver, *, compiled: bool = True):
    """Run ``solver`` (a name of :data:`numcore.solvers.SOLVERS`) with the exact denoiser on the OU-time grid t
    (descending, t[0] = T, t[-1] > 0) from x_T (n, d), OU scale; returns x at t[-1] (n, d), OU scale.

    ``compiled`` runs the solver's program in one numba kernel (:func:`numcore.kernels._run_program`, every point
    on its own); otherwise :func:`run` with :func:`mixture_denoiser` (the reference it is tested against)."""
    s = check(solver)
    t = np.asarray(t, float)
    sigmas = np.sqrt(np.expm1(2.0 * t))
    y = np.array(np.asarray(x_T, float) * np.exp(t[0]), order="C")
    if compiled:
        from . import kernels as kn

        ev, cx, cd = s.program(sigmas, compiled=True)
        size, nch = kn._chunks(y.shape[0])
        kernel = kn._run_program if y.shape[0] * (t.size - 1) >= PARALLEL_WORK else kn._run_program_serial
        kernel(y, ev, cx, cd, *evaluated_tables(mix, ev, sigmas, t), size, nch)
    else:
        y = run(mixture_denoiser(mix), y, sigmas, s)
    return y * np.exp(-t[-1])


def squared_error_and_grad(mix, x_T, target, t, solver):
    """(sum_i |x_i - target_i|^2, its gradient with respect to rho_k = log sigma_VE(t_k)) for ``solver`` with the
    exact denoiser on the grid t from x_T (OU scale); x_i are the end points at t[-1] and target (n, d) is in OU
    scale too.  The gradient has shape (N + 1,) (every node; the ends' entries are there but the ends are
    usually fixed).

    Reverse mode through the program (:func:`numcore.kernels._program_vjp`: the cotangents of ev, cx, cd), then
    through the scheme by complex steps (:func:`numcore.kernels.grid_gradient`); checked against finite
    differences in the tests."""
    from . import kernels as kn

    s = check(solver)
    t = np.asarray(t, float)
    sigmas = np.sqrt(np.expm1(2.0 * t))
    y = np.ascontiguousarray(np.asarray(x_T, float) * np.exp(t[0]))
    tgt = np.ascontiguousarray(np.asarray(target, float) * np.exp(t[-1]))  # VE scale at the last node
    ev, cx, cd = s.program(sigmas, compiled=True)
    size, nch = kn._reduction_chunks(y.shape[0])
    loss, g_ev, g_cx, g_cd = np.zeros(nch), np.zeros((nch, ev.size)), np.zeros((nch, *cx.shape)), np.zeros(
        (nch, *cd.shape))
    kernel = kn._program_vjp if y.shape[0] * (t.size - 1) >= PARALLEL_WORK else kn._program_vjp_serial
    kernel(y, tgt, ev, cx, cd, *evaluated_tables(mix, ev, sigmas, t), size, nch, loss, g_ev, g_cx, g_cd)
    grad = kn.grid_gradient()(s.scheme, sigmas, g_ev.sum(0), g_cx.sum(0), g_cd.sum(0))
    scale2 = np.exp(-2.0 * t[-1])  # back to OU scale: x = e^{-t_N} y
    return float(loss.sum()) * scale2, grad * scale2
