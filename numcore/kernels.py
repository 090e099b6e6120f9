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
