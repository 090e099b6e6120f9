"""Proof by measurement: the Monte-Carlo L^p(p_t) error of a materialized score network.

    err = (E_{x ~ p_t} ||N(x) - s(x, t)||^p)^{1/p}

estimated on N i.i.d. samples of p_t against the exact score (numcore's fused
kernel), with a 95% CLT confidence interval (numcore.lp).  The verdict says what
the samples did and did not check: the in-box error terms are exercised by the
samples; the tail term outside [-R, R]^d has probability P_out so small that the
samples (almost) never land there: that term is proven by the bound, not
measured.
"""

from __future__ import annotations

import numpy as np

from ..numcore import lp, marginal

CHUNK = 200_000


def sample_errors(mix, net, t, n_samples, rng, R, bar=None, features=None, p=2.0, level=0.95):
    """MC L^p error of the network on fresh samples of p_t, in chunks of CHUNK points.

    Returns (LpEstimate, outside-box count, max pointwise error inside the box).
    Per-chunk scaled sums of e = ||N - s||^p and e^2 (fused exact-score kernel) are combined,
    so memory stays O(CHUNK) for any N.  ``features(x)`` maps samples to the
    network input (default: x itself)."""
    total = np.zeros(3)
    outside, sup_in = 0, 0.0
    left = n_samples
    while left > 0:
        k = min(CHUNK, left)
        x = marginal.sample(mix, t, k, rng)
        y = np.ascontiguousarray(net(x if features is None else features(x)))
        inside = np.all(np.abs(x) <= R, axis=1)
        outside += int((~inside).sum())
        if inside.any():
            err = np.sqrt(((y[inside] - marginal.score(mix, x[inside], t)) ** 2).sum(1))
            sup_in = max(sup_in, float(err.max()))
        total = lp.add_sums(total, lp.score_lp_sums(mix, x, t, y, p), p)
        left -= k
        if bar is not None:
            bar.update(k)
    return lp.estimate_from_sums(total, n_samples, p, level), outside, sup_in


def verify(cert, net, n_samples: int, seed: int = 0, level: float = 0.95, bar=None) -> dict:
    """MC check of a fixed-t certificate against its materialized network."""
    rng = np.random.default_rng(seed)
    est, outside, sup_in = sample_errors(cert.mixture, net, cert.t, n_samples, rng, cert.choices["R"], bar,
                                         p=cert.p, level=level)
    return verdict(est, cert.eps, cert.budget, outside, sup_in, n_samples, cert.t)


def verdict(est, eps, budget, outside, sup_in, n_samples, t) -> dict:
    p_out = budget["P_out"]
    box = budget["trunc"] + budget["exp"] + budget["recip"]
    passed = est.ci_high < eps
    checked = (
        f"sampled: the whole network on {n_samples} samples of p_t at t = {t:g} "
        f"({outside} of them outside the box); the largest pointwise error inside the box was "
        f"{sup_in:.3g}, against the in-box bound {box:.3g}"
    )
    not_checked = (
        f"not sampled: the tail outside [-R, R]^d (P_out <= {p_out:.2g}, about {n_samples * p_out:.2g} expected "
        f"samples there); its term {budget['tail']:.3g} <= eps/2 is proven (Minkowski + Hoelder), not measured; "
        "exact arithmetic is assumed by the budget, float64 round-off is measured only"
    )
    return {
        "mc_error": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high, "level": est.level,
        "n_samples": est.n_samples, "passed": bool(passed),
        "slack": eps / est.ci_high if est.ci_high > 0 else float("inf"),
        "outside_box_samples": outside, "max_in_box_error": sup_in, "in_box_bound": box,
        "verdict": ("PASS" if passed else "FAIL") + f": upper {est.level:.0%} confidence limit "
                   f"{est.ci_high:.3g} {'<' if passed else '>='} eps = {eps:g}",
        "checked": checked, "not_checked": not_checked,
    }


# ----------------------------------------------------------------------------- float64 floor
FLOOR_SAMPLES = 256  # points of p_t where the round-off is measured
FLOOR_SAFETY = 2.0  # the measured maximum is an estimate of the sup: the slack must hold twice it
BYTES_PER_PARAM = 700  # building a network: Python forms per nonzero weight (measured: ~600 B)


def build_bytes(cert) -> float:
    """Memory to materialize the network of ``cert`` (an estimate): its construction forms, about
    BYTES_PER_PARAM per nonzero weight, and its dense layer matrices, two layers of the full width
    against narrow neighbours (2d + 2K + 320 wide)."""
    g = cert.geometry
    return cert.params * BYTES_PER_PARAM + 16.0 * cert.width * (2 * g.d + 2 * g.K + 320)


def forward_extended(net, x) -> np.ndarray:
    """The network in extended precision (np.longdouble: 64-bit mantissa on x86) on its float64
    weights: the exact-arithmetic reference the float64 evaluation is compared with."""
    z = np.asarray(x, dtype=np.longdouble)
    for L in net.layers:
        u = _sparse_affine(z, L.W, L.b)
        r = np.maximum(u, 0)
        z = np.where(L.act == 1, r * r, r)
    return _sparse_affine(z, net.W_out, net.b_out)


def _sparse_affine(z, W, b, chunk_entries: int = 2**22):
    rows, cols = np.nonzero(W)
    vals = W[rows, cols].astype(np.longdouble)
    out = np.tile(np.asarray(b, np.longdouble), (z.shape[0], 1))
    if rows.size == 0:
        return out
    heads = np.r_[0, np.nonzero(np.diff(rows))[0] + 1]
    step = max(1, chunk_entries // rows.size)
    for i in range(0, z.shape[0], step):
        part = z[i:i + step][:, cols] * vals
        out[i:i + step, rows[heads]] += np.add.reduceat(part, heads, axis=1)
    return out


def roundoff(cert, points: np.ndarray, where: str) -> dict:
    """The network's float64 round-off on ``points`` (its inputs) against the budget's slack.

    ``holds``: FLOOR_SAFETY x the largest round-off fits into eps - total, so the exact-arithmetic
    guarantee survives float64; ``eps_floor``: the eps where that would just hold if the round-off
    and the slack's share of eps stayed as measured here."""
    net = cert.build()
    exact = forward_extended(net, points)
    r = float(np.sqrt(((net(points) - exact.astype(np.float64)) ** 2).sum(1)).max())
    slack = cert.eps - cert.budget["total"]
    floor = FLOOR_SAFETY * r * cert.eps / slack if slack > 0 else float("inf")
    return {"roundoff_max": r, "samples": int(points.shape[0]), "safety": FLOOR_SAFETY, "slack": slack,
            "eps_floor": floor, "holds": bool(FLOOR_SAFETY * r <= slack),
            "what": f"max over {points.shape[0]} samples ({where}) of ||N(x) in float64 - N(x) in extended "
                    "precision||; the guarantee holds in float64 when safety x round-off <= eps - budget total"}
