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

import time

import numpy as np

from .checks import InputError, array, choice, integer, name as check_name, real, require

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def load_data(data, name: str = "data") -> np.ndarray:
    """Data as a finite float64 array (n, d) from a .npy file or an array; images are flattened."""
    arr = data
    if isinstance(data, str):
        try:
            arr = np.load(data, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"`{name}` = {data!r} cannot be read as .npy: {' '.join(str(exc).split())[:120]}") from None
    arr = np.asarray(arr)
    if arr.ndim < 2:
        raise InputError(f"`{name}` has shape {arr.shape}: expected (n, d) samples (or (n, ...) images)")
    arr = arr.reshape(arr.shape[0], -1)
    return array(name, arr, ndim=2, what="an (n, d) array of samples")


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

    Returns:
        dict: ``spec`` (a mixture spec: loadable by :func:`numcore.mixture.from_spec`), ``K``,
        ``covariance_type``, ``bic`` (one row per (type, K): ``covariance_type``, ``K``, ``bic``,
        ``log_likelihood`` per sample, ``converged``), ``n``, ``d``, ``reg_covar``, ``seconds``.

    Raises:
        InputError: bad data (NaN, wrong shape, fewer samples than 2), a bad option, a ``name`` the spec reader
            refuses (:func:`numcore.checks.name`), scikit-learn missing.
    """
    name = check_name("name", name)  # the spec reader's own rule: fit never writes a name flowcert refuses
    require("sklearn", None, "fit", "scikit-learn")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = load_data(data)
    n, d = x.shape
    if n < 2:
        raise InputError(f"`data` has {n} sample(s): expected at least 2")
    max_components = integer("max_components", max_components, low=1, high=min(1024, n))
    types = COVARIANCE_TYPES if covariance_type == "auto" else (
        choice("covariance_type", covariance_type, COVARIANCE_TYPES + ("auto",)),)
    reg_covar = real("reg_covar", reg_covar, low=0.0, low_open=True)
    t0 = time.time()
    rows, best = [], None
    import warnings

    for ct in types:
        for K in range(1, max_components + 1):
            gm = GaussianMixture(K, covariance_type=ct, reg_covar=reg_covar, random_state=seed, n_init=n_init,
                                 max_iter=200)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm.fit(x)
            bic = float(gm.bic(x))
            rows.append({"covariance_type": ct, "K": K, "bic": bic, "log_likelihood": float(gm.score(x)),
                         "converged": bool(gm.converged_)})
            if best is None or bic < best[0]:
                best = (bic, K, ct, gm)
            if progress is not None:
                progress.update(1)
    bic, K, ct, gm = best
    return {"spec": spec_of(gm, ct, name), "K": K, "covariance_type": ct, "bic_best": bic, "bic": rows, "n": n,
            "d": d, "reg_covar": reg_covar, "seed": seed, "seconds": time.time() - t0,
            "criterion": "BIC = -2 log L + p log n (smallest wins)"}
