"""Flow matching as a parametrisation (x_s = (1 - s) x_0 + s eps, v = eps - x_0): the registry entries against
diffusers' own FlowMatchEulerDiscreteScheduler on the exact mixture written in flow form."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import flowcert  # noqa: E402
from flowcert.models.denoiser import torch_model  # noqa: E402
from flowcert.models.exact import exact_model  # noqa: E402
from flowcert.numcore.marginal import denoiser as exact_denoiser  # noqa: E402


def flow_network(mix, noise: str = "flow1000"):
    """The exact mixture as a flow-matching network v(x_s, timestep) = eps - x_0, in numpy closed forms; the
    timestep is s (``flow``) or 1000 s (``flow1000``, as diffusers' FlowMatch schedulers pass it)."""
    scale = 1000.0 if noise == "flow1000" else 1.0

    def fn(x, timestep, **cond):
        s = timestep.double().numpy() / scale
        xs = x.double().reshape(x.shape[0], -1).numpy()
        out = np.empty_like(xs)
        for i in range(xs.shape[0]):
            sigma = s[i] / (1 - s[i])
            t = 0.5 * math.log1p(sigma * sigma)
            y = xs[i:i + 1] * (1 + sigma)  # VE point
            D = exact_denoiser(mix, y / math.sqrt(1 + sigma * sigma), t)  # takes the OU point alpha y
            eps = (y - D) / sigma
            out[i] = (eps - D)[0]
        return torch.as_tensor(out, dtype=x.dtype).reshape(x.shape)

    return fn


@pytest.mark.parametrize("noise", ["flow", "flow1000"])
def test_flow_parametrisation_is_the_exact_denoiser(noise):
    mix = flowcert.load_mixture("hetero3")
    m = torch_model(flow_network(mix, noise), shape=(mix.d,), prediction="flow", scaling="flow", noise=noise,
                    dtype=torch.float64)
    exact = exact_model(mix)
    y = torch.randn(7, mix.d, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    for sigma in (0.01, 0.4, 3.0, 150.0):
        torch.testing.assert_close(m(y, sigma), exact(y, sigma), rtol=1e-9, atol=1e-9)


def test_flowmatch_euler_scheduler_runs_the_same_steps_as_flowcerts_euler():
    """FlowMatchEulerDiscreteScheduler.step (x + (s' - s) v, in flow time) on the exact mixture in flow form, step
    by step down to s = 0, equals flowcert's Euler step in VE sigma (y + (sigma' - sigma)(y - D) / sigma) with the
    model built from the registries (prediction flow, scaling flow, noise flow1000), carried to x_s = y / (1 +
    sigma): Euler in s and Euler in sigma are the same map (x_s = (1 - s) D + s eps at both ends)."""
    from flowcert.numcore.samplers import run

    mix = flowcert.load_mixture("ring8")
    fn = flow_network(mix, "flow1000")
    m = torch_model(fn, shape=(mix.d,), prediction="flow", scaling="flow", noise="flow1000", dtype=torch.float64)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    s_grid = np.array([0.995, 0.9, 0.6, 0.3, 0.1, 0.02])
    sched.set_timesteps(sigmas=s_grid.tolist())
    np.testing.assert_allclose(sched.sigmas.double().numpy(), np.append(s_grid, 0.0), rtol=1e-6, atol=0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, mix.d, generator=g, dtype=torch.float64)  # x_1 = eps
    y = x / (1 - float(sched.sigmas[0]))  # the VE point of x_s (float32 grid as the scheduler keeps it)
    sig = [float(s) / (1 - float(s)) for s in sched.sigmas[:-1]]
    for i, ts in enumerate(sched.timesteps):
        v = fn(x, ts.double().expand(x.shape[0]))
        x = sched.step(v, ts, x).prev_sample.double()
        if i + 1 < len(sig):
            y = run(lambda yy, s: m(yy, s), y, [sig[i], sig[i + 1]], "euler")
            torch.testing.assert_close(x, y / (1 + sig[i + 1]), rtol=1e-5, atol=1e-5)  # the scheduler steps in float32
        else:  # the last step lands on s = 0: the denoiser itself
            torch.testing.assert_close(x, m(y, sig[i]), rtol=1e-5, atol=1e-5)
    assert float(torch.linalg.norm(x, dim=1).mean()) == pytest.approx(2.0, abs=0.3)  # near the ring of radius 2


def test_stochastic_flowmatch_step_uses_the_same_x0():
    """The scheduler's stochastic step draws from x0 = x - s v: flowcert's D at the same point."""
    mix = flowcert.load_mixture("square4")
    fn = flow_network(mix, "flow1000")
    m = torch_model(fn, shape=(mix.d,), prediction="flow", scaling="flow", noise="flow1000", dtype=torch.float64)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0, stochastic_sampling=True)
    sched.set_timesteps(sigmas=[0.8, 0.5])
    x = torch.randn(16, mix.d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ts = sched.timesteps[0]
    s, s_next = float(sched.sigmas[0]), float(sched.sigmas[1])
    # the scheduler steps in float32 and draws its noise in float32
    noise = torch.randn(16, mix.d, dtype=torch.float32, generator=torch.Generator().manual_seed(2)).double()
    out = sched.step(fn(x, ts.double().expand(16)), ts, x, generator=torch.Generator().manual_seed(2)).prev_sample
    D = m(x / (1 - s), s / (1 - s))
    torch.testing.assert_close(out.double(), (1 - s_next) * D + s_next * noise, rtol=1e-5, atol=1e-5)
