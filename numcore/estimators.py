"""Monte-Carlo estimators with their 95% intervals (plain numpy).

* :func:`mean_ci`: sample mean with a Student-t interval;
* :func:`quantile_ci`: sample q-quantile with a distribution-free order-statistic interval;
* :func:`spread`: mean, p99 and max of a sample (the max is a lower estimate of the sup);
* :func:`summary`: the same as flat numbers (``mean``, ``mean_ci``, ``p99``, ``p99_ci``, ``max``, ``n``).

Every interval is valid for its sample size or undefined: an end that no sample of this size can give
is None (null in JSON, "undefined" in tables).
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


# Every interval is valid for its sample size or undefined: an end that no sample of this size can
# give is None (null in JSON, "undefined" in tables).
def t_quantile(level: float, n: int) -> float:
    """Two-sided Student-t quantile with n - 1 degrees of freedom."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.5 + level / 2, n - 1))


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean with a Student-t interval (exact for normal data, the CLT interval for large n);
    undefined (None) for one value."""
    v = np.asarray(values, float).ravel()
    m = float(v.mean())
    if v.size < 2:
        return {"value": m, "ci_low": None, "ci_high": None, "n": int(v.size)}
    h = t_quantile(level, v.size) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return {"value": m, "ci_low": m - h, "ci_high": m + h, "n": int(v.size)}


def quantile_ci(values, q: float, level: float = 0.95) -> dict:
    """Sample q-quantile with the distribution-free order-statistic interval [x_(l), x_(u)].

    l and u are the ranks whose binomial tail probabilities are at most (1 - level)/2 each, so the
    interval covers the true quantile with probability >= level for any continuous distribution.
    An end that no rank reaches at this sample size is None: the upper end of the 99th percentile
    needs n >= 368 (1 - 0.99^n >= 0.975)."""
    from scipy.stats import binom

    v = np.sort(np.asarray(values, float).ravel())
    n = v.size
    value = float(np.quantile(v, q))
    a = (1.0 - level) / 2
    cdf = binom.cdf(np.arange(n), n, q)  # cdf[k] = P(#{x_i <= xi_q} <= k); x_(k+1) is v[k]
    low_k = np.nonzero(cdf <= a)[0]
    high_k = np.nonzero(cdf >= 1.0 - a)[0]
    lo = min(float(v[low_k[-1]]), value) if low_k.size else None
    hi = max(float(v[high_k[0]]), value) if high_k.size else None
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": int(n)}


def spread(values) -> dict:
    """mean, p99 and max of a sample (the max is a lower estimate of the sup)."""
    v = np.asarray(values, float)
    return {"mean": mean_ci(v), "p99": quantile_ci(v, 0.99), "max": float(v.max())}


def summary(values, low: float | None = None) -> dict:
    """``mean`` with ``mean_ci``, ``p99`` with ``p99_ci``, ``max`` and ``n`` of a sample, as flat numbers.

    ``low``: the smallest possible value (0 for norms); the mean's interval is cut there."""
    m, q = mean_ci(values), quantile_ci(values, 0.99)
    v = np.asarray(values, float)
    if low is not None and m["ci_low"] is not None:
        m["ci_low"] = max(m["ci_low"], low)
    return {"mean": m["value"], "mean_ci": [m["ci_low"], m["ci_high"]], "p99": q["value"],
            "p99_ci": [q["ci_low"], q["ci_high"]], "max": float(v.max()), "n": int(v.size)}
