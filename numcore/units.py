"""Time units of other samplers, converted from and to OU time t.

| unit       | from OU time t                                  |
| ---------- | ----------------------------------------------- |
| t          | t itself                                        |
| sigma      | VE / EDM / k-diffusion sigma = sqrt(e^{2t} - 1) |
| alpha      | VP signal scale alpha = e^{-t}                  |
| sigma_vp   | VP noise scale sqrt(1 - e^{-2t})                |
| logsnr     | log-SNR lambda = -log(e^{2t} - 1)               |
| rf         | rectified-flow time sigma_vp / (alpha + sigma_vp) |
| ddpm       | fractional DDPM timestep n with t_n = -1/2 log alphabar_n |

DDPM uses 1000 training steps and a named beta schedule: ``linear``
(betas = linspace(1e-4, 0.02)) or ``scaled_linear`` (betas =
linspace(sqrt(0.00085), sqrt(0.012))^2); fractional n interpolates log alphabar
linearly between integer steps.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import InputError, limit_text

UNITS = ("t", "sigma", "alpha", "sigma_vp", "logsnr", "rf", "ddpm")
BETA_SCHEDULES = ("linear", "scaled_linear")
DDPM_STEPS = 1000


def sigma_from_t(t):
    """VE sigma = sqrt(e^{2t} - 1)."""
    return np.sqrt(np.expm1(2.0 * np.asarray(t, float)))


def t_from_sigma(sigma):
    """t = log(1 + sigma^2) / 2."""
    return 0.5 * np.log1p(np.asarray(sigma, float) ** 2)


def rho_from_t(t):
    """rho = log sigma_VE(t) = 1/2 log(e^{2t} - 1), the variable the RK4 teachers step in.

    A float (a Python or numpy scalar: the torch teachers step in scalars) is computed with :mod:`math`, an
    array with numpy (the compiled teacher and the grid search work on arrays)."""
    if isinstance(t, float):
        return 0.5 * math.log(math.expm1(2.0 * t))
    return 0.5 * np.log(np.expm1(2.0 * np.asarray(t, float)))


def t_from_rho(rho):
    """t = 1/2 log(1 + e^{2 rho}) (floats with :mod:`math`, arrays with numpy, as :func:`rho_from_t`)."""
    if isinstance(rho, float):
        return 0.5 * math.log1p(math.exp(2.0 * rho))
    return 0.5 * np.log1p(np.exp(2.0 * np.asarray(rho, float)))


def logsnr_from_t(t):
    """lambda = -log(e^{2t} - 1)."""
    return -np.log(np.expm1(2.0 * np.asarray(t, float)))


def t_from_logsnr(lam):
    """t = log(1 + e^{-lambda}) / 2."""
    return 0.5 * np.logaddexp(0.0, -np.asarray(lam, float))


def alpha_from_t(t):
    return np.exp(-np.asarray(t, float))


def sigma_vp_from_t(t):
    return np.sqrt(-np.expm1(-2.0 * np.asarray(t, float)))


def rf_from_t(t):
    """Rectified-flow time sigma_vp / (alpha + sigma_vp) in (0, 1)."""
    a, s = alpha_from_t(t), sigma_vp_from_t(t)
    return s / (a + s)


def t_from_rf(r):
    """Inverse of :func:`rf_from_t`: sigma_vp / alpha = r / (1 - r) = sigma_VE."""
    r = np.asarray(r, float)
    return t_from_sigma(r / (1.0 - r))


def betas(schedule: str) -> np.ndarray:
    """The 1000 training betas of a named DDPM schedule."""
    if schedule == "linear":
        return np.linspace(1e-4, 0.02, DDPM_STEPS, dtype=np.float64)
    if schedule == "scaled_linear":
        return np.linspace(0.00085**0.5, 0.012**0.5, DDPM_STEPS, dtype=np.float64) ** 2
    raise InputError(f"`beta_schedule` = {schedule!r}: expected one of {', '.join(BETA_SCHEDULES)}")


def ddpm_times(schedule: str) -> np.ndarray:
    """OU time t_n = -1/2 log alphabar_n of each integer DDPM step n = 0..999 (increasing)."""
    return -0.5 * np.cumsum(np.log1p(-betas(schedule)))


def ddpm_range(schedule: str) -> tuple[float, float]:
    tn = ddpm_times(schedule)
    return float(tn[0]), float(tn[-1])


def ddpm_from_t(t, schedule: str = "linear", clip: bool = False):
    """Fractional DDPM timestep for OU time t (log alphabar interpolated linearly in n).

    Times outside [t_0, t_999] raise :class:`InputError` unless ``clip`` is set,
    in which case they map to 0 or 999.
    """
    t = np.asarray(t, float)
    tn = ddpm_times(schedule)
    lo, hi = tn[0], tn[-1]
    outside = (t < lo * (1 - 1e-12)) | (t > hi * (1 + 1e-12))
    if np.any(outside) and not clip:
        bad = t[outside].ravel()[0]
        raise InputError(
            f"t = {bad:.6g} lies outside the {schedule} DDPM schedule's range "
            f"[{limit_text(lo, True)}, {limit_text(hi, False)}] "
            f"(timesteps 0..{DDPM_STEPS - 1}): expected `delta`/`T` inside it, or pass `clip`"
        )
    return np.interp(t, tn, np.arange(DDPM_STEPS, dtype=float))


def t_from_ddpm(n, schedule: str = "linear"):
    """OU time of a (fractional) DDPM timestep, interpolating log alphabar in n."""
    tn = ddpm_times(schedule)
    return np.interp(np.asarray(n, float), np.arange(DDPM_STEPS, dtype=float), tn)


TO_UNIT = {
    "t": lambda t: np.asarray(t, float),
    "sigma": sigma_from_t,
    "alpha": alpha_from_t,
    "sigma_vp": sigma_vp_from_t,
    "logsnr": logsnr_from_t,
    "rf": rf_from_t,
}

FROM_UNIT = {
    "t": lambda x: np.asarray(x, float),
    "sigma": t_from_sigma,
    "alpha": lambda a: -np.log(np.asarray(a, float)),
    "sigma_vp": lambda s: -0.5 * np.log1p(-np.asarray(s, float) ** 2),
    "logsnr": t_from_logsnr,
    "rf": t_from_rf,
}


def convert(t, unit: str, *, beta_schedule: str = "linear", clip: bool = False):
    """OU time t expressed in ``unit`` (one of :data:`UNITS`)."""
    if unit == "ddpm":
        return ddpm_from_t(t, beta_schedule, clip)
    if unit not in TO_UNIT:
        raise InputError(f"`units` = {unit!r}: expected one of {', '.join(UNITS)}")
    return TO_UNIT[unit](t)


def to_t(x, unit: str, *, beta_schedule: str = "linear"):
    """Inverse of :func:`convert`."""
    if unit == "ddpm":
        return t_from_ddpm(x, beta_schedule)
    if unit not in FROM_UNIT:
        raise InputError(f"unit = {unit!r}: expected one of {', '.join(UNITS)}")
    return FROM_UNIT[unit](x)
