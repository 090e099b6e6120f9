"""Independent plain-numpy oracles: loops over components, dense matrices, no shortcuts."""

from __future__ import annotations

import numpy as np


def marginal_params(weights, means, covs, t):
    """(alpha, list of (pi_k, alpha mu_k, S_k)) of p_t straight from the definition."""
    a = np.exp(-t)
    d = means.shape[1]
    return a, [(w, a * m, a * a * c + (1 - a * a) * np.eye(d)) for w, m, c in zip(weights, means, covs)]


def logpdf_terms(x, weights, means, covs, t):
    a, comps = marginal_params(weights, means, covs, t)
    logs, grads, precs = [], [], []
    for w, m, S in comps:
        P = np.linalg.inv(S)
        r = x - m
        _, logdet = np.linalg.slogdet(S)
        logs.append(np.log(w) - 0.5 * logdet - 0.5 * r @ P @ r - 0.5 * len(x) * np.log(2 * np.pi))
        grads.append(-P @ r)
        precs.append(P)
    return np.array(logs), np.array(grads), np.array(precs)


def log_density(x, weights, means, covs, t):
    l, _, _ = logpdf_terms(x, weights, means, covs, t)
    m = l.max()
    return m + np.log(np.exp(l - m).sum())


def score(x, weights, means, covs, t):
    l, g, _ = logpdf_terms(x, weights, means, covs, t)
    w = np.exp(l - l.max())
    w /= w.sum()
    return (w[:, None] * g).sum(0)


def hessian(x, weights, means, covs, t):
    l, g, P = logpdf_terms(x, weights, means, covs, t)
    w = np.exp(l - l.max())
    w /= w.sum()
    s = (w[:, None] * g).sum(0)
    H = -(w[:, None, None] * P).sum(0)
    for k in range(len(w)):
        H += w[k] * np.outer(g[k] - s, g[k] - s)
    return H


def jacobian_opnorm(x, weights, means, covs, t):
    J = -np.eye(len(x)) - hessian(x, weights, means, covs, t)
    return np.abs(np.linalg.eigvalsh(J)).max()


def score_fd(x, weights, means, covs, t, h=1e-6):
    """Central finite differences of log p_t."""
    g = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (log_density(x + e, weights, means, covs, t) - log_density(x - e, weights, means, covs, t)) / (2 * h)
    return g


def hessian_fd(x, weights, means, covs, t, h=1e-5):
    """Central finite differences of the (oracle) score."""
    d = len(x)
    H = np.zeros((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        H[:, i] = (score(x + e, weights, means, covs, t) - score(x - e, weights, means, covs, t)) / (2 * h)
    return 0.5 * (H + H.T)


# The readable numpy samplers (k-diffusion style, once numcore.samplers'): descending ``sigmas`` with an optional
# trailing 0 (the last step then returns the denoiser output); ``model`` is D(y, sigma) in VE coordinates.


def to_d(x, sigma, denoised):
    """ODE derivative dy/dsigma = (y - D) / sigma."""
    return (x - denoised) / sigma


def sample_euler(model, x, sigmas):
    """Euler: y_{i+1} = y_i + (sigma_{i+1} - sigma_i) d_i."""
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i]))
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(model, x, sigmas):
    """Heun (trapezoid, 2 evaluations per step); Euler on a last step to sigma = 0."""
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i]))
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpmpp_2m(model, x, sigmas):
    """DPM-Solver++(2M): exponential integrator in lambda = -log sigma with a two-step denoiser extrapolation.

    h = lambda_{i+1} - lambda_i, r = h_{i-1} / h,
    D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}  (D' = D_i on the first step and on a last step to 0),
    y_{i+1} = (sigma_{i+1} / sigma_i) y_i - expm1(-h) D'.
    """
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        h = np.log(sigmas[i]) - np.log(sigmas[i + 1])
        if old_denoised is None:
            denoised_d = denoised
        else:
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigmas[i + 1] / sigmas[i]) * x - np.expm1(-h) * denoised_d
        old_denoised, h_last = denoised, h
    return x


SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m}
