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

import numpy as np
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


def k_sample_dpmpp_3m_sde(model, x, sigmas, eta=0.0):
    """k-diffusion ``sample_dpmpp_3m_sde`` (crowsonkb/k-diffusion, k_diffusion/sampling.py at commit
    4601bf085320592473f681a62808ed873d17fad5; ComfyUI's comfy/k_diffusion/sampling.py holds the same function) with
    eta = 0: no noise is drawn, so the Brownian-tree noise sampler it builds is left out."""
    assert eta == 0, "the deterministic sampler only"
    denoised_1, denoised_2 = None, None
    h, h_1, h_2 = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            # Denoising step
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0 = h_1 / h
                r1 = h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


K_SAMPLERS = {"sample_euler": k_sample_euler, "sample_heun": k_sample_heun, "sample_dpmpp_2m": k_sample_dpmpp_2m,
              "sample_dpmpp_3m_sde": k_sample_dpmpp_3m_sde}


# ComfyUI's few-step samplers (comfyanonymous/ComfyUI, comfy/k_diffusion/sampling.py at commit
# 048426796c7330fc901cf1638f9895a1ffe300c5, and the DEIS coefficients of comfy/k_diffusion/deis.py at commit
# c828fdcf0c11dff5cb204f50791e182a53d63d31; both taken there from zju-pi/diff-sampler, GITS' solvers), written out
# without callbacks and extra arguments.  ``model(x, sigma)`` is the denoiser.


def comfy_edm2t(edm_steps, epsilon_s=1e-3, sigma_min=0.002, sigma_max=80):
    """deis.edm2t: EDM sigmas to the time of a linear-beta VP-SDE; (t_steps, beta_0, beta_1).  The constants are
    computed as ComfyUI computes them: numpy logs of float32 tensors."""
    vp_sigma_inv = lambda beta_d, beta_min: lambda sigma: ((beta_min ** 2 + 2 * beta_d * (sigma ** 2 + 1).log()).sqrt() - beta_min) / beta_d  # noqa: E501,E731
    vp_beta_d = 2 * (np.log(torch.tensor(sigma_min).cpu() ** 2 + 1) / epsilon_s - np.log(torch.tensor(sigma_max).cpu() ** 2 + 1)) / (epsilon_s - 1)  # noqa: E501
    vp_beta_min = np.log(torch.tensor(sigma_max).cpu() ** 2 + 1) - 0.5 * vp_beta_d
    t_steps = vp_sigma_inv(vp_beta_d.clone().detach().cpu(), vp_beta_min.clone().detach().cpu())(edm_steps.clone().detach().cpu())  # noqa: E501
    return t_steps, vp_beta_min, vp_beta_d + vp_beta_min


def comfy_cal_poly(prev_t, j, taus):
    poly = 1
    for k in range(prev_t.shape[0]):
        if k == j:
            continue
        poly *= (taus - prev_t[k]) / (prev_t[j] - prev_t[k])
    return poly


def comfy_t2alpha_fn(beta_0, beta_1, t):
    return torch.exp(-0.5 * t ** 2 * (beta_1 - beta_0) - t * beta_0)


def comfy_cal_intergrand(beta_0, beta_1, taus):
    """d sigma / d tau (by autograd of log alphabar), as deis.cal_intergrand."""
    with torch.inference_mode(mode=False):
        taus = taus.clone()
        beta_0 = beta_0.clone()
        beta_1 = beta_1.clone()
        with torch.enable_grad():
            taus.requires_grad_(True)
            alpha = comfy_t2alpha_fn(beta_0, beta_1, taus)
            log_alpha = alpha.log()
            log_alpha.sum().backward()
            d_log_alpha_dtau = taus.grad
    return -0.5 * d_log_alpha_dtau / torch.sqrt(alpha * (1 - alpha))


def comfy_deis_coeff_list(t_steps, max_order, N=10000, exact=False):
    """deis.get_deis_coeff_list, deis_mode 'tab': C[i][j] = int_{t_i}^{t_{i+1}} (dsigma/dtau) L_j(tau) dtau over the
    Lagrange basis L_j through the last ``order`` times, as ComfyUI sums it (N points of torch.linspace, float32,
    times dtau = (t_next - t_cur) / N).  ``exact``: the same integrals by adaptive quadrature in float64 instead
    (scipy quad; the only change), to tell the sum's own error from a difference in the algorithm."""
    t_steps, beta_0, beta_1 = comfy_edm2t(t_steps)
    C = []
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        order = min(i + 1, max_order)
        if order == 1:
            C.append([])
        else:
            prev_t = t_steps[[i - k for k in range(order)]]
            coeff_temp = []
            if exact:
                from scipy.integrate import quad

                b0, b1 = beta_0.double(), beta_1.double()
                pt = prev_t.double()

                def f(tau, j):
                    tt = torch.tensor([tau], dtype=torch.float64)
                    return float(comfy_cal_intergrand(b0, b1, tt)[0] * comfy_cal_poly(pt, j, tt)[0])

                for j in range(order):
                    coeff_temp.append(torch.tensor(quad(f, float(t_cur), float(t_next), args=(j,), epsabs=0,
                                                        epsrel=1e-12, limit=200)[0], dtype=torch.float64))
            else:
                taus = torch.linspace(t_cur, t_next, N)  # split the interval for integral appximation
                dtau = (t_next - t_cur) / N
                integrand = comfy_cal_intergrand(beta_0, beta_1, taus)
                for j in range(order):
                    poly = comfy_cal_poly(prev_t, j, taus)
                    coeff_temp.append(torch.sum(integrand * poly) * dtau)
            C.append(coeff_temp)
    return C


@torch.no_grad()
def comfy_sample_deis(model, x, sigmas, max_order=3, exact=False):
    """ComfyUI ``sample_deis`` (deis_mode 'tab'); ``exact`` as in :func:`comfy_deis_coeff_list`."""
    x_next = x
    t_steps = sigmas
    coeff_list = comfy_deis_coeff_list(t_steps, max_order, exact=exact)
    buffer_model = []
    for i in range(len(sigmas) - 1):
        t_cur = sigmas[i]
        t_next = sigmas[i + 1]
        x_cur = x_next
        denoised = model(x_cur, t_cur)
        d_cur = (x_cur - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next <= 0:
            order = 1
        if order == 1:  # First Euler step.
            x_next = x_cur + (t_next - t_cur) * d_cur
        elif order == 2:  # Use one history point.
            coeff_cur, coeff_prev1 = coeff_list[i]
            x_next = x_cur + coeff_cur * d_cur + coeff_prev1 * buffer_model[-1]
        elif order == 3:  # Use two history points.
            coeff_cur, coeff_prev1, coeff_prev2 = coeff_list[i]
            x_next = x_cur + coeff_cur * d_cur + coeff_prev1 * buffer_model[-1] + coeff_prev2 * buffer_model[-2]
        elif order == 4:  # Use three history points.
            coeff_cur, coeff_prev1, coeff_prev2, coeff_prev3 = coeff_list[i]
            x_next = (x_cur + coeff_cur * d_cur + coeff_prev1 * buffer_model[-1] + coeff_prev2 * buffer_model[-2]
                      + coeff_prev3 * buffer_model[-3])
        if len(buffer_model) == max_order - 1:
            for k in range(max_order - 2):
                buffer_model[k] = buffer_model[k + 1]
            buffer_model[-1] = d_cur.detach()
        else:
            buffer_model.append(d_cur.detach())
    return x_next


def comfy_sample_ipndm(model, x, sigmas, max_order=4):
    """ComfyUI ``sample_ipndm``: Adams-Bashforth in sigma with the weights of equal steps."""
    x_next = x
    buffer_model = []
    for i in range(len(sigmas) - 1):
        t_cur = sigmas[i]
        t_next = sigmas[i + 1]
        x_cur = x_next
        denoised = model(x_cur, t_cur)
        d_cur = (x_cur - denoised) / t_cur
        order = min(max_order, i + 1)
        if order == 1:  # First Euler step.
            x_next = x_cur + (t_next - t_cur) * d_cur
        elif order == 2:  # Use one history point.
            x_next = x_cur + (t_next - t_cur) * (3 * d_cur - buffer_model[-1]) / 2
        elif order == 3:  # Use two history points.
            x_next = x_cur + (t_next - t_cur) * (23 * d_cur - 16 * buffer_model[-1] + 5 * buffer_model[-2]) / 12
        elif order == 4:  # Use three history points.
            x_next = x_cur + (t_next - t_cur) * (55 * d_cur - 59 * buffer_model[-1] + 37 * buffer_model[-2]
                                                 - 9 * buffer_model[-3]) / 24
        if len(buffer_model) == max_order - 1:
            for k in range(max_order - 2):
                buffer_model[k] = buffer_model[k + 1]
            buffer_model[-1] = d_cur
        else:
            buffer_model.append(d_cur)
    return x_next


def comfy_sample_ipndm_v(model, x, sigmas, max_order=4):
    """ComfyUI ``sample_ipndm_v``: the variable-step weights, with its operator precedence."""
    x_next = x
    t_steps = sigmas
    buffer_model = []
    for i in range(len(sigmas) - 1):
        t_cur = sigmas[i]
        t_next = sigmas[i + 1]
        x_cur = x_next
        denoised = model(x_cur, t_cur)
        d_cur = (x_cur - denoised) / t_cur
        order = min(max_order, i + 1)
        if order == 1:  # First Euler step.
            x_next = x_cur + (t_next - t_cur) * d_cur
        elif order == 2:  # Use one history point.
            h_n = (t_next - t_cur)
            h_n_1 = (t_cur - t_steps[i - 1])
            coeff1 = (2 + (h_n / h_n_1)) / 2
            coeff2 = -(h_n / h_n_1) / 2
            x_next = x_cur + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * buffer_model[-1])
        elif order == 3:  # Use two history points.
            h_n = (t_next - t_cur)
            h_n_1 = (t_cur - t_steps[i - 1])
            h_n_2 = (t_steps[i - 1] - t_steps[i - 2])
            temp = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
            coeff1 = (2 + (h_n / h_n_1)) / 2 + temp
            coeff2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp
            coeff3 = temp * h_n_1 / h_n_2
            x_next = x_cur + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * buffer_model[-1] + coeff3 * buffer_model[-2])
        elif order == 4:  # Use three history points.
            h_n = (t_next - t_cur)
            h_n_1 = (t_cur - t_steps[i - 1])
            h_n_2 = (t_steps[i - 1] - t_steps[i - 2])
            h_n_3 = (t_steps[i - 2] - t_steps[i - 3])
            temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
            temp2 = ((1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (6 * (h_n + h_n_1 + h_n_2))) \
                * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3))
            coeff1 = (2 + (h_n / h_n_1)) / 2 + temp1 + temp2
            coeff2 = (-(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1
                      - (1 + (h_n_1 / h_n_2) + (h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3)))) * temp2)
            coeff3 = (temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + (h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3)))
                                               * (1 + h_n_2 / h_n_3)) * temp2)
            coeff4 = -temp2 * (h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))) * h_n_1 / h_n_2
            x_next = x_cur + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * buffer_model[-1]
                                                 + coeff3 * buffer_model[-2] + coeff4 * buffer_model[-3])
        if len(buffer_model) == max_order - 1:
            for k in range(max_order - 2):
                buffer_model[k] = buffer_model[k + 1]
            buffer_model[-1] = d_cur.detach()
        else:
            buffer_model.append(d_cur.detach())
    return x_next


# ComfyUI's sampler names (KSampler's sampler_name) -> the algorithm above (the k-diffusion ones are ComfyUI's too)
COMFY_SAMPLERS = {"euler": k_sample_euler, "heun": k_sample_heun, "dpmpp_2m": k_sample_dpmpp_2m,
                  "dpmpp_3m_sde": k_sample_dpmpp_3m_sde, "deis": comfy_sample_deis, "ipndm": comfy_sample_ipndm,
                  "ipndm_v": comfy_sample_ipndm_v}


def diffusers_loop(scheduler, model, x):
    """The standard pipeline loop; ``model(x_in, timestep, sigma)`` gets the scheduler's current sigma too."""
    for timestep in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, timestep) if hasattr(scheduler, "scale_model_input") else x
        idx = scheduler.step_index if scheduler.step_index is not None else 0
        sigma = scheduler.sigmas[min(idx, len(scheduler.sigmas) - 1)]
        x = scheduler.step(model(x_in, timestep, sigma), timestep, x).prev_sample
    return x
