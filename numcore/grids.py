"""Time grids for few-step sampling and distillation, in OU time t, descending.

Every grid has N + 1 nodes with t[0] = T and t[N] = delta.

    uniform   t_i = T + i/N (delta - T)
    edm       sigma_i = (sigma_max^{1/rho} + i/N (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho, rho = 7
    logsnr    lambda_i = lambda(T) + i/N (lambda(delta) - lambda(T)),  lambda = -log(e^{2t} - 1)
    kl-optimal  sigma_i = tan((1 - i/N) atan(sigma_max) + i/N atan(sigma_min))   (Align Your Steps, Thm 3.1)
    balanced  Lambda(t_i) = (N - i)/N Lambda(T)   (equal stability budget per segment)
"""

from __future__ import annotations

import numpy as np

from .integral import StabilityIntegral
from .units import logsnr_from_t, sigma_from_t, t_from_logsnr, t_from_sigma

KINDS = ("balanced", "uniform", "edm", "logsnr", "kl-optimal")
EDM_RHO = 7.0


def _fractions(N: int) -> np.ndarray:
    return np.arange(N + 1) / N


def _pin_ends(t, delta, T):
    t[0], t[-1] = T, delta
    return t


def uniform(N: int, delta: float, T: float) -> np.ndarray:
    return _pin_ends(T + _fractions(N) * (delta - T), delta, T)


def edm(N: int, delta: float, T: float, rho: float = EDM_RHO) -> np.ndarray:
    hi, lo = sigma_from_t(T) ** (1 / rho), sigma_from_t(delta) ** (1 / rho)
    return _pin_ends(t_from_sigma((hi + _fractions(N) * (lo - hi)) ** rho), delta, T)


def logsnr(N: int, delta: float, T: float) -> np.ndarray:
    hi, lo = logsnr_from_t(T), logsnr_from_t(delta)
    return _pin_ends(t_from_logsnr(hi + _fractions(N) * (lo - hi)), delta, T)


def kl_optimal(N: int, delta: float, T: float) -> np.ndarray:
    """The KL-optimal schedule of Align Your Steps, uniform in arctan of the VE sigma.

    sigma_i = tan((1 - i/N) atan(sigma_max) + (i/N) atan(sigma_min)), sigma_max = sigma(T),
    sigma_min = sigma(delta): the closed-form schedule that Align Your Steps derives for Gaussian data by
    minimising an upper bound of the KL divergence that discretising the probability-flow ODE costs (Sabour,
    Fidler and Kreis, "Align Your Steps: Optimizing Sampling Schedules in Diffusion Models", ICML 2024,
    Theorem 3.1).  ComfyUI ships the same nodes as its ``kl_optimal`` scheduler (with steps = N + 1 and a
    trailing 0).
    """
    hi, lo = np.arctan(sigma_from_t(T)), np.arctan(sigma_from_t(delta))
    return _pin_ends(t_from_sigma(np.tan(hi + _fractions(N) * (lo - hi))), delta, T)


def balanced(N: int, stability: StabilityIntegral) -> np.ndarray:
    levels = stability.total * (1.0 - _fractions(N))
    return _pin_ends(stability.invert(levels), stability.delta, stability.T)


def build(kind: str, N: int, delta: float, T: float, stability: StabilityIntegral | None = None) -> np.ndarray:
    """A grid by name; ``balanced`` needs the stability integral it balances."""
    if kind == "balanced":
        if stability is None:
            raise ValueError("the balanced grid needs a StabilityIntegral")
        return balanced(N, stability)
    return {"uniform": uniform, "edm": edm, "logsnr": logsnr, "kl-optimal": kl_optimal}[kind](N, delta, T)
