"""Certificates for the time-input score network (t in [delta, T]): choices, budget, sizes, verification.

Budget, for every t in [delta, T]:

    ||N(., t) - s(., t)||_{L^p(p_t)} <= tail + trunc + exp + recip + coef,
    tail <= eps/2 (window-uniform constants: proven),
    trunc, exp, recip <= eps/8 each (as for fixed t, with G' = G + Delta_g: proven),
    coef <= eps/8 (time-coefficient errors eta: Bernstein-ellipse bounds, proven).

The Chebyshev degree N is the smallest N >= 3 whose proven interpolation error
bounds (numcore.timecoef.ellipse_bound, plus a float64 margin for the rounded
coefficients) keep the coefficient term within eps/8; the errors measured on
dense grids are reported next to them as a check.  Everything else
reuses :mod:`bounds.certificate` with the window-uniform geometry
(:meth:`Geometry.window`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..numcore.checks import InputError, limit_text, option, time_window
from ..numcore.mixture import GaussianMixture

from . import _generated as gen
from .certificate import (KINDS, Geometry, Sized, box_radius, choose_inbox, eps_resolution, error_budget,
                          float64_floor, score_scale)

SAFETY = 1.0  # the eta are proven bounds, no safety factor needed
N_MAX = 80
NOTE = ("the time-coefficient term uses proven Bernstein-ellipse bounds for the Chebyshev interpolants of "
        "alpha, 1/s and log s (exact arithmetic; float64 rounding of the coefficients is added as a margin); "
        "the guarantee holds for every t in [delta, T], verified here at a few times only")


@dataclass
class TimeCertificate(Sized):
    mixture: GaussianMixture = field(repr=False)
    delta: float
    T: float
    eps: float
    p: float
    kind: str
    geometry: Geometry = field(repr=False)
    coefs: object = field(repr=False)
    choices: dict
    budget: dict
    structure: dict
    float64: dict | None = None  # the measured round-off against the budget's slack

    def build(self):
        """The time-input network for these choices (built once)."""
        from ..numcore.scorenet_time import build_time_input

        if getattr(self, "_network", None) is None:
            c = self.choices
            self._network = build_time_input(self.mixture, self.coefs, R=c["R"], B=c["B"], m=c["m"], n=c["n"],
                                             J=c["J"], G=c["G"], shift=c["logit_shift"], cshift=c["c_shift"])
        return self._network

    def reissue(self, eps: float) -> "TimeCertificate":
        """The same request at another eps (no float64 measurement)."""
        return certify_window(self.mixture, self.delta, self.T, eps, self.p, self.kind, floor=False)

    def floor_points(self) -> tuple[np.ndarray, str]:
        """Inputs (x, t) where the float64 round-off is measured: samples of p_t at 4 geometric times."""
        from ..numcore.marginal import sample
        from .verification import FLOOR_SAMPLES

        rng = np.random.default_rng(0)
        times = np.geomspace(self.delta, self.T, 4)
        per = FLOOR_SAMPLES // times.size
        pts = [np.concatenate([sample(self.mixture, t, per, rng), np.full((per, 1), t)], 1) for t in times]
        return np.concatenate(pts), f"p_t at 4 times in [{self.delta:g}, {self.T:g}]"

    def as_dict(self) -> dict:
        g = self.geometry
        return {
            "part": "B", "mixture": self.mixture.name, "d": g.d, "K": g.K, "delta": self.delta, "T": self.T,
            "eps": self.eps, "p": self.p, "certificate": self.kind,
            "depth": self.depth, "width": self.width, "params": self.params,
            "choices": dict(self.choices), "budget": dict(self.budget),
            "geometry": {"alpha_delta": g.alpha, "lambda_min": g.lam_min, "sigma_max": g.sig_max, "M_2": g.M2,
                         "M_inf": g.Minf},
            "counts": {k: v for k, v in self.structure.items() if k not in ("depth", "width", "params")},
            "coefficient_errors": {"eta_alpha": self.coefs.eta_alpha, "eta_f": self.coefs.eta_f,
                                   "eta_ell": self.coefs.eta_ell,
                                   "measured_alpha": float(self.coefs.error[0]),
                                   "measured_f": float(self.coefs.error[1:1 + self.coefs.F].max()),
                                   "measured_ell": float(self.coefs.error[1 + self.coefs.F:].max())},
            "notes": [NOTE],
            **({"float64": self.float64} if self.float64 is not None else {}),
        }


def zero_coefficients(mix: GaussianMixture, co) -> int:
    """Z_c: weights of the coefficient layer lost to exactly-zero Chebyshev coefficients
    (rows alpha, f_sigma and c_k = sum_i ell_{sigma(k,i)}; 1 per T_0 term, 4 per T_i, i >= 1)."""
    from ..numcore.scorenet_time import eigen_counts

    idx = eigen_counts(mix)[2]
    F = co.F
    rows = [co.coef[0]] + [co.coef[1 + s] for s in range(F)]
    for k in range(mix.K):
        acc = np.zeros_like(co.coef[0])
        for i in range(mix.d):  # the same summation order as the network's forms
            acc = acc + co.coef[1 + F + idx[k, i]]
        rows.append(acc)
    weight = np.r_[1, np.full(co.N, 4)]
    return int(sum(((r == 0.0) * weight).sum() for r in rows))


def structural_counts(mix: GaussianMixture, co=None) -> dict:
    from ..numcore.scorenet_time import eigen_counts

    Z_U, Z_m, idx, sig = eigen_counts(mix)
    K = mix.K
    P = [int(np.unique(idx[k]).size) for k in range(K)]
    D = (K - 1).bit_length()
    return {"D": D, "nu": D - bin(K - 1).count("1"), "F": int(sig.size), "P": sum(P),
            "P_pair": sum(P[: 2 * (K // 2)]), "Z_U": Z_U, "Z_m": Z_m, "Z_c": 0 if co is None else zero_coefficients(mix, co)}


def sizes(c: dict, d: int, K: int, n: int, m: int, J: int, S1: int, N: int) -> dict:
    L = max(2, math.ceil(math.log2(n)))
    Lc = max(2, math.ceil(math.log2(N)))
    args = (d, K, c["D"], c["nu"], n, L, m, J, S1, N, Lc, c["F"], c["P"], c["P_pair"], c["Z_U"], c["Z_m"], c["Z_c"])
    return {
        "depth": int(round(float(gen.time_depth(c["D"], L, m, J, Lc)))),
        "width": int(round(float(gen.time_width(d, K, n, L, S1, N, Lc, c["F"], c["P"])))),
        "params": int(round(float(gen.time_params(*args)))),
    }


def _coef_term(geo: Geometry, R: float, G: float, co) -> tuple[float, float, float]:
    """(coef term, Delta_g, logit error) from the proven interpolation bounds eta."""
    r = float(np.sqrt(((R + geo.alpha * np.abs(geo.means)) ** 2).sum(1)).max())
    fmax = 1.0 / geo.lam_min
    ea, ef, el = SAFETY * co.eta_alpha, SAFETY * co.eta_f, SAFETY * co.eta_ell
    dg = ef * (r + ea * geo.M2) + fmax * ea * geo.M2
    dq = ef * (r + ea * geo.M2) ** 2 + fmax * ea * geo.M2 * (2 * r + ea * geo.M2)
    lam = geo.d * el + dq / 2
    return float(gen.time_coef(geo.d, G, geo.M2, r, fmax, ea, ef, el)), dg, lam


def check_window(mix, delta, T, eps, p):
    delta, T = time_window(delta, T)
    p = option("p", p)
    eps = option("eps", eps)
    if mix.K < 2:
        raise InputError(f"mixture {mix.name!r} has K = 1 component: expected K >= 2")
    scale = min(score_scale(mix, delta), score_scale(mix, T))
    if eps >= scale:
        raise InputError(f"`eps` = {eps:g}: expected a value below the score's own scale "
                         "min over [delta, T] of sqrt(sum_k pi_k tr P_k(t)) = "
                         f"{limit_text(scale, False, 4, strict=True)}")
    eps_resolution(eps, scale, "on the window")
    return delta, T, eps, p


def certify_window(mix: GaussianMixture, delta: float, T: float, eps: float, p: float = 2.0,
                   kind: str = "tight", *, floor: bool = True) -> TimeCertificate:
    """The time-input certificate on [delta, T]; with ``floor`` its float64 round-off is measured and
    eps below what float64 supports is refused (:func:`bounds.certificate.float64_floor`)."""
    from ..numcore.scorenet_time import eigen_counts
    from ..numcore.timecoef import interpolate, nodes

    delta, T, eps, p = check_window(mix, delta, T, eps, p)
    if kind not in KINDS:
        raise InputError(f"certificate kind = {kind!r}: expected one of {', '.join(KINDS)}")
    geo = Geometry.window(mix, delta, T)
    K, d = mix.K, mix.d
    R = box_radius(geo, p, eps, kind)
    G = geo.g_box(R, kind)
    share = eps / 8
    sig = eigen_counts(mix)[3]
    def fits(N, measure=False):
        co = interpolate(delta, T, sig, N, measure)
        return _coef_term(geo, R, G, co)[0] <= share, co

    lo, hi = 2, 3  # smallest N >= 3 that fits: doubling, then bisection (errors fall like 3^-N)
    while not fits(hi)[0]:
        if hi == N_MAX:
            raise InputError(f"`eps` = {eps:g}: the time coefficients would need Chebyshev degree > {N_MAX} "
                             "(their proven error bound meets the float64 rounding margin first); expected a "
                             "larger eps or a larger `delta`")
        lo, hi = hi, min(2 * hi, N_MAX)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid)[0] else (mid, hi)
    N = hi
    co = fits(N, measure=True)[1]
    coef, dg, lam = _coef_term(geo, R, G, co)
    G1 = G + dg
    counts = structural_counts(mix, co)
    S1 = nodes(delta, T).size
    B, m, n, J = choose_inbox(K, G1, share, kind, lambda n_, m_, J_: sizes(counts, d, K, n_, m_, J_, S1, N))
    budget = error_budget(K, G1, B, m, n, J, geo.p_out(R, kind), geo.tail(R, p, eps, kind))
    budget["coef"] = coef
    budget["total"] += coef
    for name, cap in (("tail", eps / 2), ("trunc", share), ("exp", share), ("recip", share), ("coef", share)):
        if not budget[name] <= cap * (1 + 1e-9):
            raise RuntimeError(f"{kind} time certificate: {name} = {budget[name]:.3g} exceeds {cap:.3g}")
    r = np.sqrt(((R + geo.alpha * np.abs(mix.means)) ** 2).sum(1))
    big = np.maximum(mix.eigvals, 1.0)
    cshift = float(np.max(-np.log(mix.weights) + 0.5 * np.log(big).sum(1))) + 1.0 + lam
    shift = float(np.max(r**2 / (2 * geo.lam_min_k) - np.log(mix.weights) + 0.5 * np.log(big).sum(1))) \
        + 1.0 + 2 * lam
    choices = {"R": R, "G": G1, "C_s": geo.c_s(p, kind), "B": B, "m": m, "n": n,
               "L": max(2, math.ceil(math.log2(n))), "J": J, "D": counts["D"], "theta": budget["theta"],
               "c": 2.0 / (K + 1), "N_ch": N, "L_c": max(2, math.ceil(math.log2(N))), "slices": S1,
               "logit_shift": shift, "c_shift": cshift, "logit_error": lam, "Delta_g": dg}
    structure = dict(sizes(counts, d, K, n, m, J, S1, N), **counts)
    cert = TimeCertificate(mix, delta, T, eps, p, kind, geo, co, choices, budget, structure)
    if floor:
        cert.float64 = float64_floor(cert)
    return cert


def verify_window(cert: TimeCertificate, net, n_samples: int, times: int = 6, seed: int = 0,
                  level: float = 0.95, bar=None) -> list[dict]:
    """MC check at `times` geometric times across [delta, T] (both ends included)."""
    from .verification import sample_errors, verdict

    rng = np.random.default_rng(seed)
    out = []
    R = cert.choices["R"]
    for t in np.geomspace(cert.delta, cert.T, times):
        feats = lambda x, t=t: np.concatenate([x, np.full((x.shape[0], 1), t)], 1)  # noqa: E731
        est, outside, sup_in = sample_errors(cert.mixture, net, float(t), n_samples, rng, R, bar, feats,
                                             p=cert.p, level=level)
        b = dict(cert.budget)
        b["recip"] += b["coef"]  # the in-box bound includes the coefficient term
        res = verdict(est, cert.eps, b, outside, sup_in, n_samples, float(t))
        res["t"] = float(t)
        res["not_checked"] += "; " + NOTE
        out.append(res)
    return out
