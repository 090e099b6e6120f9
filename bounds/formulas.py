"""Symbolic Lipschitz bounds for the probability-flow velocity (sympy).

With alpha = e^{-t} and beta2 = 1 - e^{-2t}, every covariance eigenvalue lam of
p_0 becomes s(lam) = alpha^2 lam + beta2 in p_t.  The velocity Jacobian

    J = -I - H = (E_w[P] - I) - Cov_w[g]

has the spectrum of a matrix whose first part lies in [lo, hi] and whose
second part is positive semi-definite with top eigenvalue at most V:

    hi = 1/s(lam_min) - 1 = alpha^2 (1 - lam_min) / s(lam_min)
    lo = 1/s(lam_max) - 1 = alpha^2 (1 - lam_max) / s(lam_max)
    V  = lambda_max Cov_w[g] <= (diameter of {g_k})^2 / 4

so lambda(J) lies in [lo - V, hi] (Weyl) and

    L_tri      = max(|hi|, |lo|) + V          (triangle form)
    L_sharp    = max(|hi|, |lo - V|)          (both ends of the spectrum)
    m_onesided = V - lo                        (top eigenvalue of -J: growth rate backwards in t)

The spread V comes in two forms:

* shared covariance Sigma = U diag(lam) U^T (isotropic included), global:
  V = alpha^2 D_P(t)^2 / 4,  D_P(t)^2 = max_{k,j} sum_i E_{kj,i} / s(lam_i)^2,
  E_{kj,i} = ((U^T (mu_k - mu_j))_i)^2.  For Sigma = sigma^2 I this is
  V = alpha^2 D^2 / (4 s^2), the paper's b(t).
* per-component covariances, local on the ball ||x|| <= R:
  ||g_k - g_j|| <= ||P_k - P_j|| R + alpha ||P_k mu_k - P_j mu_j|| =: Delta_kj,
  ||P_k - P_j|| <= alpha^2 ||Sigma_k - Sigma_j|| / (s(lmin_k) s(lmin_j)),
  ||P_k mu_k - P_j mu_j|| <= min(|mu_k - mu_j| / s(lmin_k) + ||P_k - P_j|| |mu_j|, k <-> j),
  V = max_{k,j} Delta_kj^2 / 4 (the diameter form), and, usually much smaller, the weighted
  pair form: with A = P_k - P_j = E diag(a) E^T, b = alpha (P_k mu_k - P_j mu_j),
  phi = l_k - l_j (so grad phi = g_k - g_j = b - A x) and the split of the eigen-directions
  into a set with a_i > 0 (largest a_+) and the rest (largest |a_i| there a_-):
      ||g_k - g_j||^2 <= C_kj - D_kj phi(x)  on the ball,
      C_kj = 2 a_+ (phi(0) + Q + b_N R + a_- R^2 / 2) + (b_N + a_- R)^2,   D_kj = 2 a_+,
      Q = sum_{a_i > 0 chosen} b_i^2 / (2 a_i),   b_N = |b restricted to the rest|,
  and since lambda_max Cov_w[g] <= sum_{k<j} w_k w_j ||g_k - g_j||^2 with phi = log(w_k / w_j),
      V <= max C^+ (K - 1) / (2K) + max D (K - 1) / sqrt(8K)
  (sum_{k<j} w_k w_j <= (K-1)/(2K); sum_{k<j} w_k w_j |log(w_k/w_j)| <= (K-1)/sqrt(8K) by the
  logarithmic-mean and Cauchy-Schwarz inequalities), or, sharper, with q = max over the simplex of
  w^T C^+ w (C^+ the matrix of the C_kj^+, zero diagonal; exact by enumerating faces for K <= 8):
      V <= q / 2 + max D (K - 1) / sqrt(8K).
  lipschitz.py takes the smallest form.
  The radius R(t) = max_k alpha |mu_k| + sqrt(tr S_k + 2 sqrt(u) ||S_k||_F + 2 u ||S_k||)
  holds p_t-mass >= 1 - e^{-u} (Laurent-Massart tail of ||N(0, S_k)||^2).

:func:`generated` lists the expressions that :mod:`bounds.codegen` turns into
numpy code; :func:`display` substitutes alpha and beta2 for LaTeX.
"""

from __future__ import annotations

import sympy as sp

t = sp.Symbol("t", positive=True)
alpha = sp.Symbol("alpha", positive=True)
beta2 = sp.Symbol("beta2", positive=True)
lam, lam_min, lam_max = sp.symbols("lambda lambda_min lambda_max", positive=True)
E = sp.Symbol("E", nonnegative=True)
Dp2 = sp.Symbol("D_P^2", nonnegative=True)
hi, lo = sp.symbols("h l", real=True)
V = sp.Symbol("V", nonnegative=True)
lmin_k, lmin_j, lmax_k = sp.symbols("lambda_min_k lambda_min_j lambda_max_k", positive=True)
dS, dmu, nmu_k, nmu_j, R = sp.symbols(
    r"\|\Sigma_k-\Sigma_j\| \|\mu_k-\mu_j\| \|\mu_k\| \|\mu_j\| R", nonnegative=True
)
a_plus, a_minus = sp.symbols("a_+ a_-", nonnegative=True)
phi0 = sp.Symbol(r"\varphi_0", real=True)
Qp, bN = sp.symbols("Q b_N", nonnegative=True)
C_pair, D_pair = sp.Symbol("C", real=True), sp.Symbol("D", nonnegative=True)
Kc = sp.Symbol("K", positive=True)
trS, frob2, u, d = sp.symbols(r"\mathrm{tr}\Sigma_k \|\Sigma_k\|_F^2 u d", positive=True)


def s_of(x):
    """Eigenvalue of S(t) for an eigenvalue x of Sigma."""
    return alpha**2 * x + beta2


def edge(x):
    """1/s(x) - 1 written without cancellation."""
    return alpha**2 * (1 - x) / s_of(x)


L_TRI = sp.Max(sp.Abs(hi), sp.Abs(lo)) + V
L_SHARP = sp.Max(sp.Abs(hi), sp.Abs(lo - V))
M_ONESIDED = V - lo

PAIR_TERM = E / s_of(lam) ** 2
SHARED_SPREAD = alpha**2 * Dp2 / 4

_dP = alpha**2 * dS / (s_of(lmin_k) * s_of(lmin_j))
_dPmu = sp.Min(dmu / s_of(lmin_k) + _dP * nmu_j, dmu / s_of(lmin_j) + _dP * nmu_k)
BALL_DELTA = _dP * R + alpha * _dPmu
BALL_SPREAD_PAIR = BALL_DELTA**2 / 4

# weighted pair form: ||g_k - g_j||^2 <= C - D phi on the ball, combined over pairs with the weights
PAIR_C = 2 * a_plus * (phi0 + Qp + bN * R + a_minus * R**2 / 2) + (bN + a_minus * R) ** 2
PAIR_D = 2 * a_plus
WEIGHTED_SPREAD = sp.Max(C_pair, 0) * (Kc - 1) / (2 * Kc) + D_pair * (Kc - 1) / sp.sqrt(8 * Kc)
q_simplex = sp.Symbol("q", nonnegative=True)  # max over the simplex of w^T C^+ w (zero diagonal)
WEIGHTED_SPREAD_QP = q_simplex / 2 + D_pair * (Kc - 1) / sp.sqrt(8 * Kc)

_tr = alpha**2 * trS + d * beta2
_frob = sp.sqrt(alpha**4 * frob2 + 2 * alpha**2 * beta2 * trS + d * beta2**2)
BALL_RADIUS_K = alpha * nmu_k + sp.sqrt(_tr + 2 * sp.sqrt(u) * _frob + 2 * u * s_of(lmax_k))


def generated():
    """(name, arguments, expression, doc) for every function of bounds._generated.

    Arguments named ``t`` get ``alpha = exp(-t)`` and ``beta2 = -expm1(-2 t)``."""
    return [
        ("edge", (t, lam), edge(lam), "1/s(lam) - 1 = alpha^2 (1 - lam) / s(lam): ends of spec(E_w[P] - I)"),
        ("pair_term", (t, lam, E), PAIR_TERM, "E / s(lam)^2: one eigen-direction's share of |P (mu_k - mu_j)|^2"),
        ("shared_spread", (t, Dp2), SHARED_SPREAD, "V = alpha^2 D_P^2 / 4 for a shared covariance"),
        ("ball_spread_pair", (t, lmin_k, lmin_j, dS, dmu, nmu_k, nmu_j, R), BALL_SPREAD_PAIR,
         "Delta_kj(R)^2 / 4 for per-component covariances on the ball |x| <= R"),
        ("pair_c", (a_plus, a_minus, phi0, Qp, bN, R), PAIR_C,
         "C_kj: ||g_k - g_j||^2 <= C_kj - D_kj (l_k - l_j) on the ball |x| <= R"),
        ("pair_d", (a_plus,), PAIR_D, "D_kj = 2 a_+"),
        ("weighted_spread", (C_pair, D_pair, Kc), WEIGHTED_SPREAD,
         "V >= lambda_max Cov_w[g] from the largest C_kj and D_kj over pairs of K components"),
        ("weighted_spread_qp", (q_simplex, D_pair, Kc), WEIGHTED_SPREAD_QP,
         "V >= lambda_max Cov_w[g] from q = max_w w^T C^+ w over the simplex and the largest D_kj"),
        ("ball_radius_k", (t, nmu_k, trS, frob2, lmax_k, u, d), BALL_RADIUS_K,
         "radius holding component k's p_t-mass >= 1 - e^{-u}"),
        ("l_tri", (hi, lo, V), L_TRI, "max(|h|, |l|) + V"),
        ("l_sharp", (hi, lo, V), L_SHARP, "max(|h|, |l - V|)"),
        ("m_onesided", (hi, lo, V), M_ONESIDED, "V - l"),
    ]


def display(expr):
    """expr with alpha = e^{-t} and beta2 = 1 - e^{-2t} written out."""
    return expr.subs({alpha: sp.exp(-t), beta2: 1 - sp.exp(-2 * t)})


def isotropic_closed_form(sigma2, D, which: str):
    """The bound for Sigma = sigma2 I and mean diameter D as one expression in t.

    Here hi = lo = a(t) = 1/s - 1 and V = b(t) = alpha^2 D^2 / (4 s^2)."""
    a = edge(lam).subs(lam, sigma2)
    b = SHARED_SPREAD.subs(Dp2, D**2 / s_of(sigma2) ** 2)
    form = {"tri": L_TRI, "sharp": L_SHARP, "onesided": M_ONESIDED}[which]
    return display(form.subs({hi: a, lo: a, V: b}))
