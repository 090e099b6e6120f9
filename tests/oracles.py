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
