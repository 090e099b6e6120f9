"""Time grids for few-step sampling and distillation, in OU time t, descending.

Every grid has N + 1 nodes with t[0] = T and t[N] = delta.

    uniform   t_i = T + i/N (delta - T)
    edm       sigma_i = (sigma_max^{1/rho} + i/N (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho, rho = 7
    logsnr    lambda_i = lambda(T) + i/N (lambda(delta) - lambda(T)),  lambda = -log(e^{2t} - 1)
    kl-optimal  sigma_i = tan((1 - i/N) atan(sigma_max) + i/N atan(sigma_min))   (Align Your Steps, Thm 3.1)
    balanced  Lambda(t_i) = (N - i)/N Lambda(T)   (equal stability budget per segment)
    gits      a dynamic programme over a teacher's nodes (GITS-style; built by the studies)
    optimal   the grid that minimises one solver's error against a teacher (built by the studies)

:data:`KINDS` is the registry: every list of grid kinds (the commands' choices, the solver study's grids, the
validation's grids) reads it.  Each kind says what it needs: nothing (a closed form of (N, delta, T)), a rate
(the stability integral it balances), teacher nodes, or a solver (and teacher trajectories to search on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .checks import InputError
from .integral import StabilityIntegral
from .units import logsnr_from_t, sigma_from_t, t_from_logsnr, t_from_sigma

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


CLOSED, RATE, TEACHER, SOLVER = "", "rate", "teacher", "solver"  # what a kind needs


@dataclass(frozen=True)
class GridKind:
    """One grid kind: its name, what it needs (:data:`CLOSED`, :data:`RATE`, :data:`TEACHER` nodes or a
    :data:`SOLVER`), how a closed form is built (``closed(N, delta, T)``; None for the others, which the studies
    build), and one line for help texts."""

    name: str
    needs: str
    closed: Callable[[int, float, float], np.ndarray] | None
    what: str


KINDS: dict[str, GridKind] = {k.name: k for k in (
    GridKind("balanced", RATE, None, "equal Lambda per segment"),
    GridKind("uniform", CLOSED, uniform, "uniform in t"),
    GridKind("edm", CLOSED, edm, "Karras rho=7 in VE sigma"),
    GridKind("logsnr", CLOSED, logsnr, "uniform in log-SNR"),
    GridKind("kl-optimal", CLOSED, kl_optimal, "Align Your Steps' closed form (uniform in atan sigma)"),
    GridKind("gits", TEACHER, None, "a GITS-style dynamic programme over the teacher's nodes"),
    GridKind("optimal", SOLVER, None, "the grid that minimises one solver's error against a teacher"),
)}
CLOSED_FORMS = tuple(k for k, g in KINDS.items() if g.needs == CLOSED)


def kinds(*needs: str) -> tuple[str, ...]:
    """The names of the kinds that need one of ``needs``, in registry order."""
    return tuple(k for k, g in KINDS.items() if g.needs in needs)


# what `flowcert grid --kind` builds on its own (a teacher-node search belongs to the studies that hold the nodes)
GRID_KINDS = kinds(CLOSED, RATE, SOLVER)


def check(kind, offered: tuple[str, ...] | None = None) -> GridKind:
    """The grid kind named ``kind`` (one of ``offered``, default every kind), or InputError."""
    names = tuple(KINDS) if offered is None else offered
    if kind not in names:
        raise InputError(f"`kind` = {kind!r}: expected one of {', '.join(names)}")
    return KINDS[kind]


def build(kind: str, N: int, delta: float, T: float, stability: StabilityIntegral | None = None) -> np.ndarray:
    """A closed-form grid by name, or ``balanced`` on the stability integral it balances."""
    if kind == "balanced":
        if stability is None:
            raise ValueError("the balanced grid needs a StabilityIntegral")
        return balanced(N, stability)
    g = KINDS[kind]
    if g.closed is None:
        raise ValueError(f"grid kind {kind!r} needs {g.needs}: the studies build it")
    return g.closed(N, delta, T)
