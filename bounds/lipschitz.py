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


def _pairs(K):
    k, j = np.triu_indices(K, 1)
    return k, j


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
            lines.append(r"V = \max_{k,j} " + sp.latex(f.display(f.BALL_SPREAD_PAIR)))
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
           empirical: int = 0, seed: int = 0, ball_mass: float = 1 - 1e-6, progress=None) -> dict:
    """L(t) per bound on ``points`` log-spaced times of [delta, T], Lambda(T) per bound, and with
    ``empirical`` > 0 the brute-force sup and the p_t-mean of ||J||_op from that many samples per time.

    Fields (the JSON of ``flowcert lipschitz``): ``t`` (points,), one array per bound, ``lambda_T``,
    ``scope``, ``where``, ``what``; ``radius`` and ``ball_mass`` for ball-local bounds; with
    ``empirical``: ``empirical_sup``, ``empirical_growth_sup``, ``empirical_mean``,
    ``empirical_mean_se``, ``empirical_samples``, ``empirical_seed`` and ``tightness`` (per bound:
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
    lb = LipschitzBound(mix, ball_mass)
    ts = np.geomspace(delta, T, points)
    out = {"mixture": mix.name, "t": ts, "scope": lb.scope, "where": lb.where(), "what": {w: WHAT[w] for w in which}}
    for w in which:
        out[w] = lb(ts, w)
    out["lambda_T"] = {w: stability(mix, w, delta, T, bound=lb).integral.total for w in which}
    if lb.scope == "ball":
        out["radius"] = lb.radius(ts)
        out["ball_mass"] = ball_mass
    if lb.notes:
        out["notes"] = lb.notes
    if empirical:
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

    sup, growth, mean, se = [], [], [], []
    seeds = np.random.SeedSequence(seed).spawn(ts.size)
    radius = lb.radius(ts) if lb.scope == "ball" else None
    with progress(ts.size * samples, "brute-force ||J|| (samples)") as bar:
        for i, t in enumerate(ts):
            r = jacobian_stats(mix, t, samples, np.random.default_rng(seeds[i]),
                               radius=radius[i] if radius is not None else None, progress=bar)
            sup.append(r.sup), growth.append(r.sup_growth), mean.append(r.mean), se.append(r.mean_se)
    return {"empirical_sup": np.array(sup), "empirical_growth_sup": np.array(growth),
            "empirical_mean": np.array(mean), "empirical_mean_se": np.array(se),
            "empirical_samples": samples, "empirical_seed": seed}


def violations(out: dict) -> dict:
    """{bound: number of times where the brute force exceeds it} for a :func:`report` with ``empirical``."""
    return {w: int((~_holds(out, w)).sum()) for w in out.get("tightness", {})}
