"""Few-step ODE samplers on a sigma grid, k-diffusion style, in numpy.

All samplers integrate the probability-flow ODE in VE coordinates

    y = x / alpha = e^t x,   sigma = sqrt(e^{2t} - 1),   dy/dsigma = (y - D(y, sigma)) / sigma,

where D(y, sigma) = E[x_0 | x_t] is the denoiser.  ``sigmas`` is descending; a
trailing 0 is allowed (the last step then returns the denoiser output).  A
``model`` is a callable D(y, sigma) -> (n, d).
"""

from __future__ import annotations

import numpy as np

from .marginal import denoiser
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


def to_d(x, sigma, denoised):
    """ODE derivative dy/dsigma = (y - D) / sigma."""
    return (x - denoised) / sigma


def sample_euler(model, x, sigmas):
    """Euler: y_{i+1} = y_i + (sigma_{i+1} - sigma_i) d_i."""
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i]))
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(model, x, sigmas):
    """Heun (trapezoid, 2 evaluations per step); Euler on a last step to sigma = 0."""
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i]))
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpmpp_2m(model, x, sigmas):
    """DPM-Solver++(2M): exponential integrator in lambda = -log sigma with a two-step denoiser extrapolation.

    h = lambda_{i+1} - lambda_i, r = h_{i-1} / h,
    D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}  (D' = D_i on the first step and on a last step to 0),
    y_{i+1} = (sigma_{i+1} / sigma_i) y_i - expm1(-h) D'.
    """
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        h = np.log(sigmas[i]) - np.log(sigmas[i + 1])
        if old_denoised is None:
            denoised_d = denoised
        else:
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigmas[i + 1] / sigmas[i]) * x - np.expm1(-h) * denoised_d
        old_denoised, h_last = denoised, h
    return x


SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m}
EVALS_PER_STEP = {"euler": 1, "heun": 2, "dpmpp_2m": 1}


SOLVER_IDS = {"euler": 0, "heun": 1, "dpmpp_2m": 2}
PARALLEL_WORK = 2**16  # points x steps from which the compiled solver runs in parallel


def sample_grid(mix, x_T, t, solver: str, *, compiled: bool = True):
    """Run ``solver`` with the exact denoiser on the OU-time grid t (descending, t[0] = T, t[-1] > 0) from
    x_T (n, d), OU scale; returns x at t[-1] (n, d), OU scale.

    ``compiled`` runs the whole solver in one numba kernel (:func:`numcore.kernels._solve_grid`, every point
    on its own); otherwise the loops above with :func:`mixture_denoiser` (the reference it is tested against).
    """
    t = np.asarray(t, float)
    sigmas = np.sqrt(np.expm1(2.0 * t))
    y = np.array(np.asarray(x_T, float) * np.exp(t[0]), order="C")
    if compiled:
        from . import kernels as kn
        from .flowmap import tables

        inv_s, mrot, logc, mats = tables(mix, t)
        size, nch = kn._chunks(y.shape[0])
        kernel = kn._solve_grid if y.shape[0] * (t.size - 1) >= PARALLEL_WORK else kn._solve_grid_serial
        kernel(y, sigmas, SOLVER_IDS[solver], 2.0 * np.sinh(t), np.exp(-t), inv_s, mrot, logc, mats,
                       size, nch)
    else:
        y = SAMPLERS[solver](mixture_denoiser(mix), y, sigmas)
    return y * np.exp(-t[-1])


def squared_error_and_grad(mix, x_T, target, t, solver: str):
    """(sum_i |x_i - target_i|^2, its gradient with respect to rho_k = log sigma_VE(t_k)) for ``solver`` with the
    exact denoiser on the grid t from x_T (OU scale); x_i are the end points at t[-1] and target (n, d) is in OU
    scale too.  The gradient has shape (N + 1,) (every node; the ends' entries are there but the ends are
    usually fixed).  Reverse-mode differentiation through the compiled solver (:func:`numcore.kernels
    ._solve_grid_grad`), checked against finite differences in the tests."""
    from . import kernels as kn
    from .flowmap import tables

    t = np.asarray(t, float)
    sigmas = np.sqrt(np.expm1(2.0 * t))
    y = np.ascontiguousarray(np.asarray(x_T, float) * np.exp(t[0]))
    tgt = np.ascontiguousarray(np.asarray(target, float) * np.exp(t[-1]))  # VE scale at the last node
    inv_s, mrot, logc, mats = tables(mix, t)
    size, nch = kn._chunks(y.shape[0])
    loss, grad = np.zeros(nch), np.zeros((nch, t.size))
    kernel = kn._solve_grid_grad if y.shape[0] * (t.size - 1) >= PARALLEL_WORK else kn._solve_grid_grad_serial
    kernel(y, tgt, sigmas, SOLVER_IDS[solver], 2.0 * np.sinh(t), np.exp(-t), inv_s, mrot, logc, mats,
                        size, nch, loss, grad)
    scale2 = np.exp(-2.0 * t[-1])  # back to OU scale: x = e^{-t_N} y
    return float(loss.sum()) * scale2, grad.sum(0) * scale2
