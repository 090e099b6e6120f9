"""Measurements of a trained student against the exact teacher, each with its uncertainty.

* chained end-to-end relative MSE  E||Psi(x_T) - Phi_{T->delta}(x_T)||^2 / E||Phi_{T->delta}(x_T)||^2
  on fresh x_T ~ p_T (ratio estimator, delta-method 95% interval);
* per-segment local errors eps_i = (E||psi_i(z) - Phi_{t_{i-1}->t_i}(z)||^2)^{1/2}, on teacher states
  z ~ p_{t_{i-1}} and on the student's own chain states z = psi_{i-1} o ... o psi_1(x_T);
* the fan bound (Lady Windermere's fan): by Minkowski's inequality in L^2(p_T) and the flow-map
  stability ||Phi_{t->delta}(x) - Phi_{t->delta}(y)|| <= exp(Lambda(t) - Lambda(delta)) ||x - y||,

      ||Psi - Phi_{T->delta}||_{L^2(p_T)} <= sum_i eps_i^chain exp(Lambda(t_i) - Lambda(delta))
                                          <= sum_i eps_i^chain exp(max(Lambda(t_{i-1}), Lambda(t_i)) - Lambda(delta)),

  with eps_i^chain measured on the chain states (the bound holds for any rate L that bounds the
  one-sided growth of the backward flow where the states lie: ``tri``, ``sharp`` and ``onesided``);
* amplification ||D Phi_{t->delta}(x)||_op over x ~ p_t (mean, p99, max) against exp(Lambda(t));
* Lipschitz constants of the trained blocks ||D psi_i||_op against those of the teacher's segment
  maps ||D Phi_{t_{i-1}->t_i}||_op on the same points.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..numcore.estimators import Z95, mean_ci, quantile_ci, spread, t_quantile  # noqa: F401  (re-exported)

FAN_RATES = ("tri", "sharp", "onesided")


# ----------------------------------------------------------------------------- estimators
def rms_ci(sq_values) -> dict:
    """sqrt(E[v]) of non-negative v, interval from the interval of E[v] (cut at 0)."""
    e = mean_ci(sq_values)
    root = lambda x: None if x is None else math.sqrt(max(x, 0.0))  # noqa: E731
    return {"value": math.sqrt(e["value"]), "ci_low": root(e["ci_low"]), "ci_high": root(e["ci_high"]),
            "n": e["n"]}


def ratio_ci(num, den) -> dict:
    """E[num] / E[den] with a delta-method interval (Student-t quantile); undefined for one pair."""
    a, b = np.asarray(num, float), np.asarray(den, float)
    n = a.size
    ma, mb = a.mean(), b.mean()
    R = ma / mb
    if n < 2:
        return {"value": float(R), "ci_low": None, "ci_high": None, "n": int(n)}
    var = (a.var(ddof=1) - 2 * R * np.cov(a, b)[0, 1] + R * R * b.var(ddof=1)) / (n * mb * mb)
    h = t_quantile(0.95, n) * math.sqrt(max(var, 0.0))
    return {"value": float(R), "ci_low": float(R - h), "ci_high": float(R + h), "n": int(n)}


# ----------------------------------------------------------------------------- errors
def relative_error_stats(pred: torch.Tensor, ref: torch.Tensor) -> dict:
    """Relative MSE E||pred - ref||^2 / E||ref||^2 and the RMS error, each with its interval (rows are samples)."""
    e = ((pred.double() - ref.double()) ** 2).sum(1).cpu().numpy()
    p = (ref.double() ** 2).sum(1).cpu().numpy()
    out = ratio_ci(e, p)
    out["rms_error"] = rms_ci(e)
    out["rms_reference"] = float(math.sqrt(p.mean()))
    return out


def fan_bound(eps, Lambda_nodes, which: str = "start") -> float:
    """sum_i eps_i exp(Lambda(t) - Lambda(delta)): ``end`` takes t = t_i (where segment i's error is
    made), ``start`` the larger of Lambda(t_{i-1}) and Lambda(t_i) (the t_{i-1} form for a rate
    >= 0, and still a bound where the one-sided rate is negative and Lambda decreases in t).

    ``Lambda_nodes`` holds Lambda(t_0 = T), ..., Lambda(t_N = delta); computed in log space."""
    eps = np.asarray(eps, float)
    L = np.asarray(Lambda_nodes, float)
    L = L - L[-1]
    expo = np.maximum(L[:-1], L[1:]) if which == "start" else L[1:]
    pos = eps > 0
    if not pos.any():
        return 0.0
    logs = np.log(eps[pos]) + expo[pos]
    m = logs.max()
    return float(math.exp(m + math.log(np.exp(logs - m).sum()))) if m < 700 else float("inf")


def opnorm(J: torch.Tensor) -> np.ndarray:
    """Spectral norms of a batch of square matrices (n, d, d)."""
    return torch.linalg.matrix_norm(J.double(), ord=2).cpu().numpy()


def block_jacobian(stack, i: int, x: torch.Tensor) -> torch.Tensor:
    """D psi_i at each row of x, shape (n, d, d), by forward-mode JVPs along the d axes."""
    from torch.func import jvp

    d = x.shape[1]
    cols = []
    for j in range(d):
        v = torch.zeros_like(x)
        v[:, j] = 1.0
        cols.append(jvp(lambda z: stack.apply_block(i, z), (x,), (v,))[1])
    return torch.stack(cols, 2)


def amplification(teacher, mix, times, delta: float, n: int, seed: int, progress=None) -> list[dict]:
    """||D Phi_{t->delta}(x)||_op over x ~ p_t (exact samples) for each t in ``times``."""
    from ..numcore.marginal import sample

    out = []
    for j, t in enumerate(times):
        x = sample(mix, float(t), n, np.random.default_rng([seed, j]))
        _, J = teacher.flow_jacobian(x, float(t), delta)
        out.append({"t": float(t), **spread(opnorm(J))})
        if progress is not None:
            progress.update(1)
    return out
