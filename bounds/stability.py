"""Rates L(t) by name, and their stability integrals Lambda(t) = int_delta^t L.

``tri``, ``sharp`` and ``onesided`` are the bounds of :mod:`bounds.lipschitz`;
``empirical`` is the p_t-average of ||J(x, t)||_op estimated by Monte Carlo on a
log-spaced time table and interpolated linearly in (log t, log L).  It is a
typical rate, not a bound: the grid built on it is data-aware.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..numcore.mixture import GaussianMixture
from ..numcore.integral import StabilityIntegral

from .lipschitz import LipschitzBound

RATES = ("tri", "sharp", "onesided", "empirical")


@dataclass
class EmpiricalRate:
    """Interpolated p_t-average of ||J||_op, with its Monte-Carlo standard error."""

    t: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    sup: np.ndarray
    samples: int
    seed: int
    shift: float = 0.0  # evaluate mean + shift * se (for uncertainty envelopes)

    def __call__(self, t):
        y = np.log(np.maximum(self.mean + self.shift * self.se, 1e-300))
        return np.exp(np.interp(np.log(np.asarray(t, float)), np.log(self.t), y))

    def shifted(self, k: float) -> "EmpiricalRate":
        return EmpiricalRate(self.t, self.mean, self.se, self.sup, self.samples, self.seed, k)

    @classmethod
    def estimate(cls, mix: GaussianMixture, delta: float, T: float, samples: int = 4096, seed: int = 0,
                 points: int = 40, progress=None) -> "EmpiricalRate":
        from ..numcore.empirical import jacobian_table

        ts = np.geomspace(delta, T, points)
        table = jacobian_table(mix, ts, samples, seed, per_segment=65, progress=progress)
        return cls(ts, np.array([r.mean for r in table]), np.array([r.mean_se for r in table]),
                   np.array([r.sup for r in table]), samples, seed)


@dataclass
class Stability:
    """A named rate on [delta, T] with its integral and metadata for reports."""

    name: str
    rate: object
    integral: StabilityIntegral
    meta: dict = field(default_factory=dict)

    @property
    def amplification(self) -> float:
        """exp(Lambda(T)): the factor by which Phi_{T->delta} can stretch distances (inf past 1e308)."""
        total = self.integral.total
        return float(np.exp(total)) if total < 709.0 else float("inf")

    @property
    def log10_amplification(self) -> float:
        return self.integral.total / float(np.log(10.0))


def stability(mix: GaussianMixture, name: str, delta: float, T: float, *, samples: int = 4096,
              seed: int = 0, ball_mass: float = 1 - 1e-6, progress=None, bound: LipschitzBound | None = None,
              panels: int = 256) -> Stability:
    """Rate ``name`` (one of :data:`RATES`) and Lambda on [delta, T]."""
    if name == "empirical":
        return empirical_stability(EmpiricalRate.estimate(mix, delta, T, samples, seed, progress=progress),
                                   delta, T, panels)
    lb = bound if bound is not None else LipschitzBound(mix, ball_mass)
    rate = lambda t: lb(t, name)  # noqa: E731
    integral = StabilityIntegral(rate, delta, T, panels)
    meta = {"what": lb.where(), "scope": lb.scope}
    return Stability(name, rate, integral, meta)


def empirical_stability(rate: EmpiricalRate, delta: float, T: float, panels: int = 256,
                        what: str = "p_t-average of ||J(x,t)||_op (Monte Carlo; a typical rate, not a bound)"
                        ) -> Stability:
    """Lambda of a tabulated empirical rate, with the interval from the rate shifted by -2 and +2 standard errors.

    Used for mixtures (numcore's closed-form Jacobians) and for trained models (power iteration).
    """
    integral = StabilityIntegral(rate, delta, T, panels)
    lo = StabilityIntegral(rate.shifted(-2.0), delta, T, panels).total
    hi = StabilityIntegral(rate.shifted(2.0), delta, T, panels).total
    meta = {"what": what, "samples": rate.samples, "seed": rate.seed, "table_points": int(rate.t.size),
            "lambda_T_mc_interval": [lo, hi]}
    return Stability("empirical", rate, integral, meta)


def describe(mix: GaussianMixture, delta: float = 1e-3, T: float = 5.0) -> dict:
    """Sizes, geometry and, per bound (tri, sharp), L(delta), Lambda(T) with its quadrature error,
    exp(Lambda(T)), the time where t L(t) peaks and the time below which half of Lambda(T) is spent.

    The JSON of ``flowcert mixture`` (before the mixture's means and eigenvalues are added).
    """
    from ..numcore.checks import time_window

    delta, T = time_window(delta, T)
    info = mix.describe()
    lb = LipschitzBound(mix)
    ts = np.geomspace(delta, T, 400)
    info["bounds"] = {}
    for name in ("tri", "sharp"):
        st = stability(mix, name, delta, T, bound=lb)
        L = lb(ts, name)
        info["bounds"][name] = {
            "L_at_delta": float(L[0]),
            "lambda_T": st.integral.total,
            "lambda_T_error": st.integral.error,
            "amplification": st.amplification,
            "t_peak_tL": float(ts[np.argmax(ts * L)]),
            "t_half_lambda": float(st.integral.invert([0.5 * st.integral.total])[0]),
        }
    info.update({"delta": delta, "T": T, "scope": lb.scope, "where": lb.where(), "notes": lb.notes})
    return info
