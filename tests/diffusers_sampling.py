"""Run diffusers' own schedulers on the exact mixture denoiser (CPU, torch).

The exact model answers what each scheduler asks for (THEORY.md §1):

    x0 prediction      D = E[x_0 | x_t] = (x + (1 - alpha^2) s(x, t)) / alpha
    eps prediction     eps = -sigma_vp s(x, t) = (y - D) / sigma        (y = x / alpha, sigma = VE sigma)
    flow velocity      v = eps - D                                      (rectified flow x_r = (1 - r) D + r eps)

Each function starts from OU-scale states x_T ~ p_T at the grid's first node
and returns OU-scale states at its last node (or the scheduler's final x_0
prediction where the scheduler appends sigma = 0).
"""

from __future__ import annotations

import numpy as np


def _torch():
    import torch

    return torch


def euler_discrete(mix, x_T, t, prediction_type: str = "epsilon", beta_schedule: str = "linear", clip=False,
                   check_range: bool = True):
    """diffusers.EulerDiscreteScheduler with set_timesteps(sigmas=<flowcert diffusers-euler export of t>).

    Returns (x at t[-1] in OU scale, scheduler); the loop is the standard
    pipeline loop: scale_model_input -> model -> step.  The exact model needs
    no timestep conditioning, so ``check_range=False`` skips the beta
    schedule's range check (diffusers then clamps only the timesteps it
    would pass to a trained network, never the sigmas it steps through).
    """
    torch = _torch()
    from diffusers import EulerDiscreteScheduler

    from flowcert.numcore.marginal import denoiser
    from flowcert.exports.presets import Export, diffusers_euler
    from flowcert.numcore.units import sigma_from_t

    if check_range:
        ex = diffusers_euler(t, beta_schedule, clip)
    else:
        sig = sigma_from_t(t)
        ex = Export("diffusers-euler", "sigmas", sig, sig, np.asarray(t, float))
    sched = EulerDiscreteScheduler(**ex.config, prediction_type=prediction_type)
    sched.set_timesteps(sigmas=ex.values.tolist())
    y = torch.as_tensor(np.asarray(x_T, float) * np.sqrt(1.0 + ex.values[0] ** 2))  # y = e^T x_T
    for timestep in sched.timesteps:
        x_in = sched.scale_model_input(y, timestep)  # y / sqrt(1 + sigma^2) = OU-scale x
        sigma = float(sched.sigmas[sched.step_index])
        t_now = 0.5 * np.log1p(sigma * sigma)
        D = denoiser(mix, x_in.double().numpy(), t_now)
        out = D if prediction_type == "sample" else (y.double().numpy() - D) / sigma
        y = sched.step(torch.as_tensor(out), timestep, y).prev_sample
    sigma_last = float(sched.sigmas[-1])
    return y.double().numpy() / np.sqrt(1.0 + sigma_last**2), sched


def flowmatch_euler(mix, x_T, t, shift: float = 1.0):
    """diffusers.FlowMatchEulerDiscreteScheduler on the diffusers-flowmatch export of t.

    The scheduler appends r = 0, so the result is its x_0 prediction from the
    last grid node; returns (that x_0, the state at t[-1] in OU scale, scheduler).
    """
    torch = _torch()
    from diffusers import FlowMatchEulerDiscreteScheduler

    from flowcert.numcore.marginal import denoiser
    from flowcert.exports.presets import diffusers_flowmatch
    from flowcert.numcore.units import t_from_rf

    ex = diffusers_flowmatch(t, shift)
    sched = FlowMatchEulerDiscreteScheduler(**ex.config)
    sched.set_timesteps(sigmas=ex.values.tolist())
    t0 = float(t[0])
    x = torch.as_tensor(np.asarray(x_T, float) / (np.exp(-t0) + np.sqrt(-np.expm1(-2 * t0))))
    at_last = None
    for i, timestep in enumerate(sched.timesteps):
        r = float(sched.sigmas[i])
        tt = float(t_from_rf(r))
        scale = np.exp(-tt) + np.sqrt(-np.expm1(-2 * tt))  # x_OU = (alpha + sigma_vp) x_r
        if i == len(sched.timesteps) - 1:
            at_last = x.double().numpy() * scale
        D = denoiser(mix, x.double().numpy() * scale, tt)
        eps = (x.double().numpy() - (1 - r) * D) / r
        x = sched.step(torch.as_tensor(eps - D), timestep, x).prev_sample
    return x.double().numpy(), at_last, sched


def dpmsolver_multistep(mix, x_start, export, **config):
    """diffusers.DPMSolverMultistepScheduler (DPM-Solver++, order 2) on a diffusers-timesteps export.

    ``x_start`` ~ p_t at the first exported node, t = export.t[0] (OU/VP scale: the
    scheduler works with x = alpha x_0 + sigma_vp eps and an eps model).  The
    scheduler appends sigma = 0, so the result is its final x_0 prediction.
    """
    torch = _torch()
    from diffusers import DPMSolverMultistepScheduler

    from flowcert.numcore.marginal import score

    sched = DPMSolverMultistepScheduler(**{**export.config, **config})
    sched.set_timesteps(timesteps=export.values.tolist())
    x = torch.as_tensor(np.asarray(x_start, float))
    for i, timestep in enumerate(sched.timesteps):
        tt = float(export.t[i])
        eps = -np.sqrt(-np.expm1(-2 * tt)) * score(mix, x.double().numpy(), tt)
        x = sched.step(torch.as_tensor(eps), timestep, x).prev_sample
    return x.double().numpy(), sched


def unipc_flow(mix, x_T, t, sigmas=None, final=None, float64: bool = True, **config):
    """diffusers.UniPCMultistepScheduler (its defaults: bh2, order 2, lower_order_final, corrector UniC) on the
    mixture written in flow form: x_r = (1 - r) x_0 + r eps at rectified-flow time r, the model a velocity
    v = eps - x_0 = (x_r - D) / r (``prediction_type="flow_prediction"``, which needs ``use_flow_sigmas=True``, the
    only way this scheduler takes ``sigmas``).

    ``sigmas``: what ``set_timesteps`` is given (default: rf(t) of every node but the last: N sigmas, N model
    evaluations); ``final``: the sigma that replaces the one the scheduler appends (default rf(t_N): flowcert's
    convention; None keeps the scheduler's 0).  ``float64``: the scheduler's sigmas are replaced by their float64
    values (it stores float32; the algorithm itself then runs in float64 on the float64 states).
    Returns (the end state in OU scale at the last sigma, the scheduler, the number of model calls)."""
    torch = _torch()
    from diffusers import UniPCMultistepScheduler

    from flowcert.numcore.marginal import denoiser
    from flowcert.numcore.units import rf_from_t, t_from_rf

    t = np.asarray(t, float)
    r = rf_from_t(t)
    sched = UniPCMultistepScheduler(**{"use_flow_sigmas": True, "prediction_type": "flow_prediction", **config})
    sched.set_timesteps(sigmas=np.array(r[:-1] if sigmas is None else sigmas, float))
    if final == "grid":
        final = float(r[-1])
    if float64:
        stored = sched.sigmas.double()
        given = r[:-1] if sigmas is None else np.asarray(sigmas, float)
        stored[: given.size] = torch.as_tensor(given, dtype=torch.float64)
        sched.sigmas = stored
    if final is not None:
        sched.sigmas[-1] = final
    scale = lambda tt: np.exp(-tt) + np.sqrt(-np.expm1(-2 * tt))  # noqa: E731  x_OU = (alpha + sigma_vp) x_r
    x = torch.as_tensor(np.asarray(x_T, float) / scale(float(t[0])))
    calls = 0
    for timestep in sched.timesteps:
        rr = float(sched.sigmas[sched.step_index if sched.step_index is not None else 0])
        tt = float(t_from_rf(rr))
        D = denoiser(mix, x.double().numpy() * scale(tt), tt)
        v = (x.double().numpy() - D) / rr
        calls += 1
        x = sched.step(torch.as_tensor(v, dtype=x.dtype), timestep, x).prev_sample
    r_end = float(sched.sigmas[-1])
    out = x.double().numpy()
    return (out * scale(float(t_from_rf(r_end))) if r_end > 0 else out), sched, calls


class _Float64Torch:
    """``torch`` as a scheduler module sees it, with ``float32`` meaning float64 (everything else is torch's)."""

    def __init__(self, torch):
        self._torch = torch
        self.float32 = torch.float64

    def __getattr__(self, name):
        return getattr(self._torch, name)


def dpmsolver_multistep_float64(mix, x_start, export, cast: bool = False, **config):
    """:func:`dpmsolver_multistep` with the scheduler's float32 sigmas replaced by the float64 VE sigmas of the
    exported nodes (and its trailing 0), and the model giving its data prediction (``prediction_type="sample"``:
    the denoiser itself, where an epsilon prediction loses digits converting back to x_0 at small t): diffusers'
    DPM-Solver algorithm on exactly the grid ``export.t``.  Its ``step`` casts the state to float32 every step
    ("upcast to avoid precision issues"); unless ``cast``, that cast is made a float64 one (the scheduler module's
    ``torch.float32`` is float64 for the run), so that the algorithm runs in float64.
    Returns (its final x_0 prediction, the state at the last node, scheduler)."""
    torch = _torch()
    import diffusers.schedulers.scheduling_dpmsolver_multistep as module
    from diffusers import DPMSolverMultistepScheduler

    from flowcert.numcore.marginal import denoiser
    from flowcert.numcore.units import sigma_from_t

    sched = DPMSolverMultistepScheduler(**{**export.config, "prediction_type": "sample", **config})
    sched.set_timesteps(timesteps=export.values.tolist())
    sched.sigmas = torch.as_tensor(np.concatenate([sigma_from_t(export.t), [0.0]]), dtype=torch.float64)
    x = torch.as_tensor(np.asarray(x_start, float))
    at_last = None
    saved = module.torch
    module.torch = saved if cast else _Float64Torch(saved)
    try:
        for i, timestep in enumerate(sched.timesteps):
            tt = float(export.t[i])
            if i == len(export.t) - 1:
                at_last = x.double().numpy()
            x = sched.step(torch.as_tensor(denoiser(mix, x.double().numpy(), tt)), timestep, x).prev_sample
    finally:
        module.torch = saved
    return x.double().numpy(), at_last, sched
