"""Lipschitz bounds L(t) >= sup_x ||J(x, t)||_op of the probability-flow velocity.

The formulas live in :mod:`bounds.formulas` (sympy) and run as the generated
numpy code in :mod:`bounds._generated`; this module computes the mixture's
geometry constants and combines the generated pieces (minima over eigenvalues,
maxima over pairs of means).

Scope: for a shared covariance (isotropic included) the bounds hold for every
x in R^d ("global").  For per-component covariances they hold on the ball
||x|| <= R(t) whose p_t-mass is at least ``ball_mass`` ("ball").
"""

from __future__ import annotations

import numpy as np

from ..numcore.checks import InputError
from ..numcore.mixture import GaussianMixture

from . import _generated as gen

BOUNDS = ("tri", "sharp", "onesided")
WHAT = {
    "tri": "upper bound on sup_x ||J(x,t)||_op (triangle form)",
    "sharp": "upper bound on sup_x ||J(x,t)||_op (both spectrum ends)",
    "onesided": "upper bound on sup_x lambda_max(-J(x,t)), the backward growth rate (may be < 0)",
}
MAX_BINS = 16  # eigen-direction groups kept exactly in D_P(t)
MAX_PRUNE_PAIRS = 512
EXACT_NORM_FLOPS = 2e8  # beyond this, ||Sigma_k - Sigma_j||_op <= ||.||_F
PAIR_FORM_FLOPS = 4e6  # per time: pairs x d^3 (own bases) or pairs x d; beyond it only the diameter form
PAIR_SPLITS = (1.0, 0.5, 0.1, 1e-2, 1e-4, 0.0)
# a_i >= split * a_max joins the positive set (0: every a_i > 0)
QP_MAX_K = 8  # exact max of w^T C w over the simplex by enumerating faces up to this many components
# D of the exact (trust-region) pair constants, in units of 2 max |a_i| over pairs and directions
EXACT_D_GRID = (0.0,) + tuple(2.0 ** (e / 2.0) for e in range(-12, 5))
# the dual is flat at its minimum, so a relative error e of nu costs about e^2 of C: 2^-30 is ample
TRS_BISECTIONS = 30


def _pairs(K):
    k, j = np.triu_indices(K, 1)
    return k, j


def _faces(K):
    """Supports S (|S| >= 2) of the faces of the K-simplex, grouped by size: {size: (faces, size) index array}."""
    from itertools import combinations

    return {m: np.array(list(combinations(range(K), m))) for m in range(2, K + 1)}


def simplex_max(Cpairs: np.ndarray, K: int) -> np.ndarray:
    """q = max over the probability simplex of w^T C w, C symmetric with zero diagonal and entries
    ``Cpairs`` (n, pairs) >= 0 in ``np.triu_indices(K, 1)`` order.  Exact: the maximiser lies in the relative
    interior of some face S where C_S w_S = q 1 (Lagrange), so q = 1 / (1^T C_S^{-1} 1) for a face with a
    positive solution; along a null direction of a singular C_S the value is constant up to a smaller face,
    so nonsingular faces suffice.  A relative 1e-9 is added for round-off."""
    n = Cpairs.shape[0]
    k, j = np.triu_indices(K, 1)
    C = np.zeros((n, K, K))
    C[:, k, j] = Cpairs
    C[:, j, k] = Cpairs
    best = Cpairs.max(1) / 2.0 if Cpairs.size else np.zeros(n)  # edges: w = (1/2, 1/2)
    for m, faces in _faces(K).items():
        if m == 2:
            continue
        sub = C[:, faces[:, :, None], faces[:, None, :]]  # (n, F, m, m)
        ones = np.ones(sub.shape[:-1])
        with np.errstate(all="ignore"):
            sign, logdet = np.linalg.slogdet(sub)
            scale = np.log(np.maximum(np.linalg.norm(sub, axis=-1), 1e-300)).sum(-1)  # Hadamard: |det| <= prod
            ok = (sign != 0) & (logdet - scale > np.log(1e-12))
            safe = np.where(ok[..., None, None], sub, np.eye(m))
            x = np.linalg.solve(safe, ones[..., None])[..., 0]
            s1 = x.sum(-1)
            valid = ok & (s1 > 0) & np.all(x > 0, axis=-1)
            val = np.where(valid, 1.0 / np.where(valid, s1, 1.0), 0.0)
        best = np.maximum(best, val.max(1))
    return best * (1.0 + 1e-9)


class LipschitzBound:
    """L(t) for one mixture.

    ``parts(t)`` gives (h, l, V): the spectrum of J lies in [l - V, h].
    ``__call__(t, which)`` evaluates ``tri``, ``sharp`` or ``onesided``.
    """

    def __init__(self, mix: GaussianMixture, ball_mass: float = 1 - 1e-6):
        self.mixture = mix
        self.lam_min = float(mix.eigvals.min())
        self.lam_max = float(mix.eigvals.max())
        self.scope = "ball" if mix.structure == "component" else "global"
        if not 0.0 < ball_mass < 1.0:
            raise InputError(f"`ball_mass` = {ball_mass:g}: expected a probability in (0, 1)")
        self.ball_mass = float(ball_mass)
        self.notes: list[str] = []
        if self.scope == "global":
            self._init_shared(mix)
        else:
            self._init_ball(mix)

    # --------------------------------------------------------------- geometry
    def _init_shared(self, mix):
        lam = mix.eigvals[0]
        m = mix.means @ mix.basis[0] if mix.basis.shape[0] == 1 else mix.means  # means in the eigenbasis
        uniq = np.unique(lam)
        if uniq.size <= MAX_BINS:
            bin_lam = uniq
            idx = np.searchsorted(uniq, lam)
        else:
            edges = np.geomspace(lam.min(), lam.max(), MAX_BINS + 1)
            idx = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, MAX_BINS - 1)
            bin_lam = np.array([lam[idx == b].min() if np.any(idx == b) else lam.max() for b in range(MAX_BINS)])
            self.notes.append(
                f"{uniq.size} distinct covariance eigenvalues grouped into {MAX_BINS} bins "
                "(each at its smallest eigenvalue: an upper bound)"
            )
        k, j = _pairs(mix.K)
        E = np.zeros((k.size, bin_lam.size))
        for b in range(bin_lam.size):  # squared distances within each eigen-group, by Gram matrices
            mb = m[:, idx == b]
            sq = (mb**2).sum(1)
            gram = sq[:, None] + sq[None, :] - 2.0 * mb @ mb.T
            E[:, b] = np.maximum(gram[k, j], 0.0)
        self.bin_lam, self.E = bin_lam, self._prune(E)

    def _prune(self, E):
        if E.shape[0] <= 1:
            return E
        E = np.unique(E, axis=0)
        if E.shape[1] == 1:
            return E.max(0, keepdims=True)
        if E.shape[0] > MAX_PRUNE_PAIRS:
            self.notes.append(
                f"{E.shape[0]} mean pairs: D_P(t) bounded by the per-direction maximum over pairs"
            )
            return E.max(0, keepdims=True)
        keep = []
        for p in range(E.shape[0]):
            dom = np.all(E >= E[p], axis=1) & np.any(E > E[p], axis=1)
            if not dom.any():
                keep.append(p)
        return E[keep]

    def _init_ball(self, mix):
        covs = mix.covs
        lmin = mix.eigvals.min(1)
        lmax = mix.eigvals.max(1)
        k, j = _pairs(mix.K)
        if k.size * mix.d**3 <= EXACT_NORM_FLOPS:
            dS = np.array([np.abs(np.linalg.eigvalsh(covs[a] - covs[b])).max() for a, b in zip(k, j)])
        else:
            flat = covs.reshape(mix.K, -1)
            sq = (flat**2).sum(1)
            dS = np.sqrt(np.maximum(sq[k] + sq[j] - 2.0 * np.einsum("pi,pi->p", flat[k], flat[j]), 0.0))
            self.notes.append("||Sigma_k - Sigma_j|| bounded by the Frobenius norm (many large covariances)")
        nmu = np.linalg.norm(mix.means, axis=1)
        self.ball = dict(
            lmin_k=lmin[k], lmin_j=lmin[j], dS=dS,
            dmu=np.linalg.norm(mix.means[k] - mix.means[j], axis=1), nmu_k=nmu[k], nmu_j=nmu[j],
        )
        self.comp = dict(nmu_k=nmu, trS=mix.eigvals.sum(1), frob2=(mix.eigvals**2).sum(1), lmax_k=lmax)
        G = mix.basis.shape[0]
        cost = k.size * (mix.d**3 if G > 1 else mix.d)
        self.pair_form = cost <= PAIR_FORM_FLOPS
        if not self.pair_form:
            self.notes.append(f"{k.size} pairs in d = {mix.d}: only the diameter form of V (the weighted pair "
                              f"form is skipped above {PAIR_FORM_FLOPS:g} operations per time)")
        # means in the common eigenbasis (G <= 1), or as they are (own bases)
        self._mrot = mix.means @ mix.basis[0] if G == 1 else mix.means

    # --------------------------------------------------------------- evaluation
    def radius(self, t) -> np.ndarray:
        """R(t): the ball ||x|| <= R(t) has p_t-mass >= ball_mass (ball scope only)."""
        t = np.atleast_1d(np.asarray(t, float))
        if self.scope != "ball":
            return np.full(t.shape, np.inf)
        u = -np.log1p(-self.ball_mass)
        c = self.comp
        R = gen.ball_radius_k(t[:, None], c["nmu_k"], c["trS"], c["frob2"], c["lmax_k"], u, self.mixture.d)
        return R.max(1)

    def spread(self, t) -> np.ndarray:
        """V(t) >= lambda_max Cov_w[g] (on the ball for per-component covariances)."""
        t = np.atleast_1d(np.asarray(t, float))
        if self.scope == "global":
            if self.E.shape[0] == 0:
                return np.zeros(t.shape)
            Dp2 = gen.pair_term(t[:, None, None], self.bin_lam[None, None, :], self.E[None]).sum(2).max(1)
            return gen.shared_spread(t, Dp2)
        if self.mixture.K == 1:
            return np.zeros(t.shape)
        R = self.radius(t)
        b = self.ball
        out = np.empty(t.shape)
        step = max(1, 2_000_000 // max(1, b["dS"].size))
        for i in range(0, t.size, step):
            tt = t[i:i + step, None]
            out[i:i + step] = gen.ball_spread_pair(
                tt, b["lmin_k"], b["lmin_j"], b["dS"], b["dmu"], b["nmu_k"], b["nmu_j"], R[i:i + step, None]
            ).max(1)
        if self.pair_form:
            out = np.minimum(out, self.weighted_spread(t, R))
        return out

    def _pair_geometry(self, t):
        """For times t (n,) and pairs k < j: eigenvalues a (n, p, d) of A = P_k - P_j, b = alpha (P_k mu_k -
        P_j mu_j) in A's eigenbasis (n, p, d), and phi(0) = l_k(0) - l_j(0) (n, p)."""
        mix = self.mixture
        k, j = _pairs(mix.K)
        alpha = np.exp(-t)[:, None, None]
        s = np.exp(-2.0 * t)[:, None, None] * mix.eigvals[None] + (-np.expm1(-2.0 * t))[:, None, None]
        inv = 1.0 / s  # (n, K, d)
        logdet = np.log(s).sum(2)
        if mix.basis.shape[0] <= 1:  # diagonal in one basis: A's eigenvectors are that basis
            m = self._mrot[None]  # (1, K, d)
            Pm = alpha * inv * m  # P_k alpha mu_k in the basis
            a = inv[:, k] - inv[:, j]
            bvec = Pm[:, k] - Pm[:, j]
            quad = alpha[..., 0] ** 2 * (inv * m**2).sum(2)  # alpha^2 mu_k^T P_k mu_k
        else:
            U = mix.basis  # (K, d, d)
            P = np.einsum("kab,nkb,kcb->nkac", U, inv, U)
            Pm = np.einsum("nkab,kb->nka", P, mix.means) * alpha
            quad = alpha[..., 0] * np.einsum("nka,ka->nk", Pm, mix.means)
            a, E = np.linalg.eigh(P[:, k] - P[:, j])
            bvec = np.einsum("npab,npa->npb", E, Pm[:, k] - Pm[:, j])
        lw = np.log(mix.weights)
        phi0 = lw[k] - lw[j] - 0.5 * (logdet[:, k] - logdet[:, j]) - 0.5 * (quad[:, k] - quad[:, j])
        return a, bvec, phi0

    def pair_constants(self, t, R=None):
        """(C, D, sign), each (n, pairs) for pairs k < j (``np.triu_indices(K, 1)``): on the ball ||x|| <= R(t),
        ||g_k - g_j||^2 <= C - D * sign * (l_k(x) - l_j(x)).

        For each orientation (sign +1: phi = l_k - l_j, -1: phi = l_j - l_k) and each split of A's
        eigen-directions (:data:`PAIR_SPLITS`), C and D come from the generated ``pair_c``/``pair_d``; every
        choice is a valid bound, and the one with the smallest combined value is kept per pair."""
        t = np.atleast_1d(np.asarray(t, float))
        R = self.radius(t) if R is None else np.asarray(R, float)
        K = self.mixture.K
        a0, b0, p0 = self._pair_geometry(t)
        Rr = R[:, None]
        bestC = np.full(p0.shape, np.inf)
        bestD = np.full(p0.shape, np.inf)
        bestS = np.full(p0.shape, np.inf)
        sign = np.ones(p0.shape)
        for sgn in (1.0, -1.0):
            a, b, phi = sgn * a0, sgn * b0, sgn * p0
            amax = a.max(2, keepdims=True)
            for split in PAIR_SPLITS:
                pos = (a > 0) & (a >= split * amax)
                ap = np.where(pos.any(2), amax[..., 0], 0.0)
                am = np.where(pos, 0.0, np.maximum(-a, 0.0)).max(2)
                Q = np.where(pos, b**2 / np.where(pos, 2.0 * a, 1.0), 0.0).sum(2)
                bn = np.sqrt(np.where(pos, 0.0, b**2).sum(2))
                C = gen.pair_c(ap, am, phi, Q, bn, Rr)
                D = gen.pair_d(ap)
                S = gen.weighted_spread(C, D, K)
                better = S < bestS
                bestC, bestD, bestS = (np.where(better, C, bestC), np.where(better, D, bestD),
                                       np.where(better, S, bestS))
                sign = np.where(better, sgn, sign)
        return bestC, bestD, sign

    def exact_pair_constants(self, t, D, R=None):
        """(C, sign), each (m, n, pairs), for the weights D (m, n) (one per time, common to all pairs) and times
        t (n,): on the ball ||x|| <= R(t), ||g_k - g_j||^2 <= C - D sign (l_k - l_j), since
        C >= max over the ball of ||g_k - g_j||^2 + D sign (l_k - l_j); of the two orientations (sign +1, -1)
        the one with the smaller C is kept.

        C is the Lagrangian dual of that trust-region problem at a dual variable nu >= max(0, max_i h_i)
        (generated ``trs_shift``, ``trs_term``, ``trs_const``): an upper bound for every such nu, and equal to
        the maximum at the nu where ||y(nu)|| = R, which bisection finds.  A relative 1e-9 of the largest
        |value| the quadratic can take on the ball is added for round-off (of A's eigen-decomposition too)."""
        t = np.atleast_1d(np.asarray(t, float))
        R = self.radius(t) if R is None else np.asarray(R, float)
        D = np.asarray(D, float)[..., None, None]  # (m, n, 1, 1)
        a0, b0, p0 = self._pair_geometry(t)
        Rr = R[:, None, None]
        amax = np.abs(a0).max(2, keepdims=True)
        bnorm = np.sqrt((b0**2).sum(2, keepdims=True))
        best = np.full(np.broadcast_shapes(D.shape[:-1], p0.shape), np.inf)
        sign = np.ones(best.shape)
        for sgn in (1.0, -1.0):
            a, b, phi = sgn * a0, sgn * b0, sgn * p0
            h = gen.trs_shift(a, D)
            c2 = (b * (D / 2.0 - a)) ** 2
            hmax = h.max(-1, keepdims=True)
            lo = np.maximum(hmax, 0.0)
            # nu - h_i >= tiny > 0 (relative to the scale of the curvatures, so that squares stay normal)
            tiny = 1e-12 * (np.abs(h).max(-1, keepdims=True) + amax**2 + D * amax + np.sqrt(c2.sum(-1, keepdims=True))
                            / Rr) + 1e-150

            def norm2(nu):
                return (c2 / np.maximum((nu - h) ** 2, 1e-300)).sum(-1, keepdims=True)

            with np.errstate(divide="ignore", invalid="ignore"):
                interior = (hmax < 0) & (norm2(np.zeros_like(hmax)) <= Rr**2)
            left = lo + tiny
            right = left + np.sqrt(c2.sum(-1, keepdims=True)) / Rr + tiny  # ||y(right)|| <= R
            for _ in range(TRS_BISECTIONS):
                mid = 0.5 * (left + right)
                out = norm2(mid) > Rr**2
                left, right = np.where(out, mid, left), np.where(out, right, mid)
            nu = np.where(interior, 0.0, right)
            C = gen.trs_const(phi, D[..., 0], nu[..., 0], Rr[..., 0]) + gen.trs_term(a, b, D, nu).sum(-1)
            scale = (amax * Rr + bnorm) ** 2 + D * (np.abs(phi)[..., None] + bnorm * Rr + amax * Rr**2)
            C = C + 1e-9 * (scale[..., 0] + nu[..., 0] * Rr[..., 0] ** 2)
            C = np.where(np.isnan(C), np.inf, C)
            sign = np.where(C < best, sgn, sign)
            best = np.minimum(best, C)
        return best, sign

    def exact_spread(self, t, R=None) -> np.ndarray:
        """V(t) from the exact pair constants: the smallest over D in :data:`EXACT_D_GRID` (times 2 max |a_i|)
        of q(D) / 2 + D (K - 1) / sqrt(8K) (generated ``weighted_spread_qp``; q the simplex maximum of
        w^T C(D)^+ w), or for K > :data:`QP_MAX_K` of the generated ``weighted_spread``."""
        t = np.atleast_1d(np.asarray(t, float))
        R = self.radius(t) if R is None else np.asarray(R, float)
        K = self.mixture.K
        a0, _, _ = self._pair_geometry(t)
        unit = 2.0 * np.abs(a0).max((1, 2))  # (n,)
        grid = np.asarray(EXACT_D_GRID)[:, None] * unit[None]  # (m, n)
        C = np.maximum(self.exact_pair_constants(t, grid, R)[0], 0.0)  # (m, n, pairs)
        if K <= QP_MAX_K:
            q = simplex_max(C.reshape(-1, C.shape[-1]), K).reshape(grid.shape)
            V = gen.weighted_spread_qp(q, grid, K)
        else:
            V = gen.weighted_spread(C.max(-1), grid, K)
        return V.min(0)

    def weighted_spread(self, t, R=None) -> np.ndarray:
        """The weighted pair form of V(t) on the ball ||x|| <= R(t) (per-component covariances): the smaller
        of the generated ``weighted_spread`` of the largest C_kj and D_kj of :meth:`pair_constants` (with the
        simplex maximum for K <= :data:`QP_MAX_K`) and :meth:`exact_spread`."""
        t = np.atleast_1d(np.asarray(t, float))
        R = self.radius(t) if R is None else np.asarray(R, float)
        K, d = self.mixture.K, self.mixture.d
        per_t = K * (K - 1) // 2 * d * (d if self.mixture.basis.shape[0] > 1 else 1)
        step = max(1, int(2e6 // max(1, per_t)))
        out = np.empty(t.shape)
        for i in range(0, t.size, step):
            C, D, _ = self.pair_constants(t[i:i + step], R[i:i + step])
            out[i:i + step] = gen.weighted_spread(C.max(1), D.max(1), K)
            if 2 < K <= QP_MAX_K:
                q = simplex_max(np.maximum(C, 0.0), K)
                out[i:i + step] = np.minimum(out[i:i + step], gen.weighted_spread_qp(q, D.max(1), K))
        step = max(1, step // len(EXACT_D_GRID))
        for i in range(0, t.size, step):
            out[i:i + step] = np.minimum(out[i:i + step], self.exact_spread(t[i:i + step], R[i:i + step]))
        return out

    def parts(self, t):
        t = np.atleast_1d(np.asarray(t, float))
        return gen.edge(t, self.lam_min), gen.edge(t, self.lam_max), self.spread(t)

    def __call__(self, t, which: str = "tri") -> np.ndarray:
        h, l, V = self.parts(t)
        if which == "tri":
            return gen.l_tri(h, l, V)
        if which == "sharp":
            return gen.l_sharp(h, l, V)
        if which == "onesided":
            return gen.m_onesided(h, l, V)
        raise InputError(f"`bound` = {which!r}: expected one of {', '.join(BOUNDS)}")

    def where(self) -> str:
        if self.scope == "global":
            return "global: every x in R^d"
        return f"local: the ball ||x|| <= R(t), p_t-mass >= {self.ball_mass:.10g} (Laurent-Massart tail bound)"

    # --------------------------------------------------------------- LaTeX
    def latex(self, which=BOUNDS) -> str:
        """The bound's formula (sympy LaTeX) and the mixture's constants."""
        import sympy as sp

        from . import formulas as f

        lines = []
        mix = self.mixture
        sym = {"tri": f.L_TRI, "sharp": f.L_SHARP, "onesided": f.M_ONESIDED}
        lines.append(r"s(\lambda) = " + sp.latex(f.display(f.s_of(f.lam))))
        lines.append(r"h = " + sp.latex(f.display(f.edge(f.lam_min))) + r",\quad l = "
                     + sp.latex(f.display(f.edge(f.lam_max))))
        if self.scope == "global":
            lines.append(r"V = " + sp.latex(f.display(f.SHARED_SPREAD)) + r",\quad D_P^2(t) = \max_{k,j}\sum_i "
                         + sp.latex(f.display(f.PAIR_TERM)).replace("E", "E_{kj,i}"))
        else:
            lines.append(r"V = \min\Big(\max_{k,j} " + sp.latex(f.display(f.BALL_SPREAD_PAIR)) + r",\ "
                         + sp.latex(f.WEIGHTED_SPREAD).replace("C", r"\max_{k<j} C_{kj}").replace(
                             "D", r"\max_{k<j} D_{kj}") + r"\Big)")
            lines.append(r"C_{kj} = " + sp.latex(f.PAIR_C) + r",\quad D_{kj} = " + sp.latex(f.PAIR_D))
            qD = sp.Symbol("q(D)", nonnegative=True)
            lines.append(r"V \le \min_{D \ge 0} " + sp.latex(f.WEIGHTED_SPREAD_QP.subs(f.q_simplex, qD))
                         + r",\quad q(D) = \max_{w \in \Delta_K} w^\top C(D)^+ w,\quad C_{kj}(D) = "
                + sp.latex(f.TRS_CONST) + r" + \sum_i " + sp.latex(f.TRS_TERM) + r",\quad h_i = "
                + sp.latex(f.TRS_SHIFT) + r",\ \nu \ge \max(0, \max_i h_i)"
                + r"\ \text{(exact on the ball: } C_{kj}(D) \ge \max_{\lVert x\rVert \le R}"
                r" \lVert g_k - g_j\rVert^2 + D \varphi_{kj}(x)\text{)}")
            lines.append(r"\text{per pair: } P_k - P_j = E\,\mathrm{diag}(a)E^\top,\ b = E^\top \alpha(P_k\mu_k - P_j\mu_j),"
                         r"\ \varphi_0 = l_k(0) - l_j(0),\ Q = \sum_{i \in \mathcal{P}} b_i^2/(2a_i),\ "
                         r"b_N = \lVert b_{\mathcal{N}}\rVert,\ a_+ = \max_{\mathcal{P}} a_i,\ a_- = \max_{\mathcal{N}} (-a_i)^+")
            lines.append(r"R(t) = \max_k " + sp.latex(f.display(f.BALL_RADIUS_K)))
        for w in which:
            name = {"tri": r"L_{\mathrm{tri}}", "sharp": r"L_{\mathrm{sharp}}", "onesided": r"m"}[w]
            lines.append(f"{name}(t) = " + sp.latex(sym[w]))
        consts = [rf"\lambda_{{\min}} = {self.lam_min:.6g}", rf"\lambda_{{\max}} = {self.lam_max:.6g}"]
        if mix.structure == "isotropic":
            D = float(np.sqrt(self.E.max())) if self.E.size else 0.0
            consts.append(rf"D = {D:.6g}")
            for w in which:
                name = {"tri": r"L_{\mathrm{tri}}", "sharp": r"L_{\mathrm{sharp}}", "onesided": r"m"}[w]
                expr = f.isotropic_closed_form(sp.Float(self.lam_min, 8), sp.Float(D, 8), w)
                lines.append(f"{name}(t) = " + sp.latex(expr))
        lines.append(r"\text{constants: } " + ",\\ ".join(consts))
        return "\n".join(lines)


def report(mix: GaussianMixture, *, bounds=BOUNDS, points: int = 50, delta: float = 1e-3, T: float = 5.0,
           empirical: int = 0, seed: int = 0, ball_mass: float = 1 - 1e-6, progress=None,
           class_label: int | None = None, guidance: float | None = None) -> dict:
    """L(t) per bound on ``points`` log-spaced times of [delta, T], Lambda(T) per bound, and with
    ``empirical`` > 0 the brute-force sup and the p_t-mean of ||J||_op from that many samples per time.

    With ``class_label`` (a mixture with labels): the bounds of the class-conditional mixture, and with
    ``guidance`` W as well those of the guided velocity (1 - W) v_u + W v_c (:mod:`bounds.guided`; fields
    ``class_label`` and ``guidance``; the brute force then samples both mixtures' p_t).

    Fields (the JSON of ``flowcert lipschitz``): ``t`` (points,), one array per bound, ``lambda_T``,
    ``scope``, ``where``, ``what``; ``radius`` and ``ball_mass`` for ball-local bounds; with
    ``empirical``: ``empirical_sup``, ``empirical_growth_sup``, ``empirical_mean``,
    ``empirical_mean_se``, ``trajectory_rate_mean`` with ``trajectory_rate_mean_se`` and
    ``trajectory_rate_p99`` (lambda_max(-J) over the samples of p_t, which are the states at time t of
    exact trajectories from x_T ~ p_T: the rate whose time integral along one trajectory is its
    stability certificate), ``empirical_samples``, ``empirical_seed`` and ``tightness`` (per bound:
    ``max_ratio`` of sup to bound, ``holds_at_all_points``).

    Raises:
        InputError: a bound name, ``points``, ``empirical``, ``ball_mass`` or the window out of range.
    """
    from ..numcore.checks import options, time_window
    from ..numcore.io import no_progress

    from .stability import stability

    delta, T = time_window(delta, T)
    which = list(dict.fromkeys(bounds))
    for w in which:
        if w not in BOUNDS:
            raise InputError(f"`bounds` = {w!r}: expected one of {', '.join(BOUNDS)}")
    points, empirical, seed, ball_mass = options(points=points, empirical=empirical, seed=seed, ball_mass=ball_mass)
    progress = progress or no_progress
    if class_label is None and guidance is not None:
        raise InputError(f"`guidance` = {guidance!r}: guidance needs a class: expected `class_label` with it (a "
                         "mixture with labels)")
    guided = class_label is not None
    if guided:
        from .guided import GuidedLipschitzBound

        lb = GuidedLipschitzBound(mix, class_label, 1.0 if guidance is None else guidance, ball_mass)
    else:
        lb = LipschitzBound(mix, ball_mass)
    ts = np.geomspace(delta, T, points)
    out = {"mixture": mix.name, "t": ts, "scope": lb.scope, "where": lb.where(), "what": {w: WHAT[w] for w in which}}
    if guided:
        out.update(class_label=lb.label, guidance=lb.guidance)
    for w in which:
        out[w] = lb(ts, w)
    out["lambda_T"] = {w: stability(mix, w, delta, T, bound=lb).integral.total for w in which}
    if lb.scope == "ball":
        out["radius"] = lb.radius(ts)
        out["ball_mass"] = ball_mass
    if lb.notes:
        out["notes"] = lb.notes
    if empirical:
        if guided:
            from .guided import brute_force

            out.update(brute_force(lb, ts, empirical, seed, progress))
        else:
            out.update(_brute_force(mix, lb, ts, empirical, seed, progress))
        out["tightness"] = {
            w: {"max_ratio": float(np.max(_reference(out, w) / out[w])) if w != "onesided" else None,
                "holds_at_all_points": bool(np.all(_holds(out, w)))}
            for w in which}
    return out


def _reference(out: dict, which: str) -> np.ndarray:
    """The brute-force quantity a bound is compared with (growth rate for ``onesided``)."""
    return out["empirical_growth_sup"] if which == "onesided" else out["empirical_sup"]


def _holds(out: dict, which: str) -> np.ndarray:
    """Where the brute force stays below the bound, up to round-off: relative 1e-9 of |bound| plus
    absolute 1e-12 (|bound|, so the tolerance widens the bound for either sign: ``onesided`` may be
    negative)."""
    bound = np.asarray(out[which], float)
    return _reference(out, which) <= bound + 1e-9 * np.abs(bound) + 1e-12


def _brute_force(mix, lb, ts, samples, seed, progress) -> dict:
    from ..numcore.empirical import jacobian_stats

    sup, growth, mean, se, gmean, gse, gp99 = [], [], [], [], [], [], []
    seeds = np.random.SeedSequence(seed).spawn(ts.size)
    radius = lb.radius(ts) if lb.scope == "ball" else None
    with progress(ts.size * samples, "brute-force ||J|| (samples)") as bar:
        for i, t in enumerate(ts):
            r = jacobian_stats(mix, t, samples, np.random.default_rng(seeds[i]),
                               radius=radius[i] if radius is not None else None, progress=bar)
            sup.append(r.sup), growth.append(r.sup_growth), mean.append(r.mean), se.append(r.mean_se)
            gmean.append(r.growth_mean), gse.append(r.growth_mean_se), gp99.append(r.growth_p99)
    return {"empirical_sup": np.array(sup), "empirical_growth_sup": np.array(growth),
            "empirical_mean": np.array(mean), "empirical_mean_se": np.array(se),
            "trajectory_rate_mean": np.array(gmean), "trajectory_rate_mean_se": np.array(gse),
            "trajectory_rate_p99": np.array(gp99),
            "empirical_samples": samples, "empirical_seed": seed}


def violations(out: dict) -> dict:
    """{bound: number of times where the brute force exceeds it} for a :func:`report` with ``empirical``."""
    return {w: int((~_holds(out, w)).sum()) for w in out.get("tightness", {})}
