"""Compiled batched kernels for the OU marginal p_t of a Gaussian mixture.

All kernels take the time-t marginal in the spectral form built by
:func:`numcore.marginal.at_time`:

    inv_s[k, i] = 1 / s_{k,i}(t),   s_{k,i}(t) = alpha^2 lam_{k,i} + 1 - alpha^2
    logc[k]     = log pi_k - 1/2 sum_i log s_{k,i} - d/2 log(2 pi)

and ``mats`` of shape (G, d, d) with ``mrot`` of shape (K, d) in one of three modes:

* G = 0 (identity basis) or G = 1 (one shared eigenbasis U = mats[0]):
  mrot[k] = alpha U^T mu_k, and with z = U^T x
      l_k = logc_k - 1/2 sum_i inv_s[k,i] (z_i - mrot[k,i])^2,   g_k = -diag(inv_s_k) (z - mrot_k)
  in rotated coordinates (rotated back once per point);
* G = K > 1 (covariances with their own bases): mats[k] = P_k(t) = S_k(t)^{-1},
  mrot[k] = alpha mu_k, and with r = x - mrot_k
      g_k = -P_k r,   l_k = logc_k + 1/2 r . g_k
  (one d x d product per component and point).

Then

    w = softmax(l)   (log-sum-exp),   s = sum_k w_k g_k               (score of p_t)
    H = -sum_k w_k P_k + sum_k w_k (g_k - s)(g_k - s)^T             (Hessian of log p_t, centred)
    J = -I - H                                                       (Jacobian of v = -x - s)

Loops run over chunks of points in parallel; every chunk owns its workspace.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import jitcache

_JIT = dict(cache=jitcache.enabled(), fastmath=False, nogil=True)


@nb.njit(**_JIT)
def _component_terms(x, inv_s, mrot, logc, mats, z, lk, gk):
    """Fill lk (logits) and gk (component scores: rotated for G <= 1, original for G = K);
    turn lk into normalised weights in place and return log p_t(x).  z: d workspace."""
    K, d = mrot.shape
    G = mats.shape[0]
    lmax = -np.inf
    if G > 1:
        for k in range(K):
            for i in range(d):
                z[i] = x[i] - mrot[k, i]
            q = 0.0
            for i in range(d):
                acc = 0.0
                for j in range(d):
                    acc += mats[k, i, j] * z[j]
                gk[k, i] = -acc
                q += z[i] * acc
            lk[k] = logc[k] - 0.5 * q
            if lk[k] > lmax:
                lmax = lk[k]
    else:
        if G == 0:
            for i in range(d):
                z[i] = x[i]
        else:
            for i in range(d):
                acc = 0.0
                for j in range(d):
                    acc += mats[0, j, i] * x[j]
                z[i] = acc
        for k in range(K):
            q = 0.0
            for i in range(d):
                r = z[i] - mrot[k, i]
                gk[k, i] = -inv_s[k, i] * r
                q += inv_s[k, i] * r * r
            lk[k] = logc[k] - 0.5 * q
            if lk[k] > lmax:
                lmax = lk[k]
    tot = 0.0
    for k in range(K):
        lk[k] = math.exp(lk[k] - lmax)
        tot += lk[k]
    for k in range(K):
        lk[k] /= tot
    return lmax + math.log(tot)


@nb.njit(**_JIT)
def _rotated_score(gk, w, mats, tmp, out):
    """out = sum_k w_k g_k in the original coordinates (rotated back by U when G = 1); tmp: d workspace."""
    K, d = gk.shape
    G = mats.shape[0]
    for i in range(d):
        out[i] = 0.0
    if G == 1:
        for i in range(d):
            tmp[i] = 0.0
        for k in range(K):
            for i in range(d):
                tmp[i] += w[k] * gk[k, i]
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += mats[0, i, j] * tmp[j]
            out[i] = acc
    else:
        for k in range(K):
            for i in range(d):
                out[i] += w[k] * gk[k, i]


def _chunks(n):
    threads = nb.get_num_threads()
    size = max(1, -(-n // (4 * threads)))
    return size, -(-n // size)


@nb.njit(parallel=True, **_JIT)
def _score_logp(x, inv_s, mrot, logc, mats, size, nchunks, score, logp, want_score):
    n, d = x.shape
    K = mrot.shape[0]
    for c in nb.prange(nchunks):
        z = np.empty(d)
        lk = np.empty(K)
        gk = np.empty((K, d))
        out = np.empty(d)
        tmp = np.empty(d)
        for p in range(c * size, min(n, (c + 1) * size)):
            logp[p] = _component_terms(x[p], inv_s, mrot, logc, mats, z, lk, gk)
            if want_score:
                _rotated_score(gk, lk, mats, tmp, out)
                for i in range(d):
                    score[p, i] = out[i]


@nb.njit(**_JIT)
def _hessian_point(x, inv_s, mrot, logc, mats, z, lk, gk, H):
    """Hessian of log p_t at x, written into H (d x d, original coordinates)."""
    K, d = mrot.shape
    G = mats.shape[0]
    _component_terms(x, inv_s, mrot, logc, mats, z, lk, gk)
    s = np.zeros(d)
    for k in range(K):
        for i in range(d):
            s[i] += lk[k] * gk[k, i]
    if G <= 1:
        # rotated coordinates: -sum w diag(inv_s) + centred covariance of gk
        Hr = np.zeros((d, d))
        for k in range(K):
            for i in range(d):
                Hr[i, i] -= lk[k] * inv_s[k, i]
            for i in range(d):
                ci = lk[k] * (gk[k, i] - s[i])
                for j in range(d):
                    Hr[i, j] += ci * (gk[k, j] - s[j])
        if G == 0:
            for i in range(d):
                for j in range(d):
                    H[i, j] = Hr[i, j]
        else:
            U = mats[0]
            R = (U @ Hr) @ U.T
            for i in range(d):
                for j in range(d):
                    H[i, j] = R[i, j]
    else:
        for i in range(d):
            for j in range(d):
                H[i, j] = 0.0
        for k in range(K):
            for i in range(d):
                ci = lk[k] * (gk[k, i] - s[i])
                for j in range(d):
                    H[i, j] += ci * (gk[k, j] - s[j]) - lk[k] * mats[k, i, j]


@nb.njit(parallel=True, **_JIT)
def _hessian(x, inv_s, mrot, logc, mats, size, nchunks, H):
    n, d = x.shape
    K = mrot.shape[0]
    for c in nb.prange(nchunks):
        z = np.empty(d)
        lk = np.empty(K)
        gk = np.empty((K, d))
        for p in range(c * size, min(n, (c + 1) * size)):
            _hessian_point(x[p], inv_s, mrot, logc, mats, z, lk, gk, H[p])


@nb.njit(parallel=True, **_JIT)
def _jacobian_spectrum(x, inv_s, mrot, logc, mats, iso, size, nchunks, out):
    """out[p] = (lambda_min(J), lambda_max(J)) for J = -I - H at each point.

    ``iso``: every inv_s row is constant and the basis is the identity or shared,
    so -sum w_k P_k = -c I and J's spectrum is c - 1 minus that of the rank-K
    centred covariance, taken from its K x K Gram matrix."""
    n, d = x.shape
    K = mrot.shape[0]
    for c in nb.prange(nchunks):
        z = np.empty(d)
        lk = np.empty(K)
        gk = np.empty((K, d))
        H = np.empty((d, d))
        s = np.empty(d)
        Gm = np.empty((K, K))
        for p in range(c * size, min(n, (c + 1) * size)):
            if iso and d > K:
                _component_terms(x[p], inv_s, mrot, logc, mats, z, lk, gk)
                cbar = 0.0
                for i in range(d):
                    s[i] = 0.0
                for k in range(K):
                    cbar += lk[k] * inv_s[k, 0]
                    for i in range(d):
                        s[i] += lk[k] * gk[k, i]
                for k in range(K):
                    for j in range(k + 1):
                        acc = 0.0
                        for i in range(d):
                            acc += (gk[k, i] - s[i]) * (gk[j, i] - s[i])
                        acc *= math.sqrt(lk[k] * lk[j])
                        Gm[k, j] = acc
                        Gm[j, k] = acc
                ev = np.linalg.eigvalsh(Gm)
                top = max(ev[-1], 0.0)
                out[p, 0] = cbar - 1.0 - top
                out[p, 1] = cbar - 1.0  # C has d - K >= 1 zero eigenvalues
            else:
                _hessian_point(x[p], inv_s, mrot, logc, mats, z, lk, gk, H)
                for i in range(d):
                    for j in range(d):
                        H[i, j] = -H[i, j]
                    H[i, i] -= 1.0
                ev = np.linalg.eigvalsh(H)
                out[p, 0] = ev[0]
                out[p, 1] = ev[-1]


@nb.njit(**_JIT)
def _scaled_add(nr, p, state):
    """Add e = nr^p to the scaled sums state = (M, sum (nr_i/M)^p, sum (nr_i/M)^(2p)), M = max nr_i,
    so that neither e nor e^2 underflows or overflows whatever p."""
    M = state[0]
    if nr > M:
        if M > 0.0:
            f = (M / nr) ** p
            state[1] = state[1] * f + 1.0
            state[2] = state[2] * (f * f) + 1.0
        else:
            state[1] = 1.0
            state[2] = 1.0
        state[0] = nr
    elif nr > 0.0:
        u = (nr / M) ** p
        state[1] += u
        state[2] += u * u


@nb.njit(parallel=True, **_JIT)
def _lp_sums(diff_a, diff_b, p, size, nchunks, part):
    """Per-chunk scaled sums (M, sum (e/M^p), sum (e/M^p)^2) of e = ||a - b||^p (rows); each norm is
    taken relative to the row's largest entry, so its square cannot underflow either."""
    n, d = diff_a.shape
    for c in nb.prange(nchunks):
        state = np.zeros(3)
        for r in range(c * size, min(n, (c + 1) * size)):
            big = 0.0
            for i in range(d):
                big = max(big, abs(diff_a[r, i] - diff_b[r, i]))
            acc = 0.0
            if big > 0.0:
                for i in range(d):
                    v = (diff_a[r, i] - diff_b[r, i]) / big
                    acc += v * v
            _scaled_add(big * math.sqrt(acc), p, state)
        for j in range(3):
            part[c, j] = state[j]


@nb.njit(parallel=True, **_JIT)
def _score_lp_sums(x, s_hat, p, inv_s, mrot, logc, mats, size, nchunks, part):
    """Fused: exact score at x, then per-chunk scaled sums of e = ||s_hat - s||^p (see _lp_sums)."""
    n, d = x.shape
    K = mrot.shape[0]
    for c in nb.prange(nchunks):
        z = np.empty(d)
        lk = np.empty(K)
        gk = np.empty((K, d))
        out = np.empty(d)
        tmp = np.empty(d)
        state = np.zeros(3)
        for r in range(c * size, min(n, (c + 1) * size)):
            _component_terms(x[r], inv_s, mrot, logc, mats, z, lk, gk)
            _rotated_score(gk, lk, mats, tmp, out)
            big = 0.0
            for i in range(d):
                big = max(big, abs(s_hat[r, i] - out[i]))
            acc = 0.0
            if big > 0.0:
                for i in range(d):
                    v = (s_hat[r, i] - out[i]) / big
                    acc += v * v
            _scaled_add(big * math.sqrt(acc), p, state)
        for j in range(3):
            part[c, j] = state[j]


@nb.njit(**_JIT)
def _stage(y, j, coef, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, out, k):
    """k = coef[j] s(scale[j] y, t_j): the PF-ODE field dy/drho at the j-th tabulated time."""
    d = y.shape[0]
    for i in range(d):
        x[i] = y[i] * scale[j]
    mj = mats[j] if mats.shape[0] > 1 else mats[0]
    _component_terms(x, inv_s[j], mrot[j], logc[j], mj, z, lk, gk)
    _rotated_score(gk, lk, mj, tmp, out)
    for i in range(d):
        k[i] = coef[j] * out[i]


@nb.njit(parallel=True, **_JIT)
def _flow_rk4(y, h, coef, scale, inv_s, mrot, logc, mats, size, nchunks):
    """Classical RK4 for dy/drho = coef(rho) s(scale(rho) y, t(rho)), y updated in place.

    Step i runs from rho_i to rho_i + h; its stages use the tabulated times j = 2i, 2i + 1, 2i + 2
    (rho_i, rho_i + h/2, rho_i + h), so the tables hold 2m + 1 times for m steps.  ``mats`` holds one
    entry (time-independent bases) or one per tabulated time (per-component precisions)."""
    n, d = y.shape
    K = mrot.shape[1]
    m = (coef.shape[0] - 1) // 2
    for c in nb.prange(nchunks):
        x = np.empty(d)
        z = np.empty(d)
        lk = np.empty(K)
        gk = np.empty((K, d))
        tmp = np.empty(d)
        out = np.empty(d)
        yp = np.empty(d)
        ys = np.empty(d)
        k = np.empty(d)
        acc = np.empty(d)
        for p in range(c * size, min(n, (c + 1) * size)):
            for i in range(d):
                yp[i] = y[p, i]
            for s in range(m):
                j = 2 * s
                _stage(yp, j, coef, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, out, k)
                for i in range(d):
                    acc[i] = k[i]
                    ys[i] = yp[i] + 0.5 * h * k[i]
                _stage(ys, j + 1, coef, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, out, k)
                for i in range(d):
                    acc[i] += 2.0 * k[i]
                    ys[i] = yp[i] + 0.5 * h * k[i]
                _stage(ys, j + 1, coef, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, out, k)
                for i in range(d):
                    acc[i] += 2.0 * k[i]
                    ys[i] = yp[i] + h * k[i]
                _stage(ys, j + 2, coef, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, out, k)
                for i in range(d):
                    yp[i] += (h / 6.0) * (acc[i] + k[i])
            for i in range(d):
                y[p, i] = yp[i]


@nb.njit(**_JIT)
def _denoise(y, two_sinh, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, out, D):
    """D = E[x_0 | x_t] at the VE point y, from p_t's tables at one time: D = y + 2 sinh(t) s(e^{-t} y, t)."""
    d = y.shape[0]
    for i in range(d):
        x[i] = y[i] * scale
    _component_terms(x, inv_s, mrot, logc, mats, z, lk, gk)
    _rotated_score(gk, lk, mats, tmp, out)
    for i in range(d):
        D[i] = y[i] + two_sinh * out[i]


@nb.njit(parallel=True, **_JIT)
def _solve_grid(y, sig, solver, two_sinh, scale, inv_s, mrot, logc, mats, size, nchunks):
    """Few-step samplers on the VE sigma nodes ``sig`` (N + 1, descending, > 0), y (n, d) updated in place.

    solver 0: Euler, 1: Heun, 2: DPM-Solver++(2M), with the steps of :mod:`numcore.samplers`; the marginal is
    tabulated at the N + 1 node times (``mats`` as in :func:`_flow_rk4`).  Each chunk of points steps
    through the grid together (the tables of one node are sliced once per chunk)."""
    n, d = y.shape
    K = mrot.shape[1]
    N = sig.shape[0] - 1
    for c in nb.prange(nchunks):
        lo = c * size
        hi = min(n, (c + 1) * size)
        x = np.empty(d)
        z = np.empty(d)
        lk = np.empty(K)
        gk = np.empty((K, d))
        tmp = np.empty(d)
        out = np.empty(d)
        y2 = np.empty(d)
        D = np.empty(d)
        Dold = np.empty((hi - lo, d))
        h_last = 0.0
        for s in range(N):
            a0, a1 = inv_s[s], inv_s[s + 1]
            m0, m1 = mrot[s], mrot[s + 1]
            l0, l1 = logc[s], logc[s + 1]
            M0 = mats[s] if mats.shape[0] > 1 else mats[0]
            M1 = mats[s + 1] if mats.shape[0] > 1 else mats[0]
            dt = sig[s + 1] - sig[s]
            h = math.log(sig[s]) - math.log(sig[s + 1])
            ratio = sig[s + 1] / sig[s]
            em = math.expm1(-h)
            r = h_last / h
            for p in range(lo, hi):
                yp = y[p]
                _denoise(yp, two_sinh[s], scale[s], a0, m0, l0, M0, x, z, lk, gk, tmp, out, D)
                if solver == 0:
                    for i in range(d):
                        yp[i] += dt * (yp[i] - D[i]) / sig[s]
                elif solver == 1:
                    for i in range(d):
                        tmp[i] = (yp[i] - D[i]) / sig[s]  # the slope at the start of the step
                        y2[i] = yp[i] + dt * tmp[i]
                    for i in range(d):
                        Dold[p - lo, i] = tmp[i]
                    _denoise(y2, two_sinh[s + 1], scale[s + 1], a1, m1, l1, M1, x, z, lk, gk, tmp, out, D)
                    for i in range(d):
                        yp[i] += 0.5 * dt * (Dold[p - lo, i] + (y2[i] - D[i]) / sig[s + 1])
                else:
                    for i in range(d):
                        Dd = D[i] if s == 0 else (1.0 + 0.5 / r) * D[i] - (0.5 / r) * Dold[p - lo, i]
                        yp[i] = ratio * yp[i] - em * Dd
                        Dold[p - lo, i] = D[i]
            h_last = h




@nb.njit(**_JIT)
def _denoise_vjp(y, v, sigma, two_sinh, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, out, vr, D, Jv):
    """At the VE point y and one tabulated time: D = E[x_0 | y] into D, J v into Jv (J = dD/dy, symmetric),
    and the return value v . dD/dsigma (at fixed y).

    With VE covariances C_k = Sigma_k + sigma^2 I, component scores g_k = -C_k^{-1}(y - mu_k), weights w and
    s = sum_k w_k g_k:  D = y + sigma^2 s,  J = I + sigma^2 (-sum_k w_k C_k^{-1} + sum_k w_k (g_k - s)(g_k - s)^T),
    dD/dsigma = 2 sigma s + sigma^2 sum_k w_k [(dl_k - sum_j w_j dl_j) g_k - 2 sigma C_k^{-1} g_k],
    dl_k = sigma (|C_k^{-1}(y - mu_k)|^2 - tr C_k^{-1}); evaluated from the OU marginal's tables
    (C_k^{-1} = e^{-2t} P_k(t), g_k = e^{-t} g_k^OU) in the eigenbasis when it is shared."""
    K, d = mrot.shape
    G = mats.shape[0]
    e = scale
    for i in range(d):
        x[i] = y[i] * e
    _component_terms(x, inv_s, mrot, logc, mats, z, lk, gk)
    _rotated_score(gk, lk, mats, tmp, out)  # OU score, original coordinates
    for i in range(d):
        D[i] = y[i] + two_sinh * out[i]
    # v in the coordinates of gk (rotated for G = 1)
    if G == 1:
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += mats[0, j, i] * v[j]
            vr[i] = acc
    else:
        for i in range(d):
            vr[i] = v[i]
    # s in the same coordinates (tmp), dl_k (z), m = sum w dl
    for i in range(d):
        tmp[i] = 0.0
    for k in range(K):
        for i in range(d):
            tmp[i] += lk[k] * gk[k, i]
    e2 = e * e
    m = 0.0  # sum_k w_k dl_k
    for k in range(K):
        q = 0.0
        tr = 0.0
        for i in range(d):
            q += gk[k, i] * gk[k, i]
            tr += inv_s[k, i]
        m += lk[k] * sigma * e2 * (q - tr)
    # v . dD/dsigma and H v (rotated), accumulated component by component
    vs = 0.0
    for i in range(d):
        vs += vr[i] * tmp[i]
    dsum = 0.0
    for i in range(d):
        out[i] = 0.0  # H v in gk's coordinates
    for k in range(K):
        q = 0.0
        tr = 0.0
        vg = 0.0
        vc = 0.0  # v . (g_k - s)
        for i in range(d):
            q += gk[k, i] * gk[k, i]
            tr += inv_s[k, i]
            vg += vr[i] * gk[k, i]
            vc += vr[i] * (gk[k, i] - tmp[i])
        dl = sigma * e2 * (q - tr)
        vpg = 0.0  # v . P_k g_k
        if G > 1:
            for i in range(d):
                acc = 0.0
                acc2 = 0.0
                for j in range(d):
                    acc += mats[k, i, j] * gk[k, j]
                    acc2 += mats[k, i, j] * vr[j]
                vpg += vr[i] * acc
                out[i] += lk[k] * (vc * (gk[k, i] - tmp[i]) - acc2)
        else:
            for i in range(d):
                vpg += vr[i] * inv_s[k, i] * gk[k, i]
                out[i] += lk[k] * (vc * (gk[k, i] - tmp[i]) - inv_s[k, i] * vr[i])
        dsum += lk[k] * ((dl - m) * e * vg - 2.0 * sigma * e2 * e * vpg)
    vdsig = 2.0 * sigma * e * vs + sigma * sigma * dsum
    # J v = v + (1 - e^2) H_OU v, rotated back
    c = 1.0 - e2
    if G == 1:
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += mats[0, i, j] * out[j]
            Jv[i] = v[i] + c * acc
    else:
        for i in range(d):
            Jv[i] = v[i] + c * out[i]
    return vdsig


@nb.njit(parallel=True, **_JIT)
def _solve_grid_grad(y0, target, sig, solver, two_sinh, scale, inv_s, mrot, logc, mats, size, nchunks,
                     loss_part, grad_part):
    """The solvers of :func:`_solve_grid` with reverse-mode derivatives of the squared end-point error.

    Per chunk c: loss_part[c] = sum_p |y_N(p) - target(p)|^2 and grad_part[c, k] = its derivative with
    respect to rho_k = log sig[k] (every node, ends included).  Euler is DPM-Solver++(2M) without the
    two-step correction: y_{s+1} = a_s y_s + (1 - a_s) D'_s, a_s = sig[s+1] / sig[s],
    D'_s = (1 + c_s) D_s - c_s D_{s-1}, c_s = h_s / (2 h_{s-1}) (0 for Euler and on the first step),
    h_s = rho_s - rho_{s+1}; Heun differentiates its predictor and trapezoid average."""
    n, d = y0.shape
    K = mrot.shape[1]
    N = sig.shape[0] - 1
    for c in nb.prange(nchunks):
        x = np.empty(d)
        z = np.empty(d)
        lk = np.empty(K)
        gk = np.empty((K, d))
        tmp = np.empty(d)
        out = np.empty(d)
        vr = np.empty(d)
        Dw = np.empty(d)
        Jv = np.empty(d)
        Y = np.empty((N + 1, d))
        Dst = np.empty((N + 1, d))
        Yt = np.empty((N + 1, d))
        Dt = np.empty((N + 1, d))
        lam = np.empty(d)
        mu = np.empty(d)
        mu_next = np.empty(d)
        u = np.empty(d)
        dv = np.empty(d)
        gs = np.zeros(N + 1)  # d loss / d sigma_k (Heun) or d loss / d rho_k (Euler, DPM)
        dh = np.zeros(N + 1)
        loss = 0.0
        for p in range(c * size, min(n, (c + 1) * size)):
            for i in range(d):
                Y[0, i] = y0[p, i]
            # forward
            for s in range(N):
                M0 = mats[s] if mats.shape[0] > 1 else mats[0]
                _denoise(Y[s], two_sinh[s], scale[s], inv_s[s], mrot[s], logc[s], M0, x, z, lk, gk, tmp, out,
                         Dst[s])
                a = sig[s + 1] / sig[s]
                if solver == 1:
                    M1 = mats[s + 1] if mats.shape[0] > 1 else mats[0]
                    for i in range(d):
                        Yt[s, i] = a * Y[s, i] + (1.0 - a) * Dst[s, i]
                    _denoise(Yt[s], two_sinh[s + 1], scale[s + 1], inv_s[s + 1], mrot[s + 1], logc[s + 1], M1,
                             x, z, lk, gk, tmp, out, Dt[s])
                    half = 0.5 * (sig[s + 1] - sig[s])
                    for i in range(d):
                        Y[s + 1, i] = Y[s, i] + half * ((Y[s, i] - Dst[s, i]) / sig[s]
                                                        + (Yt[s, i] - Dt[s, i]) / sig[s + 1])
                else:
                    cs = 0.0
                    if solver == 2 and s > 0:
                        cs = 0.5 * math.log(sig[s] / sig[s + 1]) / math.log(sig[s - 1] / sig[s])
                    for i in range(d):
                        Dp = (1.0 + cs) * Dst[s, i] - (cs * Dst[s - 1, i] if cs != 0.0 else 0.0)
                        Y[s + 1, i] = a * Y[s, i] + (1.0 - a) * Dp
            for i in range(d):
                r = Y[N, i] - target[p, i]
                loss += r * r
                lam[i] = 2.0 * r
            # backward
            c_next = 0.0
            for i in range(d):
                mu_next[i] = 0.0
            for s in range(N - 1, -1, -1):
                M0 = mats[s] if mats.shape[0] > 1 else mats[0]
                a = sig[s + 1] / sig[s]
                if solver == 1:
                    M1 = mats[s + 1] if mats.shape[0] > 1 else mats[0]
                    s0, s1 = sig[s], sig[s + 1]
                    delta_ = s1 - s0
                    vd1 = _denoise_vjp(Yt[s], lam, s1, two_sinh[s + 1], scale[s + 1], inv_s[s + 1], mrot[s + 1],
                                       logc[s + 1], M1, x, z, lk, gk, tmp, out, vr, Dw, Jv)
                    gs[s + 1] -= delta_ / (2.0 * s1) * vd1
                    ga0 = 0.0
                    ga1 = 0.0
                    na = 0.0
                    for i in range(d):
                        A = Y[s, i] - Dst[s, i]
                        B = Yt[s, i] - Dt[s, i]
                        mu[i] = delta_ / (2.0 * s1) * (lam[i] - Jv[i])  # nu = dloss/d(predictor)
                        ga0 += lam[i] * (-A / (2.0 * s0) - delta_ * A / (2.0 * s0 * s0) - B / (2.0 * s1))
                        ga1 += lam[i] * (A / (2.0 * s0) + B / (2.0 * s1) - delta_ * B / (2.0 * s1 * s1))
                        na += mu[i] * A
                    gs[s] += ga0 - a / s0 * na
                    gs[s + 1] += ga1 + na / s0
                    for i in range(d):
                        u[i] = delta_ / (2.0 * s0) * lam[i] - (1.0 - a) * mu[i]
                    vd0 = _denoise_vjp(Y[s], u, s0, two_sinh[s], scale[s], inv_s[s], mrot[s], logc[s], M0,
                                       x, z, lk, gk, tmp, out, vr, Dw, Jv)
                    gs[s] -= vd0
                    for i in range(d):
                        lam[i] = lam[i] + delta_ / (2.0 * s0) * lam[i] + a * mu[i] - Jv[i]
                else:
                    cs = 0.0
                    hs = math.log(sig[s] / sig[s + 1])
                    hp = 1.0
                    if solver == 2 and s > 0:
                        hp = math.log(sig[s - 1] / sig[s])
                        cs = 0.5 * hs / hp
                    Ga = 0.0
                    Gc = 0.0
                    for i in range(d):
                        mu[i] = (1.0 - a) * lam[i]
                        dv[i] = (1.0 + cs) * mu[i] - c_next * mu_next[i]
                        Dprev = Dst[s - 1, i] if s > 0 else 0.0
                        Dp = (1.0 + cs) * Dst[s, i] - cs * Dprev
                        Ga += lam[i] * (Y[s, i] - Dp)
                        Gc += mu[i] * (Dst[s, i] - Dprev)
                    dh[s] += -a * Ga
                    if cs != 0.0:
                        dh[s] += Gc / (2.0 * hp)
                        dh[s - 1] += -Gc * hs / (2.0 * hp * hp)
                    vd = _denoise_vjp(Y[s], dv, sig[s], two_sinh[s], scale[s], inv_s[s], mrot[s], logc[s], M0,
                                      x, z, lk, gk, tmp, out, vr, Dw, Jv)
                    gs[s] += sig[s] * vd
                    for i in range(d):
                        lam[i] = a * lam[i] + Jv[i]
                        mu_next[i] = mu[i]
                    c_next = cs
        loss_part[c] = loss
        for k in range(N + 1):
            if solver == 1:
                grad_part[c, k] = sig[k] * gs[k]
            else:
                grad_part[c, k] = gs[k] + dh[k] - (dh[k - 1] if k > 0 else 0.0)


# The solver loops on one thread: for small batches (the grid search evaluates them thousands of times on
# ~10^3 points), where starting a parallel region costs more than it saves.  Under NUMBA_DISABLE_JIT=1 njit
# returns the plain Python function, which has no ``py_func``: the function itself is the source then.
def _python(kernel):
    return getattr(kernel, "py_func", kernel)


_solve_grid_serial = nb.njit(**_JIT)(_python(_solve_grid))
_solve_grid_grad_serial = nb.njit(**_JIT)(_python(_solve_grid_grad))
