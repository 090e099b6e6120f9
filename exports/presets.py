"""A descending OU-time grid, written the way each external sampler takes it, and checked the way it runs there.

Every preset turns nodes ``T = t_0 > t_1 > ... > t_N = delta`` (OU time) into
the list one consumer accepts, with that consumer's conventions:

| preset              | pass                                   | values                                   | trailing 0        | steps run |
| ------------------- | -------------------------------------- | ---------------------------------------- | ----------------- | --------- |
| diffusers-euler     | EulerDiscreteScheduler `sigmas`        | N+1 VE sigmas sqrt(e^{2t}-1), last sigma(delta) | no          | N         |
| diffusers-edm       | EDMEulerScheduler `sigmas` (a ramp)    | N+1 ramp values r_i in [0, 1]            | appended by scheduler (final_sigmas_type="zero") | N+1 |
| diffusers-flowmatch | FlowMatchEulerDiscreteScheduler `sigmas` | N+1 rectified-flow times, pre-shifted  | appended by scheduler | N+1   |
| diffusers-unipc     | UniPCMultistepScheduler `sigmas` (flow) | N rectified-flow times (t_0..t_{N-1}), pre-shifted | appended by scheduler | N |
| diffusers-timesteps | DPMSolverMultistepScheduler `timesteps` | N+1 integer DDPM timesteps (rounded)   | appended by scheduler (final_sigmas_type="zero") | N+1 |
| diffusers-dpmsolver-3m | the same, pinned to DPM-Solver++(3M) | N+1 integer DDPM timesteps (rounded) | appended by scheduler | N+1 |
| k-diffusion[-S]     | `sigmas` of any k-diffusion sampler (S) | N+1 VE sigmas and a trailing 0          | yes (in the list) | N+1       |
| comfyui[-S]         | a SIGMAS list (e.g. a manual-sigmas node) for sampler S | N+1 VE sigmas and a trailing 0 | yes (in the list) | N+1 |

:data:`PRESETS` holds each preset with the registry's solver its consumer runs (the default of ``--for``'s
winning grid): the k-diffusion-S and comfyui-S presets are made from the registry's sampler names.

"steps run" counts solver steps (model evaluations per step depend on the
solver: see docs/samplers.md); where the consumer ends in sigma = 0, its last
step goes from sigma(delta) to 0 and returns the denoiser output
D(x, sigma(delta)) = E[x_0 | x_delta].

**What the consumer really runs.** Every export is checked after the
consumer's own conversion, emulated here in numpy:

* float32 storage: diffusers (``np.float32`` / ``torch.float32`` sigmas),
  k-diffusion and ComfyUI (float32 tensors) round every value; values that
  overflow, underflow below the smallest normal float32 (1.18e-38), or whose
  square overflows (the ``c_in = 1/sqrt(sigma^2 + sigma_data^2)``
  preconditioning of every VE consumer) are refused, and so are nodes that are
  no longer strictly decreasing there;
* the scheduler's own formulas: EulerDiscreteScheduler's sigma -> timestep
  interpolation over its beta schedule (a repeated first timestep makes its
  step index run past the end), the flow-match static shift
  ``s x / (1 + (s - 1) x)`` evaluated in float32, EDM's Karras map and
  ``0.25 log sigma`` timesteps, integer rounding of DDPM timesteps;
* text parsers: ComfyUI's manual-sigmas node reads numbers with the pattern
  ``[-+]?(?:\\d*\\.*\\d+)``, which splits ``4.4e-05`` into ``4.4`` and ``-05``,
  so ComfyUI text is written as plain decimals.

``schedule`` holds the values the consumer steps through as it stores them
(float32 values, as float64 numbers); ``t`` the grid nodes exported. Where a
compensation (flow-match shift, EDM ramp) puts the consumer's value more than
4 float32 ulps from the float32 rounding of the grid's value, a warning says
by how much; where the noise level (VE sigma) it implies is more than
:data:`DRIFT_MAX` (relative) away, the export is refused.

A scheduler's own configuration (``scheduler_config.json`` of a pipeline) can
be given: the export is then built for, and checked against, that scheduler
(its beta schedule or sigma range, zero terminal SNR, shift, number of
training steps, prediction type), and ``config`` pins every key that changes
the schedule when merged into a pipeline's configuration.

The functions here are pure conversions: they check, never print, and return
warnings in :attr:`Export.warnings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..numcore.checks import (
    CONFIG_BYTES,
    SCHEDULER_CONFIG,
    InputError,
    check_config,
    choice,
    kind_of,
    limit_text,
    real,
)
from ..numcore.units import (
    DDPM_STEPS,
    betas as unit_betas,
    rf_from_t,
    sigma_from_t,
    t_from_sigma,
)

EDM_RHO = 7.0
# diffusers' beta_start / beta_end for the two named schedules of numcore.units.
BETA_CONFIG = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

F32 = np.finfo(np.float32)
TINY32 = float(F32.tiny)  # smallest normal float32: below it values lose precision, then become 0
MAX32 = float(F32.max)
EPS32 = float(F32.eps)
# largest float32 sigma whose square is finite in float32 (c_in = 1/sqrt(sigma^2 + sigma_data^2))
SIGMA_MAX32 = float(np.sqrt(np.float32(MAX32)))
# OU-time window of the VE consumers in float32: sigma(delta) >= TINY32 and sigma(T)^2 finite
T_MAX_VE32 = float(t_from_sigma(SIGMA_MAX32))
DELTA_MIN_VE32 = float(t_from_sigma(TINY32))
DRIFT_MAX = 1e-3  # relative deviation of a noise level (VE sigma) from the grid's that is refused
# Euler's timesteps come from diffusers' float32 beta tables, which differ from the float64 ones here by at most
# ~3e-4 timesteps; nodes closer than this may coincide there.
TIMESTEP_GAP = 1e-3
ZERO_SNR_ALPHABAR = 2.0**-24  # diffusers' stand-in for alphabar = 0 at the last step (rescale_betas_zero_snr)


@dataclass(frozen=True)
class Export:
    """What a consumer takes, and what it will run with.

    preset : the preset name.
    argument : keyword of the consumer's call that takes ``values`` ("sigmas" or "timesteps").
    values : exactly what to pass (float64, or int64 timesteps).
    schedule : the noise levels the consumer ends up stepping through, in its own
        unit (VE sigma, or rectified-flow time for diffusers-flowmatch), as it stores them
        (float32 values), trailing 0 included where the consumer appends one.
    t : OU time of each of the N+1 grid nodes actually exported (after clipping or rounding).
    config : scheduler settings the values assume (pass them to ``from_config`` / the constructor, or
        merge them last into a pipeline's scheduler config).
    conventions : one paragraph: order, trailing zero, final sigma, shift.
    warnings : messages for the user (clipping, rounding, float32 drift).
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
        """``values`` as plain text: one per line; for ComfyUI comma-separated plain decimals."""
        if self.values.dtype.kind in "iu":
            items = [str(int(v)) for v in self.values]
        elif self.preset.startswith("comfyui"):
            items = [plain_decimal(v) for v in self.values]
            # what ComfyUI's manual-sigmas node will read: exactly these numbers, one per item
            assert all(COMFYUI_NUMBER.fullmatch(x) for x in items), items
        else:
            items = [repr(float(v)) for v in self.values]
        return (", ".join(items) if self.preset.startswith("comfyui") else "\n".join(items)) + "\n"


def plain_decimal(x: float) -> str:
    """x as a plain decimal (no exponent) with the shortest digits that round-trip the float64.

    ComfyUI's manual-sigmas node finds numbers with ``[-+]?(?:\\d*\\.*\\d+)``: an exponent
    (``4.47e-05``) would be read as two numbers (``4.47`` and ``-05``).
    """
    return np.format_float_positional(float(x), unique=True, trim="0")


COMFYUI_NUMBER = re.compile(r"[-+]?(?:\d*\.*\d+)")  # the pattern ComfyUI's ManualSigmas node reads numbers with


def append_zero(x) -> np.ndarray:
    """x with a trailing 0 (k-diffusion's convention for 'end at the clean data')."""
    return np.concatenate([np.asarray(x, float), [0.0]])


def f32(x) -> np.ndarray:
    """x as a float32 consumer stores it (round to nearest), returned as float64 holding float32 values."""
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(x, np.float64).astype(np.float32).astype(np.float64)


def _descending(t) -> np.ndarray:
    t = np.asarray(t, float)
    if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)) or not np.all(np.diff(t) < 0) or not t[-1] > 0:
        raise InputError(f"grid of {t.size} nodes: expected >= 2 strictly decreasing positive finite OU times")
    return t


# ----------------------------------------------------------------------------- consumer checks


def _collapse(q, t, consumer: str, what: str, gap=0.0) -> None:
    """Consecutive consumer values q strictly decreasing by more than ``gap`` (a number or per-pair array)."""
    q = np.asarray(q, float)
    with np.errstate(invalid="ignore"):
        ok = (q[:-1] - q[1:]) > gap
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        ti = [f"{t[j]:.10g}" if j < len(t) else "(appended 0)" for j in (i, i + 1)]
        raise InputError(
            f"grid nodes {i} and {i + 1} (t = {ti[0]}, {ti[1]}) collapse in {consumer}: {what} {q[i]:.9g} and "
            f"{q[i + 1]:.9g} are not strictly decreasing there: expected fewer `steps` or a wider window "
            "(`delta`, `T`)"
        )


def _ulp_gap(q) -> np.ndarray:
    """4 float32 epsilons of the larger of each consecutive pair: what float32 evaluation can move a value."""
    q = np.abs(np.asarray(q, float))
    return 4 * EPS32 * np.maximum(q[:-1], q[1:])


def _ve_float32(sig, t, consumer: str) -> np.ndarray:
    """VE sigmas as a float32 consumer stores them; refused when they overflow, their square overflows
    (the c_in preconditioning), they underflow, or they stop decreasing."""
    s32 = f32(sig)
    if not np.isfinite(s32[0]) or s32[0] > SIGMA_MAX32:
        raise InputError(
            f"`T` = {t[0]:.6g}: sigma(T) = {sig[0]:.4g}, whose square overflows float32 in {consumer} (its "
            f"preconditioning computes sigma^2 + sigma_data^2): expected `T` <= {limit_text(T_MAX_VE32, False, 4)}"
        )
    if not s32[-1] >= TINY32:
        raise InputError(
            f"`delta` = {t[-1]:.6g}: sigma(delta) = {sig[-1]:.4g} underflows float32 in {consumer} (smallest "
            f"normal float32 {TINY32:.4g}): expected `delta` >= {limit_text(DELTA_MIN_VE32, True, 4)}"
        )
    _collapse(s32, t, consumer + " (float32)", "sigmas")
    return s32


def _drift(actual, intended, t, consumer: str, cause: str, fix: str, warnings: list, param: str,
           noise=lambda x: x) -> None:
    """Compare what the consumer stores with the float32 rounding of the grid's value (the best it can hold).

    More than 4 float32 ulps apart: a warning giving the largest relative deviation.  A noise level
    (``noise`` of the value: VE sigma, e.g. r / (1 - r) for rectified-flow times) more than
    :data:`DRIFT_MAX` away, relative: refused, naming the node.
    """
    actual = np.asarray(actual, float)
    ref = f32(intended)
    ulps = np.abs(actual - ref) / np.spacing(ref.astype(np.float32)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        na, nr = noise(actual), noise(ref)
        rel = np.where(na == nr, 0.0, np.abs(na - nr) / np.abs(nr))
    rel = np.where(np.isnan(rel), np.inf, rel)
    i = int(np.argmax(rel))
    if rel[i] > DRIFT_MAX:
        raise InputError(
            f"{param}: {cause}: {consumer} would step through {actual[i]:.7g} instead of {ref[i]:.7g} at grid node {i} "
            f"(t = {t[i]:.6g}), a noise level {100 * rel[i]:.3g}% away: expected {fix}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = noise(np.asarray(intended, float))
        own = np.where(nr == exact, 0.0, np.abs(nr - exact) / np.abs(exact))
    own = np.where(np.isnan(own), np.inf, own)
    k = int(np.argmax(own))
    if own[k] > DRIFT_MAX:
        how = f"a noise level {100 * own[k]:.3g}% away from" if np.isfinite(own[k]) else "an infinite noise level for"
        warnings.append(f"{consumer} stores grid node {k} (t = {t[k]:.6g}) as {ref[k]:.9g} in float32, {how} the "
                        "grid's (float32 cannot resolve it: a smaller `T` keeps every node resolved)")
    j = int(np.argmax(ulps))
    if ulps[j] > 4:
        dev = float(np.max(np.abs(actual - ref) / np.abs(ref)))
        warnings.append(f"{cause}: {consumer} steps through values up to {dev:.2g} (relative; noise level "
                        f"{float(np.max(rel)):.2g}) away from the grid, {ulps[j]:.0f} float32 ulps at node {j} "
                        f"(t = {t[j]:.6g}); `schedule` holds what it runs")


# ----------------------------------------------------------------------------- scheduler configurations


def read_scheduler_config(path, what: str = "`scheduler_config`") -> dict:
    """A scheduler_config.json read (bounded, strict: no key twice; a FIFO or a device refused before anything is
    read) and checked field by field against numcore.checks.SCHEDULER_CONFIG; InputError naming the file, the
    field, its value and what was expected."""
    from ..numcore.io import read_json

    return _Checked(check_config(read_json(path, what, limit=CONFIG_BYTES, constants=True), SCHEDULER_CONFIG,
                                 f"{what} {str(path)!r}"))


class _Checked(dict):
    """A scheduler configuration that went through :func:`checked_scheduler_config` (checked once, however many
    presets read it)."""


def checked_scheduler_config(cfg) -> dict:
    """A scheduler configuration given as a mapping, checked field by field (numcore.checks.SCHEDULER_CONFIG): the
    checked copy every preset reads."""
    if isinstance(cfg, _Checked):
        return cfg
    return _Checked(check_config(cfg, SCHEDULER_CONFIG, "`scheduler_config`"))


def _flag(cfg: dict, key: str, default: bool = False) -> bool:
    """A checked flag (scheduler_config): null stands for the default."""
    v = cfg.get(key, default)
    return default if v is None else v


def _scheduler_kind(cfg: dict) -> str:
    """'flow', 'edm' or 'ddpm': the family of a diffusers scheduler configuration."""
    name = str(cfg.get("_class_name") or "")
    if name.startswith("FlowMatch") or cfg.get("prediction_type") == "flow_prediction" or _flag(cfg, "use_flow_sigmas"):
        return "flow"
    if name.startswith("EDM") or "sigma_data" in cfg or "sigma_schedule" in cfg:
        return "edm"
    betas = ("beta_schedule", "beta_start", "beta_end", "trained_betas")
    if not name and "shift" in cfg and not any(k in cfg for k in betas):
        return "flow"
    return "ddpm"


FAMILY_PRESETS = {"ddpm": ("diffusers-euler", "diffusers-timesteps", "diffusers-dpmsolver-3m"),
                  "edm": ("diffusers-edm",), "flow": ("diffusers-flowmatch", "diffusers-unipc")}
FAMILY_NAMES = {"ddpm": "a DDPM-type (beta schedule)", "edm": "an EDM (sigma_min/sigma_max)",
                "flow": "a flow-matching"}


def scheduler_family(cfg: dict, preset: str) -> str:
    """The family of ``cfg``, checked against the preset (one line naming both when they do not fit)."""
    if not isinstance(cfg, dict):
        raise InputError(f"`scheduler_config` is {kind_of(cfg)}: expected a JSON object (a scheduler_config.json)")
    kind = _scheduler_kind(checked_scheduler_config(cfg))
    if preset not in FAMILY_PRESETS[kind]:
        cls = cfg.get("_class_name") or "scheduler"
        raise InputError(
            f"`scheduler_config` is {FAMILY_NAMES[kind]} {cls} configuration, which {preset} cannot drive: "
            f"expected `preset` {' or '.join(FAMILY_PRESETS[kind])}"
        )
    return kind


def _value(cfg: dict, key: str, default):
    """A checked field, null standing for diffusers' default."""
    v = cfg.get(key)
    return default if v is None else v


@dataclass(frozen=True)
class DDPMTable:
    """A discrete (DDPM-type) training schedule as a diffusers scheduler builds it, in float64.

    ``t`` (n,) increasing: OU time of each step, t_n = -1/2 log alphabar_n; ``alphas_cumprod``;
    ``sigmas`` = sqrt((1 - alphabar)/alphabar) (VE); ``config`` the keys that define it; ``name``
    for messages.
    """

    name: str
    t: np.ndarray
    config: dict

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.exp(-2.0 * self.t)

    @property
    def sigmas(self) -> np.ndarray:
        return sigma_from_t(self.t)

    @property
    def steps(self) -> int:
        return int(self.t.size)


def _cosine_betas(n: int) -> np.ndarray:
    """diffusers' betas_for_alpha_bar (squaredcos_cap_v2): 1 - abar((i+1)/n)/abar(i/n), capped at 0.999."""
    abar = lambda s: np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    i = np.arange(n, dtype=float)
    return np.minimum(1.0 - abar((i + 1) / n) / abar(i / n), 0.999)


def _zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. (2024), Algorithm 1, as diffusers' rescale_zero_terminal_snr: sqrt(alphabar) shifted to end at 0."""
    s = np.sqrt(np.cumprod(1.0 - betas))
    s0, sT = s[0], s[-1]
    s = (s - sT) * s0 / (s0 - sT)
    ab = s**2
    alphas = np.concatenate([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas


def ddpm_table(beta_schedule: str | None = "linear", cfg: dict | None = None) -> DDPMTable:
    """The training schedule of a named beta schedule (1000 steps, flowcert's defaults), or of a diffusers
    scheduler configuration (num_train_timesteps, beta_schedule, beta_start, beta_end, trained_betas,
    rescale_betas_zero_snr)."""
    if cfg is None:
        name = choice("beta_schedule", beta_schedule, tuple(BETA_CONFIG))
        start, end = BETA_CONFIG[name]
        cfg = {"num_train_timesteps": DDPM_STEPS, "beta_schedule": name, "beta_start": start, "beta_end": end}
    cfg = checked_scheduler_config(cfg)  # every field checked once, here (numcore.checks.SCHEDULER_CONFIG)
    n = cfg.get("num_train_timesteps", 1000)
    if n < 2:
        raise InputError(f"`scheduler_config` num_train_timesteps = {n}: expected an integer >= 2 for a DDPM schedule")
    zero_snr = _flag(cfg, "rescale_betas_zero_snr")
    trained = cfg.get("trained_betas")
    keys = {"num_train_timesteps": n}
    if trained is not None:
        betas = np.asarray(trained, dtype=np.float64)  # checked: 2 or more betas in (0, 1)
        name = "trained_betas"
        keys.update(trained_betas=betas.tolist(), num_train_timesteps=int(betas.size))
    else:
        schedule = choice("scheduler_config beta_schedule", cfg.get("beta_schedule", "linear"), BETA_SCHEDULES)
        name = schedule
        keys["beta_schedule"] = schedule
        if schedule == "squaredcos_cap_v2":
            betas = _cosine_betas(n)
        elif (schedule, n, cfg.get("beta_start"), cfg.get("beta_end")) in (
                (k, DDPM_STEPS, *v) for k, v in BETA_CONFIG.items()):
            keys.update(beta_start=cfg["beta_start"], beta_end=cfg["beta_end"])
            betas = unit_betas(schedule)  # flowcert's own tables, so that ranges agree with --units ddpm
        else:
            start, end = cfg.get("beta_start", 1e-4), cfg.get("beta_end", 0.02)  # checked: in (0, 1)
            keys.update(beta_start=start, beta_end=end)
            betas = (np.linspace(start, end, n) if schedule == "linear"
                     else np.linspace(start**0.5, end**0.5, n) ** 2)
    if zero_snr:
        betas = _zero_terminal_snr(betas)
        name += " (zero terminal SNR)"
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -0.5 * np.cumsum(np.log1p(-betas))
    if zero_snr:
        t[-1] = -0.5 * np.log(ZERO_SNR_ALPHABAR)
    if not (np.all(np.isfinite(t)) and t[0] > 0 and np.all(np.diff(t) > 0)):
        raise InputError(f"`scheduler_config` gives the {name} schedule, whose alphabar is not strictly decreasing "
                         "in (0, 1): expected a valid beta schedule")
    keys["rescale_betas_zero_snr"] = zero_snr
    return DDPMTable(name, t, keys)


def _inside(t, lo: float, hi: float, what: str, clip: bool, warnings: list, note: str = "") -> np.ndarray:
    """t checked against the consumer's range [lo, hi] (OU time); clipped and merged (with warnings) on request.

    The range is printed inward (lower end rounded up, upper end down), so that both printed ends are
    accepted when passed back as `delta` / `T`.
    """
    lo_text, hi_text = limit_text(lo, True), limit_text(hi, False)
    outside = (t < lo * (1 - 1e-12)) | (t > hi * (1 + 1e-12))
    if outside.any() and not clip:
        bad = float(t[outside][0])
        raise InputError(f"t = {bad:.6g} lies outside the {what} range [{lo_text}, {hi_text}]{note}: "
                         "expected `delta`/`T` inside it, or pass `clip`")
    out = np.clip(t, lo, hi)
    moved = int(np.sum(out != t))
    if moved:
        warnings.append(f"{moved} grid node(s) outside the {what} range t in [{lo_text}, {hi_text}] clipped "
                        "to its ends")
        keep = np.concatenate([[True], np.diff(out) < 0])
        if not keep.all():
            out = out[keep]
            warnings.append(f"clipping merged {int((~keep).sum())} node(s) onto the range's ends: "
                            f"the export has {out.size - 1} steps instead of {t.size - 1}")
        if out.size < 2:
            raise InputError(f"`clip`: every grid node lies outside the {what} range [{lo_text}, {hi_text}]: "
                             "expected `T` / `delta` overlapping that range")
    return out


def _ddpm_inside(t, table: DDPMTable, clip: bool, warnings: list) -> np.ndarray:
    tn = table.t
    return _inside(t, float(tn[0]), float(tn[-1]), f"{table.name} DDPM schedule's", clip, warnings,
                   f" (timesteps 0..{table.steps - 1})")


def _pins(cfg: dict | None, keys: tuple, defaults: dict) -> dict:
    """Each key: the configuration's own value when it has one, else diffusers' default."""
    cfg = cfg or {}
    return {k: cfg.get(k, defaults[k]) for k in keys}


def _table_for(beta_schedule, cfg):
    if cfg is not None and beta_schedule is not None:
        own = cfg.get("beta_schedule", "linear") if cfg.get("trained_betas") is None else "trained_betas"
        if own != beta_schedule:
            raise InputError(f"`beta_schedule` = {beta_schedule!r} disagrees with the scheduler config's {own!r}: "
                             "expected no `beta_schedule` with `scheduler_config` (the config defines it)")
    return ddpm_table(beta_schedule or "linear", cfg)


# ----------------------------------------------------------------------------- presets


def diffusers_euler(t, beta_schedule: str | None = "linear", clip: bool = False,
                    scheduler_config: dict | None = None) -> Export:
    """EulerDiscreteScheduler.set_timesteps(sigmas=...): the N+1 VE sigmas, descending, no trailing 0.

    The scheduler steps sigma_0 -> ... -> sigma_N = sigma(delta) (N model
    evaluations) and conditions the model on timesteps it interpolates (in log
    sigma) from its own beta schedule, clamping outside it: the grid must lie
    inside that schedule's range, and the float32 sigmas and their timesteps
    must stay strictly decreasing (a repeated first timestep makes diffusers
    start at step index 1 and fail with an IndexError at the end).
    """
    warnings: list = []
    cfg = scheduler_config
    if cfg is not None:
        scheduler_family(cfg, "diffusers-euler")
        cfg = checked_scheduler_config(cfg)
    table = _table_for(beta_schedule, cfg)
    t = _ddpm_inside(_descending(t), table, clip, warnings)
    sig = sigma_from_t(t)
    s32 = _ve_float32(sig, t, "EulerDiscreteScheduler")
    prediction = (cfg or {}).get("prediction_type", "epsilon")
    timestep_type = (cfg or {}).get("timestep_type", "discrete")  # checked: discrete or continuous
    if timestep_type == "continuous" and prediction == "v_prediction":
        q = 0.25 * np.log(s32)
        _collapse(q, t, "EulerDiscreteScheduler (continuous timesteps 0.25 log sigma, float32)", "timesteps",
                  _ulp_gap(q))
    else:
        steps = np.interp(np.log(s32), np.log(table.sigmas), np.arange(table.steps, dtype=float))
        _collapse(steps, t, "EulerDiscreteScheduler (its float32 beta table)", "timesteps", TIMESTEP_GAP)
    config = {**table.config, "timestep_spacing": "leading",
              **_pins(cfg, ("steps_offset", "interpolation_type"), {"steps_offset": 0, "interpolation_type": "linear"}),
              "timestep_type": timestep_type, "use_karras_sigmas": False, "use_exponential_sigmas": False,
              "use_beta_sigmas": False}
    if cfg is not None:
        config["prediction_type"] = prediction
    return Export(
        "diffusers-euler", "sigmas", sig, s32, t, config=config,
        conventions="N+1 VE sigmas sqrt(e^{2t}-1), descending, last = sigma(delta), no trailing 0 (the scheduler "
                    "uses the list as given: N steps ending at sigma(delta)); the sample it returns is in VE scale "
                    "x_VE = x_VP sqrt(1 + sigma^2); stored by diffusers as float32 (`schedule`); timestep_spacing "
                    "'leading' makes init_noise_sigma = sqrt(1 + sigma_0^2), the VE-scale spread of x_T ~ N(0, I).",
        warnings=tuple(warnings),
    )


def edm_ramp(sigmas, sigma_min: float, sigma_max: float, rho: float = EDM_RHO) -> np.ndarray:
    """Inverse of Karras' schedule: r with (s_max^{1/rho} + r (s_min^{1/rho} - s_max^{1/rho}))^rho = sigma."""
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return (np.asarray(sigmas, float) ** (1.0 / rho) - a) / (b - a)


def karras(ramp, sigma_min: float, sigma_max: float, rho: float = EDM_RHO) -> np.ndarray:
    """Karras' schedule at ramp positions, as EDMEulerScheduler computes it (float64) before storing float32."""
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return (a + np.asarray(ramp, float) * (b - a)) ** rho


def diffusers_edm(t, rho: float = EDM_RHO, clip: bool = False, scheduler_config: dict | None = None) -> Export:
    """EDMEulerScheduler.set_timesteps(sigmas=torch.tensor(ramp, dtype=torch.float64)): diffusers feeds ``sigmas``
    through Karras' formula.

    Without a scheduler config the scheduler is built with sigma_min = sigma(delta),
    sigma_max = sigma(T), rho; with one, the ramp is computed for that scheduler's own
    sigma_min, sigma_max and rho (the grid must lie inside [sigma_min, sigma_max]).
    The scheduler appends the final sigma itself (0 with final_sigmas_type="zero").
    """
    warnings: list = []
    t = _descending(t)
    cfg = scheduler_config
    if cfg is not None:
        scheduler_family(cfg, "diffusers-edm")
        cfg = checked_scheduler_config(cfg)
        smin, smax = _value(cfg, "sigma_min", 0.002), _value(cfg, "sigma_max", 80.0)  # checked: > 0
        rho = cfg.get("rho", EDM_RHO)
        if not smin < smax:
            raise InputError(f"`scheduler_config` sigma_min = {smin:g}: expected below sigma_max = {smax:g}")
        t = _inside(t, float(t_from_sigma(smin)), float(t_from_sigma(smax)),
                    f"EDM scheduler's sigma_min..sigma_max ({smin:g}..{smax:g})", clip, warnings)
    sig = sigma_from_t(t)
    if cfg is None:
        smin, smax = float(sig[-1]), float(sig[0])
    _ve_float32(sig, t, "EDMEulerScheduler")
    ramp = np.clip(edm_ramp(sig, smin, smax, rho), 0.0, 1.0)
    if cfg is None:
        ramp[0], ramp[-1] = 0.0, 1.0
    s32 = f32(karras(ramp, smin, smax, rho))
    _collapse(s32, t, "EDMEulerScheduler (float32)", "sigmas")
    q = 0.25 * np.log(s32)
    _collapse(q, t, "EDMEulerScheduler (timesteps 0.25 log sigma, float32)", "timesteps", _ulp_gap(q))
    _drift(s32, f32(sig), t, "EDMEulerScheduler", "the Karras ramp cannot place the grid's sigmas in float64",
           "a narrower window", warnings, "the window (`delta`, `T`)")
    config = {"sigma_min": smin, "sigma_max": smax, "rho": rho, "sigma_schedule": "karras", "final_sigmas_type": "zero"}
    if cfg is not None:
        config.update(_pins(cfg, ("sigma_data", "num_train_timesteps", "prediction_type"),
                            {"sigma_data": 0.5, "num_train_timesteps": 1000, "prediction_type": "epsilon"}))
    return Export(
        "diffusers-edm", "sigmas", ramp, append_zero(s32), t, config=config,
        conventions="N+1 ramp values in [0, 1] (diffusers' EDMEulerScheduler maps its `sigmas` argument through "
                    "(s_max^{1/rho} + r (s_min^{1/rho} - s_max^{1/rho}))^rho, so it must be a torch tensor of ramp "
                    "positions, float64 to keep every digit, and the scheduler needs sigma_min, sigma_max and rho from "
                    "the config); the scheduler appends a trailing 0 (final_sigmas_type='zero': N+1 steps, the last "
                    "returns the denoiser at sigma(delta)) or repeats sigma(delta) ('sigma_min': the last step is "
                    "a no-op and the result is the state at delta).",
        warnings=tuple(warnings),
    )


def unshift(sigmas, shift: float) -> np.ndarray:
    """Inverse of diffusers' static flow shift s x / (1 + (s - 1) x): x = y / (s - (s - 1) y)."""
    y = np.asarray(sigmas, float)
    return y / (shift - (shift - 1.0) * y)


def flow_shift32(values, shift: float) -> np.ndarray:
    """FlowMatchEulerDiscreteScheduler's static shift as it evaluates it: float32 values, float32 arithmetic
    (``shift * x / (1 + (shift - 1) * x)`` with x an np.float32 array and shift a Python float)."""
    x = np.asarray(values, np.float64).astype(np.float32)
    with np.errstate(all="ignore"):
        s, sm1 = np.float32(shift), np.float32(shift - 1.0)
        y = (s * x) / (np.float32(1.0) + sm1 * x)
    return y.astype(np.float64)


def diffusers_flowmatch(t, shift: float | None = None, scheduler_config: dict | None = None) -> Export:
    """FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=...): rectified-flow times, shift compensated.

    The scheduler maps every passed sigma through its static shift
    s x / (1 + (s - 1) x) in float32; the exported values are the pre-image under
    that map (compensation), so a scheduler built with this ``shift`` and
    use_dynamic_shifting=False steps through rf(t_i) up to float32 rounding.
    Where float32 cannot represent the compensation (a shift far from 1), the
    drift is warned about, and refused beyond DRIFT_MAX.  shift = 1 is the
    neutral setting (values = rf times).
    """
    warnings: list = []
    t = _descending(t)
    cfg = scheduler_config
    n_train = 1000
    if cfg is not None:
        scheduler_family(cfg, "diffusers-flowmatch")
        cfg = checked_scheduler_config(cfg)
        own = cfg.get("shift", cfg.get("flow_shift", 1.0))  # checked: > 0
        if shift is not None and real("shift", shift) != own:
            raise InputError(f"`shift` = {real('shift', shift):g} disagrees with the scheduler config's shift {own:g}: "
                             "expected no `shift` with `scheduler_config` (the config defines it)")
        shift = own
        n_train = cfg.get("num_train_timesteps", 1000)  # checked: 1 .. 10^6
        if _flag(cfg, "use_dynamic_shifting"):
            warnings.append("the scheduler config shifts dynamically (resolution-dependent mu); the export pins "
                            "use_dynamic_shifting = false so that the grid, not the resolution, sets the noise levels")
    shift = real("shift", 1.0 if shift is None else shift, low=0.0, low_open=True)
    if shift > MAX32:
        raise InputError(f"`shift` = {shift:g}: the scheduler computes the shift in float32, where it overflows: "
                         f"expected a number <= {limit_text(MAX32, False)}")
    r = rf_from_t(t)
    values = unshift(r, shift)
    y = flow_shift32(values, shift)
    consumer = f"FlowMatchEulerDiscreteScheduler (shift {shift:g}, float32)"
    if not np.all(np.isfinite(y)) or not y[-1] >= TINY32:
        i = int(np.flatnonzero(~(np.isfinite(y) & (y >= TINY32)))[0])
        raise InputError(f"`shift` = {shift:g}: {consumer} turns grid node {i} (t = {t[i]:.6g}, r = {r[i]:.4g}) into "
                         f"{y[i]:.4g}, not a normal float32 number: expected a `shift` closer to 1 or a larger `delta`")
    _collapse(y, t, consumer, "rectified-flow times")
    _collapse(f32(np.float32(n_train) * y.astype(np.float32)), t, consumer, "timesteps")
    _drift(y, r, t, "FlowMatchEulerDiscreteScheduler",
           f"float32 cannot represent the shift compensation for shift {shift:g}", "a `shift` closer to 1",
           warnings, f"`shift` = {shift:g}", noise=lambda x: x / (1.0 - x))
    config = {"num_train_timesteps": n_train, "shift": shift, "use_dynamic_shifting": False, "shift_terminal": None,
              "invert_sigmas": False, "use_karras_sigmas": False, "use_exponential_sigmas": False,
              "use_beta_sigmas": False, "stochastic_sampling": False}
    return Export(
        "diffusers-flowmatch", "sigmas", values, append_zero(y), t, config=config,
        conventions="N+1 rectified-flow times r = sigma_vp/(alpha + sigma_vp) in (0, 1), descending (x_r = "
                    "(1 - r) x_0 + r eps = x_OU/(alpha + sigma_vp)); the shift is compensated: values are "
                    "pre-shifted so that the scheduler's static shift (config shift, use_dynamic_shifting=False), "
                    "evaluated in float32, maps them back onto the grid (`schedule` holds its float32 result); the "
                    "scheduler appends the trailing 0 itself (N+1 steps, the last returns the x_0 prediction at "
                    "r(delta)); timesteps = num_train_timesteps r.",
        warnings=tuple(warnings),
    )


# DPMSolverMultistepScheduler's settings that make it the registry's solver of each timesteps preset
DPMSOLVER_PINS = {
    "diffusers-timesteps": {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint",
                            "lower_order_final": True, "euler_at_final": False},
    # k-diffusion's sample_dpmpp_3m_sde (eta = 0): its second-order warm-up step is diffusers' "heun" form, and it
    # keeps third order to the last node (lower_order_final would drop the last two steps' orders below 15 steps)
    "diffusers-dpmsolver-3m": {"algorithm_type": "dpmsolver++", "solver_order": 3, "solver_type": "heun",
                               "lower_order_final": False, "euler_at_final": False},
}


def diffusers_timesteps(t, beta_schedule: str | None = "linear", clip: bool = False,
                        scheduler_config: dict | None = None, preset: str = "diffusers-timesteps") -> Export:
    """Integer DDPM timesteps for schedulers that take only ``timesteps`` (DPMSolverMultistepScheduler, ...).

    Each node is rounded to the nearest integer timestep of the scheduler's beta
    schedule; nodes outside the schedule's range fail unless ``clip``; nodes that
    round onto the same timestep fail.  ``preset`` diffusers-timesteps pins
    DPMSolverMultistepScheduler to DPM-Solver++(2M) (its defaults), diffusers-dpmsolver-3m
    to DPM-Solver++(3M) as k-diffusion runs it (:data:`DPMSOLVER_PINS`).
    """
    warnings: list = []
    cfg = scheduler_config
    if cfg is not None:
        scheduler_family(cfg, preset)
        cfg = checked_scheduler_config(cfg)
    table = _table_for(beta_schedule, cfg)
    t = _ddpm_inside(_descending(t), table, clip, warnings)
    tn_all = table.t
    n = np.rint(np.interp(t, tn_all, np.arange(table.steps, dtype=float))).astype(np.int64)
    same = np.flatnonzero(np.diff(n) >= 0)
    if same.size:
        i = int(same[0])
        raise InputError(
            f"grid nodes {i} and {i + 1} (t = {t[i]:.4g}, {t[i + 1]:.4g}) round to the same {table.name} "
            f"timestep {n[i]}: expected fewer `steps` or a larger `delta` for {preset}"
        )
    tn = tn_all[n]
    s32 = f32(table.sigmas[n])
    _collapse(s32, tn, "the scheduler (float32 sigmas of its beta table)", "sigmas")
    moved = float(np.max(np.abs(tn - t) / t))
    if moved > 1e-3:
        warnings.append(f"rounding to integer timesteps moves grid nodes by up to {100 * moved:.2g}% in t")
    config = {**table.config,
              **_pins(cfg, ("timestep_spacing", "steps_offset"), {"timestep_spacing": "linspace", "steps_offset": 0}),
              "final_sigmas_type": "zero", "use_karras_sigmas": False, "use_lu_lambdas": False,
              "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_flow_sigmas": False,
              **DPMSOLVER_PINS[preset]}
    if cfg is not None:
        config["prediction_type"] = cfg.get("prediction_type", "epsilon")
    which = ("DPM-Solver++(3M) (solver_order 3, its second-order warm-up step in the 'heun' form, no lower order at "
             "the end: k-diffusion's sample_dpmpp_3m_sde with eta = 0)" if preset == "diffusers-dpmsolver-3m" else
             "DPM-Solver++(2M) (DPMSolverMultistepScheduler's defaults); HeunDiscreteScheduler takes the same "
             "timesteps and evaluates twice per step but not on the last: 2N+1")
    return Export(
        preset, "timesteps", n, append_zero(s32), tn, config=config,
        conventions="N+1 integer timesteps of the beta schedule (t_n = -1/2 log alphabar_n), strictly descending, "
                    "each grid node rounded to the nearest n; the scheduler evaluates the model at each and appends "
                    "the final sigma (0 with final_sigmas_type='zero': N+1 steps, the last returns the x_0 prediction "
                    f"at the delta node); the config pins {which}.",
        warnings=tuple(warnings),
    )


def diffusers_dpmsolver_3m(t, beta_schedule: str | None = "linear", clip: bool = False,
                           scheduler_config: dict | None = None) -> Export:
    """:func:`diffusers_timesteps` for DPMSolverMultistepScheduler run as DPM-Solver++(3M) (flowcert's dpmpp_3m)."""
    return diffusers_timesteps(t, beta_schedule, clip, scheduler_config, preset="diffusers-dpmsolver-3m")


UNIPC_EPS = 1e-6  # UniPCMultistepScheduler moves a first flow sigma within this of 1 down by it


def diffusers_unipc(t, shift: float | None = None, scheduler_config: dict | None = None) -> Export:
    """UniPCMultistepScheduler(use_flow_sigmas=True).set_timesteps(sigmas=np.array(values)): flowcert's unipc.

    diffusers 0.42 takes custom ``sigmas`` in UniPC only with ``use_flow_sigmas`` (flow pipelines; a list is
    refused, a numpy array is taken), and no ``timesteps``.  The values are the rectified-flow times of the first
    N grid nodes, pre-shifted like :func:`diffusers_flowmatch` (UniPC applies its ``flow_shift`` in float64, then
    stores float32); the scheduler appends r = 0: N model evaluations at t_0, ..., t_{N-1}, its own orders
    1, 2, ..., 2, 1 (lower_order_final) and the corrector at every node but the first and the last.  flowcert's
    unipc is the same run with the appended 0 replaced by rf(t_N), so its last step ends at delta instead of
    returning the x_0 prediction.
    """
    warnings: list = []
    t = _descending(t)
    cfg = scheduler_config
    n_train = 1000
    if cfg is not None:
        scheduler_family(cfg, "diffusers-unipc")
        cfg = checked_scheduler_config(cfg)
        own = _value(cfg, "flow_shift", _value(cfg, "shift", 1.0))  # checked: > 0
        if shift is not None and real("shift", shift) != own:
            raise InputError(f"`shift` = {real('shift', shift):g} disagrees with the scheduler config's shift {own:g}: "
                             "expected no `shift` with `scheduler_config` (the config defines it)")
        shift = own
        n_train = _value(cfg, "num_train_timesteps", 1000)  # checked: 1 .. 10^6
        if _flag(cfg, "use_dynamic_shifting"):
            warnings.append("the scheduler config shifts dynamically (resolution-dependent mu); the export pins "
                            "use_dynamic_shifting = false so that the grid, not the resolution, sets the noise levels")
    shift = real("shift", 1.0 if shift is None else shift, low=0.0, low_open=True)
    r = rf_from_t(t)
    values = unshift(r[:-1], shift)
    consumer = f"UniPCMultistepScheduler (flow sigmas, shift {shift:g})"
    with np.errstate(all="ignore"):
        y = shift * values / (1.0 + (shift - 1.0) * values)  # float64, as the scheduler computes it
    if np.isfinite(y[0]) and abs(y[0] - 1.0) < UNIPC_EPS:
        y[0] -= UNIPC_EPS
    y32 = f32(y)
    if not np.all(np.isfinite(y32)) or not y32[-1] >= TINY32:
        i = int(np.flatnonzero(~(np.isfinite(y32) & (y32 >= TINY32)))[0])
        raise InputError(f"`shift` = {shift:g}: {consumer} turns grid node {i} (t = {t[i]:.6g}, r = {r[i]:.4g}) into "
                         f"{y32[i]:.4g}, not a normal float32 number: expected a `shift` closer to 1 or a larger "
                         "`delta`")
    _collapse(append_zero(y32), t, consumer + " (float32)", "rectified-flow times")
    # its int64 timesteps int(num_train_timesteps r), which condition the network: a repeated one conditions two
    # noise levels alike, and a repeated first one makes the scheduler start at the second node
    _collapse(np.trunc(y * n_train), t, consumer + " (its integer timesteps)", "timesteps")
    _drift(y32, r[:-1], t[:-1], "UniPCMultistepScheduler", f"float32 cannot represent the shift compensation for "
           f"shift {shift:g}", "a `shift` closer to 1", warnings, f"`shift` = {shift:g}", noise=lambda x: x / (1.0 - x))
    config = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": shift,
              "num_train_timesteps": n_train, "use_dynamic_shifting": False, "shift_terminal": None,
              "solver_order": 2, "solver_type": "bh2", "predict_x0": True, "lower_order_final": True,
              "disable_corrector": [], "solver_p": None, "final_sigmas_type": "zero", "thresholding": False,
              "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
              "timestep_spacing": "linspace"}
    return Export(
        "diffusers-unipc", "sigmas", values, append_zero(y32), t, config=config,
        conventions="N rectified-flow times r = sigma_vp/(alpha + sigma_vp) of the nodes t_0 .. t_{N-1}, descending, "
                    "pre-shifted for the config's flow_shift; pass them as a numpy array (UniPCMultistepScheduler "
                    "refuses a list). The scheduler appends r = 0: N model evaluations, orders 1, 2, ..., 2, 1, the "
                    "corrector UniC on every node but the first; its last step returns the x_0 prediction where "
                    "flowcert's unipc ends at t_N = delta (the same N evaluations). Flow pipelines only: diffusers "
                    "0.42 takes custom sigmas in UniPC only with use_flow_sigmas (and no timesteps); the network is "
                    "conditioned on int(num_train_timesteps r), truncated.",
        warnings=tuple(warnings),
    )


def _ve_list(t, consumer: str) -> tuple[np.ndarray, np.ndarray]:
    """VE sigmas + 0 and their float32 form, checked the way a float32 k-diffusion sampler runs them: sigmas
    strictly decreasing and their logs too (DPM-Solver++ steps in -log sigma; equal logs give h = 0)."""
    sig = sigma_from_t(t)
    s32 = _ve_float32(sig, t, consumer)
    q = -np.log(s32)
    _collapse(-q, t, consumer + " (float32 log sigma, as DPM-Solver++ steps)", "-log sigma", _ulp_gap(q))
    return append_zero(sig), append_zero(s32)


def k_diffusion(t, preset: str = "k-diffusion") -> Export:
    """k-diffusion ``sigmas``: the N+1 VE sigmas, descending, then a trailing 0 (append_zero)."""
    t = _descending(t)
    sig, s32 = _ve_list(t, "k-diffusion")
    return Export(
        preset, "sigmas", sig, s32, t,
        conventions="N+2 numbers: the N+1 VE sigmas sqrt(e^{2t}-1) descending to sigma(delta), then 0 "
                    "(k-diffusion's append_zero convention); samplers run N+1 steps, the last from sigma(delta) to 0 "
                    "returns the denoiser output; drop the 0 to stop at delta. Checked in float32 (the tensors "
                    "samplers run in). A discrete-time model wrapper clamps sigmas outside its training range.",
    )


def comfyui(t, preset: str = "comfyui") -> Export:
    """A ComfyUI SIGMAS list: VE sigmas, descending, trailing 0 (text: comma-separated plain decimals)."""
    t = _descending(t)
    sig, s32 = _ve_list(t, "ComfyUI")
    return Export(
        preset, "sigmas", sig, s32, t,
        conventions="a SIGMAS list of N+2 numbers: the N+1 VE sigmas descending to sigma(delta), then 0 "
                    "(N+1 sampler steps; the last returns the denoised image); text output is comma-separated plain "
                    "decimals (no exponent: the manual-sigmas node would split 4.4e-05 into two numbers). For eps/v "
                    "models (ModelSamplingDiscrete) the sigmas are VE sigmas and must lie inside the model's range "
                    "(SD 1.x/XL: 0.0292..14.61, i.e. `T` <= 2.684); flow models in ComfyUI take rectified-flow times "
                    "instead (see diffusers-flowmatch).",
    )


# ----------------------------------------------------------------------------- the presets and what they run


@dataclass(frozen=True)
class Preset:
    """One way of handing a grid to a consumer: ``build(t, **options)`` writes the :class:`Export`; ``solver`` is
    the registry's solver (:mod:`numcore.solvers`) the consumer runs with it, whose optimal grid ``--for`` exports
    by default; ``runs`` says what runs it; ``options`` which of beta_schedule, clip, shift, scheduler_config it
    takes."""

    name: str
    build: Callable
    solver: str
    runs: str
    options: tuple = ()


_DDPM_OPTIONS = ("beta_schedule", "clip", "scheduler_config")
_FLOW_OPTIONS = ("shift", "scheduler_config")


def _named(builder, preset: str):
    return lambda t: builder(t, preset)


def _presets() -> dict:
    """The table: the diffusers presets with the solver each scheduler runs, then one k-diffusion and one ComfyUI
    preset per registered solver those tools run (the registry's :attr:`~numcore.solvers.Solver.k_diffusion` and
    :attr:`~numcore.solvers.Solver.comfyui` names), besides the plain ``k-diffusion`` and ``comfyui`` (Euler, their
    default sampler)."""
    from ..numcore.solvers import SOLVERS, check

    table = [
        Preset("diffusers-euler", diffusers_euler, "euler", "diffusers EulerDiscreteScheduler", _DDPM_OPTIONS),
        Preset("diffusers-edm", lambda t, clip=False, scheduler_config=None: diffusers_edm(t, EDM_RHO, clip,
                                                                                         scheduler_config),
               "euler", "diffusers EDMEulerScheduler", ("clip", "scheduler_config")),
        Preset("diffusers-flowmatch", diffusers_flowmatch, "euler",
               "diffusers FlowMatchEulerDiscreteScheduler (Euler in r = Euler in VE sigma)", _FLOW_OPTIONS),
        Preset("diffusers-unipc", diffusers_unipc, "unipc",
               "diffusers UniPCMultistepScheduler (use_flow_sigmas; bh2, order 2, corrector UniC)", _FLOW_OPTIONS),
        Preset("diffusers-timesteps", diffusers_timesteps, "dpmpp_2m",
               "diffusers DPMSolverMultistepScheduler (DPM-Solver++(2M), its defaults)", _DDPM_OPTIONS),
        Preset("diffusers-dpmsolver-3m", diffusers_dpmsolver_3m, "dpmpp_3m",
               "diffusers DPMSolverMultistepScheduler (solver_order 3, solver_type heun, no lower_order_final)",
               _DDPM_OPTIONS),
        Preset("k-diffusion", k_diffusion, "euler", "k-diffusion sample_euler (any k-diffusion sampler takes it)"),
        Preset("comfyui", comfyui, "euler", "ComfyUI euler, KSampler's default (any ComfyUI sampler takes it)"),
    ]
    for s in SOLVERS.values():
        if s.k_diffusion:
            name = "k-diffusion-" + s.k_diffusion.removeprefix("sample_")
            eta = " with eta=0" if s.name == "dpmpp_3m" else ""
            table.append(Preset(name, _named(k_diffusion, name), s.name, f"k-diffusion {s.k_diffusion}{eta}"))
    for s in SOLVERS.values():
        if s.comfyui:
            name = "comfyui-" + s.comfyui
            eta = " (eta 0: the SamplerDPMPP_3M_SDE node)" if s.name == "dpmpp_3m" else ""
            table.append(Preset(name, _named(comfyui, name), s.name, f"ComfyUI sampler {s.comfyui}{eta}"))
    for p in table:
        check(p.solver)
    return {p.name: p for p in table}


PRESETS = _presets()
PRESET_SOLVER = {name: p.solver for name, p in PRESETS.items()}  # the solver each preset runs (its default)
CONFIGURABLE = tuple(name for name, p in PRESETS.items() if "scheduler_config" in p.options)


def check(name: str) -> str:
    """The preset name, or an InputError listing the known ones."""
    if name not in PRESETS:
        raise InputError(f"`preset` = {name!r}: expected one of {', '.join(PRESETS)}")
    return name


def export(name: str, t, *, beta_schedule: str | None = None, clip: bool = False, shift: float | None = None,
           scheduler_config: dict | None = None) -> Export:
    """The grid ``t`` (OU time, descending) for consumer ``name``; options go where they apply.

    ``beta_schedule`` (default linear) and ``shift`` (default 1) must agree with ``scheduler_config``
    when both are given; ``scheduler_config`` (a diffusers scheduler's configuration dict) applies to
    the diffusers presets only.
    """
    p = PRESETS[check(name)]
    if scheduler_config is not None and name not in CONFIGURABLE:
        raise InputError(f"`scheduler_config` applies to {', '.join(CONFIGURABLE)}: expected no scheduler config "
                         f"with `preset` {name}")
    given = {"beta_schedule": beta_schedule, "clip": clip, "shift": shift, "scheduler_config": scheduler_config}
    return p.build(t, **{k: given[k] for k in p.options})
