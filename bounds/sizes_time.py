"""Sizes and coefficient-error budget of the time-input score network (sympy).

The network is :mod:`numcore.scorenet_time`: time coefficients on S1 = S + 1
geometric slices with Chebyshev degree N (Lc = ceil(log2 N) layers), then the
fixed-t machinery of :mod:`bounds.sizes` (same D, nu, n, L, m, J).
Extra structural counts: F = distinct covariance eigenvalues, P = sum_k (distinct
eigenvalues of component k), P_pair = the same sum over the components paired in
the first tournament level (k < 2 floor(K/2)), Z_U = nonzeros of the K bases U_k,
Z_m = rotated mean coordinates (U_k^T mu_k)_i that are exactly 0 (their alpha weight vanishes),
Z_c = weights of the coefficient neurons lost to Chebyshev coefficients that are exactly 0
(round-off-level high-degree coefficients; 1 per hat term, 4 per hat x T_i product).

Coefficient error (coefficients alpha, f_sigma, ell_sigma with sup errors
eta_alpha, eta_f, eta_ell; r = max_k |R + alpha_delta |mu_k||, f_max = 1/lambda_min):

    Delta_q   = eta_f (r + eta_alpha M_2)^2 + f_max eta_alpha M_2 (2 r + eta_alpha M_2)
    Lambda    = d eta_ell + Delta_q / 2                      (logit error)
    Delta_g   = eta_f (r + eta_alpha M_2) + f_max eta_alpha M_2   (component-score error)
    coef      = 2 (G + Delta_g) Lambda + Delta_g              (softmax is 2-Lipschitz from l_inf to l_1)

The eta are proven Bernstein-ellipse bounds of the Chebyshev interpolants
(numcore.timecoef.ellipse_bound) plus a float64 margin for the rounded coefficients.
"""

from __future__ import annotations

import sympy as sp

from . import sizes as A

S1, Nc, Lc, F, P, Ppair, Z_U = sp.symbols("S_1 N_ch L_c F P P_pair Z_U", positive=True, integer=True)
Z_m, Z_c = sp.symbols("Z_m Z_c", nonnegative=True, integer=True)
eta_a, eta_f, eta_l, r, fmax = sp.symbols("eta_alpha eta_f eta_ell r f_max", nonnegative=True)
d, K, D, nu, n, L, m, J, G, M2 = A.d, A.K, A.D, A.nu, A.n, A.L, A.m, A.J, A.G, A.M2

DELTA_Q = eta_f * (r + eta_a * M2) ** 2 + fmax * eta_a * M2 * (2 * r + eta_a * M2)
LOGIT_ERR = d * eta_l + DELTA_Q / 2
DELTA_G = eta_f * (r + eta_a * M2) + fmax * eta_a * M2
COEF = 2 * (G + DELTA_G) * LOGIT_ERR + DELTA_G

_E = d + 1 + F  # values carried through the softmax stages: xi, alpha, f_sigma
_h2 = 2 ** (L - 1)
_rr = n - _h2
_rp = sp.Min(_rr, _h2 - 1)
_last = _h2 + 3 * _rp + (_rr - _rp)
_hc = 2 ** (Lc - 1)
_rc = Nc - _hc
_rcp = sp.Min(_rc, _hc - 1)

DEPTH = D + L + m + J + Lc + 9
WIDTH = sp.Max(
    2 * d + 2,
    3 * S1 - 1 + d,                                                   # time
    S1 * sp.Max(3 * _hc - 2, 2 * _hc + 4 * _rcp + 2 * (_rc - _rcp)) + S1 + d,  # Chebyshev
    S1 * (1 + 4 * Nc) + d,                                            # hat products
    2 * d * K + 1 + F + K + d,                                        # quad1
    3 * P + K + 1 + F + d,                                            # quad2
    _E + K + sp.ceiling(K / 2),                                       # tournament
    _E + K * (2 * _h2 - 2), _E + K * _last,                           # powers
    3 * P + K + d + 1,                                                # products1
    4 * d * K + K,                                                    # products2
    4 * d + 2,                                                        # Newton
)
PARAMS_BY_GROUP = {
    "clip": 4 * d + 4,
    "time": 9 * S1 - 6 + 2 * d,
    "chebyshev": 12 * S1 + 3 * (S1 - 1) + d + (Lc - 1) * (S1 + d)
    + S1 * (36 * (_hc - Lc) + (8 * _hc - 6) + 20 * _rcp + 16 * sp.Max(0, _rcp - _hc / 2) + 6 * (_rc - _rcp)),
    "hatprod": S1 * (1 + 12 * _hc + 28 * _rcp + 16 * (_rc - _rcp)) + d,
    "coef": (1 + F + K) * S1 * (1 + 4 * Nc) - Z_c + K + d,
    "quad1": 2 * Z_U + 4 * d * K - 2 * Z_m + 1 + F + K + d,
    "quad2": 3 * (P + 2 * d * K) + K + 1 + F + d,
    "tournament": 2 * K + 3 * P + 2 * sp.floor(K / 2) + 3 * Ppair + D * _E + (D - 1) * K
    + 6 * (K - 1 - sp.floor(K / 2)) + nu - 2 * sp.Mod(K, 2),
    "min": 4 * K - 2 * sp.Max(0, 2 - D) + _E,
    "powers": 4 * K + K * (11 * _h2 - 13 * L + 4)
    + K * ((2 * _h2 - 2) + 3 * _rp + 3 * (_rp + 2 * sp.Max(0, _rp - _h2 / 2)) + (_rr - _rp)) + _E * L,
    "squarings": K * (_last + m) + m * _E,
    "products1": 6 * P + K + d + 1,
    "products2": 4 * (5 * d * K + Z_U) - 4 * Z_m + K,
    "newton": 4 * (4 * Z_U + d * K + d) + 2 * (K + 1) + 28 * d + 24 * d * (J - 2) + (J - 1),
    "output": 4 * d,
}
PARAMS = sp.Add(*PARAMS_BY_GROUP.values())
SIZE_ARGS = (d, K, D, nu, n, L, m, J, S1, Nc, Lc, F, P, Ppair, Z_U, Z_m, Z_c)


def generated():
    return [
        ("time_coef", (d, G, M2, r, fmax, eta_a, eta_f, eta_l), COEF,
         "score error from time-coefficient errors: 2 (G + Delta_g) Lambda + Delta_g"),
        ("time_depth", (D, L, m, J, Lc), DEPTH, "depth = D + L + m + J + Lc + 9"),
        ("time_width", (d, K, n, L, S1, Nc, Lc, F, P), WIDTH, "width = largest hidden layer"),
        ("time_params", SIZE_ARGS, PARAMS, "nonzero weights and biases (generic parameters)"),
    ]


def render(kind: str = "text") -> str:
    fmt = sp.latex if kind == "latex" else sp.sstr
    head = "% time-input network (t in [delta, T])" if kind == "latex" else "# time-input network (t in [delta, T])"
    lines = [head]
    for name, expr in (("coef", COEF), ("depth_B", DEPTH), ("width_B", WIDTH), ("params_B", PARAMS)):
        lhs = sp.latex(sp.Symbol(name)) if kind == "latex" else name
        lines.append(f"{lhs} = {fmt(expr)}")
    return "\n".join(lines)
