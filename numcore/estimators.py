"""Monte-Carlo estimators with their 95% intervals (plain numpy).

* :func:`mean_ci`: sample mean with a CLT interval;
* :func:`quantile_ci`: sample q-quantile with a distribution-free order-statistic interval;
* :func:`spread`: mean, p99 and max of a sample (the max is a lower estimate of the sup);
* :func:`summary`: the same as flat numbers (``mean``, ``mean_ci``, ``p99``, ``p99_ci``, ``max``, ``n``).
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean with a CLT interval."""
    v = np.asarray(values, float).ravel()
    m = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"value": m, "ci_low": m - Z95 * se, "ci_high": m + Z95 * se, "n": int(v.size)}


def quantile_ci(values, q: float) -> dict:
    """Sample q-quantile with a distribution-free order-statistic 95% interval."""
    v = np.sort(np.asarray(values, float).ravel())
    n = v.size
    k = q * n
    half = Z95 * math.sqrt(n * q * (1 - q))
    lo, hi = int(max(0, math.floor(k - half))), int(min(n - 1, math.ceil(k + half)))
    return {"value": float(np.quantile(v, q)), "ci_low": float(v[lo]), "ci_high": float(v[hi]), "n": int(n)}


def spread(values) -> dict:
    """mean, p99 and max of a sample (the max is a lower estimate of the sup)."""
    v = np.asarray(values, float)
    return {"mean": mean_ci(v), "p99": quantile_ci(v, 0.99), "max": float(v.max())}


def summary(values, low: float | None = None) -> dict:
    """``mean`` with ``mean_ci``, ``p99`` with ``p99_ci``, ``max`` and ``n`` of a sample, as flat numbers.

    ``low``: the smallest possible value (0 for norms); the mean's interval is cut there."""
    m, q = mean_ci(values), quantile_ci(values, 0.99)
    v = np.asarray(values, float)
    if low is not None:
        m["ci_low"] = max(m["ci_low"], low)
    return {"mean": m["value"], "mean_ci": [m["ci_low"], m["ci_high"]], "p99": q["value"],
            "p99_ci": [q["ci_low"], q["ci_high"]], "max": float(v.max()), "n": int(v.size)}
