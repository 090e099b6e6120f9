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

Loops run over chunks of points in parallel; every chunk owns its workspace.  The solver programs run each chunk
in blocks of BLOCK points with the points innermost (every sum per point in a fixed order, vectorised across
points), and the weights' exponential is :func:`_exp_nonpositive` (plain arithmetic, within 1 ulp of math.exp).
"""

from __future__ import annotations

import functools
import math

import numba as nb
import numpy as np
from numba.extending import overload, register_jitable

from . import jitcache
from . import solvers as _solvers

_JIT = dict(cache=jitcache.enabled(), fastmath=False, nogil=True)

# exp on x <= 0 in plain arithmetic, so that a loop of them compiles to SIMD instructions (the C library's exp is a
# call per number): x = k ln 2 + r with |r| <= ln(2)/2 (k by the round-to-nearest shift, ln 2 in two parts), e^r
# by its Taylor polynomial to r^13 (truncation below 1e-17), and 2^k from a table in two factors, so that a result
# in the subnormal range is rounded once.  Within 1 ulp of the C library's exp (tested).
_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 * 2^52: (y + _ROUND) - _ROUND rounds y to the nearest integer
_E = tuple(1.0 / math.factorial(i) for i in range(14))  # 1/i!
_HORNER = _E[12::-1]
_POW2_NEG = np.ldexp(1.0, -np.arange(540))  # 2^-j, j = 0..539: 2^-k = _POW2_NEG[k // 2] * _POW2_NEG[k - k // 2]


@nb.njit(inline='always', **_JIT)
def _exp_nonpositive(x):
    """e^x for x <= 0 (NaN -> NaN, -inf -> 0): the mixture kernels' exponential of logits minus their maximum,
    within 1 ulp of math.exp and, unlike it, vectorised by the compiler in a loop over points."""
    x = -746.0 if x < -746.0 else x  # e^-746 underflows to 0 (NaN passes: the comparison is false)
    k = (x * _LOG2E + _ROUND) - _ROUND
    r = (x - k * _LN2_HI) - k * _LN2_LO
    q = _E[13]
    for c in _HORNER:  # Horner's rule: q = ((1/13! r + 1/12!) r + ...) r + 1
        q = q * r + c
    j = np.int64(-k)
    j = 0 if j < 0 else (1077 if j > 1077 else j)  # NaN's integer is out of range: clamped, the result stays NaN
    h = j >> 1
    return q * _POW2_NEG[h] * _POW2_NEG[j - h]


@nb.njit(inline='always', **_JIT)
def _weights(lk, lmax):
    """lk (K,) logits -> normalised weights in place, given their maximum lmax; returns their sum before
    normalising (sum_k exp(lk_k - lmax))."""
    K = lk.shape[0]
    tot = 0.0
    for k in range(K):
        e = _exp_nonpositive(lk[k] - lmax)
        lk[k] = e
        tot += e
    for k in range(K):
        lk[k] /= tot
    return tot


@nb.njit(inline='always', **_JIT)
def _component_terms(x, inv_s, mrot, logc, mats, z, lk, gk):
    """Fill lk (logits) and gk (component scores: rotated for G <= 1, original for G = K);
    turn lk into normalised weights in place and return (lmax, tot): log p_t(x) = lmax + log(tot), left to the
    one caller that wants it (the others save a log per point).  z: d workspace."""
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
    return lmax, _weights(lk, lmax)


@nb.njit(inline='always', **_JIT)
def _rotated_score(gk, w, mats, tmp, out):
    """out = sum_k w_k g_k in the original coordinates (rotated back by U when G = 1); tmp: d workspace."""
    K, d = gk.shape
    G = mats.shape[0]
    # every sum over k in the order k = 0, 1, ..., accumulated in a register
    if G == 1:
        for i in range(d):
            acc = 0.0
            for k in range(K):
                acc += w[k] * gk[k, i]
            tmp[i] = acc
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += mats[0, i, j] * tmp[j]
            out[i] = acc
    else:
        for i in range(d):
            acc = 0.0
            for k in range(K):
                acc += w[k] * gk[k, i]
            out[i] = acc


def _chunks(n):
    """(points per chunk, chunks) of n points for a parallel kernel: four chunks per numba thread."""
    threads = nb.get_num_threads()
    size = max(1, -(-n // (4 * threads)))
    return size, -(-n // size)


REDUCTION_CHUNKS = 8  # the reverse pass sums its loss and cotangents per chunk of points, then over the chunks


def _reduction_chunks(n):
    """(points per chunk, chunks) of n points for a kernel that sums over the points (:func:`_program_vjp`):
    REDUCTION_CHUNKS chunks whatever the number of threads, so that the sums, and a grid search that follows them,
    are the same on every machine and in one thread or many (a search's path through the rounding of its objective
    is chaotic: the same search summed in another order can end in another basin)."""
    size = max(1, -(-n // REDUCTION_CHUNKS))
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
            lmax, tot = _component_terms(x[p], inv_s, mrot, logc, mats, z, lk, gk)
            logp[p] = lmax + math.log(tot)
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


BLOCK = 64  # points per block of the solver programs: their loops over points are innermost (SIMD) in every sum


@nb.njit(inline='always', **_JIT)
def _to_basis(mats, src, m, dst):
    """dst = U^T src for the first m points of a block (d, BLOCK) where one eigenbasis U = mats[0] is shared
    (mats (1, d, d)), each sum over j = 0, 1, ... in order; otherwise a copy (identity basis, or own bases whose
    component scores are in the original coordinates)."""
    d = src.shape[0]
    if mats.shape[0] == 1:
        for i in range(d):
            for p in range(m):
                dst[i, p] = 0.0
            for j in range(d):
                a = mats[0, j, i]
                for p in range(m):
                    dst[i, p] += a * src[j, p]
    else:
        for i in range(d):
            for p in range(m):
                dst[i, p] = src[i, p]


@nb.njit(inline='always', **_JIT)
def _block_score(lk, gk, m, s):
    """s[i, p] = sum_k lk[k, p] gk[k, i, p] (over k = 0, 1, ...) for the first m points of a block: the score in the
    components' coordinates from the weights lk (K, BLOCK) and component scores gk (K, d, BLOCK)."""
    K, d = gk.shape[0], gk.shape[1]
    for i in range(d):
        for p in range(m):
            s[i, p] = 0.0
        for k in range(K):
            for p in range(m):
                s[i, p] += lk[k, p] * gk[k, i, p]


@nb.njit(inline='always', **_JIT)
def _logit_row(lk, k, c, q, lmax, m):
    """Component k's logits of a block, lk[k, p] = c - q[p] / 2 for the first m points, and their running maximum
    lmax (BLOCK,)."""
    for p in range(m):
        l = c - 0.5 * q[p]
        lk[k, p] = l
        if l > lmax[p]:
            lmax[p] = l


@nb.njit(inline='always', **_JIT)
def _denoise(Y, m, two_sinh, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, q, lmax, tot, D):
    """D = E[x_0 | x_t] at the VE points Y (d, BLOCK), first m columns, from p_t's tables at one time:
    D = Y + 2 sinh(t) s(e^{-t} Y, t); leaves the normalised weights in lk (K, BLOCK) and the component scores in
    gk (K, d, BLOCK) (as :func:`_component_terms` per point).

    The arithmetic of :func:`_component_terms` then :func:`_rotated_score` point by point, in the same order (the
    same bits: tested), written out per covariance mode with the points innermost, so that every sum runs over a
    block of points at once.  x, z, tmp: (d, BLOCK) workspaces; q, lmax, tot: (BLOCK,)."""
    K, d = mrot.shape
    G = mats.shape[0]
    for i in range(d):
        for p in range(m):
            x[i, p] = Y[i, p] * scale
    for p in range(m):
        lmax[p] = -np.inf
    if G > 1:  # covariances with their own bases: g_k = -P_k (x - mrot_k)
        for k in range(K):
            for i in range(d):
                mk = mrot[k, i]
                for p in range(m):
                    z[i, p] = x[i, p] - mk
            for p in range(m):
                q[p] = 0.0
            for i in range(d):
                for p in range(m):
                    tmp[i, p] = 0.0
                for j in range(d):
                    a = mats[k, i, j]
                    for p in range(m):
                        tmp[i, p] += a * z[j, p]
                for p in range(m):
                    gk[k, i, p] = -tmp[i, p]
                    q[p] += z[i, p] * tmp[i, p]
            _logit_row(lk, k, logc[k], q, lmax, m)
    else:
        _to_basis(mats, x, m, z)  # rotated coordinates z = U^T x where one eigenbasis U is shared
        for k in range(K):
            for p in range(m):
                q[p] = 0.0
            for i in range(d):
                mk = mrot[k, i]
                a = inv_s[k, i]
                for p in range(m):
                    r = z[i, p] - mk
                    gk[k, i, p] = -a * r
                    q[p] += a * r * r
            _logit_row(lk, k, logc[k], q, lmax, m)
    # the softmax weights (as _weights, point by point)
    for p in range(m):
        tot[p] = 0.0
    for k in range(K):
        for p in range(m):
            e = _exp_nonpositive(lk[k, p] - lmax[p])
            lk[k, p] = e
            tot[p] += e
    for k in range(K):
        for p in range(m):
            lk[k, p] /= tot[p]
    _block_score(lk, gk, m, tmp)
    if G == 1:
        for i in range(d):
            for p in range(m):
                q[p] = 0.0
            for j in range(d):
                a = mats[0, i, j]
                for p in range(m):
                    q[p] += a * tmp[j, p]
            for p in range(m):
                D[i, p] = Y[i, p] + two_sinh * q[p]
    else:
        for i in range(d):
            for p in range(m):
                D[i, p] = Y[i, p] + two_sinh * tmp[i, p]


@nb.njit(**_JIT)
def _denoise_again(Y, m, two_sinh, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, q, lmax, tot, D):
    """:func:`_denoise` as a function of its own (not inlined): the reverse pass's recomputation where it keeps no
    weights, so that the kernels hold one inlined copy of the denoiser each (each copy costs seconds to compile)."""
    _denoise(Y, m, two_sinh, scale, inv_s, mrot, logc, mats, x, z, lk, gk, tmp, q, lmax, tot, D)


@nb.njit(inline='always', **_JIT)
def _denoise_vjp_terms(lk, gk, v, m, sigma, scale, inv_s, mats, tmp, out, vr, Jv, qt, S, vdsig):
    """The reverse pass of :func:`_denoise` at a block of points (first m columns) from the normalised weights lk
    (K, BLOCK) and component scores gk (K, d, BLOCK) it left there: J v into Jv (d, BLOCK) and v . dD/dsigma (at
    fixed y) into vdsig (BLOCK,), for cotangents v (d, BLOCK).

    With VE covariances C_k = Sigma_k + sigma^2 I, component scores g_k = -C_k^{-1}(y - mu_k), weights w and
    s = sum_k w_k g_k:  D = y + sigma^2 s,  J = I + sigma^2 (-sum_k w_k C_k^{-1} + sum_k w_k (g_k - s)(g_k - s)^T),
    dD/dsigma = 2 sigma s + sigma^2 sum_k w_k [(dl_k - sum_j w_j dl_j) g_k - 2 sigma C_k^{-1} g_k],
    dl_k = sigma (|C_k^{-1}(y - mu_k)|^2 - tr C_k^{-1}); evaluated from the OU marginal's tables
    (C_k^{-1} = e^{-2t} P_k(t), g_k = e^{-t} g_k^OU) in the eigenbasis when it is shared.  Every sum runs in a
    fixed order (over k = 0, 1, ... or i = 0, 1, ...) per point, the points innermost.  tmp, out, vr: (d, BLOCK)
    workspaces, qt: (K, BLOCK), S: (6, BLOCK)."""
    K, d = gk.shape[0], gk.shape[1]
    G = mats.shape[0]
    e = scale
    # v in the coordinates of gk (rotated for G = 1)
    _to_basis(mats, v, m, vr)
    # s in the same coordinates (tmp), |g_k|^2 - tr C_k^{-1} (qt), mm = sum_k w_k dl_k
    _block_score(lk, gk, m, tmp)
    e2 = e * e
    mm, vs, dsum, vg, vc, vpg = S[0], S[1], S[2], S[3], S[4], S[5]
    for p in range(m):
        mm[p] = 0.0
    for k in range(K):
        tr = 0.0
        for i in range(d):
            tr += inv_s[k, i]
        for p in range(m):
            vg[p] = 0.0
        for i in range(d):
            for p in range(m):
                vg[p] += gk[k, i, p] * gk[k, i, p]
        for p in range(m):
            qt[k, p] = vg[p] - tr
            mm[p] += lk[k, p] * sigma * e2 * qt[k, p]
    for p in range(m):
        vs[p] = 0.0
    for i in range(d):
        for p in range(m):
            vs[p] += vr[i, p] * tmp[i, p]
    # v . dD/dsigma, component by component; qt[k] then holds v . (g_k - s)
    for p in range(m):
        dsum[p] = 0.0
    se2 = sigma * e2
    two = 2.0 * sigma * e2 * e
    for k in range(K):
        for p in range(m):
            vg[p] = 0.0
            vc[p] = 0.0
            vpg[p] = 0.0  # v . P_k g_k
        if G > 1:
            for i in range(d):
                for p in range(m):
                    out[i, p] = 0.0
                for j in range(d):
                    a = mats[k, i, j]
                    for p in range(m):
                        out[i, p] += a * gk[k, j, p]
                for p in range(m):
                    g = gk[k, i, p]
                    vg[p] += vr[i, p] * g
                    vc[p] += vr[i, p] * (g - tmp[i, p])
                    vpg[p] += vr[i, p] * out[i, p]
        else:
            for i in range(d):
                a = inv_s[k, i]
                for p in range(m):
                    g = gk[k, i, p]
                    vg[p] += vr[i, p] * g
                    vc[p] += vr[i, p] * (g - tmp[i, p])
                    vpg[p] += vr[i, p] * a * g
        for p in range(m):
            dl = se2 * qt[k, p]
            dsum[p] += lk[k, p] * ((dl - mm[p]) * e * vg[p] - two * vpg[p])
            qt[k, p] = vc[p]
    for p in range(m):
        vdsig[p] = 2.0 * sigma * e * vs[p] + sigma * sigma * dsum[p]
    # H v in gk's coordinates: sum_k w_k (v.(g_k - s) (g_k - s) - P_k v)
    for i in range(d):
        for p in range(m):
            out[i, p] = 0.0
        if G > 1:
            for k in range(K):
                for p in range(m):
                    vg[p] = 0.0
                for j in range(d):
                    a = mats[k, i, j]
                    for p in range(m):
                        vg[p] += a * vr[j, p]
                for p in range(m):
                    out[i, p] += lk[k, p] * (qt[k, p] * (gk[k, i, p] - tmp[i, p]) - vg[p])
        else:
            for k in range(K):
                a = inv_s[k, i]
                for p in range(m):
                    out[i, p] += lk[k, p] * (qt[k, p] * (gk[k, i, p] - tmp[i, p]) - a * vr[i, p])
    # J v = v + (1 - e^2) H_OU v, rotated back
    c = 1.0 - e2
    if G == 1:
        for i in range(d):
            for p in range(m):
                vg[p] = 0.0
            for j in range(d):
                a = mats[0, i, j]
                for p in range(m):
                    vg[p] += a * out[j, p]
            for p in range(m):
                Jv[i, p] = v[i, p] + c * vg[p]
    else:
        for i in range(d):
            for p in range(m):
                Jv[i, p] = v[i, p] + c * out[i, p]


# ------------------------------------------------------------------------------------- solver programs
# A solver on a grid is the straight-line program of :mod:`numcore.solvers`: row 0 is y_T, row r >= 1 is
#     X_r = sum_{w < W} cx[r, w] X_{r-1-w} + cd[r, w] D_{r-1-w},   D_r = D(X_r, ev[r]) where ev[r] > 0,
# and the last row is the end point.  The denoiser of row r reads the marginal's tables number tab[r] (the
# tables of the evaluated rows' times, deduplicated).  One forward kernel and one reverse-mode kernel serve
# every solver; each comes parallel over chunks of points and serial (for small batches, where starting a
# parallel region costs more than it saves: the grid search runs them thousands of times on ~10^3 points).


@nb.njit(**_JIT)
def _program_chunk(y, lo, hi, ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc, mats):
    """The program on the points lo..hi of y (n, d), VE scale, each replaced by its end point.  Blocks of BLOCK
    points run through the rows one after another (the tables of an evaluated row are sliced once per block); the
    last W + 1 rows of states and denoiser outputs are kept in a ring, points innermost."""
    d = y.shape[1]
    K = mrot.shape[1]
    R, W = cx.shape
    B = W + 1
    P = BLOCK
    X = np.empty((B, d, P))
    Dn = np.zeros((B, d, P))  # D of a row that is not evaluated stays 0 (its coefficients are 0)
    ring = np.empty(W, np.int64)  # the ring slots of rows r - 1, ..., r - W
    x, z, tmp = np.empty((d, P)), np.empty((d, P)), np.empty((d, P))
    lk, gk = np.empty((K, P)), np.empty((K, d, P))
    q, lmax, tot, acc = np.empty(P), np.empty(P), np.empty(P), np.empty(P)
    for b0 in range(lo, hi, P):
        m = min(P, hi - b0)
        for i in range(d):
            for p in range(m):
                X[0, i, p] = y[b0 + p, i]
        for r in range(R):
            b = r % B
            reach = 0  # the terms up to the last nonzero coefficient (a zero term adds exactly nothing)
            for w in range(min(W, r)):
                ring[w] = (r - 1 - w) % B
                if cx[r, w] != 0.0 or cd[r, w] != 0.0:
                    reach = w + 1
            if r > 0:
                # X_r = cx[r, 0] X_{r-1} + cd[r, 0] D_{r-1} + cx[r, 1] X_{r-2} + cd[r, 1] D_{r-2} + ..., in this order
                q0, x0, d0 = ring[0], cx[r, 0], cd[r, 0]
                for i in range(d):
                    for p in range(m):
                        acc[p] = x0 * X[q0, i, p]
                        acc[p] += d0 * Dn[q0, i, p]
                    for w in range(1, reach):
                        qw, xw, dw = ring[w], cx[r, w], cd[r, w]
                        for p in range(m):
                            acc[p] += xw * X[qw, i, p]
                            acc[p] += dw * Dn[qw, i, p]
                    for p in range(m):
                        X[b, i, p] = acc[p]
            if ev[r] > 0.0:
                j = tab[r]
                M = mats[j] if mats.shape[0] > 1 else mats[0]
                _denoise(X[b], m, two_sinh[j], scale[j], inv_s[j], mrot[j], logc[j], M, x, z, lk, gk, tmp, q, lmax,
                         tot, Dn[b])
            else:
                for i in range(d):
                    for p in range(m):
                        Dn[b, i, p] = 0.0
        last = (R - 1) % B
        for p in range(m):
            for i in range(d):
                y[b0 + p, i] = X[last, i, p]


@nb.njit(parallel=True, **_JIT)
def _run_program(y, ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc, mats, size, nchunks):
    """Every point of y (n, d), VE scale, carried through the program to its end point in place; chunks in
    parallel.  ``tab`` (R,): the table of each evaluated row; two_sinh = 2 sinh(t), scale = e^{-t} and the
    marginal's tables (:func:`numcore.flowmap.tables`) at those times (``mats`` as in :func:`_flow_rk4`)."""
    n = y.shape[0]
    for c in nb.prange(nchunks):
        _program_chunk(y, c * size, min(n, (c + 1) * size), ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc,
                       mats)


@nb.njit(**_JIT)
def _run_program_serial(y, ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc, mats, size, nchunks):
    """:func:`_run_program` on one thread."""
    n = y.shape[0]
    for c in range(nchunks):
        _program_chunk(y, c * size, min(n, (c + 1) * size), ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc,
                       mats)


KEEP_TERMS = 2**22  # numbers per block up to which the reverse pass keeps the forward's weights (else recomputes)


@nb.njit(**_JIT)
def _program_vjp_chunk(y0, target, lo, hi, ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc, mats, g_ev, g_cx,
                       g_cd):
    """The squared end-point error sum_p |X_{R-1}(p) - target(p)|^2 of the points lo..hi (returned), and its
    cotangents added into g_ev (R,), g_cx (R, W), g_cd (R, W).

    Per block of BLOCK points: the forward pass keeps every row's X_r and D_r; the backward pass runs the rows in
    reverse with the adjoints bX_r = dloss/dX_r and bD_r = dloss/dD_r.  Row r's definition gives
        g_cx[r, w] += bX_r . X_{r-1-w},  g_cd[r, w] += bX_r . D_{r-1-w},
        bX_{r-1-w} += cx[r, w] bX_r,     bD_{r-1-w} += cd[r, w] bX_r,
    and once bD_r is complete (every row that reads D_r is later), an evaluated row adds
        bX_r += J_r bD_r  (J = dD/dy, symmetric),   g_ev[r] += bD_r . dD/dsigma (at fixed y).
    Each point's terms are added into the sums in the order of the points (the bits of a point-by-point loop)."""
    d = y0.shape[1]
    K = mrot.shape[1]
    R, W = cx.shape
    P = BLOCK
    X = np.empty((R, d, P))
    Dn = np.zeros((R, d, P))
    bX = np.empty((R, d, P))
    bD = np.empty((R, d, P))
    keep = R * K * (d + 1) * P <= KEEP_TERMS  # the weights and component scores of every row, for the backward pass
    LK = np.empty((R, K, P) if keep else (1, K, P))
    GK = np.empty((R, K, d, P) if keep else (1, K, d, P))
    Dw = np.empty((d, P))
    x, z, tmp, out, vr, Jv = (np.empty((d, P)), np.empty((d, P)), np.empty((d, P)), np.empty((d, P)),
                              np.empty((d, P)), np.empty((d, P)))
    lk, gk, qt = np.empty((K, P)), np.empty((K, d, P)), np.empty((K, P))
    q, lmax, tot, vd, sx, sd = np.empty(P), np.empty(P), np.empty(P), np.empty(P), np.empty(P), np.empty(P)
    S = np.empty((6, P))
    loss = 0.0
    for b0 in range(lo, hi, P):
        m = min(P, hi - b0)
        # forward
        for i in range(d):
            for p in range(m):
                X[0, i, p] = y0[b0 + p, i]
        for r in range(R):
            if r > 0:
                for i in range(d):
                    for p in range(m):
                        sx[p] = 0.0
                    for w in range(min(W, r)):
                        xw, dw = cx[r, w], cd[r, w]
                        for p in range(m):
                            sx[p] += xw * X[r - 1 - w, i, p]
                            sx[p] += dw * Dn[r - 1 - w, i, p]
                    for p in range(m):
                        X[r, i, p] = sx[p]
            if ev[r] > 0.0:
                j = tab[r]
                M = mats[j] if mats.shape[0] > 1 else mats[0]
                _denoise(X[r], m, two_sinh[j], scale[j], inv_s[j], mrot[j], logc[j], M, x, z,
                         LK[r] if keep else lk, GK[r] if keep else gk, tmp, q, lmax, tot, Dn[r])
        for r in range(R):
            for i in range(d):
                for p in range(m):
                    bX[r, i, p] = 0.0
                    bD[r, i, p] = 0.0
        for p in range(m):
            for i in range(d):
                e = X[R - 1, i, p] - target[b0 + p, i]
                loss += e * e
                bX[R - 1, i, p] = 2.0 * e
        # backward
        for r in range(R - 1, -1, -1):
            if ev[r] > 0.0:
                j = tab[r]
                M = mats[j] if mats.shape[0] > 1 else mats[0]
                if not keep:  # the weights and component scores again (out of line: a rare path, compiled once)
                    _denoise_again(X[r], m, two_sinh[j], scale[j], inv_s[j], mrot[j], logc[j], M, x, z, lk, gk, tmp,
                                   q, lmax, tot, Dw)
                _denoise_vjp_terms(LK[r] if keep else lk, GK[r] if keep else gk, bD[r], m, ev[r], scale[j], inv_s[j],
                                   M, tmp, out, vr, Jv, qt, S, vd)
                for p in range(m):
                    g_ev[r] += vd[p]
                for i in range(d):
                    for p in range(m):
                        bX[r, i, p] += Jv[i, p]
            for w in range(min(W, r)):
                qr = r - 1 - w
                xw, dw = cx[r, w], cd[r, w]
                for p in range(m):
                    sx[p] = 0.0
                    sd[p] = 0.0
                for i in range(d):
                    for p in range(m):
                        br = bX[r, i, p]
                        sx[p] += br * X[qr, i, p]
                        sd[p] += br * Dn[qr, i, p]
                        bX[qr, i, p] += xw * br
                        bD[qr, i, p] += dw * br
                for p in range(m):
                    g_cx[r, w] += sx[p]
                for p in range(m):
                    g_cd[r, w] += sd[p]
    return loss


@nb.njit(parallel=True, **_JIT)
def _program_vjp(y0, target, ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc, mats, size, nchunks, loss_part,
                 g_ev, g_cx, g_cd):
    """The program's squared end-point error against ``target`` (n, d) and its cotangents with respect to the
    program, per chunk c (in parallel): loss_part[c], g_ev[c] (R,), g_cx[c] (R, W), g_cd[c] (R, W), every array
    zero on entry; arguments as in :func:`_run_program`."""
    n = y0.shape[0]
    for c in nb.prange(nchunks):
        loss_part[c] = _program_vjp_chunk(y0, target, c * size, min(n, (c + 1) * size), ev, cx, cd, tab, two_sinh,
                                          scale, inv_s, mrot, logc, mats, g_ev[c], g_cx[c], g_cd[c])


@nb.njit(**_JIT)
def _program_vjp_serial(y0, target, ev, cx, cd, tab, two_sinh, scale, inv_s, mrot, logc, mats, size, nchunks,
                        loss_part, g_ev, g_cx, g_cd):
    """:func:`_program_vjp` on one thread."""
    n = y0.shape[0]
    for c in range(nchunks):
        loss_part[c] = _program_vjp_chunk(y0, target, c * size, min(n, (c + 1) * size), ev, cx, cd, tab, two_sinh,
                                          scale, inv_s, mrot, logc, mats, g_ev[c], g_cx[c], g_cd[c])


@nb.njit(**_JIT)
def _table_index(ev, sig, tab):
    """tab[r] = k for a row evaluated at the node sigma sig[k], N + 1, N + 2, ... for the rows evaluated at a
    sigma that is no node (in row order), -1 for the rows not evaluated; returns the number of the latter."""
    extra = 0
    for r in range(ev.shape[0]):
        tab[r] = -1
        if ev[r] > 0.0:
            for k in range(sig.shape[0]):
                if ev[r] == sig[k]:
                    tab[r] = k
                    break
            if tab[r] < 0:
                tab[r] = sig.shape[0] + extra
                extra += 1
    return extra


COMPLEX_STEP = 1e-30  # rho_k + i h: d f / d rho_k = Im f / h, exact to rounding (no difference is taken)
_c1, _c2 = nb.complex128[::1], nb.complex128[:, ::1]
_SCHEME = nb.types.FunctionType(nb.none(_c1, _c1, _c2, _c2))


def _grid_gradient(scheme, sig, g_ev, g_cx, g_cd):
    """The gradient with respect to rho_k = log sig[k] (N + 1,) of a function of the program whose cotangents are
    g_ev (R,), g_cx (R, W), g_cd (R, W): sum_r g_ev[r] dev[r]/drho_k + g_cx . dcx/drho_k + g_cd . dcd/drho_k,
    the derivatives of the scheme by complex steps (sig[k] e^{ih}: N + 1 runs of the scheme on complex grids)."""
    R, W = g_cx.shape
    n = sig.shape[0]
    grad = np.zeros(n)
    s = np.empty(n, np.complex128)
    ev = np.empty(R, np.complex128)
    cx = np.empty((R, W), np.complex128)
    cd = np.empty((R, W), np.complex128)
    for k in range(n):
        for i in range(n):
            s[i] = sig[i]
        s[k] = sig[k] * complex(math.cos(COMPLEX_STEP), math.sin(COMPLEX_STEP))
        ev[:] = 0.0
        cx[:, :] = 0.0
        cd[:, :] = 0.0
        scheme(s, ev, cx, cd)
        acc = 0.0
        for r in range(R):
            acc += g_ev[r] * ev[r].imag
            for w in range(W):
                acc += g_cx[r, w] * cx[r, w].imag + g_cd[r, w] * cd[r, w].imag
        grad[k] = acc / COMPLEX_STEP
    return grad


@functools.cache
def grid_gradient():
    """:func:`_grid_gradient` compiled (on first use: a command that takes no gradient does not compile it), with
    the scheme typed as a first-class function, so that one compiled driver serves every scheme and is cached."""
    sig = nb.float64[::1](_SCHEME, nb.float64[::1], nb.float64[::1], nb.float64[:, ::1], nb.float64[:, ::1])
    return nb.njit(sig, **_JIT)(_grid_gradient)


for _helper in _solvers.JITABLE:
    register_jitable(_helper)


@overload(_solvers.expm1)
def _expm1(x):
    """numcore.solvers.expm1 compiled: math's expm1 for real x; for complex x = a + ib, numpy's
    expm1(a) cos b - 2 sin^2(b/2) + i e^a sin b (numba's own complex expm1 computes e^a cos b - 1)."""
    if isinstance(x, nb.types.Complex):
        def impl(x):
            a, b = x.real, x.imag
            s = math.sin(0.5 * b)
            return complex(math.expm1(a) * math.cos(b) - 2.0 * s * s, math.exp(a) * math.sin(b))
        return impl
    if isinstance(x, (nb.types.Float, nb.types.Integer)):
        return lambda x: math.expm1(x)
