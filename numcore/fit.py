"""A Gaussian-mixture surrogate of data: scikit-learn's ``GaussianMixture`` with the number of components
chosen by the Bayesian information criterion, written as a flowcert mixture spec.

BIC = -2 log L + p log n (Schwarz 1978; ``GaussianMixture.bic``), p the number of free parameters of the
covariance type: ``full`` (one d x d covariance per component), ``tied`` (one shared covariance: the
analytic bounds then hold for every x), ``diag`` (per-component diagonal), ``spherical`` (per-component
sigma^2 I).  ``auto`` tries all four and keeps the smallest BIC.  ``reg_covar`` is added to every
covariance's diagonal (scikit-learn's regulariser): it is the surrogate's smallest variance, which sets
its Lipschitz bounds at small t.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .checks import InputError, array, choice, integer, name as check_name, require

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


MAX_ABS_VALUE = 1e12  # a spec's mean entries are at most this (numcore.mixture.MAX_ABS_MEAN)


def load_data(data, name: str = "data", d: int | None = None) -> np.ndarray:
    """Samples as a finite float64 array (n, d) from a .npy file (read by :func:`numcore.io.read_npy`: bounded, no
    pickles, the header checked against the bytes) or an array; images (n, ...) are flattened.

    ``d``: the numbers per sample the caller needs (a model's size), else any d >= 1.

    Raises:
        InputError: an unreadable or damaged file, fewer than 2 samples, no numbers per sample, another d,
            non-numbers, NaN or inf, values beyond 1e12 in magnitude.
    """
    from .io import read_npy

    is_file = isinstance(data, (str, os.PathLike))
    arr = read_npy(data, name) if is_file else np.asarray(data)
    label = f"`{name}` = {os.fspath(data)!r}" if is_file else f"`{name}`"
    if arr.ndim < 2:
        raise InputError(f"{label} has shape {arr.shape}: expected (n, d) samples (or (n, ...) images)")
    n, per = arr.shape[0], math.prod(arr.shape[1:])
    if n < 2:
        raise InputError(f"{label} has shape {arr.shape}, {n} sample(s): expected at least 2 samples")
    if per == 0 or (d is not None and per != d):
        want = f"{d} numbers per sample (the model's sample size)" if d is not None else "at least one number per sample"
        raise InputError(f"{label} has shape {arr.shape}: expected (n, {d if d is not None else 'd'}) or (n, ...) "
                         f"with {want}")
    try:
        arr = array(name, arr.reshape(n, per), ndim=2, what=f"an (n, {d if d is not None else 'd'}) array of samples")
    except InputError as exc:
        if not is_file:
            raise
        raise InputError(f"{label}: {exc}") from None
    big = float(np.abs(arr).max())
    if big > MAX_ABS_VALUE:
        raise InputError(f"{label} holds a value of magnitude {big:.3g}: expected |values| <= {MAX_ABS_VALUE:g} "
                         "(a mixture's means are bounded there; rescale the data)")
    return arr


def spec_of(gm, covariance_type: str, name: str) -> dict:
    """A flowcert mixture spec (weights, means, variance or cov) of a fitted GaussianMixture."""
    K, d = gm.means_.shape
    spec = {"name": name, "weights": gm.weights_.tolist(), "means": gm.means_.tolist()}
    cov = gm.covariances_
    if covariance_type == "spherical":
        spec["variance"] = np.asarray(cov, float).tolist()
    elif covariance_type == "tied":
        spec["cov"] = np.asarray(cov, float).tolist()
    elif covariance_type == "diag":
        spec["cov"] = np.stack([np.diag(c) for c in np.asarray(cov, float)]).tolist()
    else:
        spec["cov"] = np.asarray(cov, float).tolist()
    return spec


def fit(data, *, max_components: int = 32, covariance_type: str = "full", reg_covar: float = 1e-6,
        seed: int = 0, n_init: int = 1, name: str = "fitted", progress=None) -> dict:
    """Fit K = 1..``max_components`` and keep the smallest BIC.

    Every option is checked against its domain (``numcore.checks.OPTIONS``) before any work; the chosen fit is
    checked as a spec (:func:`numcore.mixture.from_spec`), so what is returned is a mixture every command takes.

    Returns:
        dict: ``spec`` (a mixture spec: loadable by :func:`numcore.mixture.from_spec`), ``K``,
        ``covariance_type``, ``bic`` (one row per (type, K): ``covariance_type``, ``K``, ``bic``,
        ``log_likelihood`` per sample, ``converged``), ``n``, ``d``, ``reg_covar``, ``seconds``.

    Raises:
        InputError: bad data (unreadable, NaN, wrong shape, fewer samples than 2, values beyond 1e12), a bad
            option, a ``name`` the spec reader refuses (:func:`numcore.checks.name`), a fit that is not a valid
            spec (variances beyond 1e12: rescale the data), more memory than the budget, scikit-learn missing.
    """
    from .checks import fits_memory, option
    from .mixture import from_spec

    max_components, reg_covar, seed = (option(k, v) for k, v in
                                       (("max_components", max_components), ("reg_covar", reg_covar), ("seed", seed)))
    types = COVARIANCE_TYPES if covariance_type == "auto" else (
        choice("covariance_type", covariance_type, COVARIANCE_TYPES + ("auto",)),)
    name = check_name("name", name)  # the spec reader's own rule: fit never writes a name flowcert refuses
    require("sklearn", None, "fit", "scikit-learn")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = load_data(data)
    n, d = x.shape
    max_components = integer("max_components", max_components, low=1, high=n)
    per_cov = {"full": max_components * d * d, "tied": d * d, "diag": max_components * d, "spherical": max_components}
    need = 8.0 * (4 * max(per_cov[t] for t in types) + 3 * n * max_components + 2 * n * d)
    fits_memory("max_components", max_components, need, f"fitting {max_components} components to {n} x {d} data")
    t0 = time.time()
    rows, best = [], None
    import warnings

    for ct in types:
        for K in range(1, max_components + 1):
            gm = GaussianMixture(K, covariance_type=ct, reg_covar=reg_covar, random_state=seed, n_init=n_init,
                                 max_iter=200)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                with np.errstate(all="ignore"):  # a diverging fit is judged by its BIC and the spec check below
                    gm.fit(x)
                    bic = float(gm.bic(x))
                    loglik = float(gm.score(x))
            rows.append({"covariance_type": ct, "K": K, "bic": bic, "log_likelihood": loglik,
                         "converged": bool(gm.converged_)})
            if np.isfinite(bic) and (best is None or bic < best[0]):
                best = (bic, K, ct, gm)
            if progress is not None:
                progress.update(1)
    if best is None:
        raise InputError(f"`data`: no fit of K = 1..{max_components} has a finite BIC: expected data a Gaussian "
                         "mixture can describe (rescale it, or raise `reg_covar`)")
    bic, K, ct, gm = best
    spec = spec_of(gm, ct, name)
    try:
        from_spec(spec, name=name)
    except InputError as exc:
        raise InputError(f"`data`: the fitted mixture (K = {K}, {ct}) is not a valid spec: {exc} (rescale the data, "
                         "or change `reg_covar`)") from None
    return {"spec": spec, "K": K, "covariance_type": ct, "bic_best": bic, "bic": rows, "n": n,
            "d": d, "reg_covar": reg_covar, "seed": seed, "seconds": time.time() - t0,
            "criterion": "BIC = -2 log L + p log n (smallest wins)"}

