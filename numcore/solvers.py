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


def unipc(sig, ev, cx, cd):
    """UniPC (diffusers UniPCMultistepScheduler with its defaults: data prediction, B(h) = expm1(-h) ("bh2"),
    solver_order 2, lower_order_final, the corrector UniC on) on sigma_N > 0, in lambda = -log sigma,
    h_i = lambda_{i+1} - lambda_i.

    Predictor UniP from the corrected state C_i (C_0 = X_0) to node i+1, of order p_i = 1 on the first and on the
    last step and 2 between: P_{i+1} = (sigma_{i+1}/sigma_i) C_i - expm1(-h_i) (m_i + rho_p D1), rho_p = 1/2,
    D1 = (m_{i-1} - m_i) / r, r = (lambda_{i-1} - lambda_i) / h_i (order 1: no D1), where m_i = D(P_i) (m_0 = D(X_0))
    is the denoiser at the predicted state.  Corrector UniC at node i (1 <= i < N; none on the last state) with
    the model output m_i already computed, of the order q = p_{i-1} of the step that led there:
    C_i = (sigma_i/sigma_{i-1}) C_{i-1} - B(h) (m_{i-1} + sum_k rho_k D1_k + rho_q (m_i - m_{i-1})), h = h_{i-1},
    with rho = 1/2 for q = 1, and for q = 2 the solution of [[1, 1], [r_1, 1]] rho = (b_1, b_2),
    r_1 = (lambda_{i-2} - lambda_{i-1}) / h, D1_1 = (m_{i-2} - m_{i-1}) / r_1, where with hh = -h,
    b_1 = (expm1(hh)/hh - 1) / B(h), b_2 = 2 ((expm1(hh)/hh - 1)/hh - 1/2) / B(h).
    N model evaluations.  Rows X_0, P_1, C_1, P_2, C_2, ..., P_{N-1}, C_{N-1}, P_N (P_i evaluated at sigma_i; C_i
    and the end point P_N are not)."""
    N = sig.shape[0] - 1
    ev[0] = sig[0]
    for i in range(N):
        # predictor: row 2i + 1 from C_i (row 2i, or X_0) with m_i in row max(2i - 1, 0) and m_{i-1} in
        # row max(2i - 3, 0)
        r = 2 * i + 1
        h = np.log(sig[i]) - np.log(sig[i + 1])
        em = expm1(-h)
        cx[r, 0] = sig[i + 1] / sig[i]
        if i == 0 or i == N - 1:  # order 1 (warm-up, lower_order_final)
            cd[r, 0 if i == 0 else 1] = -em
        else:
            half = 0.5 * h / (np.log(sig[i - 1]) - np.log(sig[i]))  # rho_p / r with r = -h_{i-1} / h
            cd[r, 1] = -em * (1.0 + half)  # m_i (row 2i - 1)
            cd[r, 3 if i > 1 else 2] += em * half  # m_{i-1} (row 2i - 3, or X_0's row when i = 1)
        if i + 1 < N:
            ev[r] = sig[i + 1]  # D(P_{i+1}) = m_{i+1}
            # corrector: row 2i + 2 = C_{i+1} from C_i (row 2i), m_{i+1} (row 2i + 1), m_i, m_{i-1}
            c = r + 1
            hh = -h
            phi = em / hh - 1.0  # h phi_1 / hh - 1 with h phi_1 = expm1(hh)
            cx[c, 1] = sig[i + 1] / sig[i]
            w_i = 1 if i == 0 else 2  # m_i: X_0's row (w = 1 from row 2) or row 2i - 1
            if i == 0 or i == N - 1:  # the step i -> i + 1 was of order 1
                rho_t = 0.5
                cd[c, 0] = -em * rho_t  # m_{i+1}
                cd[c, w_i] = -em * (1.0 - rho_t)  # m_i
            else:
                b1 = phi / em
                b2 = 2.0 * (phi / hh - 0.5) / em
                r1 = (np.log(sig[i]) - np.log(sig[i - 1])) / h  # (lambda_{i-1} - lambda_i) / h_i
                rho_1 = (b1 - b2) / (1.0 - r1)
                rho_t = b1 - rho_1
                cd[c, 0] = -em * rho_t  # m_{i+1}
                cd[c, w_i] = -em * (1.0 - rho_1 / r1 - rho_t)  # m_i
                cd[c, 4 if i > 1 else 3] += -em * rho_1 / r1  # m_{i-1} (row 2i - 3, or X_0's row when i = 1)


def dpmpp_3m(sig, ev, cx, cd):
    """DPM-Solver++(3M) (k-diffusion sample_dpmpp_3m_sde with eta = 0, on sigma_N > 0): in lambda = -log sigma,
    h = lambda_{i+1} - lambda_i, x <- (sigma_{i+1}/sigma_i) x - expm1(-h) D_i, then with r0 = h_{i-1}/h,
    r1 = h_{i-2}/h, d1_0 = (D_i - D_{i-1}) / r0, d1_1 = (D_{i-1} - D_{i-2}) / r1, phi_2 = expm1(-h)/h + 1,
    phi_3 = phi_2/h - 1/2: x <- x + phi_2 d1 - phi_3 d2 with d1 = d1_0 + (d1_0 - d1_1) r0/(r0 + r1),
    d2 = (d1_0 - d1_1)/(r0 + r1) (from the third step on); x <- x + phi_2 d1_0 on the second step; nothing more
    on the first.  Rows X_0, ..., X_N."""
    N = sig.shape[0] - 1
    for i in range(N):
        h = np.log(sig[i]) - np.log(sig[i + 1])
        em = expm1(-h)
        ev[i] = sig[i]
        cx[i + 1, 0] = sig[i + 1] / sig[i]
        cd[i + 1, 0] = -em
        if i >= 1:
            phi2 = em / h + 1.0
            r0 = (np.log(sig[i - 1]) - np.log(sig[i])) / h
            if i == 1:
                a0, a1 = phi2, 0.0  # x += a0 d1_0
            else:
                r1 = (np.log(sig[i - 2]) - np.log(sig[i - 1])) / h
                phi3 = phi2 / h - 0.5
                s = r0 + r1
                a0 = phi2 * (1.0 + r0 / s) - phi3 / s  # x += a0 d1_0 - a1 d1_1
                a1 = phi2 * r0 / s - phi3 / s
                cd[i + 1, 1] += -a1 / r1
                cd[i + 1, 2] += a1 / r1
            cd[i + 1, 0] += a0 / r0
            cd[i + 1, 1] += -a0 / r0


# DEIS's time variable (ComfyUI sample_deis, deis_mode "tab", after GITS' solver_utils.edm2t): the VP time tau of a
# linear-beta VP-SDE whose alphabar = 1 / (1 + sigma^2), log(1 + sigma^2) = BETA_D tau^2 / 2 + BETA_MIN tau, fitted to
# sigma_min = 0.002 at tau = 1e-3 and sigma_max = 80 at tau = 1.  The two numbers are the ones ComfyUI runs with: it
# takes the logs of the float32 values 0.002^2 + 1 and 80^2 + 1 in float32 (in float64 BETA_MIN would be
# -0.00476899, 1% away).
DEIS_BETA_D = 17.537850650940623
DEIS_BETA_MIN = -0.004715818328307364
DEIS_ORDER = 3
# the coefficients' integrals: composite Gauss-Legendre in u = log sigma, DEIS_PANELS equal panels of the step,
# DEIS_NODES nodes each (relative error below 1e-12 from sigma = 1e-4 to 150, checked against adaptive quadrature)
DEIS_PANELS = 4
DEIS_NODES, DEIS_WEIGHTS = np.polynomial.legendre.leggauss(12)


def deis_tau(sig):
    """DEIS's time tau(sigma) = (sqrt(BETA_MIN^2 + 2 BETA_D log(1 + sigma^2)) - BETA_MIN) / BETA_D (complex-analytic)."""
    return (np.sqrt(DEIS_BETA_MIN * DEIS_BETA_MIN + 2.0 * DEIS_BETA_D * np.log(1.0 + sig * sig)) - DEIS_BETA_MIN) \
        / DEIS_BETA_D


def deis(sig, ev, cx, cd):
    """DEIS (ComfyUI sample_deis, max_order 3, deis_mode "tab", on sigma_N > 0): with d_i = (x_i - D_i) / sigma_i,
    x_{i+1} = x_i + sum_{j < k} C_{ij} d_{i-j}, k = min(i + 1, 3), where C_{ij} = int_{sigma_i}^{sigma_{i+1}}
    L_j(tau(sigma)) dsigma and L_j is the Lagrange basis polynomial in DEIS's time tau (:func:`deis_tau`) through
    tau_i, ..., tau_{i-k+1} that is 1 at tau_{i-j}; k = 1 is Euler, C_{i0} = sigma_{i+1} - sigma_i.  (ComfyUI
    tabulates the C's with a 10^4-point sum in tau; here they are the integrals themselves, by a fixed composite
    Gauss-Legendre rule in log sigma, so they stay analytic in the grid.)  Rows X_0, ..., X_N."""
    N = sig.shape[0] - 1
    tau = deis_tau(sig)
    n = DEIS_NODES.shape[0]
    for i in range(N):
        ev[i] = sig[i]
        k = min(i + 1, DEIS_ORDER)
        c0 = sig[i + 1] - sig[i]
        c1 = 0.0 * c0
        c2 = 0.0 * c0
        if k > 1:
            ua = np.log(sig[i])
            du = (np.log(sig[i + 1]) - ua) / DEIS_PANELS
            c0 = 0.0 * c0
            for p in range(DEIS_PANELS):
                for q in range(n):
                    u = ua + du * (p + 0.5 + 0.5 * DEIS_NODES[q])
                    s = np.exp(u)
                    x = deis_tau(s)
                    w = 0.5 * du * DEIS_WEIGHTS[q] * s  # dsigma = sigma du
                    if k == 2:
                        c0 += w * (x - tau[i - 1]) / (tau[i] - tau[i - 1])
                        c1 += w * (x - tau[i]) / (tau[i - 1] - tau[i])
                    else:
                        c0 += w * (x - tau[i - 1]) * (x - tau[i - 2]) / ((tau[i] - tau[i - 1]) * (tau[i] - tau[i - 2]))
                        c1 += w * (x - tau[i]) * (x - tau[i - 2]) / ((tau[i - 1] - tau[i]) * (tau[i - 1] - tau[i - 2]))
                        c2 += w * (x - tau[i]) * (x - tau[i - 1]) / ((tau[i - 2] - tau[i]) * (tau[i - 2] - tau[i - 1]))
        # x_{i+1} = x_i + c0 (x_i - D_i)/sigma_i + c1 (x_{i-1} - D_{i-1})/sigma_{i-1} + c2 (x_{i-2} - D_{i-2})/sigma_{i-2}
        cx[i + 1, 0] = 1.0 + c0 / sig[i]
        cd[i + 1, 0] = -c0 / sig[i]
        if k > 1:
            cx[i + 1, 1] = c1 / sig[i - 1]
            cd[i + 1, 1] = -c1 / sig[i - 1]
        if k > 2:
            cx[i + 1, 2] = c2 / sig[i - 2]
            cd[i + 1, 2] = -c2 / sig[i - 2]


# iPNDM's weights: the Adams-Bashforth weights of equal steps, of order 1 to 4 (newest derivative first)
IPNDM_WEIGHTS = np.array([[1.0, 0.0, 0.0, 0.0],
                          [3.0 / 2.0, -1.0 / 2.0, 0.0, 0.0],
                          [23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0, 0.0],
                          [55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0]])


def _multistep_rows(sig, cx, cd, i, c):
    """Row i + 1 = x_i + (sigma_{i+1} - sigma_i) sum_j c[j] d_{i-j}, d_j = (x_j - D_j) / sigma_j."""
    dt = sig[i + 1] - sig[i]
    cx[i + 1, 0] = 1.0
    for j in range(min(i + 1, 4)):
        a = dt * c[j] / sig[i - j]
        cx[i + 1, j] += a
        cd[i + 1, j] = -a


def ipndm(sig, ev, cx, cd):
    """iPNDM (ComfyUI sample_ipndm, max_order 4): Adams-Bashforth in sigma with the weights of equal steps, whatever
    the steps: d_i = (x_i - D_i) / sigma_i, x_{i+1} = x_i + (sigma_{i+1} - sigma_i) sum_j w_j d_{i-j} with the
    order-min(i + 1, 4) weights (1; 3/2, -1/2; 23/12, -16/12, 5/12; 55/24, -59/24, 37/24, -9/24).  Rows X_0, ..., X_N."""
    N = sig.shape[0] - 1
    for i in range(N):
        ev[i] = sig[i]
        _multistep_rows(sig, cx, cd, i, IPNDM_WEIGHTS[min(i, 3)])


def ipndm_v(sig, ev, cx, cd):
    """iPNDM-v (ComfyUI sample_ipndm_v, max_order 4): the variable-step twin of :func:`ipndm`, with the weights
    as ComfyUI computes them from the steps h = sigma_{i+1} - sigma_i, h_k = sigma_{i-k+1} - sigma_{i-k}:
    order 2: (1 + h/(2 h_1), -h/(2 h_1)) (Adams-Bashforth's);
    order 3: g = (1 - h^2 / (3 h_1 (h_1 + h_2))) / 2 added as g (1, -(1 + h_1/h_2), h_1/h_2);
    order 4: g and g' = [(1 - h/(3(h + h_1)))/2 + (1 - h/(2(h + h_1))) h / (6 (h + h_1 + h_2))]
    h (h + h_1)(h + h_1 + h_2) / (h_1 (h_1 + h_2)(h_1 + h_2 + h_3)) added as g' (1, -(1 + h_1/h_2 + q),
    h_1/h_2 + q (1 + h_2/h_3), -q h_1/h_2), q = h_1 (h_1 + h_2) / (h_2 (h_2 + h_3)).
    These g and g' are what ComfyUI evaluates (its operator precedence); they are not the variable-step
    Adams-Bashforth terms (those would be (h^2/3 + h h_1/2) / (h_1 (h_1 + h_2)) for g), and at equal steps g' is
    11/24, not 3/8, so that iPNDM-v's fourth-order weights there are (57, -65, 43, -11)/24, not iPNDM's.
    Away from equal (or geometric) steps its fourth-order weights do not even sum to 1 (they sum to
    1 + g' q (h_2/h_3 - h_1/h_2)): on smooth grids the method is first order.
    Rows X_0, ..., X_N."""
    N = sig.shape[0] - 1
    c = np.zeros(4, sig.dtype)
    for i in range(N):
        ev[i] = sig[i]
        k = min(i + 1, 4)
        c[:] = 0.0
        c[0] = 1.0
        if k > 1:
            h = sig[i + 1] - sig[i]
            h1 = sig[i] - sig[i - 1]
            c[0] = 1.0 + 0.5 * h / h1
            c[1] = -0.5 * h / h1
            if k > 2:
                h2 = sig[i - 1] - sig[i - 2]
                g = (1.0 - h * h / (3.0 * h1 * (h1 + h2))) / 2.0
                c[0] += g
                c[1] -= (1.0 + h1 / h2) * g
                c[2] += g * h1 / h2
                if k > 3:
                    h3 = sig[i - 2] - sig[i - 3]
                    q = h1 * (h1 + h2) / (h2 * (h2 + h3))
                    g2 = ((1.0 - h / (3.0 * (h + h1))) / 2.0 + (1.0 - h / (2.0 * (h + h1))) * h / (6.0 * (h + h1 + h2))) \
                        * (h * (h + h1) * (h + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))
                    c[0] += g2
                    c[1] -= (1.0 + h1 / h2 + q) * g2
                    c[2] += (h1 / h2 + q * (1.0 + h2 / h3)) * g2
                    c[3] -= g2 * q * h1 / h2
        _multistep_rows(sig, cx, cd, i, c)


# helpers the schemes call: numcore.kernels registers them with numba (expm1 has its own complex overload there)
JITABLE = (deis_tau, _multistep_rows)

# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Solver:
    """One solver: its names, its order, the shape of its program and its scheme (the plain Python function;
    :attr:`scheme` is the compiled one)."""

    name: str
    label: str  # as a reader knows it: "DPM-Solver++(2M)"
    order: int  # order of accuracy of the whole program on smooth grids, warm-up steps included (global error O(h^order))
    history: int  # W: the band width of the program (rows reach back W rows)
    rows: Callable[[int], int]  # R for N steps
    evaluations: Callable[[int], int]  # model evaluations for N steps (== rows with ev > 0)
    py_scheme: Callable  # scheme(sig, ev, cx, cd), plain Python
    source: str  # whose algorithm it is
    k_diffusion: str | None = None  # the k-diffusion sampler that runs it (exports: the k-diffusion-* presets)
    comfyui: str | None = None  # ComfyUI's sampler name for it (exports: the comfyui-* presets)

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
               "k-diffusion sample_euler (diffusers EulerDiscreteScheduler)", "sample_euler", "euler"),
        Solver("heun", "Heun", 2, 2, lambda N: 2 * N + 1, lambda N: 2 * N, heun,
               "k-diffusion sample_heun (Karras et al. 2022, Algorithm 1)", "sample_heun", "heun"),
        Solver("dpmpp_2m", "DPM-Solver++(2M)", 2, 2, lambda N: N + 1, lambda N: N, dpmpp_2m,
               "k-diffusion sample_dpmpp_2m (diffusers DPMSolverMultistepScheduler, midpoint)", "sample_dpmpp_2m",
               "dpmpp_2m"),
        Solver("unipc", "UniPC", 2, 5, lambda N: 2 * N, lambda N: N, unipc,
               "diffusers UniPCMultistepScheduler (bh2, order 2, lower_order_final, corrector UniC)"),
        Solver("dpmpp_3m", "DPM-Solver++(3M)", 2, 3, lambda N: N + 1, lambda N: N, dpmpp_3m,
               "k-diffusion sample_dpmpp_3m_sde with eta = 0 (ComfyUI dpmpp_3m_sde; diffusers "
               "DPMSolverMultistepScheduler, solver_order 3, heun)", "sample_dpmpp_3m_sde", "dpmpp_3m_sde"),
        Solver("deis", "DEIS", 2, 3, lambda N: N + 1, lambda N: N, deis,
               "ComfyUI sample_deis (order 3, tabulated coefficients, after GITS and DEIS)", None, "deis"),
        Solver("ipndm", "iPNDM", 2, 4, lambda N: N + 1, lambda N: N, ipndm,
               "ComfyUI sample_ipndm (order 4, equal-step weights; after GITS)", None, "ipndm"),
        Solver("ipndm_v", "iPNDM-v", 1, 4, lambda N: N + 1, lambda N: N, ipndm_v,
               "ComfyUI sample_ipndm_v (order 4, variable-step weights as ComfyUI evaluates them; after GITS)", None,
               "ipndm_v"),
    )
}
NAMES = tuple(SOLVERS)


def check_list(names=None, field: str = "solvers") -> tuple[str, ...]:
    """Registered solver names from a comma-separated text or a list (None or empty: every registered solver), in
    the registry's order, each once; InputError naming ``field`` otherwise."""
    from .checks import split_list

    if names is None or (isinstance(names, (list, tuple)) and not names):
        return NAMES
    chosen = set(split_list(field, [n.name if isinstance(n, Solver) else n for n in names]
                            if isinstance(names, (list, tuple)) else names, NAMES))
    return tuple(n for n in NAMES if n in chosen)


def check(name) -> Solver:
    """The registered solver called ``name`` (a :class:`Solver` is returned as it is); InputError otherwise."""
    if isinstance(name, Solver):
        return name
    return SOLVERS[choice("solver", name, tuple(SOLVERS))]
