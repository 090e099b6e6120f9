"""The OU marginal p_t of a mixture: sampling, log-density, score, Hessian, velocity Jacobian.

    p_t = sum_k pi_k N(alpha mu_k, S_k(t)),   s(x, t) = grad log p_t(x),
    v(x, t) = -x - s(x, t)   (probability-flow velocity, forward time),
    J(x, t) = dv/dx = -I - H,   H = Hessian of log p_t.

Each function takes a :class:`~numcore.mixture.GaussianMixture`, points ``x``
of shape (n, d) and a time ``t > 0`` (OU units), and runs a compiled kernel
from :mod:`numcore.kernels`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .mixture import GaussianMixture

LOG_2PI = float(np.log(2.0 * np.pi))


class Marginal(NamedTuple):
    """Kernel inputs for p_t (see :mod:`numcore.kernels`)."""

    t: float
    alpha: float
    inv_s: np.ndarray  # (K, d) 1 / s_{k,i}(t)
    mrot: np.ndarray  # (K, d) alpha U^T mu_k (G <= 1) or alpha mu_k (G = K)
    logc: np.ndarray  # (K,)
    mats: np.ndarray  # (G, d, d): empty (G = 0), the shared basis U (G = 1), or precisions P_k(t) (G = K)
    iso: bool  # isotropic components in an identity/shared basis


def at_time(mix: GaussianMixture, t: float) -> Marginal:
    """Spectral data of p_t: eigenvalues s_{k,i}(t), rotated means, log-normalisers."""
    t = float(t)
    if not t > 0:
        raise ValueError(f"t = {t}: expected t > 0")
    key = ("marginal", t)
    if key in mix._cache:
        return mix._cache[key]
    alpha = float(np.exp(-t))
    s = mix.marginal_eigvals(t)
    G = mix.basis.shape[0]
    if G == 0:
        mrot, mats = alpha * mix.means, mix.basis
    elif G == 1:
        mrot, mats = alpha * mix.means @ mix.basis[0], mix.basis
    else:  # own bases: P_k(t) = U_k diag(1/s_k) U_k^T, means unrotated
        U = mix.basis
        mrot, mats = alpha * mix.means, (U * (1.0 / s)[:, None, :]) @ np.swapaxes(U, 1, 2)
    logc = np.log(mix.weights) - 0.5 * np.log(s).sum(1) - 0.5 * mix.d * LOG_2PI
    out = Marginal(
        t, alpha, np.ascontiguousarray(1.0 / s), np.ascontiguousarray(mrot), logc,
        np.ascontiguousarray(mats), bool(mix.isotropic_components and G <= 1),
    )
    if len(mix._cache) < 64:
        mix._cache[key] = out
    return out


def as_points(x, d) -> np.ndarray:
    """x as a C-contiguous float64 array of shape (n, d) (a 1-d x is n points when d = 1)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if x.ndim == 1 and d == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"x has shape {x.shape}: expected (n, {d})")
    return x


def log_density_and_score(mix: GaussianMixture, x, t: float):
    """(log p_t(x), s(x, t)) for points x of shape (n, d)."""
    from . import kernels as kn

    m = at_time(mix, t)
    x = as_points(x, mix.d)
    n = x.shape[0]
    score = np.empty((n, mix.d))
    logp = np.empty(n)
    size, nch = kn._chunks(n)
    kn._score_logp(x, m.inv_s, m.mrot, m.logc, m.mats, size, nch, score, logp, True)
    return logp, score


def score(mix: GaussianMixture, x, t: float) -> np.ndarray:
    """s(x, t) = grad_x log p_t(x), shape (n, d)."""
    return log_density_and_score(mix, x, t)[1]


def log_density(mix: GaussianMixture, x, t: float) -> np.ndarray:
    """log p_t(x), shape (n,)."""
    from . import kernels as kn

    m = at_time(mix, t)
    x = as_points(x, mix.d)
    logp = np.empty(x.shape[0])
    size, nch = kn._chunks(x.shape[0])
    kn._score_logp(x, m.inv_s, m.mrot, m.logc, m.mats, size, nch, np.empty((0, mix.d)), logp, False)
    return logp


def hessian(mix: GaussianMixture, x, t: float) -> np.ndarray:
    """Hessian of log p_t at each point, shape (n, d, d), centred covariance form."""
    from . import kernels as kn

    m = at_time(mix, t)
    x = as_points(x, mix.d)
    H = np.empty((x.shape[0], mix.d, mix.d))
    size, nch = kn._chunks(x.shape[0])
    kn._hessian(x, m.inv_s, m.mrot, m.logc, m.mats, size, nch, H)
    return H


def velocity_jacobian(mix: GaussianMixture, x, t: float) -> np.ndarray:
    """J = dv/dx = -I - H for v = -x - s, shape (n, d, d)."""
    J = -hessian(mix, x, t)
    J[:, np.arange(mix.d), np.arange(mix.d)] -= 1.0
    return J


def jacobian_spectrum(mix: GaussianMixture, x, t: float) -> np.ndarray:
    """(n, 2) array of (lambda_min(J), lambda_max(J)); J is symmetric.

    ||J||_op = max(|lambda_min|, |lambda_max|); the one-sided growth rate of the
    backward (sampling-direction) flow is -lambda_min(J)."""
    from . import kernels as kn

    m = at_time(mix, t)
    x = as_points(x, mix.d)
    out = np.empty((x.shape[0], 2))
    size, nch = kn._chunks(x.shape[0])
    kn._jacobian_spectrum(x, m.inv_s, m.mrot, m.logc, m.mats, m.iso and mix.d > mix.K, size, nch, out)
    return out


def jacobian_opnorm(mix: GaussianMixture, x, t: float) -> np.ndarray:
    """||J(x, t)||_op at each point, shape (n,)."""
    ev = jacobian_spectrum(mix, x, t)
    return np.abs(ev).max(1)


def sample(mix: GaussianMixture, t: float, n: int, rng: np.random.Generator | int | None = None,
           return_components: bool = False):
    """n i.i.d. samples of p_t: component k ~ pi, then alpha mu_k + S_k(t)^{1/2} z."""
    rng = np.random.default_rng(rng)
    comp = rng.choice(mix.K, size=n, p=mix.weights)
    z = rng.standard_normal((n, mix.d))
    alpha = np.exp(-t)
    root = np.sqrt(mix.marginal_eigvals(t))
    z *= root[comp]
    if mix.basis.shape[0] == 1:
        z = z @ mix.basis[0].T
    elif mix.basis.shape[0] > 1:
        for k in range(mix.K):
            sel = comp == k
            z[sel] = z[sel] @ mix.basis[k].T
    x = alpha * mix.means[comp] + z
    return (x, comp) if return_components else x


def denoiser(mix: GaussianMixture, x, t: float) -> np.ndarray:
    """E[x_0 | x_t = x] = (x + (1 - alpha^2) s(x, t)) / alpha."""
    x = as_points(x, mix.d)
    return (x - np.expm1(-2.0 * t) * score(mix, x, t)) * np.exp(t)
