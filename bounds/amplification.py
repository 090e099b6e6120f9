"""Amplification of the sampler's flow map Phi_{T -> delta}: worst case, certified, measured, predicted.

For x_T ~ p_T (exact samples) and the exact flow (numpy RK4, :mod:`numcore.trajectory`):

* ``worst_case``: exp(Lambda(T)) per bound (tri, sharp, onesided): bounds ||D Phi_{T->delta}(x)||_op at
  every x (global bounds) or along trajectories that stay in the balls (per-component covariances);
* ``certified``: per trajectory, exp of the upper bound of int_delta^T lambda_max(-J(x_u, u)) du (the
  logarithmic-norm form of Gronwall's inequality, with the discretisation error term of
  :mod:`numcore.trajectory` added): an upper bound of ||D Phi_{T->delta}(x_T)||_op for that x_T;
* ``measured``: ||D Phi_{T->delta}(x_T)||_op from the Jacobian propagated along the same RK4 run;
* ``predicted``: per trajectory, exp of the trapezoid estimate of the same integral (no error term): an
  estimate, equal to the measured norm in d = 1.

Each of the last three is summarised over the n trajectories by its mean (CLT interval), p99
(order-statistic interval), max and n (:func:`numcore.estimators.summary`).
"""

from __future__ import annotations

import time

import numpy as np

from ..numcore.estimators import summary as _summary
from ..numcore.mixture import GaussianMixture

WHAT = {
    "worst_case": "exp(Lambda(T)) per bound: a bound of ||D Phi_{T->delta}(x)||_op where the bound holds",
    "certified": "per trajectory exp(int lambda_max(-J(x_u,u)) du) with the stated error term: an upper bound "
                 "of ||D Phi_{T->delta}(x_T)||_op for each x_T (numerical trajectory, step-halving error rule)",
    "measured": "||D Phi_{T->delta}(x_T)||_op from the propagated flow Jacobian (RK4)",
    "predicted": "per trajectory exp(trapezoid estimate of the same integral): an estimate, not a bound",
}


def per_trajectory(mix: GaussianMixture, t0: float, t1: float, samples: int, seed: int, step: float,
                   jacobian: bool = True):
    """:func:`numcore.trajectory.gronwall` for ``samples`` exact draws of p_t0 (seeded by ``seed``)."""
    from ..numcore.marginal import sample
    from ..numcore.trajectory import gronwall

    x = sample(mix, t0, samples, np.random.default_rng(seed))
    return gronwall(mix, x, t0, t1, step=step, jacobian=jacobian)


def summary(mix: GaussianMixture, delta: float, T: float, *, samples: int = 128, seed: int = 0,
            step: float = 0.02, stabilities: dict | None = None) -> dict:
    """The ``amplification`` field of ``flowcert mixture``: worst case, certified, measured, predicted.

    ``stabilities``: {bound: Stability} already computed (tri, sharp, onesided); missing ones are computed.
    """
    from .stability import stability

    t_start = time.perf_counter()
    st = dict(stabilities or {})
    worst, log10 = {}, {}
    for name in ("tri", "sharp", "onesided"):
        if name not in st:
            st[name] = stability(mix, name, delta, T)
        worst[name] = st[name].amplification
        log10[name] = st[name].log10_amplification
    g = per_trajectory(mix, T, delta, samples, seed, step)
    holds = g.certified >= g.measured
    return {
        "worst_case": worst,
        "worst_case_log10": log10,
        "certified": _summary(g.certified, low=0.0),
        "measured": _summary(g.measured, low=0.0),
        "predicted": _summary(g.predicted, low=0.0),
        "certificate_holds": int(holds.sum()),
        "trajectories": int(g.measured.size),
        "max_log_error": float(g.log_error.max()),
        "samples": int(samples), "seed": int(seed), "step": float(g.step),
        "what": WHAT,
        "seconds": time.perf_counter() - t_start,
    }
