"""The constructive ReLU-ReQU score network with the time as an input (t in [delta, T]).

Input (x, t) in R^{d+1}.  In component k's eigenbasis (z = U_k^T x, m_k = U_k^T mu_k)

    l_k = log pi_k + sum_i ell_{k,i}(t) - 1/2 sum_i f_{k,i}(t) (z_i - alpha(t) m_{k,i})^2,
    g_k = -U_k diag(f_k(t)) (z - alpha(t) m_k),   s = sum_k softmax(l)_k g_k,

so the network first computes the time coefficients alpha, f_sigma, ell_sigma
(:mod:`numcore.timecoef`: hats on geometric slices times Chebyshev polynomials,
evaluated by the exact recurrences T_{h+j} = 2 T_h T_j - T_{h-j},
T_{2h} = 2 T_h^2 - 1), then runs the fixed-t machinery of
:mod:`numcore.scorenet` on the resulting logits and component scores.

Layers (depth = D + L + m + J + Lc + 9, Lc = ceil(log2 N)):

    clip        xi = clip(x) + R;  t~ - delta = ReLU(t - delta) - ReLU(t - T)
    time        knots ReLU(t~ - tau_j), clipped zeta_j (two ReLUs per slice)
    chebyshev   T_1..T_N(zeta_j) per slice, hats passed                 (Lc layers)
    hatprod     hat_j T_i(zeta_j): every coefficient is an affine form of these
    coef        alpha, f_sigma (F distinct eigenvalues), c_k = log pi_k + sum_i ell + shift
    quad1       u_{k,i} = (U_k^T (xi - R))_i - alpha m_{k,i},  u^2
    quad2       q_k = sum_sigma f_sigma (sum of u^2 with that eigenvalue)
    tournament, min, powers, squarings   as for fixed t (carrying xi, alpha, f)
    products1   e_k f_sigma
    products2   (e_k f_sigma) u_{k,i};  h = -sum_k U_k (.)
    Newton      as for fixed t (J layers)
"""

from __future__ import annotations

import math

import numpy as np

from .gadgets import Aff, LayerBuilder, combine, inputs, output_map
from .mixture import GaussianMixture
from .network import Network
from .scorenet import layer_closer, newton_stages, softmax_stages
from .timecoef import Coefficients


def eigen_layout(mix: GaussianMixture):
    """(U (K, d, d) bases, rotated means m (K, d), sigma index (K, d) into the distinct eigenvalues)."""
    K, d = mix.K, mix.d
    if mix.identity_basis:
        U = np.broadcast_to(np.eye(d), (K, d, d)).copy()
    else:
        U = mix.basis[mix.group].copy()
        U[np.abs(U) < 1e-15] = 0.0
    m = np.einsum("kji,kj->ki", U, mix.means)
    sig = np.unique(mix.eigvals)
    idx = np.searchsorted(sig, mix.eigvals)
    return U, m, idx, sig


def eigen_counts(mix: GaussianMixture):
    """(nonzeros of all U_k, zero entries of the rotated means, sigma index, distinct eigenvalues) as
    :func:`eigen_layout` gives them, without building the (K, d, d) bases."""
    sig = np.unique(mix.eigvals)
    idx = np.searchsorted(sig, mix.eigvals)
    if mix.identity_basis:
        return mix.K * mix.d, int(np.count_nonzero(mix.means == 0.0)), idx, sig
    Z_U = Z_m = 0
    for g in range(mix.basis.shape[0]):
        U = mix.basis[g].copy()
        U[np.abs(U) < 1e-15] = 0.0
        users = np.nonzero(mix.group == g)[0]
        Z_U += int(np.count_nonzero(U)) * users.size
        Z_m += int(np.count_nonzero(mix.means[users] @ U == 0.0))
    return Z_U, Z_m, idx, sig


def build_time_input(mix: GaussianMixture, coefs: Coefficients, *, R: float, B: float, m: int, n: int,
                     J: int, G: float, shift: float, cshift: float) -> Network:
    """Materialize the time-input network (see module docstring)."""
    if mix.K < 2:
        raise ValueError("the construction needs K >= 2 components")
    d, K = mix.d, mix.K
    U, mrot, sidx, sig = eigen_layout(mix)
    F = sig.size
    tau, iv, N = coefs.tau, coefs.intervals, coefs.N
    delta, T = float(tau[0]), float(tau[-1])
    S = tau.size - 1
    layers = []
    close = layer_closer(layers)

    # clip x to the box and t to [delta, T]
    z = inputs(d + 1)
    lb = LayerBuilder(d + 1, "clip")
    xi = [lb.relu(z[i] + R) - lb.relu(z[i] - R) for i in range(d)]
    tt = lb.relu(z[d] - delta) - lb.relu(z[d] - T)  # t~ - delta in [0, T - delta]
    width = close(lb)

    # knots and clipped Chebyshev variables
    lb = LayerBuilder(width, "time")
    rho = [lb.relu(tt)] + [lb.relu(tt - (tau[i] - delta)) for i in range(1, S)]
    zeta = []
    for lo, hi in iv:
        u = (tt * 2.0 - 2.0 * (lo - delta)) / (hi - lo)  # zeta + 1, in [0, 2] on the slice
        zeta.append(lb.relu(u) - lb.relu(u - 2.0) - 1.0)
    xi = [lb.relu(f) for f in xi]
    width = close(lb)
    hats = []
    for j in range(S + 1):
        v = np.zeros(S + 1)
        v[j] = 1.0
        slope = np.diff(v) / np.diff(tau)
        f = Aff(const=v[0]) + rho[0] * slope[0]
        for i in range(1, S):
            if slope[i] != slope[i - 1]:
                f = f + rho[i] * (slope[i] - slope[i - 1])
        hats.append(f)

    # Chebyshev polynomials T_1..T_N of every zeta_j
    Lc = math.ceil(math.log2(N))
    cheb = [{1: zj} for zj in zeta]
    for c in range(1, Lc + 1):
        lb = LayerBuilder(width, f"chebyshev{c}")
        h = 2 ** (c - 1)
        for j in range(S + 1):
            old = cheb[j]
            new = {i: lb.ident(old[i]) for i in range(1, h + 1)}
            new[0] = Aff(const=1.0)
            for i in range(1, min(h - 1, N - h) + 1):
                new[h + i] = lb.mul(old[h], old[i]) * 2.0 - new[h - i]
            if N - h >= h:
                new[2 * h] = lb.square(old[h]) * 2.0 - 1.0
            del new[0]
            cheb[j] = new
        hats = [lb.relu(f) for f in hats]
        xi = [lb.relu(f) for f in xi]
        width = close(lb)

    # hat_j T_i(zeta_j): the coefficients are affine forms of these products
    lb = LayerBuilder(width, "hatprod")
    basis = [[lb.relu(hats[j])] + [lb.mul(cheb[j][i], hats[j]) for i in range(1, N + 1)] for j in range(S + 1)]
    xi = [lb.relu(f) for f in xi]
    width = close(lb)

    def coef_form(r):
        f = Aff()
        for j in range(S + 1):
            f = f + combine(basis[j], coefs.coef[r, j])
        return f

    lb = LayerBuilder(width, "coef")
    alpha = lb.relu(coef_form(0))
    fs = [lb.relu(coef_form(1 + s)) for s in range(F)]
    ells = [coef_form(1 + F + s) for s in range(F)]
    ck = [lb.relu(combine([ells[sidx[k, i]] for i in range(d)], np.ones(d)) + (math.log(mix.weights[k]) + cshift))
          for k in range(K)]
    xi = [lb.relu(f) for f in xi]
    width = close(lb)

    def centred(xi_, alpha_):
        """u_{k,i} = (U_k^T (xi - R))_i - alpha m_{k,i} as forms."""
        return [[combine(xi_, U[k][:, i]) - alpha_ * mrot[k, i] - R * U[k][:, i].sum() for i in range(d)]
                for k in range(K)]

    lb = LayerBuilder(width, "quad1")
    w2 = [[lb.square(u) for u in row] for row in centred(xi, alpha)]
    alpha, fs, ck, xi = lb.relu(alpha), [lb.relu(f) for f in fs], [lb.relu(f) for f in ck], [lb.relu(f) for f in xi]
    width = close(lb)

    lb = LayerBuilder(width, "quad2")
    logits = []
    for k in range(K):
        q = Aff()
        for s in np.unique(sidx[k]):
            q = q + lb.mul_pos(fs[s], combine([w2[k][i] for i in range(d) if sidx[k, i] == s],
                                              np.ones(int((sidx[k] == s).sum()))))
        logits.append(q * -0.5)
    ck = [lb.relu(f) for f in ck]
    logits = [logits[k] + ck[k] + (shift - cshift) for k in range(K)]
    alpha, fs, xi = lb.relu(alpha), [lb.relu(f) for f in fs], [lb.relu(f) for f in xi]
    width = close(lb)

    width, e, (xi, (alpha,), fs) = softmax_stages(layers, width, logits, [xi, [alpha], fs], K=K, B=B, m=m, n=n)

    lb = LayerBuilder(width, "products1")
    ef = [{int(s): lb.mul_pos(e[k], fs[s]) for s in np.unique(sidx[k])} for k in range(K)]
    ep = [lb.relu(f) for f in e]
    xi, alpha = [lb.relu(f) for f in xi], lb.relu(alpha)
    width = close(lb)

    lb = LayerBuilder(width, "products2")
    u = centred(xi, alpha)
    v = [[lb.mul(ef[k][int(sidx[k, i])], u[k][i]) for i in range(d)] for k in range(K)]
    ep = [lb.relu(f) for f in ep]
    width = close(lb)
    scale = 2.0 * K * G
    c = 2.0 / (K + 1)
    hs = []
    for l in range(d):
        f = Aff()
        for k in range(K):
            f = f - combine(v[k], U[k][l])
        hs.append(f * (c / scale))
    eps0 = 1.0 - c * combine(ep, np.ones(K))
    width, hs = newton_stages(layers, width, hs, eps0, J)
    W_out, b_out = output_map([f * scale for f in hs], width)
    meta = {"delta": delta, "T": T, "R": R, "B": B, "m": m, "n": n, "J": J, "N_ch": N, "slices": S + 1,
            "G": G, "logit_shift": shift, "h_scale": scale}
    return Network(layers, W_out, b_out, meta)
