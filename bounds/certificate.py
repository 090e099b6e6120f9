"""Certificates for the fixed-t score network: parameter choices, error budget, sizes.

:func:`certify` evaluates the formulas of :mod:`bounds.sizes` (through the
generated numpy code) for one mixture, time t, accuracy eps and exponent p:

* ``kind="closed"``: the closed-form choices B, m, n = 2^L, J and the
  closed-form box radius R (fixed point of R = R_cf(G(R))).
* ``kind="tight"``: the smallest R, m, n, J that satisfy the exact budget
  inequalities (exact Gaussian tails per coordinate and the exact Gaussian
  moment in the tail term, the exact Taylor remainder, any n >= 3).

Both give ||N - s||_{L^p(p_t)} <= tail + trunc + exp + recip <= eps, with
tail <= eps/2 and each in-box term <= eps/6, in exact arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..numcore.checks import InputError, limit_text, option
from ..numcore.mixture import GaussianMixture

from . import _generated as gen

KINDS = ("closed", "tight")
EXTRA_M = 4  # tight search: m from its minimum up to this many more squarings


def score_scale(mix: GaussianMixture, t: float) -> float:
    """sqrt(sum_k pi_k tr P_k(t)) >= ||s||_{L^2(p_t)} (convexity of Fisher information).

    The zero network already has error ||s||_{L^p} <= this for p <= 2, so a
    useful eps lies below it."""
    return float(np.sqrt((mix.weights * (1.0 / mix.marginal_eigvals(t)).sum(1)).sum()))


EPS_RESOLUTION = 1e-14  # below this fraction of the score's scale float64 cannot even hold the score


def eps_resolution(eps: float, scale: float, where: str) -> None:
    """InputError for eps below EPS_RESOLUTION x the score's scale (before any work; the measured
    float64 floor of :func:`float64_floor` is far above it)."""
    if eps < EPS_RESOLUTION * scale:
        raise InputError(f"`eps` = {eps:g}: expected eps >= {limit_text(EPS_RESOLUTION * scale, True, 3)} "
                         f"({EPS_RESOLUTION:g} x the "
                         f"score's scale {scale:.4g} {where}: float64 does not resolve the score more finely)")


def float64_floor(cert) -> dict:
    """Measure the network's float64 round-off (:func:`bounds.verification.roundoff`) and refuse eps
    below what it supports for this mixture, naming the smallest eps found to be supported (the
    certificate re-issued at the estimated floor and measured again, up to 6 times); when the
    network is too large to build within the memory budget, say that it was not measured."""
    from ..numcore.checks import gib, memory_budget
    from .verification import build_bytes, roundoff

    need = build_bytes(cert)
    if need > memory_budget():
        return {"measured": False, "what": f"float64 round-off not measured: building the network needs about "
                                           f"{gib(need)}, above the memory budget of {gib(memory_budget())}"}
    points, where = cert.floor_points()
    info = roundoff(cert, points, where)
    if info["holds"]:
        return {"measured": True, **info}
    eps, found = info["eps_floor"], None
    for _ in range(6):
        if not eps < cert.eps * 1e12:
            break
        try:
            other = roundoff(cert.reissue(eps), points, where)
        except InputError:
            break
        if other["holds"]:
            found = eps
            break
        eps = max(other["eps_floor"], 1.5 * eps)
    hint = f"expected eps >= {limit_text(found, True, 2)} (measured: supported there)" if found else \
        f"expected eps >= about {limit_text(eps, True, 1)}"
    raise InputError(f"`eps` = {cert.eps:g}: below what float64 supports for {cert.mixture.name} ({where}): the "
                     f"network's round-off {info['roundoff_max']:.2g} (max over {info['samples']} samples, "
                     f"x{info['safety']:g}) exceeds the budget's slack eps - total = {info['slack']:.2g}; {hint}")


def check_request(mix: GaussianMixture, t, eps, p) -> tuple[float, float, float]:
    """Validate (t, eps, p) for this mixture; raise InputError with one line otherwise."""
    t = option("t", t)
    p = option("p", p)
    eps = option("eps", eps)
    if mix.K < 2:
        raise InputError(f"mixture {mix.name!r} has K = 1 component: expected K >= 2 "
                         "(for K = 1 the score -P (x - alpha mu) is affine and needs no certificate)")
    scale = score_scale(mix, t)
    if eps >= scale:
        raise InputError(f"`eps` = {eps:g}: expected a value below the score's own scale "
                         f"sqrt(sum_k pi_k tr P_k(t)) = {limit_text(scale, False, 4, strict=True)} at t = {t:g}")
    eps_resolution(eps, scale, f"at t = {t:g}")
    return t, eps, p


@dataclass
class Geometry:
    """Constants of p_t used by the formulas."""

    t: float
    alpha: float
    d: int
    K: int
    lam_min: float
    sig_max: float
    M2: float
    Minf: float
    lam_min_k: np.ndarray = field(repr=False)
    sd: np.ndarray = field(repr=False)        # (K, d) marginal standard deviations per coordinate
    means: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    uniform: bool = False  # constants valid for every t in a window [delta, T] (alpha = alpha_delta)

    @classmethod
    def of(cls, mix: GaussianMixture, t: float) -> "Geometry":
        s = mix.marginal_eigvals(t)
        a = math.exp(-t)
        var = a * a * mix.coordinate_variances + (-math.expm1(-2 * t))
        return cls(t, a, mix.d, mix.K, float(s.min()), float(np.sqrt(s.max())),
                   float(np.sqrt((mix.means**2).sum(1)).max()), float(np.abs(mix.means).max()),
                   s.min(1), np.sqrt(var), mix.means, mix.weights)

    @classmethod
    def window(cls, mix: GaussianMixture, delta: float, T: float) -> "Geometry":
        """Worst-case constants over t in [delta, T]: every eigenvalue of S_k(t) lies
        between its values at delta and T, alpha(t) <= alpha(delta), and each
        marginal variance lies between Sigma_ii and 1."""
        s = np.minimum(mix.marginal_eigvals(delta), mix.marginal_eigvals(T))
        s_hi = np.maximum(mix.marginal_eigvals(delta), mix.marginal_eigvals(T))
        sd = np.sqrt(np.maximum(mix.coordinate_variances, 1.0))
        return cls(delta, math.exp(-delta), mix.d, mix.K, float(s.min()), float(np.sqrt(s_hi.max())),
                   float(np.sqrt((mix.means**2).sum(1)).max()), float(np.abs(mix.means).max()),
                   s.min(1), sd, mix.means, mix.weights, uniform=True)

    def g_box(self, R: float, kind: str) -> float:
        """G(R) >= sup_{[-R,R]^d} max_k |g_k|."""
        if kind == "closed":
            return float(gen.cert_g_closed(self.t, self.d, R, self.M2, self.lam_min))
        r = np.sqrt(((R + self.alpha * np.abs(self.means)) ** 2).sum(1))
        return float(np.max(r / self.lam_min_k))

    def c_s(self, p: float, kind: str) -> float:
        if kind == "closed":
            return float(gen.cert_cs_closed(self.t, self.d, p, self.M2, self.sig_max, self.lam_min))
        mu = float(gen.cert_moment_2p(self.d, p))
        return float(gen.cert_cs_exact(self.t, self.M2, self.sig_max, self.lam_min, mu))

    def p_out(self, R: float, kind: str) -> float:
        """P(x outside [-R, R]^d) under p_t (union bound over coordinates)."""
        if kind == "closed":
            if R <= self.alpha * self.Minf:
                return 1.0
            return min(1.0, float(gen.cert_p_out_closed(self.t, self.d, R, self.Minf, self.sig_max)))
        from scipy.special import ndtr

        m = self.alpha * self.means
        if self.uniform:  # 2 Phi^c((R - alpha|mu|)/sd) bounds both sides for every alpha <= alpha_delta
            tail = 2.0 * ndtr(-(R - np.abs(m)) / self.sd)
        else:
            tail = ndtr(-(R - m) / self.sd) + ndtr(-(R + m) / self.sd)
        return min(1.0, float((self.weights[:, None] * tail).sum()))

    def tail(self, R: float, p: float, eps: float, kind: str) -> float:
        return float(gen.cert_tail(p, eps, self.c_s(p, kind), self.g_box(R, kind), self.p_out(R, kind)))


class Sized:
    """depth, width and params read from a certificate's ``structure`` mapping."""

    structure: dict

    @property
    def depth(self) -> int:
        return self.structure["depth"]

    @property
    def width(self) -> int:
        return self.structure["width"]

    @property
    def params(self) -> int:
        return self.structure["params"]


@dataclass
class Certificate(Sized):
    """Parameter choices, error budget and sizes for one (mixture, t, eps, p, kind)."""

    mixture: GaussianMixture = field(repr=False)
    t: float
    eps: float
    p: float
    kind: str
    geometry: Geometry = field(repr=False)
    choices: dict
    budget: dict
    structure: dict
    float64: dict | None = None  # the measured round-off against the budget's slack (float64_floor)

    def build(self):
        """The network itself (numcore.scorenet.build_fixed_t) for these choices (built once)."""
        from ..numcore.scorenet import build_fixed_t

        if getattr(self, "_network", None) is None:
            c = self.choices
            self._network = build_fixed_t(self.mixture, self.t, R=c["R"], B=c["B"], m=c["m"], n=c["n"], J=c["J"],
                                          G=c["G"])
        return self._network

    def reissue(self, eps: float) -> "Certificate":
        """The same request at another eps (no float64 measurement)."""
        return certify(self.mixture, self.t, eps, self.p, self.kind, floor=False)

    def floor_points(self) -> tuple[np.ndarray, str]:
        """Network inputs where the float64 round-off is measured: samples of p_t (fixed seed)."""
        from ..numcore.marginal import sample
        from .verification import FLOOR_SAMPLES

        return sample(self.mixture, self.t, FLOOR_SAMPLES, np.random.default_rng(0)), f"p_t at t = {self.t:g}"

    def as_dict(self) -> dict:
        g = self.geometry
        return {
            "part": "A", "mixture": self.mixture.name, "d": g.d, "K": g.K, "t": self.t, "eps": self.eps, "p": self.p,
            "certificate": self.kind, "depth": self.depth, "width": self.width, "params": self.params,
            "choices": dict(self.choices), "budget": dict(self.budget),
            "geometry": {"alpha": g.alpha, "lambda_min": g.lam_min, "sigma_max": g.sig_max, "M_2": g.M2,
                         "M_inf": g.Minf},
            "counts": {k: v for k, v in self.structure.items() if k not in ("depth", "width", "params")},
            **({"float64": self.float64} if self.float64 is not None else {}),
        }


def _bits(K: int) -> tuple[int, int]:
    D = (K - 1).bit_length()
    return D, D - bin(K - 1).count("1")


def structural_counts(mix: GaussianMixture, t: float, R: float = 1.0) -> dict:
    """D, nu, Z_A, Z_P of the formulas for this mixture (counted without building all K matrices)."""
    from ..numcore.scorenet import component_counts, logit_shift

    Z_A, Z_P, logc = component_counts(mix, t)
    D, nu = _bits(mix.K)
    C = logit_shift(mix, t, R)
    pairs = [(logc[i + 1] + C) - (logc[i] + C) == 0.0 for i in range(0, mix.K - 1, 2)]
    return {"D": D, "nu": nu, "Z_A": Z_A, "Z_P": Z_P, "Z_0": int(sum(pairs))}


def sizes(mix_counts: dict, d: int, K: int, n: int, m: int, J: int) -> dict:
    """depth, width, params from the generated size formulas (exact integers)."""
    L = max(2, math.ceil(math.log2(n)))
    c = mix_counts
    return {
        "depth": int(round(float(gen.cert_depth(c["D"], L, m, J)))),
        "width": int(round(float(gen.cert_width(d, K, n, L)))),
        "params": int(round(float(gen.cert_params(d, K, c["D"], c["nu"], n, L, m, J, c["Z_A"], c["Z_P"], c["Z_0"])))),
    }


def box_radius(geo: Geometry, p: float, eps: float, kind: str) -> float:
    """Radius R of the box [-R, R]^d where the network approximates the score. Box radius: closed-form fixed point, or (tight) the smallest R with tail <= eps/2."""
    cs = geo.c_s(p, "closed")
    R = geo.alpha * geo.Minf + geo.sig_max
    for _ in range(500):
        Rn = float(gen.cert_r_closed(geo.t, geo.d, p, eps, geo.Minf, geo.sig_max, cs, geo.g_box(R, "closed")))
        if Rn <= R:
            break
        R = Rn * (1 + 1e-12)
    closed = R
    if geo.tail(closed, p, eps, "closed") > eps / 2:  # the fixed point satisfies it on paper
        raise RuntimeError("closed-form radius violates its tail inequality")
    if kind == "closed":
        return closed
    lo, hi = geo.alpha * geo.Minf, closed
    if geo.tail(hi, p, eps, "tight") > eps / 2:
        raise RuntimeError("tight tail bound exceeds the closed form")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if geo.tail(mid, p, eps, "tight") <= eps / 2:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-9 * hi:
            break
    return hi


def error_budget(K, G, B, m, n, J, p_out, tail) -> dict:
    """The error terms tail, trunc, exp, recip and their total for the choices (B, m, n, J)."""
    delta = float(gen.cert_delta(B, float(m), float(n)))
    theta = float(gen.cert_theta(K, delta))
    terms = {
        "tail": tail,
        "trunc": float(gen.cert_trunc(K, G, B)),
        "exp": float(gen.cert_exp(K, G, delta)),
        "recip": float(gen.cert_recip(G, theta, float(J))),
    }
    terms["total"] = sum(terms.values())
    terms.update({"delta": delta, "theta": theta, "P_out": p_out})
    return terms


def choose_inbox(K: int, G: float, share: float, kind: str, size_of) -> tuple[float, int, int, int]:
    """(B, m, n, J) with trunc, exp and recip each <= share.

    closed: the closed-form choices of bounds.sizes (written for shares eps/6, so
    they are evaluated at eps = 6 share).  tight: B with trunc = share exactly;
    for m from its minimum ceil(log2 B) to EXTRA_M more, the smallest n >= 3 and
    J >= 3 meeting their exact inequalities; the (m, n, J) with the fewest
    parameters (then the smallest depth) per size_of(n, m, J) wins."""
    if kind == "closed":
        e6 = 6 * share
        B = float(gen.cert_b_closed(K, G, e6))
        m = int(gen.cert_m_closed(B))
        n = 2 ** int(gen.cert_l_closed(K, G, e6, float(m)))
        J = int(gen.cert_j_closed(K, G, e6))
        return B, m, n, J
    B = math.log(2 * (K - 1) * G / share)  # trunc = share exactly
    m0 = max(1, math.ceil(math.log2(B)))
    best = None
    for m in range(m0, m0 + EXTRA_M + 1):
        n = 3
        while float(gen.cert_exp(K, G, float(gen.cert_delta(B, float(m), float(n))))) > share:
            n += 1
        theta = float(gen.cert_theta(K, float(gen.cert_delta(B, float(m), float(n)))))
        J = 3
        while float(gen.cert_recip(G, theta, float(J))) > share:
            J += 1
        sz = size_of(n, m, J)
        key = (sz["params"], sz["depth"])
        if best is None or key < best[0]:
            best = (key, m, n, J)
    _, m, n, J = best
    return B, m, n, J


def certify(mix: GaussianMixture, t: float, eps: float, p: float = 2.0, kind: str = "tight", *,
            floor: bool = True) -> Certificate:
    """Parameter choices, budget and sizes (see module docstring).  With ``floor``, the network is
    built and its float64 round-off measured (:func:`float64_floor`): eps below what float64
    supports for this mixture is refused."""
    t, eps, p = check_request(mix, t, eps, p)
    if kind not in KINDS:
        raise InputError(f"certificate kind = {kind!r}: expected one of {', '.join(KINDS)}")
    geo = Geometry.of(mix, t)
    K, d = mix.K, mix.d
    R = box_radius(geo, p, eps, kind)
    G = geo.g_box(R, kind)
    counts = structural_counts(mix, t, R)
    share = eps / 6
    B, m, n, J = choose_inbox(K, G, share, kind, lambda n_, m_, J_: sizes(counts, d, K, n_, m_, J_))
    budget = error_budget(K, G, B, m, n, J, geo.p_out(R, kind), geo.tail(R, p, eps, kind))
    for name, cap in (("tail", eps / 2), ("trunc", share), ("exp", share), ("recip", share)):
        if not budget[name] <= cap * (1 + 1e-9):
            raise RuntimeError(f"{kind} certificate: {name} = {budget[name]:.3g} exceeds its share {cap:.3g}")
    L = max(2, math.ceil(math.log2(n)))
    choices = {"R": R, "G": G, "C_s": geo.c_s(p, kind), "B": B, "m": m, "n": n, "L": L, "J": J,
               "D": counts["D"], "theta": budget["theta"], "c": 2.0 / (K + 1)}
    structure = dict(sizes(counts, d, K, n, m, J), **counts)
    cert = Certificate(mix, t, eps, p, kind, geo, choices, budget, structure)
    if floor:
        cert.float64 = float64_floor(cert)
    return cert
