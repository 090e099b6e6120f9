"""The constructive ReLU-ReQU network for the mixture score at a fixed time t.

For x in the box [-R, R]^d the network computes, with exact gadgets
(:mod:`numcore.gadgets`) and three controlled approximations,

    s(x, t) = sum_k w_k g_k,   g_k = -P_k (x - alpha mu_k),   w = softmax(l),
    l_k = log pi_k - 1/2 log det S_k - 1/2 |A_k (x - alpha mu_k)|^2,   A_k = S_k^{-1/2}.

Layers (depth = D + L + m + J + 4, D = ceil(log2 K), L = ceil(log2 n)):

    clip        xi = clip(x, -R, R) + R = ReLU(x + R) - ReLU(x - R)        in [0, 2R]^d
    quadratic   q_k = |A_k (xi - R - alpha mu_k)|^2; logits shifted by C so l_k + C >= 0
    tournament  M = max_k l_k by max(a, b) = a + ReLU(b - a)           (D layers)
    min         y_k = min(M - l_k, B) / 2^m = (B - ReLU(B - M + l_k)) / 2^m   in [0, 1]
    powers      y, y^2, ..., y^n by products of earlier powers          (L layers)
    squarings   e_k = T_n(-y_k)^(2^m),  T_n = degree-n Taylor polynomial of exp   (m layers)
    products    e_k xi_j, and h = sum_k e_k g_k, S = sum_k e_k (affine)
    Newton      h c prod_{i<J} (1 + eps0^(2^i)),  eps0 = 1 - c S,  c = 2 / (K + 1)   (J layers)
    output      N = (that product) = h (1 - eps0^(2^J)) / S

The arg-max term has y = 0 and e = 1 exactly, so S >= 1.  The three errors
(truncation at B, Taylor + squarings, reciprocal) are bounded in
:mod:`bounds.certificate`.  Outside the box the network returns its value at
the clipped point; that tail is bounded, not approximated.

h is carried divided by a scale (2 K G) so the product gadgets work with
numbers of order one (round-off), and multiplied back in the output map.
"""

from __future__ import annotations

import math

import numpy as np

from .gadgets import Aff, LayerBuilder, combine, inputs, output_map
from .mixture import GaussianMixture
from .network import Network


def _component_pair(mix: GaussianMixture, s_k: np.ndarray, U: np.ndarray | None):
    """(A_k, P_k) for eigenvalues s_k in basis U (None: the identity), with round-off below 1e-14 of
    the largest entry set to zero (so diagonal covariances give exactly diagonal matrices)."""
    if U is None:
        return np.diag(s_k ** -0.5), np.diag(1.0 / s_k)
    A = (U * s_k ** -0.5) @ U.T
    P = (U / s_k) @ U.T
    for M in (A, P):
        M[np.abs(M) < 1e-14 * np.abs(M).max()] = 0.0
        M[:] = 0.5 * (M + M.T)
    return A, P


def log_normalisers(mix: GaussianMixture, t: float) -> np.ndarray:
    """logc_k = log pi_k - 1/2 log det S_k(t)."""
    return np.log(mix.weights) - 0.5 * np.log(mix.marginal_eigvals(t)).sum(1)


def component_matrices(mix: GaussianMixture, t: float):
    """(A_k = S_k^{-1/2}, P_k = S_k^{-1}, logc_k = log pi_k - 1/2 log det S_k) at time t, (K, d, d) each.

    Round-off below 1e-14 of the largest entry is set to zero, so diagonal
    covariances give exactly diagonal matrices."""
    s = mix.marginal_eigvals(t)
    K, d = s.shape
    A = np.zeros((K, d, d))
    P = np.zeros((K, d, d))
    for k in range(K):
        A[k], P[k] = _component_pair(mix, s[k], None if mix.identity_basis else mix.basis[mix.group[k]])
    return A, P, log_normalisers(mix, t)


def component_counts(mix: GaussianMixture, t: float) -> tuple[int, int, np.ndarray]:
    """(nonzeros of all A_k, of all P_k, logc) as :func:`component_matrices` would give them, one
    matrix at a time (components with the same basis and eigenvalues share one count)."""
    s = mix.marginal_eigvals(t)
    if mix.identity_basis:
        return int(np.count_nonzero(s ** -0.5)), int(np.count_nonzero(1.0 / s)), log_normalisers(mix, t)
    seen: dict = {}
    Z_A = Z_P = 0
    for k in range(mix.K):
        g = int(mix.group[k])
        key = (g, s[k].tobytes())
        if key not in seen:
            A, P = _component_pair(mix, s[k], mix.basis[g])
            seen[key] = (int(np.count_nonzero(A)), int(np.count_nonzero(P)))
        Z_A += seen[key][0]
        Z_P += seen[key][1]
    return Z_A, Z_P, log_normalisers(mix, t)


def box_radii(mix: GaussianMixture, t: float, R: float) -> np.ndarray:
    """r_k = max_{x in [-R,R]^d} |x - alpha mu_k| = |R + alpha |mu_k||_2."""
    alpha = math.exp(-t)
    return np.sqrt(((R + alpha * np.abs(mix.means)) ** 2).sum(1))


def logit_shift(mix: GaussianMixture, t: float, R: float) -> float:
    """C with l_k + C >= 1 on the box: C = max_k (r_k^2 / (2 lambda_min(S_k)) - logc_k) + 1."""
    logc = log_normalisers(mix, t)
    lmin = mix.marginal_eigvals(t).min(1)
    return float(np.max(box_radii(mix, t, R) ** 2 / (2 * lmin) - logc) + 1.0)


def build_fixed_t(mix: GaussianMixture, t: float, *, R: float, B: float, m: int, n: int, J: int,
                  G: float) -> Network:
    """Materialize the Part A network for the given parameter choices (see module docstring)."""
    if mix.K < 2:
        raise ValueError("the construction needs K >= 2 components")
    if n < 3 or m < 1 or J < 3:
        raise ValueError(f"n = {n}, m = {m}, J = {J}: expected n >= 3, m >= 1, J >= 3")
    d, K = mix.d, mix.K
    alpha = math.exp(-t)
    A, P, logc = component_matrices(mix, t)
    C = logit_shift(mix, t, R)
    layers = []
    close = layer_closer(layers)

    # clip: xi = ReLU(x + R) - ReLU(x - R) in [0, 2R]
    x = inputs(d)
    lb = LayerBuilder(d, "clip")
    xi = [lb.relu(x[i] + R) - lb.relu(x[i] - R) for i in range(d)]
    width = close(lb)

    # quadratic forms q_k = |A_k (xi - R - alpha mu_k)|^2, logits l_k + C
    lb = LayerBuilder(width, "quadratic")
    logits = []
    for k in range(K):
        centred = [xi[i] - (R + alpha * mix.means[k, i]) for i in range(d)]
        q = Aff()
        for j in range(d):
            q = q + lb.square(combine(centred, A[k, j]))
        logits.append(q * -0.5 + (logc[k] + C))
    xi = [lb.relu(f) for f in xi]
    width = close(lb)

    width, e, (xi,) = softmax_stages(layers, width, logits, [xi], K=K, B=B, m=m, n=n)

    # products e_k xi_j; h = sum_k e_k g_k = sum_k e_k c_k - sum_k P_k (e_k xi), c_k = P_k (R + alpha mu_k)
    lb = LayerBuilder(width, "products")
    prod = [[lb.mul_pos(e[k], xi[j]) for j in range(d)] for k in range(K)]
    ep = [lb.relu(f) for f in e]
    width = close(lb)
    scale = 2.0 * K * G
    c = 2.0 / (K + 1)
    hs = []
    for i in range(d):
        f = Aff()
        for k in range(K):
            ck = P[k, i] @ (R + alpha * mix.means[k])
            f = f + ep[k] * ck - combine(prod[k], P[k, i])
        hs.append(f * (c / scale))
    eps0 = 1.0 - c * combine(ep, np.ones(K))

    width, hs = newton_stages(layers, width, hs, eps0, J)

    W_out, b_out = output_map([f * scale for f in hs], width)
    meta = {"t": t, "R": R, "B": B, "m": m, "n": n, "J": J, "L": math.ceil(math.log2(n)),
            "D": math.ceil(math.log2(K)), "G": G,
            "logit_shift": C, "h_scale": scale}
    return Network(layers, W_out, b_out, meta)


def layer_closer(layers):
    """A function that closes a LayerBuilder into ``layers`` and returns its width."""
    def close(builder):
        layers.append(builder.close())
        return len(builder.rows)

    return close


def softmax_stages(layers, width, logits, carry, *, K, B, m, n):
    """Tournament max, min(M - l_k, B)/2^m, powers and squarings: e_k = T_n(-y_k)^(2^m).

    logits: K forms >= 0; carry: groups (lists) of forms >= 0 passed through every
    layer with one ReLU each.  Returns (width, e, carry)."""
    close = layer_closer(layers)

    def pass_all(lb):
        return [[lb.relu(f) for f in group] for group in carry]

    vals = logits
    D = math.ceil(math.log2(K))
    for level in range(D):
        lb = LayerBuilder(width, f"tournament{level + 1}")
        passed = [lb.relu(f) for f in logits]
        nxt = []
        for i in range(0, len(vals) - 1, 2):
            a, b = vals[i], vals[i + 1]
            base = passed[i] if level == 0 else lb.relu(a)
            nxt.append(base + lb.relu(b - a))
        if len(vals) % 2:
            nxt.append(passed[-1] if level == 0 else lb.relu(vals[-1]))
        logits, vals = passed, nxt
        carry = pass_all(lb)
        width = close(lb)
    M = vals[0]

    # y_k = min(M - l_k, B) / 2^m
    lb = LayerBuilder(width, "min")
    y = [(B - lb.relu(B - M + logits[k])) / 2.0**m for k in range(K)]
    carry = pass_all(lb)
    width = close(lb)

    # powers y^1..y^n, L = ceil(log2 n) layers
    L = math.ceil(math.log2(n))
    pw = [{1: y[k]} for k in range(K)]
    for l in range(1, L + 1):
        lb = LayerBuilder(width, f"powers{l}")
        h = 2 ** (l - 1)
        for k in range(K):
            old, new = pw[k], {}
            for j in range(1, h + 1):
                new[j] = lb.relu(old[j])
            for j in range(1, min(n - h, h - 1) + 1):
                new[h + j] = lb.mul_pos(old[h], old[j])
            if n - h >= h:
                new[2 * h] = lb.square_pos(old[h])
            pw[k] = new
        carry = pass_all(lb)
        width = close(lb)

    # e_k = T_n(-y_k)^(2^m): m exact squarings of a positive number
    e = [Aff(const=1.0) + combine([pw[k][i] for i in range(1, n + 1)],
                                  [(-1.0) ** i / math.factorial(i) for i in range(1, n + 1)])
         for k in range(K)]
    for r in range(m):
        lb = LayerBuilder(width, f"squaring{r + 1}")
        e = [lb.square_pos(f) for f in e]
        carry = pass_all(lb)
        width = close(lb)
    return width, e, carry


def newton_stages(layers, width, hs, eps0, J):
    """hs c prod_{i<J} (1 + eps0^(2^i)) in J layers (hs already holds the factor c)."""
    close = layer_closer(layers)
    E = eps0
    for i in range(1, J + 1):
        lb = LayerBuilder(width, f"newton{i}")
        hs = [lb.mul(f, 1.0 + E) for f in hs]
        if i < J:
            E = lb.square(E) if i == 1 else lb.square_pos(E)
        width = close(lb)
    return width, hs
