"""Time grids for few-step sampling and distillation, in OU time t, descending.

Every grid has N + 1 nodes with t[0] = T and t[N] = delta.

    uniform   t_i = T + i/N (delta - T)
    edm       sigma_i = (sigma_max^{1/rho} + i/N (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho, rho = 7
    logsnr    lambda_i = lambda(T) + i/N (lambda(delta) - lambda(T)),  lambda = -log(e^{2t} - 1)
    kl-optimal  sigma_i = tan((1 - i/N) atan(sigma_max) + i/N atan(sigma_min))   (Align Your Steps, Thm 3.1)
    flow-shift  u_i uniform from u(T) to u(delta), u = s' the flow time s = sigma/(1 + sigma) before a static shift k:
              s = k u / (1 + (k - 1) u), i.e. the VE sigma of u is sigma / k (SD3's default, k = 3)
    flux-mu   the same with k = e^mu: diffusers' dynamic shift e^mu / (e^mu + 1/u - 1) (Flux's default; mu from
              the resolution through diffusers' calculate_shift, 1.15 at 1024 x 1024)
    balanced  Lambda(t_i) = (N - i)/N Lambda(T)   (equal stability budget per segment)
    gits      a dynamic programme over a teacher's nodes (GITS-style; built by the studies)
    optimal   the grid that minimises one solver's error against a teacher (built by the studies)

:data:`KINDS` is the registry: every list of grid kinds (the commands' choices, the solver study's grids, the
validation's grids) reads it.  Each kind says what it needs: nothing (a closed form of (N, delta, T) and the
parameters it names, e.g. a flow pipeline's ``shift`` or ``mu``, each checked by the option table
:data:`numcore.checks.OPTIONS`), a rate (the stability integral it balances), teacher nodes, or a solver (and teacher
trajectories to search on).

The flow kinds are what flow-matching pipelines do by default, moved onto [delta, T]: diffusers' SD3 and Flux
pipelines pass ``sigmas = linspace(1, 1/N, N)`` (and the scheduler appends 0: N + 1 nodes uniform in the unshifted
flow time u from 1 to 0), then the scheduler shifts them.  Here u runs uniformly between the unshifted times of the
window's ends, so that after the shift the grid starts at T and ends at delta exactly.  Both shifts multiply the
VE sigma by a constant (static: s' = k s / (1 + (k - 1) s) <=> sigma' = k sigma; dynamic: s' = e^mu / (e^mu + 1/s -
1) <=> sigma' = e^mu sigma), so flux-mu with mu is flow-shift with k = e^mu, and both are computed on sigma.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import math

import numpy as np

from .checks import InputError, option, resolution
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


# diffusers' FlowMatchEulerDiscreteScheduler defaults for the dynamic shift (Flux): mu is linear in the image's token
# count, base_shift at base_image_seq_len tokens and max_shift at max_image_seq_len
DYNAMIC_DEFAULTS = {"base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}
DEFAULT_RESOLUTION = (1024, 1024)  # Flux's and SD3's default image size
PATCH_PIXELS = 16  # pixels per token side: the 8x VAE and the 2x2 patches (Flux's packing, SD3's patch_size 2)


def image_seq_len(height: int, width: int) -> int:
    """Tokens of an image of height x width pixels in Flux and SD3: (H/16)(W/16)."""
    return (int(height) // PATCH_PIXELS) * (int(width) // PATCH_PIXELS)


def mu_for_resolution(height: int, width: int, *, base_shift: float = 0.5, max_shift: float = 1.15,
                      base_image_seq_len: int = 256, max_image_seq_len: int = 4096) -> float:
    """The mu a flow pipeline computes for an image of height x width pixels (diffusers' ``calculate_shift`` of
    the image's token count, evaluated in the same order, so that the value is the pipeline's to the last bit; the
    same line as ComfyUI's ModelSamplingFlux with width, height)."""
    slope = (max_shift - base_shift) / (max_image_seq_len - base_image_seq_len)
    intercept = base_shift - slope * base_image_seq_len
    return image_seq_len(height, width) * slope + intercept


DEFAULT_MU = mu_for_resolution(*DEFAULT_RESOLUTION)  # 1.15


def shift_sigma(scale: float, N: int, delta: float, T: float) -> np.ndarray:
    """N + 1 nodes uniform in the unshifted flow time u between the window's ends, for a shift that multiplies the
    VE sigma by ``scale``: u = sigma/(scale + sigma), 1 - u = scale/(scale + sigma), both interpolated (no
    cancellation near either end), sigma_i = scale u_i / (1 - u_i)."""
    hi, lo = sigma_from_t(T), sigma_from_t(delta)
    f = _fractions(N)
    u = (1 - f) * (hi / (scale + hi)) + f * (lo / (scale + lo))
    v = (1 - f) * (scale / (scale + hi)) + f * (scale / (scale + lo))
    with np.errstate(over="ignore"):
        sig = scale * u / v
    return _pin_ends(t_from_sigma(sig), delta, T)


def flow_shift(N: int, delta: float, T: float, shift: float = 3.0) -> np.ndarray:
    """SD3's default schedule on [delta, T]: uniform in the flow time before the static shift ``shift`` (3.0 for
    SD3; 1: uniform in the flow time s = sigma/(1 + sigma) itself)."""
    return shift_sigma(float(shift), N, delta, T)


def flux_mu(N: int, delta: float, T: float, mu: float | None = None) -> np.ndarray:
    """Flux's default schedule on [delta, T]: uniform in the flow time before the dynamic shift with ``mu``
    (default: the mu of a 1024 x 1024 image, 1.15)."""
    return shift_sigma(math.exp(DEFAULT_MU if mu is None else float(mu)), N, delta, T)


def balanced(N: int, stability: StabilityIntegral) -> np.ndarray:
    levels = stability.total * (1.0 - _fractions(N))
    return _pin_ends(stability.invert(levels), stability.delta, stability.T)


CLOSED, RATE, TEACHER, SOLVER = "", "rate", "teacher", "solver"  # what a kind needs


@dataclass(frozen=True)
class GridKind:
    """One grid kind: its name, what it needs (:data:`CLOSED`, :data:`RATE`, :data:`TEACHER` nodes or a
    :data:`SOLVER`), how a closed form is built (``closed(N, delta, T, **params)``; None for the others, which the
    studies build), one line for help texts, and the parameters its closed form takes (``params``: keys of the
    option table :data:`numcore.checks.OPTIONS`, where each is checked; a flow pipeline's ``shift`` or ``mu``)."""

    name: str
    needs: str
    closed: Callable[..., np.ndarray] | None
    what: str
    params: tuple[str, ...] = ()

    def parameters(self, **given) -> dict:
        """The kind's parameters from ``given`` (others ignored; None or absent: the kind's default), each checked
        by the option table (a ``resolution`` H,W by :func:`numcore.checks.resolution` and turned into its ``mu``
        with diffusers' default line); {} for a kind that takes none."""
        out = {name: resolution(given[name]) if name == "resolution" else option(name, given[name])
               for name in self.params if given.get(name) is not None}
        if "resolution" in out:
            if "mu" in out:
                raise InputError(f"`mu` = {out['mu']:g} and `resolution` = {out['resolution'][0]},"
                                 f"{out['resolution'][1]}: expected one of them (mu is computed from the resolution)")
            out["mu"] = mu_for_resolution(*out.pop("resolution"))
        for name in self.params:
            if name in PARAM_DEFAULTS and name not in out:
                out[name] = PARAM_DEFAULTS[name]
        return out


KINDS: dict[str, GridKind] = {k.name: k for k in (
    GridKind("balanced", RATE, None, "equal Lambda per segment"),
    GridKind("uniform", CLOSED, uniform, "uniform in t"),
    GridKind("edm", CLOSED, edm, "Karras rho=7 in VE sigma"),
    GridKind("logsnr", CLOSED, logsnr, "uniform in log-SNR"),
    GridKind("kl-optimal", CLOSED, kl_optimal, "Align Your Steps' closed form (uniform in atan sigma)"),
    GridKind("flow-shift", CLOSED, flow_shift, "a flow pipeline's default: uniform in the flow time, then the "
             "static --shift (SD3: 3)", ("shift",)),
    GridKind("flux-mu", CLOSED, flux_mu, "Flux's default: uniform in the flow time, then the dynamic shift with "
             "--mu or the mu of --resolution H,W (default 1024,1024: mu 1.15)", ("mu", "resolution")),
    GridKind("gits", TEACHER, None, "a GITS-style dynamic programme over the teacher's nodes"),
    GridKind("optimal", SOLVER, None, "the grid that minimises one solver's error against a teacher"),
)}
CLOSED_FORMS = tuple(k for k, g in KINDS.items() if g.needs == CLOSED)
FLOW_KINDS = tuple(k for k, g in KINDS.items() if g.params)  # the flow pipelines' defaults (shift or mu)
PARAM_DEFAULTS = {"shift": 3.0, "mu": DEFAULT_MU}  # SD3's static shift; Flux's mu at 1024 x 1024


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


def build(kind: str, N: int, delta: float, T: float, stability: StabilityIntegral | None = None,
          **params) -> np.ndarray:
    """A closed-form grid by name (with the parameters it takes from ``params``, checked; others ignored), or
    ``balanced`` on the stability integral it balances."""
    if kind == "balanced":
        if stability is None:
            raise ValueError("the balanced grid needs a StabilityIntegral")
        return balanced(N, stability)
    g = KINDS[kind]
    if g.closed is None:
        raise ValueError(f"grid kind {kind!r} needs {g.needs}: the studies build it")
    return g.closed(N, delta, T, **g.parameters(**params))
