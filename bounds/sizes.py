"""Certified network sizes for the mixture score (sympy): parameter choices, error budget, sizes.

The network is the construction of :mod:`numcore.scorenet` (fixed t, "Part A").
Geometry constants of p_t (from the mixture, see :mod:`bounds.certificate`):

    lambda_min = min_k lambda_min(S_k(t)),   sigma_max^2 = max_k lambda_max(S_k(t)),
    M_2 = max_k |mu_k|,   M_inf = max_k |mu_k|_inf,   alpha = e^{-t}.

On the box Omega = [-R, R]^d every component score obeys |g_k| <= G, with the
closed form G(R) = (sqrt(d) R + alpha M_2) / lambda_min (the certificate uses
the sharper max_k |R + alpha |mu_k|| / lambda_min(S_k)).

Error budget, ||N - s||_{L^p(p_t)} <= tail + trunc + exp + recip:

    tail  = C_s P_out^{1/(2p)} + (G + eps/2) P_out^{1/p}        (outside Omega; <= eps/2)
    trunc = 2 (K-1) G e^{-B}                                    (softmax truncation; <= eps/6)
    exp   = 2 (K-1) G delta,  delta = 2^m r (1+r)^(2^m - 1),  r = h^{n+1}/(n+1)!,  h = B/2^m   (<= eps/6)
    recip = G theta^(2^J),  theta = (K-1)(1 + 2 delta)/(K+1)    (Newton reciprocal; <= eps/6)

with C_s = (2 alpha M_2 + sigma_max sqrt(d + 2p)) / lambda_min and
P_out <= d exp(-(R - alpha M_inf)^2 / (2 sigma_max^2)) (closed form; the
certificate also uses exact per-coordinate Gaussian tails).

Closed-form parameter choices (each satisfies its budget inequality):

    B = ln(12 K G / eps),  m = max(1, ceil(log2 B)),
    Q = 12 (e-1) e 2^m K G / eps,  N* = max(e^2, 2 ln Q / ln max(ln Q, e^2)),
    L = max(2, ceil(log2(N* - 1))),  n = 2^L,
    theta_cf = (K - 1 + eps/(6G)) / (K + 1),  J = max(3, ceil(log2(ln(6G/eps) / ln(1/theta_cf)))),
    R = the fixed point of R = alpha M_inf + sigma_max sqrt(2 ln d + 4p ln(2 (C_s + G(R) + eps)/eps)).

Sizes of the materialized network, for any n >= 3 (L = ceil(log2 n), h2 = 2^(L-1),
r = n - h2, r' = min(r, h2 - 1)), D = ceil(log2 K), nu = D - popcount(K - 1)
(tournament levels with an odd count), Z_A and Z_P = nonzeros of the K
matrices A_k = S_k^{-1/2} and P_k = S_k^{-1} (dK if diagonal, d^2 K if full),
Z_0 = first-level tournament pairs with equal logit constants (their bias is 0):
see DEPTH, WIDTH, PARAMS below (one term per layer group, in network order).
PARAMS counts every nonzero weight and bias; other coincidences than those
counted by Z_0 (a mean coordinate making a bias exactly zero) can only make
the materialized count smaller.
"""

from __future__ import annotations

import sympy as sp

# ---------------------------------------------------------------- symbols
t = sp.Symbol("t", positive=True)
alpha = sp.Symbol("alpha", positive=True)
eps, p = sp.symbols("eps p", positive=True)
d, K = sp.symbols("d K", positive=True, integer=True)
lam_min, sig_max, M2, Minf = sp.symbols("lambda_min sigma_max M_2 M_inf", positive=True)
R, G, B, P_out, delta = sp.symbols("R G B P_out delta", positive=True)
m, n, L, J, D, nu = sp.symbols("m n L J D nu", positive=True, integer=True)
Z_A, Z_P = sp.symbols("Z_A Z_P", positive=True, integer=True)
Z_0 = sp.Symbol("Z_0", nonnegative=True, integer=True)
Cs = sp.Symbol("C_s", positive=True)
theta = sp.Symbol("theta", positive=True)
moment = sp.Symbol("mu_2p", positive=True)

E = sp.E

# ---------------------------------------------------------------- geometry
G_CLOSED = (sp.sqrt(d) * R + alpha * M2) / lam_min
CS_CLOSED = (2 * alpha * M2 + sig_max * sp.sqrt(d + 2 * p)) / lam_min
# (E|Z|^{2p})^{1/(2p)} for Z ~ N(0, I_d), exact: 2^p Gamma(d/2 + p) / Gamma(d/2)
MOMENT_2P = sp.exp(
    (p * sp.log(2) + sp.loggamma(d / 2 + p, evaluate=False) - sp.loggamma(d / 2, evaluate=False)) / (2 * p)
)
CS_EXACT = (2 * alpha * M2 + sig_max * moment) / lam_min
P_OUT_CLOSED = d * sp.exp(-((R - alpha * Minf) ** 2) / (2 * sig_max**2))
R_CLOSED = alpha * Minf + sig_max * sp.sqrt(2 * sp.log(d) + 4 * p * sp.log(2 * (Cs + G + eps) / eps))

# ---------------------------------------------------------------- error budget
TAIL = Cs * P_out ** (1 / (2 * p)) + (G + eps / 2) * P_out ** (1 / p)
TRUNC = 2 * (K - 1) * G * sp.exp(-B)
_h = B / 2**m
_r = sp.exp((n + 1) * sp.log(_h) - sp.loggamma(n + 2, evaluate=False))  # h^{n+1}/(n+1)!
DELTA = 2**m * _r * (1 + _r) ** (2**m - 1)
EXP = 2 * (K - 1) * G * delta
THETA = (K - 1) * (1 + 2 * delta) / (K + 1)
RECIP = G * theta ** (2**J)

# ---------------------------------------------------------------- closed-form choices
B_CLOSED = sp.log(12 * K * G / eps)
M_CLOSED = sp.Max(1, sp.ceiling(sp.log(B, 2)))
_Q = 12 * (E - 1) * E * 2**m * K * G / eps
NSTAR = sp.Max(E**2, 2 * sp.log(_Q) / sp.log(sp.Max(sp.log(_Q), E**2)))
L_CLOSED = sp.Max(2, sp.ceiling(sp.log(NSTAR - 1, 2)))
THETA_CLOSED = (K - 1 + eps / (6 * G)) / (K + 1)
J_CLOSED = sp.Max(3, sp.ceiling(sp.log(sp.log(6 * G / eps) / sp.log(1 / THETA_CLOSED), 2)))

# ---------------------------------------------------------------- sizes
_h2 = 2 ** (L - 1)
_rr = n - _h2
_rp = sp.Min(_rr, _h2 - 1)
_last = _h2 + 3 * _rp + (_rr - _rp)  # neurons per component in the last power layer

DEPTH = D + L + m + J + 4
WIDTH = sp.Max(
    2 * d * K + d,                     # quadratic forms + xi
    d + K + sp.ceiling(K / 2),         # tournament
    d + K * (2 * _h2 - 2),             # second-to-last power layer
    d + K * _last,                     # last power layer
    3 * d * K + K,                     # products e_k xi_j
    4 * d + 2,                         # Newton
)
PARAMS_BY_GROUP = {
    "clip": 4 * d,
    "quadratic": 2 * (2 * Z_A + d * K) + 2 * d,
    "tournament": K * (2 * d + 1) + sp.floor(K / 2) * (4 * d + 1) + d
    + (D - 1) * (K + d) + 6 * (K - 1 - sp.floor(K / 2)) + nu - 2 * sp.Mod(K, 2) - Z_0,
    "min": 4 * K + d - 2 * sp.Max(0, 2 - D),  # K = 2: M contains l_1's own neuron, which cancels
    "powers": 4 * K + K * (11 * _h2 - 13 * L + 4)
    + K * ((2 * _h2 - 2) + 3 * _rp + 3 * (_rp + 2 * sp.Max(0, _rp - _h2 / 2)) + (_rr - _rp)) + d * L,
    "squarings": K * (_last + 1 + (m - 1)) + m * d,
    "products": 6 * d * K + K,
    "newton": 4 * (d * K + 3 * Z_P + d) + 2 * (K + 1) + 28 * d + 24 * d * (J - 2) + (J - 1),
    "output": 4 * d,
}
PARAMS = sp.Add(*PARAMS_BY_GROUP.values())
LAYERS_BY_GROUP = {"clip": 1, "quadratic": 1, "tournament": D, "min": 1, "powers": L,
                   "squarings": m, "products": 1, "newton": J}

SIZE_ARGS = (d, K, D, nu, n, L, m, J, Z_A, Z_P, Z_0)


def generated():
    """(name, arguments, expression, doc) for bounds._generated."""
    return [
        ("cert_g_closed", (t, d, R, M2, lam_min), G_CLOSED, "G(R) = (sqrt(d) R + alpha M_2) / lambda_min"),
        ("cert_cs_closed", (t, d, p, M2, sig_max, lam_min), CS_CLOSED,
         "C_s = (2 alpha M_2 + sigma_max sqrt(d + 2p)) / lambda_min >= ||s||_{L^{2p}(p_t)}"),
        ("cert_moment_2p", (d, p), MOMENT_2P, "(E|Z|^{2p})^{1/(2p)} for Z ~ N(0, I_d)"),
        ("cert_cs_exact", (t, M2, sig_max, lam_min, moment), CS_EXACT,
         "C_s with the exact Gaussian moment mu_2p"),
        ("cert_p_out_closed", (t, d, R, Minf, sig_max), P_OUT_CLOSED,
         "P(x outside [-R,R]^d) <= d exp(-(R - alpha M_inf)^2 / (2 sigma_max^2))"),
        ("cert_r_closed", (t, d, p, eps, Minf, sig_max, Cs, G), R_CLOSED,
         "closed-form sufficient box radius for a given G"),
        ("cert_tail", (p, eps, Cs, G, P_out), TAIL, "tail term C_s P_out^{1/(2p)} + (G + eps/2) P_out^{1/p}"),
        ("cert_trunc", (K, G, B), TRUNC, "softmax truncation 2 (K-1) G e^{-B}"),
        ("cert_delta", (B, m, n), DELTA, "per-weight exp error 2^m r (1+r)^(2^m-1), r = (B/2^m)^{n+1}/(n+1)!"),
        ("cert_exp", (K, G, delta), EXP, "exp term 2 (K-1) G delta"),
        ("cert_theta", (K, delta), THETA, "|eps0| <= theta = (K-1)(1 + 2 delta)/(K+1)"),
        ("cert_recip", (G, theta, J), RECIP, "reciprocal term G theta^(2^J)"),
        ("cert_b_closed", (K, G, eps), B_CLOSED, "B = ln(12 K G / eps)"),
        ("cert_m_closed", (B,), M_CLOSED, "m = max(1, ceil(log2 B))"),
        ("cert_l_closed", (K, G, eps, m), L_CLOSED, "L = max(2, ceil(log2(N* - 1))), n = 2^L"),
        ("cert_j_closed", (K, G, eps), J_CLOSED, "J = max(3, ceil(log2(ln(6G/eps) / ln(1/theta_cf))))"),
        ("cert_depth", (D, L, m, J), DEPTH, "depth = D + L + m + J + 4"),
        ("cert_width", (d, K, n, L), WIDTH, "width = largest hidden layer"),
        ("cert_params", SIZE_ARGS, PARAMS, "nonzero weights and biases (generic parameters)"),
    ]


def choices_closed():
    """The closed-form parameter choices as (name, expression) pairs (for display)."""
    return [
        ("G", G_CLOSED), ("C_s", CS_CLOSED), ("R", R_CLOSED), ("B", B_CLOSED), ("m", M_CLOSED),
        ("N^*", NSTAR), ("L", L_CLOSED), ("n", 2**L), ("theta", THETA_CLOSED), ("J", J_CLOSED),
        ("D", sp.ceiling(sp.log(K, 2))),
    ]


def budget():
    return [("tail", TAIL), ("trunc", TRUNC), ("exp", EXP), ("delta", DELTA), ("recip", RECIP), ("theta", THETA)]


def sizes():
    return [("depth", DEPTH), ("width", WIDTH), ("params", PARAMS)]


def display(expr):
    """expr with alpha = e^{-t} written out."""
    return expr.subs(alpha, sp.exp(-t))


def render(kind: str = "text") -> str:
    """All formulas as LaTeX (kind='latex') or plain text."""
    fmt = sp.latex if kind == "latex" else sp.sstr
    lines = []
    for title, items in (("parameter choices (closed form)", choices_closed()),
                         ("error budget", budget()), ("sizes", sizes())):
        lines.append(f"% {title}" if kind == "latex" else f"# {title}")
        for name, expr in items:
            lhs = sp.latex(sp.Symbol(name)) if kind == "latex" else name
            lines.append(f"{lhs} = {fmt(display(expr))}")
    return "\n".join(lines)
