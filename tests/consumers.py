"""The consumers that are not installable here, emulated from their published source, and the standard loops.

k-diffusion (crowsonkb/k-diffusion, k_diffusion/sampling.py) is on PyPI but pulls torchvision, wandb and CLIP,
so it is not a test dependency; ComfyUI is not a package.  What flowcert's exports meet there is small and is
written out here from the published algorithms, on float32 tensors as those tools run them:

* ``to_d(x, sigma, denoised) = (x - denoised) / sigma`` and the samplers ``sample_euler`` (Karras et al. 2022,
  Algorithm 2 without churn: one denoiser call per step), ``sample_heun`` (two calls per step, one on the last
  step to sigma = 0) and ``sample_dpmpp_2m`` (DPM-Solver++(2M) in t = -log sigma; the step to sigma = 0 returns
  the denoiser output);
* ComfyUI's manual-sigmas node: numbers found with the regular expression ``[-+]?(?:\\d*\\.*\\d+)`` in the text,
  ``float()`` of each, one float32 tensor (``comfy_extras/nodes_custom_sampler.py``); its samplers are
  k-diffusion's.

The diffusers loop is the standard pipeline loop: ``scale_model_input -> model -> step`` over
``scheduler.timesteps``.
"""

from __future__ import annotations

import re

import torch

COMFYUI_NUMBER = r"[-+]?(?:\d*\.*\d+)"


def comfyui_manual_sigmas(text: str) -> torch.Tensor:
    """What ComfyUI's ManualSigmas node makes of a string."""
    return torch.FloatTensor([float(s) for s in re.findall(COMFYUI_NUMBER, text)])


class Counted:
    """A model that counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def gaussian_denoiser(x, sigma):
    """E[x_0 | x_0 + sigma eps = x] for x_0 ~ N(0, I): x / (1 + sigma^2) (float32 like a network's output)."""
    return x / (1 + sigma**2)


def _to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def k_sample_euler(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        d = _to_d(x, sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def k_sample_heun(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        d = _to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = _to_d(x2, sigmas[i + 1], model(x2, sigmas[i + 1]))
            x = x + (d + d2) / 2 * dt
    return x


def k_sample_dpmpp_2m(model, x, sigmas):
    sigma_fn = lambda t: t.neg().exp()  # noqa: E731
    t_fn = lambda s: s.log().neg()  # noqa: E731
    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old is None or sigmas[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            dd = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * dd
        old = denoised
    return x


K_SAMPLERS = {"sample_euler": k_sample_euler, "sample_heun": k_sample_heun, "sample_dpmpp_2m": k_sample_dpmpp_2m}


def diffusers_loop(scheduler, model, x):
    """The standard pipeline loop; ``model(x_in, timestep, sigma)`` gets the scheduler's current sigma too."""
    for timestep in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, timestep) if hasattr(scheduler, "scale_model_input") else x
        idx = scheduler.step_index if scheduler.step_index is not None else 0
        sigma = scheduler.sigmas[min(idx, len(scheduler.sigmas) - 1)]
        x = scheduler.step(model(x_in, timestep, sigma), timestep, x).prev_sample
    return x
