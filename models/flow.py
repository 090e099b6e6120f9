"""A trained model's own probability-flow ODE: the many-step teacher, its self-convergence, and samples of
the model's p_t pushed forward from the prior.

In VE coordinates y = x / alpha and rho = log sigma the PF-ODE is dy/drho = y - D(y, sigma): smooth in
rho all the way down to small sigma.  :func:`flow` integrates it by classical RK4 with equal steps in
rho (``steps`` over the whole window [log sigma(delta), log sigma(T)], distributed over the requested
times in proportion to their rho spacing), from t = T down to t = delta.  Each RK4 step costs 4
model evaluations.  Self-convergence: the relative MSE between the endpoints with ``steps`` and with
2 ``steps`` (:func:`self_convergence`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..numcore.distances import relative_mse
from ..numcore.units import rho_from_t

DEFAULT_TEACHER_STEPS = 64


class Counter:
    """A model wrapper counting model evaluations (in samples and in batched calls); ``backward`` counts the
    reverse passes through the network (in samples) that gradients add, apart."""

    def __init__(self, model):
        self.model, self.calls, self.samples, self.backward = model, 0, 0, 0

    def __call__(self, y, sigma):
        self.calls += 1
        self.samples += int(y.shape[0])
        return self.model.denoise(y, sigma)


def prior(model, n: int, seed: int = 0) -> torch.Tensor:
    """n samples of N(0, I) in OU coordinates (p_T for large T), shape (n, d), float64."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, model.d, generator=g, dtype=torch.float64)


def rk4_step(D, y: torch.Tensor, r: float, h: float, k1: torch.Tensor | None = None) -> torch.Tensor:
    """One classical RK4 step of dy/drho = y - D(y, e^rho) from rho = r to r + h, in float64 (``k1``: the first
    stage, when the denoiser at (y, r) is known already)."""

    def f(yy, rr):
        return yy - D(yy, math.exp(rr)).double()

    k1 = f(y, r) if k1 is None else k1
    k2 = f(y + 0.5 * h * k1, r + 0.5 * h)
    k3 = f(y + 0.5 * h * k2, r + 0.5 * h)
    k4 = f(y + h * k3, r + h)
    return y + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


def flow(model, x, times, steps: int = DEFAULT_TEACHER_STEPS, batch: int = 1024, progress=None,
         counter: Counter | None = None, substeps=None) -> torch.Tensor:
    """States of the model's PF-ODE at each of ``times`` (descending OU times; x at times[0]).

    Args:
        model: a :class:`~models.denoiser.Denoiser`.
        x: (n, d) OU-scale states at times[0].
        times: descending OU times (len m).
        steps: RK4 steps over the whole span (at least one per interval).
        batch: samples per model call.
        progress: a bar advanced once per interval.
        counter: optional :class:`Counter` (evaluations are counted on it).
        substeps: optional rule (t0, t1) -> (rho0, h, m): m RK4 steps of h from rho0 over one interval [default:
            ``steps`` shared over the span in proportion to each interval's rho length, at least one].

    Returns:
        (n, m, d) float64 tensor in OU coordinates.
    """
    times = [float(t) for t in times]
    rhos = [rho_from_t(t) for t in times]
    span = rhos[0] - rhos[-1]
    D = counter or Counter(model)
    x = torch.as_tensor(x, dtype=torch.float64)
    out = torch.empty(x.shape[0], len(times), x.shape[1], dtype=torch.float64)
    out[:, 0] = x
    with torch.no_grad():
        for lo in range(0, x.shape[0], batch):
            y = x[lo:lo + batch] * math.exp(times[0])
            for i in range(len(times) - 1):
                if substeps is None:
                    r0, r1 = rhos[i], rhos[i + 1]
                    m = max(1, round(steps * (r0 - r1) / span))
                    h = (r1 - r0) / m
                else:
                    r0, h, m = substeps(times[i], times[i + 1])
                for k in range(m):
                    y = rk4_step(D, y, r0 + k * h, h)
                out[lo:lo + batch, i + 1] = y * math.exp(-times[i + 1])
                if progress is not None and lo == 0:
                    progress.update(1)
    return out


def nodes(model, x_T, T: float, delta: float, steps: int = DEFAULT_TEACHER_STEPS, batch: int = 1024,
          counter: Counter | None = None) -> dict:
    """The teacher of :func:`flow` from T to delta, keeping every node: ``steps`` RK4 steps uniform in rho, the
    VE states y (``steps`` + 1, n, d) at the nodes and the denoiser D(y, sigma) at each node (its first RK4
    stage; one more evaluation at the last node).  The OU end points are ``y[-1] * alpha(delta)``.

    Returns:
        dict with ``y`` and ``denoised`` (float64 numpy, (steps + 1, n, d)), ``sigma`` (steps + 1,) and
        ``nfe`` (model evaluations per sample: 4 steps + 1).
    """
    D = counter or Counter(model)
    r = np.linspace(rho_from_t(T), rho_from_t(delta), int(steps) + 1)
    x = torch.as_tensor(x_T, dtype=torch.float64)
    n = x.shape[0]
    Y = np.empty((r.size, n, x.shape[1]))
    Dn = np.empty_like(Y)
    with torch.no_grad():
        for lo in range(0, n, batch):
            y = x[lo:lo + batch] * math.exp(T)
            for i in range(r.size):
                d0 = D(y, math.exp(r[i])).double()
                Y[i, lo:lo + batch], Dn[i, lo:lo + batch] = y.numpy(), d0.numpy()
                if i == r.size - 1:
                    break
                y = rk4_step(D, y, r[i], r[i + 1] - r[i], k1=y - d0)
    return {"y": Y, "denoised": Dn, "sigma": np.exp(r), "nfe": 4 * int(steps) + 1}


def teacher(model, x_T, T: float, delta: float, steps: int = DEFAULT_TEACHER_STEPS, check: int = 64,
            progress=None) -> dict:
    """The many-step teacher endpoint Phi_{T->delta}(x_T) of the model's own ODE, with its self-convergence.

    Returns:
        dict with ``x`` ((n, d) float64 numpy endpoints), ``steps`` (RK4 steps), ``nfe`` (model
        evaluations per sample), ``self_convergence`` (relative MSE between ``steps`` and 2 ``steps``
        on the first ``check`` samples, with its 95% interval), ``seconds``.
    """
    t0 = time.time()
    c = Counter(model)
    x = flow(model, x_T, [T, delta], steps, counter=c)[:, -1]
    secs = time.time() - t0
    out = {"x": x.numpy(), "steps": int(steps), "nfe": 4 * int(steps), "method": "RK4 in log sigma (VE)",
           "seconds": secs, "model_calls": c.calls}
    if check:
        k = min(int(check), x.shape[0])
        fine = flow(model, x_T[:k], [T, delta], 2 * steps)[:, -1].numpy()
        e = relative_mse(out["x"][:k], fine)
        out["self_convergence"] = {"rel_mse": e.value, "ci": [e.ci_low, e.ci_high], "samples": k,
                                   "against_steps": 2 * int(steps)}
    return out


def solve(model, x_T, t_grid, solver: str, batch: int = 1024, counter: Counter | None = None) -> np.ndarray:
    """A few-step solver of :mod:`numcore.solvers` (its program run by :func:`numcore.samplers.run`) on the OU
    grid ``t_grid`` (descending) with the model's denoiser, float64 state; returns the OU-scale endpoint at
    t_grid[-1] as numpy (n, d)."""
    from ..numcore.samplers import run

    t = np.asarray(t_grid, float)
    sigmas = [float(s) for s in np.sqrt(np.expm1(2.0 * t))]
    D = counter or Counter(model)
    out = []
    with torch.no_grad():
        x = torch.as_tensor(x_T, dtype=torch.float64)
        for lo in range(0, x.shape[0], batch):
            y = x[lo:lo + batch] * math.exp(t[0])
            y = run(lambda yy, s: D(yy, s).double(), y, sigmas, solver)
            out.append((y * math.exp(-t[-1])).numpy())
    return np.concatenate(out)


GRADIENT_BATCH = 256  # samples per reverse pass (the autograd graph of one chunk is kept until its backward)


def squared_error_and_grad(model, x_T, target, t_grid, solver: str, batch: int = GRADIENT_BATCH,
                           counter: Counter | None = None) -> tuple[float, np.ndarray]:
    """(sum_i |x_i - target_i|^2, its gradient with respect to rho_k = log sigma_VE(t_k), shape (N + 1,)) for the
    solver's end points x (OU scale) on the OU grid ``t_grid`` from x_T with the model's denoiser: the twin of
    :func:`numcore.samplers.squared_error_and_grad` for a network.

    Reverse mode as LD3 backpropagates through its solver: the solver's program (:mod:`numcore.solvers`) runs in
    torch with its evaluation sigmas and coefficients as leaves (:func:`numcore.samplers.run_program`), torch
    autograd gives their cotangents (through the network: J^T v in y and v . dD/dsigma through its scalings and
    noise input, :attr:`models.denoiser.Denoiser.sigma_differentiable`), and complex steps through the scheme carry
    them to the nodes (:func:`numcore.kernels.grid_gradient`).  One forward and one reverse pass through the network
    per evaluation; the forward passes are counted on ``counter.samples`` (as :func:`solve` counts them), the
    reverse passes on ``counter.backward``.  The end nodes' entries leave out the scaling between OU and VE
    coordinates at t_0 and t_N (the search keeps both ends fixed)."""
    from ..numcore import kernels
    from ..numcore.samplers import run_program
    from ..numcore.solvers import check

    s = check(solver)
    t = np.asarray(t_grid, float)
    sig = np.sqrt(np.expm1(2.0 * t))
    program = s.program(sig, compiled=True)
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in program]
    grads = [np.zeros_like(a) for a in program]
    D = counter or Counter(model)
    x = torch.as_tensor(np.asarray(x_T, float), dtype=torch.float64)
    tgt = torch.as_tensor(np.asarray(target, float), dtype=torch.float64)
    a0, aN = math.exp(t[0]), math.exp(-t[-1])
    loss = 0.0
    for lo in range(0, x.shape[0], batch):
        with torch.enable_grad():
            end = run_program(lambda yy, ss: D(yy, ss).double(), x[lo:lo + batch] * a0, *program, values=leaves)
            part = ((end * aN - tgt[lo:lo + batch]) ** 2).sum()
            g = torch.autograd.grad(part, leaves, allow_unused=True)
        for acc, gi in zip(grads, g):
            if gi is not None:
                acc += gi.numpy()
        loss += float(part.detach())
        D.backward += int(end.shape[0]) * s.evaluations(len(t) - 1)
    return loss, kernels.grid_gradient()(s.scheme, sig, *(np.ascontiguousarray(a) for a in grads))
