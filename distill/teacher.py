"""The exact teacher of the students: the mixture's probability-flow maps Phi_{t->s} and their Jacobians, in torch
(the score and Hessian-vector products are :class:`~flowcert.models.exact.TorchMixture`'s).

Flow maps.  The PF-ODE dx/dt = -x - s(x, t) is integrated backwards in time (t from T down to delta)
in the coordinates

    y = e^t x,   rho = log sigma_VE = 1/2 log(e^{2t} - 1),   dy/drho = -2 sinh(t) s(e^{-t} y, t),

where the field is smooth all the way down to t = delta, by classical RK4 with equal steps in rho of
size at most ``h`` between consecutive requested times.  Jacobians D Phi are propagated alongside
(dW/drho = -2 sinh(t) e^{-t} H W, then D_x Phi_{t->s} = e^{t - s} W).

Everything runs on any torch device; float64 by default.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..models.exact import TorchMixture
from ..numcore.flowmap import DEFAULT_STEP
from ..numcore.units import rho_from_t, t_from_rho

class Teacher:
    """Exact PF-ODE flow maps of a mixture by RK4 in (rho, y) coordinates.

    Parameters
    ----------
    mix : GaussianMixture.
    device, dtype : where and in what precision to integrate (float64 by default).
    step : largest RK4 step in rho = log sigma_VE.
    """

    def __init__(self, mix, device="cpu", dtype=torch.float64, step: float = DEFAULT_STEP):
        self.mix, self.step = mix, float(step)
        self.tm = TorchMixture(mix, device, dtype)
        self.device, self.dtype = self.tm.device, dtype

    def _field(self, y, rho):
        t = t_from_rho(rho)
        return -2.0 * math.sinh(t) * self.tm.score(y * math.exp(-t), t)

    def _field_jac(self, y, W, rho):
        t = t_from_rho(rho)
        e = math.exp(-t)
        s, hw = self.tm.score_and_hvp(y * e, t, W)
        c = -2.0 * math.sinh(t)
        return c * s, (c * e) * hw

    def _substeps(self, t0: float, t1: float):
        r0, r1 = rho_from_t(t0), rho_from_t(t1)
        m = max(1, math.ceil(abs(r1 - r0) / self.step - 1e-9))
        return r0, (r1 - r0) / m, m

    def _segment(self, y, t0, t1):
        r, h, m = self._substeps(t0, t1)
        f = self._field
        for i in range(m):
            rho = r + i * h
            k1 = f(y, rho)
            k2 = f(y + 0.5 * h * k1, rho + 0.5 * h)
            k3 = f(y + 0.5 * h * k2, rho + 0.5 * h)
            k4 = f(y + h * k3, rho + h)
            y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        return y

    def _tensor(self, x):
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def trajectory(self, x, times, progress=None) -> torch.Tensor:
        """States at each of ``times`` (descending; x is at times[0]): shape (n, len(times), d)."""
        times = [float(t) for t in times]
        if any(b >= a for a, b in zip(times, times[1:])):
            raise ValueError("times must be strictly decreasing")
        y = self._tensor(x) * math.exp(times[0])
        out = [y * math.exp(-times[0])]
        for t0, t1 in zip(times, times[1:]):
            y = self._segment(y, t0, t1)
            out.append(y * math.exp(-t1))
            if progress is not None:
                progress.update(1)
        return torch.stack(out, 1)

    def flow(self, x, t: float, s: float) -> torch.Tensor:
        """Phi_{t->s}(x) for x of shape (n, d), t > s > 0."""
        return self.trajectory(x, [t, s])[:, -1]

    def flow_jacobian(self, x, t: float, s: float):
        """(Phi_{t->s}(x), D Phi_{t->s}(x)) with the Jacobian of shape (n, d, d)."""
        y = self._tensor(x) * math.exp(t)
        n, d = y.shape
        W = torch.eye(d, dtype=self.dtype, device=self.device).expand(n, d, d).clone()
        r, h, m = self._substeps(t, s)
        f = self._field_jac
        for i in range(m):
            rho = r + i * h
            k1, K1 = f(y, W, rho)
            k2, K2 = f(y + 0.5 * h * k1, W + 0.5 * h * K1, rho + 0.5 * h)
            k3, K3 = f(y + 0.5 * h * k2, W + 0.5 * h * K2, rho + 0.5 * h)
            k4, K4 = f(y + h * k3, W + h * K3, rho + h)
            y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            W = W + (h / 6.0) * (K1 + 2.0 * K2 + 2.0 * K3 + K4)
        return y * math.exp(-s), W * math.exp(t - s)


def gaussian_flow(mean, cov, x, t: float, s: float) -> np.ndarray:
    """Closed-form flow map of a single Gaussian N(mean, cov) (numpy, for tests).

    With S(t) = alpha_t^2 cov + (1 - alpha_t^2) I, the whitened offset S^{-1/2}(x - alpha mu) is
    constant along the flow:  Phi_{t->s}(x) = alpha_s mu + S(s)^{1/2} S(t)^{-1/2} (x - alpha_t mu).
    """
    lam, U = np.linalg.eigh(np.asarray(cov, float))
    st = np.exp(-2 * t) * lam - np.expm1(-2 * t)
    ss = np.exp(-2 * s) * lam - np.expm1(-2 * s)
    M = U @ np.diag(np.sqrt(ss / st)) @ U.T
    mean = np.asarray(mean, float)
    return np.exp(-s) * mean + (np.asarray(x, float) - np.exp(-t) * mean) @ M.T


class NetworkTeacher:
    """A trained model's own probability-flow maps Phi_{t->s} (any :class:`~flowcert.models.denoiser.Denoiser`),
    by classical RK4 in rho = log sigma on the VE state y = x / alpha, where dy/drho = y - D(y, e^rho)
    (:func:`models.flow.rk4_step`, float64 state, the network in its own dtype).

    The step: at most h = (rho(T) - rho(delta)) / ``steps`` between consecutive requested times (ceil of the rho
    span over h equal steps each, as :class:`Teacher` does for a mixture), so ``steps`` is the number of RK4 steps
    of the teacher over the whole window, and a segment shorter than h still gets one.  ``via``: the times every
    map passes through (the union of the grid nodes a run caches trajectories on): :meth:`flow` from one of them
    to another takes exactly the steps :meth:`trajectory` took, so a map applied to a cached teacher state
    reproduces the next cached state.  ``counter`` counts model evaluations (per sample), ``reverse_passes`` the
    reverse passes of :meth:`segment_jacobians`.
    """

    def __init__(self, model, *, delta: float, T: float, steps: int, via=None, batch: int = 1024):
        from ..models.flow import Counter

        self.model, self.steps, self.batch = model, int(steps), int(batch)
        self.h = (rho_from_t(T) - rho_from_t(delta)) / self.steps
        self.via = sorted({float(t) for t in via}, reverse=True) if via is not None else None
        self.counter = Counter(model)
        self.reverse_passes = 0

    @property
    def evaluations(self) -> int:
        """Model evaluations so far (forward network passes, one per sample); reverse passes through the network
        (:meth:`segment_jacobians`) are counted apart, in ``reverse_passes``."""
        return self.counter.samples

    def _substeps(self, t0: float, t1: float):
        r0, r1 = rho_from_t(t0), rho_from_t(t1)
        m = max(1, math.ceil(abs(r1 - r0) / self.h - 1e-9))
        return r0, (r1 - r0) / m, m

    def _segment(self, y, t0: float, t1: float):
        from ..models.flow import rk4_step

        r, h, m = self._substeps(t0, t1)
        for i in range(m):
            y = rk4_step(self.counter, y, r + i * h, h)
        return y

    def _path(self, t: float, s: float) -> list[float]:
        """t, the ``via`` times strictly between, s."""
        inner = [] if self.via is None else [u for u in self.via if s < u < t]
        return [float(t), *inner, float(s)]

    def trajectory(self, x, times, progress=None) -> torch.Tensor:
        """States at each of ``times`` (descending; x (n, d) at times[0], OU scale): shape (n, len(times), d),
        float64 on the CPU; ``progress`` is advanced once per interval (of the first batch)."""
        from ..models.flow import flow

        times = [float(t) for t in times]
        if any(b >= a for a, b in zip(times, times[1:])):
            raise ValueError("times must be strictly decreasing")
        return flow(self.model, x, times, batch=self.batch, progress=progress, counter=self.counter,
                    substeps=self._substeps)

    def flow(self, x, t: float, s: float) -> torch.Tensor:
        """Phi_{t->s}(x) for x of shape (n, d), through the ``via`` times between (float64, CPU)."""
        return self.trajectory(x, self._path(t, s))[:, -1]

    def segment_jacobians(self, x, times):
        """States at ``times`` and the dense Jacobian of every interval map, by autograd through its RK4 steps.

        Returns (states (n, len(times), d) float64, J (len(times) - 1, n, d, d) float64) with J[k] = D_x
        Phi_{times[k] -> times[k+1]} at states[:, k] in OU coordinates (= e^{t_k - t_{k+1}} D_y of the VE map).
        Each interval costs one graph of its RK4 steps and d reverse passes (batched with ``is_grads_batched``
        where the network allows it, one by one otherwise)."""
        times = [float(t) for t in times]
        x = torch.as_tensor(x, dtype=torch.float64)
        n, d = x.shape
        states = torch.empty(n, len(times), d, dtype=torch.float64)
        states[:, 0] = x
        jac = torch.empty(len(times) - 1, n, d, d, dtype=torch.float64)
        y = x * math.exp(times[0])
        eye = torch.eye(d, dtype=torch.float64)[:, None, :].expand(d, n, d)
        for k, (t0, t1) in enumerate(zip(times, times[1:])):
            y0 = y.detach().requires_grad_(True)
            with torch.enable_grad():
                y1 = self._segment(y0, t0, t1)
                try:
                    rows = torch.autograd.grad(y1, y0, eye, is_grads_batched=True)[0]  # (d, n, d): row j of each J
                except RuntimeError:
                    rows = torch.stack([torch.autograd.grad(y1[:, j].sum(), y0, retain_graph=j + 1 < d)[0]
                                        for j in range(d)])
            self.reverse_passes += d * n * 4 * self._substeps(t0, t1)[2]  # d reverse passes through each evaluation
            jac[k] = rows.transpose(0, 1) * math.exp(t0 - t1)
            y = y1.detach()
            states[:, k + 1] = y * math.exp(-t1)
        return states, jac
