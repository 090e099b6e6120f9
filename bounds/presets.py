"""A descending OU-time grid, written the way each external sampler takes it.

Every preset turns nodes ``T = t_0 > t_1 > ... > t_N = delta`` (OU time) into
the list one consumer accepts, with that consumer's conventions:

| preset              | pass                                   | values                                   | trailing 0        | steps run |
| ------------------- | -------------------------------------- | ---------------------------------------- | ----------------- | --------- |
| diffusers-euler     | EulerDiscreteScheduler `sigmas`        | N+1 VE sigmas sqrt(e^{2t}-1), last sigma(delta) | no          | N         |
| diffusers-edm       | EDMEulerScheduler `sigmas` (a ramp)    | N+1 ramp values r_i in [0, 1]            | appended by scheduler (final_sigmas_type="zero") | N+1 |
| diffusers-flowmatch | FlowMatchEulerDiscreteScheduler `sigmas` | N+1 rectified-flow times, pre-shifted  | appended by scheduler | N+1   |
| diffusers-timesteps | DPMSolverMultistepScheduler `timesteps` | N+1 integer DDPM timesteps (rounded)   | appended by scheduler (final_sigmas_type="zero") | N+1 |
| k-diffusion         | `sigmas` of any k-diffusion sampler    | N+1 VE sigmas and a trailing 0           | yes (in the list) | N+1       |
| comfyui             | a SIGMAS list (e.g. a manual-sigmas node) | N+1 VE sigmas and a trailing 0        | yes (in the list) | N+1       |

"steps run" counts model evaluations: where the consumer ends in sigma = 0, its
last step goes from sigma(delta) to 0, which for every first- or second-order
sampler returns the denoiser output D(x, sigma(delta)) = E[x_0 | x_delta].

The functions here are pure conversions: they check ranges, never print, and
return warnings (for example about clipping) in :attr:`Export.warnings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..numcore.checks import InputError, real
from ..numcore.units import (
    DDPM_STEPS,
    ddpm_from_t,
    ddpm_range,
    ddpm_times,
    rf_from_t,
    sigma_from_t,
)

EDM_RHO = 7.0
# diffusers' beta_start / beta_end for the two named schedules of numcore.units.
BETA_CONFIG = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}


@dataclass(frozen=True)
class Export:
    """What a consumer takes, and what it will run with.

    preset : the preset name.
    argument : keyword of the consumer's call that takes ``values`` ("sigmas" or "timesteps").
    values : exactly what to pass (float64, or int64 timesteps).
    schedule : the noise levels the consumer ends up stepping through, in its own
        unit (VE sigma, or rectified-flow time for diffusers-flowmatch), trailing 0 included
        where the consumer appends one.
    t : OU time of each of the N+1 grid nodes actually exported (after clipping or rounding).
    config : scheduler settings the values assume (pass them to ``from_config`` / the constructor).
    conventions : one paragraph: order, trailing zero, final sigma, shift.
    warnings : messages for the user (clipping, rounding).
    """

    preset: str
    argument: str
    values: np.ndarray
    schedule: np.ndarray
    t: np.ndarray
    config: dict = field(default_factory=dict)
    conventions: str = ""
    warnings: tuple = ()

    def text(self) -> str:
        """``values`` as plain text: one per line (comma-separated for ComfyUI)."""
        if self.values.dtype.kind in "iu":
            items = [str(int(v)) for v in self.values]
        else:
            items = [repr(float(v)) for v in self.values]
        return (", ".join(items) if self.preset == "comfyui" else "\n".join(items)) + "\n"


def append_zero(x) -> np.ndarray:
    """x with a trailing 0 (k-diffusion's convention for 'end at the clean data')."""
    return np.concatenate([np.asarray(x, float), [0.0]])


def _descending(t) -> np.ndarray:
    t = np.asarray(t, float)
    if t.ndim != 1 or t.size < 2 or not np.all(np.diff(t) < 0) or not t[-1] > 0:
        raise InputError(f"grid of {t.size} nodes: expected >= 2 strictly decreasing positive OU times")
    return t


def _inside_ddpm(t, schedule: str, clip: bool, warnings: list) -> np.ndarray:
    """t checked against a DDPM schedule's range [t_0, t_999]; clipped (with a warning) on request."""
    ddpm_from_t(t, schedule, clip=clip)  # raises InputError naming the range unless clip
    lo, hi = ddpm_range(schedule)
    out = np.clip(t, lo, hi)
    moved = int(np.sum(out != t))
    if moved:
        warnings.append(
            f"{moved} grid node(s) outside the {schedule} DDPM range t in [{lo:.6g}, {hi:.6g}] "
            f"(timesteps 0..{DDPM_STEPS - 1}) clipped to its ends"
        )
        keep = np.concatenate([[True], np.diff(out) < 0])
        if not keep.all():
            out = out[keep]
            warnings.append(f"clipping merged {int((~keep).sum())} node(s) onto the range's ends: "
                            f"the export has {out.size - 1} steps instead of {t.size - 1}")
        if out.size < 2:
            raise InputError(f"`clip`: every grid node lies outside the {schedule} range [{lo:.6g}, {hi:.6g}]: "
                             "expected `T` / `delta` overlapping that range")
    return out


def _ddpm_config(schedule: str) -> dict:
    start, end = BETA_CONFIG[schedule]
    return {"num_train_timesteps": DDPM_STEPS, "beta_schedule": schedule, "beta_start": start, "beta_end": end}


def diffusers_euler(t, beta_schedule: str = "linear", clip: bool = False) -> Export:
    """EulerDiscreteScheduler.set_timesteps(sigmas=...): the N+1 VE sigmas, descending, no trailing 0.

    The scheduler steps sigma_0 -> ... -> sigma_N = sigma(delta) (N model
    evaluations) and conditions the model on timesteps it interpolates from
    its own beta schedule, so the grid must lie inside that schedule's range.
    """
    warnings: list = []
    t = _inside_ddpm(_descending(t), beta_schedule, clip, warnings)
    sig = sigma_from_t(t)
    return Export(
        "diffusers-euler", "sigmas", sig, sig, t,
        config={**_ddpm_config(beta_schedule), "use_karras_sigmas": False, "use_exponential_sigmas": False,
                "use_beta_sigmas": False},
        conventions="N+1 VE sigmas sqrt(e^{2t}-1), descending, last = sigma(delta), no trailing 0 (the scheduler "
                    "uses the list as given: N steps ending at sigma(delta)); the sample it returns is in VE scale "
                    "x_VE = x_VP sqrt(1 + sigma^2); stored by diffusers as float32.",
        warnings=tuple(warnings),
    )


def edm_ramp(sigmas, sigma_min: float, sigma_max: float, rho: float = EDM_RHO) -> np.ndarray:
    """Inverse of Karras' schedule: r with (s_max^{1/rho} + r (s_min^{1/rho} - s_max^{1/rho}))^rho = sigma."""
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return (np.asarray(sigmas, float) ** (1.0 / rho) - a) / (b - a)


def diffusers_edm(t, rho: float = EDM_RHO) -> Export:
    """EDMEulerScheduler.set_timesteps(sigmas=torch.tensor(ramp)): diffusers feeds ``sigmas`` through Karras' formula.

    With the scheduler built with sigma_min = sigma(delta), sigma_max = sigma(T),
    rho and sigma_schedule="karras", the ramp r_i reproduces the grid's sigmas;
    the scheduler appends the final sigma itself (0 with final_sigmas_type="zero").
    """
    t = _descending(t)
    sig = sigma_from_t(t)
    smin, smax = float(sig[-1]), float(sig[0])
    ramp = edm_ramp(sig, smin, smax, rho)
    ramp[0], ramp[-1] = 0.0, 1.0
    return Export(
        "diffusers-edm", "sigmas", ramp, append_zero(sig), t,
        config={"sigma_min": smin, "sigma_max": smax, "rho": rho, "sigma_schedule": "karras",
                "final_sigmas_type": "zero"},
        conventions="N+1 ramp values in [0, 1] (diffusers' EDMEulerScheduler maps its `sigmas` argument through "
                    "(s_max^{1/rho} + r (s_min^{1/rho} - s_max^{1/rho}))^rho, so it must be a torch tensor of ramp "
                    "positions and the scheduler needs sigma_min = sigma(delta), sigma_max = sigma(T), rho from the "
                    "config); the scheduler appends a trailing 0 (final_sigmas_type='zero': N+1 steps, the last "
                    "returns the denoiser at sigma(delta)) or repeats sigma(delta) ('sigma_min': the last step is "
                    "a no-op and the result is the state at delta).",
    )


def unshift(sigmas, shift: float) -> np.ndarray:
    """Inverse of diffusers' static flow shift s x / (1 + (s - 1) x): x = y / (s - (s - 1) y)."""
    y = np.asarray(sigmas, float)
    return y / (shift - (shift - 1.0) * y)


def diffusers_flowmatch(t, shift: float = 1.0) -> Export:
    """FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=...): rectified-flow times, shift compensated.

    The scheduler maps every passed sigma through its static shift
    s x / (1 + (s - 1) x); the exported values are pre-image under that map
    (compensation), so a scheduler built with this ``shift`` and
    use_dynamic_shifting=False steps through exactly rf(t_i).  shift = 1 is
    the neutral setting (values = rf times).
    """
    t = _descending(t)
    shift = real("shift", shift, low=0.0, low_open=True)
    r = rf_from_t(t)
    return Export(
        "diffusers-flowmatch", "sigmas", unshift(r, shift), append_zero(r), t,
        config={"shift": shift, "use_dynamic_shifting": False, "shift_terminal": None, "invert_sigmas": False,
                "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False},
        conventions="N+1 rectified-flow times r = sigma_vp/(alpha + sigma_vp) in (0, 1), descending (x_r = "
                    "(1 - r) x_0 + r eps = x_OU/(alpha + sigma_vp)); the shift is compensated: values are "
                    "pre-shifted so that the scheduler's static shift (config shift, use_dynamic_shifting=False) "
                    "maps them back onto the grid; the scheduler appends the trailing 0 itself (N+1 steps, the last "
                    "returns the x_0 prediction at r(delta)); timesteps = 1000 r.",
    )


def diffusers_timesteps(t, beta_schedule: str = "linear", clip: bool = False) -> Export:
    """Integer DDPM timesteps for schedulers that take only ``timesteps`` (DPMSolverMultistepScheduler, ...).

    Each node is rounded to the nearest integer timestep of the named beta
    schedule (1000 training steps); nodes outside the schedule's range fail
    unless ``clip``; nodes that round onto the same timestep fail.
    """
    warnings: list = []
    t = _inside_ddpm(_descending(t), beta_schedule, clip, warnings)
    n = np.rint(ddpm_from_t(t, beta_schedule, clip=True)).astype(np.int64)
    same = np.flatnonzero(np.diff(n) >= 0)
    if same.size:
        i = int(same[0])
        raise InputError(
            f"grid nodes {i} and {i + 1} (t = {t[i]:.4g}, {t[i + 1]:.4g}) round to the same {beta_schedule} "
            f"timestep {n[i]}: expected fewer `steps` or a larger `delta` for diffusers-timesteps"
        )
    tn = ddpm_times(beta_schedule)[n]
    moved = float(np.max(np.abs(tn - t) / t))
    if moved > 1e-3:
        warnings.append(f"rounding to integer timesteps moves grid nodes by up to {100 * moved:.2g}% in t")
    return Export(
        "diffusers-timesteps", "timesteps", n, append_zero(sigma_from_t(tn)), tn,
        config={**_ddpm_config(beta_schedule), "final_sigmas_type": "zero", "use_karras_sigmas": False,
                "use_lu_lambdas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
                "use_flow_sigmas": False},
        conventions="N+1 integer timesteps of the named beta schedule (t_n = -1/2 log alphabar_n, 1000 training "
                    "steps), strictly descending, each grid node rounded to the nearest n; the scheduler evaluates "
                    "the model at each and appends the final sigma (0 with final_sigmas_type='zero': N+1 steps, "
                    "the last returns the x_0 prediction at the delta node).",
        warnings=tuple(warnings),
    )


def k_diffusion(t) -> Export:
    """k-diffusion ``sigmas``: the N+1 VE sigmas, descending, then a trailing 0 (append_zero)."""
    t = _descending(t)
    sig = append_zero(sigma_from_t(t))
    return Export(
        "k-diffusion", "sigmas", sig, sig, t,
        conventions="N+2 numbers: the N+1 VE sigmas sqrt(e^{2t}-1) descending to sigma(delta), then 0 "
                    "(k-diffusion's append_zero convention); samplers run N+1 steps, the last from sigma(delta) to 0 "
                    "returns the denoiser output; drop the 0 to stop at delta. A discrete-time model wrapper clamps "
                    "sigmas outside its training range.",
    )


def comfyui(t) -> Export:
    """A ComfyUI SIGMAS list: VE sigmas, descending, trailing 0 (text: comma-separated)."""
    k = k_diffusion(t)
    return Export(
        "comfyui", "sigmas", k.values, k.schedule, k.t,
        conventions="a SIGMAS list of N+2 numbers: the N+1 VE sigmas descending to sigma(delta), then 0 "
                    "(N+1 sampler steps; the last returns the denoised image); text output is comma-separated "
                    "for a manual-sigmas node. For eps/v models (ModelSamplingDiscrete) the sigmas are VE sigmas "
                    "and must lie inside the model's range (SD 1.x/XL: 0.0292..14.61, i.e. `T` <= 2.684); "
                    "flow models in ComfyUI take rectified-flow times instead (see diffusers-flowmatch).",
    )


PRESETS = {
    "diffusers-euler": diffusers_euler,
    "diffusers-edm": diffusers_edm,
    "diffusers-flowmatch": diffusers_flowmatch,
    "diffusers-timesteps": diffusers_timesteps,
    "k-diffusion": k_diffusion,
    "comfyui": comfyui,
}


def check(name: str) -> str:
    """The preset name, or an InputError listing the known ones."""
    if name not in PRESETS:
        raise InputError(f"`preset` = {name!r}: expected one of {', '.join(PRESETS)}")
    return name


def export(name: str, t, *, beta_schedule: str = "linear", clip: bool = False, shift: float = 1.0) -> Export:
    """The grid ``t`` (OU time, descending) for consumer ``name``; options go where they apply."""
    check(name)
    if name in ("diffusers-euler", "diffusers-timesteps"):
        return PRESETS[name](t, beta_schedule, clip)
    if name == "diffusers-flowmatch":
        return PRESETS[name](t, shift)
    return PRESETS[name](t)
