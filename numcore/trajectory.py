"""Exact probability-flow trajectories in numpy, and per-trajectory stability certificates.

**Flow.**  The PF-ODE dx/dt = -x - s(x, t) is integrated from t0 down to t1 < t0 by classical RK4 in

    y = e^t x,   rho = log sigma_VE = 1/2 log(e^{2t} - 1),   dy/drho = -2 sinh(t) s(e^{-t} y, t),

with equal steps of at most ``step`` in rho (the same scheme as the torch teacher).  The flow Jacobian
is propagated alongside, dW/drho = -beta^2 H W (beta^2 = 1 - e^{-2t}, since -2 sinh(t) e^{-t} = -beta^2),
and D Phi_{t0 -> t1} = e^{t0 - t1} W.

**Certificate.**  J = -I - H is symmetric, so along an exact trajectory x_u (t1 <= u <= t0)

    ||D Phi_{t0 -> t1}(x_{t0})||_op <= exp( int_{t1}^{t0} lambda_max(-J(x_u, u)) du )

(Gronwall's inequality with the logarithmic norm; equality in d = 1).  In rho the integrand is
m(rho) = beta^2 lambda_max(-J) (dt = beta^2 d rho), smooth and bounded where lambda_max(-J) is not.  The
integral is evaluated at the RK4 nodes rho_0 > ... > rho_M (step h):

* ``predicted``: the trapezoid rule -- an estimate of the integral (and, in d = 1, of log ||D Phi||);
* ``certified``: the upper Riemann sum sum_i h max(m_i, m_{i+1}) (an upper bound of the integral wherever
  m is monotone between nodes), plus a pad h |m_{i+1} - 2 m_i + m_{i-1}| / 4 per interval for an interior
  bump (twice the trapezoid's curvature error), plus the change of the trapezoid estimate between step
  h and step 2h (which bounds, with a factor >= 4 to spare, both the quadrature error and the effect of the
  RK4 trajectory error on the integrand: RK4's error falls 16-fold, the trapezoid's 4-fold per halving).

The certificate is therefore an upper bound up to that stated error rule (an adaptive estimate of the
discretisation error added to the exponent, not interval arithmetic); the tests check it against the
propagated Jacobian on random mixtures.

:func:`gronwall` is the one entry point (``flow`` and the kernels it calls can be pointed at another
exact teacher without changing the callers).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .flowmap import DEFAULT_STEP
from .marginal import as_points, hessian, jacobian_spectrum, score
from .mixture import GaussianMixture
from .units import rho_from_t, t_from_rho

SERIAL_BELOW = 8192  # batches up to this many points run the kernels on one thread


def _rho_nodes(t0: float, t1: float, step: float) -> np.ndarray:
    r0, r1 = rho_from_t(t0), rho_from_t(t1)
    m = max(2, math.ceil(abs(r1 - r0) / step - 1e-9))
    m += m % 2  # even, so the step-2h rule uses every other node
    return np.linspace(r0, r1, m + 1)


def _rate(mix, x, t) -> np.ndarray:
    """m = beta^2 lambda_max(-J(x, t)) = -beta^2 lambda_min(J) at each row of x."""
    return -(-math.expm1(-2.0 * t)) * jacobian_spectrum(mix, x, t)[:, 0]


def _field(mix, y, rho):
    t = t_from_rho(rho)
    return -2.0 * math.sinh(t) * score(mix, y * math.exp(-t), t)


def _field_jac(mix, y, W, rho):
    t = t_from_rho(rho)
    e = math.exp(-t)
    x = y * e
    c = -2.0 * math.sinh(t)
    H = hessian(mix, x, t)
    return c * score(mix, x, t), (c * e) * (H @ W)


def flow(mix: GaussianMixture, x, rhos: np.ndarray, jacobian: bool = False):
    """RK4 along the rho nodes ``rhos`` (decreasing).  Returns (states (n, M+1, d) in x coordinates,
    D Phi_{first -> last} (n, d, d) or None)."""
    x = as_points(x, mix.d)
    n, d = x.shape
    y = x * math.exp(t_from_rho(rhos[0]))
    states = np.empty((n, rhos.size, d))
    states[:, 0] = x
    W = np.broadcast_to(np.eye(d), (n, d, d)).copy() if jacobian else None
    for i in range(rhos.size - 1):
        r, h = rhos[i], rhos[i + 1] - rhos[i]
        if jacobian:
            k1, K1 = _field_jac(mix, y, W, r)
            k2, K2 = _field_jac(mix, y + 0.5 * h * k1, W + 0.5 * h * K1, r + 0.5 * h)
            k3, K3 = _field_jac(mix, y + 0.5 * h * k2, W + 0.5 * h * K2, r + 0.5 * h)
            k4, K4 = _field_jac(mix, y + h * k3, W + h * K3, r + h)
            W = W + (h / 6.0) * (K1 + 2.0 * K2 + 2.0 * K3 + K4)
        else:
            k1 = _field(mix, y, r)
            k2 = _field(mix, y + 0.5 * h * k1, r + 0.5 * h)
            k3 = _field(mix, y + 0.5 * h * k2, r + 0.5 * h)
            k4 = _field(mix, y + h * k3, r + h)
        y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        states[:, i + 1] = y * math.exp(-t_from_rho(rhos[i + 1]))
    if jacobian:
        W = W * math.exp(t_from_rho(rhos[0]) - t_from_rho(rhos[-1]))
    return states, W


@dataclass
class Gronwall:
    """Per-trajectory factors from t0 down to t1 (arrays over the n trajectories)."""

    t0: float
    t1: float
    step: float
    log_certified: np.ndarray  # (n,) upper bound of log ||D Phi_{t0 -> t1}(x)||_op (stated error rule)
    log_predicted: np.ndarray  # (n,) trapezoid estimate of the Gronwall integral
    log_error: np.ndarray  # (n,) the error term included in log_certified
    measured: np.ndarray | None  # (n,) ||D Phi_{t0 -> t1}(x)||_op from the propagated Jacobian, or None
    t_nodes: np.ndarray  # (M + 1,) the RK4 nodes in t, decreasing
    cumulative_upper: np.ndarray  # (n, M + 1) upper Riemann sum with pads from t0 to each node
    cumulative_error: np.ndarray  # (n, M + 1) the step-halving error term accumulated up to each node
    cumulative_predicted: np.ndarray  # (n, M + 1) trapezoid estimate from t0 to each node
    endpoints: np.ndarray  # (n, d) Phi_{t0 -> t1}(x)
    jacobian: np.ndarray | None = None  # (n, d, d) D Phi_{t0 -> t1}(x) when propagated

    @property
    def certified(self) -> np.ndarray:
        return np.exp(np.minimum(self.log_certified, 709.0))

    @property
    def predicted(self) -> np.ndarray:
        return np.exp(np.minimum(self.log_predicted, 709.0))

    def log_between(self, ta: float, tb: float, which: str = "certified") -> np.ndarray:
        """Log factor from ta down to tb (nodes nearest to them; t0 >= ta > tb >= t1), per trajectory."""
        ia, ib = (int(np.argmin(np.abs(self.t_nodes - v))) for v in (ta, tb))
        if which == "certified":
            c = self.cumulative_upper
            return c[:, ib] - c[:, ia] + self.cumulative_error[:, ib]
        return self.cumulative_predicted[:, ib] - self.cumulative_predicted[:, ia]


@contextmanager
def _serial_kernels(n: int):
    """Run the compiled kernels on one thread for small batches: thousands of short calls along a
    trajectory pay the thread pool's start-up each time (70x slower on a loaded machine)."""
    import numba

    old = numba.get_num_threads()
    if n <= SERIAL_BELOW:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _rates_along(mix, states, rhos):
    return np.stack([_rate(mix, states[:, i], t_from_rho(r)) for i, r in enumerate(rhos)], 1)


def _cumulative(m, h, upper: bool):
    """Cumulative integrals over rho intervals (n, M + 1) of rates m (n, M + 1) with step |h|."""
    if upper:
        piece = np.maximum(m[:, 1:], m[:, :-1])
        second = np.zeros_like(piece)
        if m.shape[1] >= 3:
            curv = np.abs(m[:, 2:] - 2.0 * m[:, 1:-1] + m[:, :-2]) / 4.0
            second[:, :-1] = curv
            second[:, 1:] = np.maximum(second[:, 1:], curv)
        piece = piece + second
    else:
        piece = 0.5 * (m[:, 1:] + m[:, :-1])
    out = np.zeros_like(m)
    out[:, 1:] = np.cumsum(abs(h) * piece, axis=1)
    return out


def gronwall(mix: GaussianMixture, x, t0: float, t1: float, *, step: float = DEFAULT_STEP,
             jacobian: bool = True) -> Gronwall:
    """Per-trajectory certificate and estimate of ||D Phi_{t0 -> t1}(x)||_op for each row of x (n, d).

    ``x`` are states at time t0 (OU time; typically samples of p_t0), t0 > t1 > 0.  With ``jacobian``
    the flow Jacobian is propagated and its operator norm returned as ``measured``.
    """
    if not t0 > t1 > 0:
        raise ValueError(f"t0 = {t0}, t1 = {t1}: expected t0 > t1 > 0")
    rhos = _rho_nodes(t0, t1, step)
    h = rhos[1] - rhos[0]
    x = as_points(x, mix.d)
    with _serial_kernels(x.shape[0]):
        states, W = flow(mix, x, rhos, jacobian)
        m = _rates_along(mix, states, rhos)
        # the same integral with step 2h: a coarser trajectory and every other node
        rhos2 = rhos[::2]
        states2, _ = flow(mix, x, rhos2, False)
        m2 = _rates_along(mix, states2, rhos2)
    cum_pred = _cumulative(m, h, upper=False)
    cum_up = _cumulative(m, h, upper=True)
    cum2 = _cumulative(m2, 2 * h, upper=False)
    err = np.maximum.accumulate(np.abs(cum_pred[:, ::2] - cum2), axis=1)  # at the shared nodes
    err_full = err[:, (np.arange(rhos.size) + 1) // 2]  # odd nodes take the next shared node's value
    cum_cert = cum_up + err_full
    measured = None
    if W is not None:
        measured = np.linalg.norm(W, ord=2, axis=(1, 2))
    return Gronwall(t0=float(t0), t1=float(t1), step=float(abs(h)), log_certified=cum_cert[:, -1],
                    log_predicted=cum_pred[:, -1], log_error=cum_cert[:, -1] - cum_up[:, -1], measured=measured,
                    t_nodes=np.array([t_from_rho(r) for r in rhos]), cumulative_upper=cum_up,
                    cumulative_error=err_full, cumulative_predicted=cum_pred, endpoints=states[:, -1], jacobian=W)
