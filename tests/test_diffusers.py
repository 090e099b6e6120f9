"""The presets run in the real diffusers: each scheduler, built from a flowcert export, steps through
exactly the exported grid, and diffusers' samplers on the exact mixture denoiser reach the exact flow map."""

import numpy as np
import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    HeunDiscreteScheduler,
    EDMEulerScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

import consumers
import diffusers_sampling as ds
import oracles
from flowcert.exports import presets
from flowcert.numcore import grids, marginal, samplers, units
from flowcert.numcore.distances import relative_mse
from flowcert.numcore.mixture import builtin

DELTA, T = 1e-3, 5.0
GRIDS = {
    "edm": grids.edm(7, DELTA, T),
    "logsnr": grids.logsnr(5, DELTA, T),
    "uniform": grids.uniform(9, DELTA, T),
}


@pytest.fixture(scope="module")
def ring8():
    return builtin("ring8")


def f32(x):
    return np.asarray(x, np.float32).astype(float)


@pytest.mark.parametrize("kind", GRIDS)
def test_euler_discrete_takes_the_sigmas(kind):
    ex = presets.diffusers_euler(GRIDS[kind])
    s = EulerDiscreteScheduler(**ex.config)
    s.set_timesteps(sigmas=ex.values.tolist())
    np.testing.assert_allclose(s.sigmas.numpy(), f32(ex.schedule), rtol=1e-7)
    assert len(s.timesteps) == ex.values.size - 1 == GRIDS[kind].size - 1


@pytest.mark.parametrize("kind", GRIDS)
def test_edm_euler_takes_the_ramp(kind):
    ex = presets.diffusers_edm(GRIDS[kind])
    s = EDMEulerScheduler(**ex.config)
    s.set_timesteps(sigmas=torch.tensor(ex.values))
    np.testing.assert_allclose(s.sigmas.numpy(), ex.schedule, rtol=2e-6)
    assert s.sigmas[-1] == 0 and len(s.timesteps) == ex.values.size


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("kind", GRIDS)
def test_flowmatch_takes_the_rf_times_with_shift_compensated(kind, shift):
    ex = presets.diffusers_flowmatch(GRIDS[kind], shift)
    s = FlowMatchEulerDiscreteScheduler(**ex.config)
    s.set_timesteps(sigmas=ex.values.tolist())
    np.testing.assert_allclose(s.sigmas.numpy(), ex.schedule, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(s.sigmas.numpy()[:-1], units.rf_from_t(GRIDS[kind]), rtol=2e-6)
    np.testing.assert_allclose(s.timesteps.numpy(), 1000 * ex.schedule[:-1], rtol=2e-6)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_dpmsolver_takes_the_integer_timesteps(schedule):
    t = grids.edm(8, 2e-3, units.ddpm_range(schedule)[1])
    ex = presets.diffusers_timesteps(t, schedule)
    s = DPMSolverMultistepScheduler(**ex.config)
    s.set_timesteps(timesteps=ex.values.tolist())
    np.testing.assert_array_equal(s.timesteps.numpy(), ex.values)
    np.testing.assert_allclose(s.sigmas.numpy(), ex.schedule, rtol=2e-5)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("kind", GRIDS)
def test_unipc_takes_the_first_n_flow_sigmas(kind, shift):
    ex = presets.diffusers_unipc(GRIDS[kind], shift)
    s = UniPCMultistepScheduler(**ex.config)
    s.set_timesteps(sigmas=np.asarray(ex.values))
    np.testing.assert_array_equal(s.sigmas.numpy(), ex.schedule)
    np.testing.assert_allclose(s.sigmas.numpy()[:-1], units.rf_from_t(GRIDS[kind][:-1]), rtol=2e-6)
    assert len(s.timesteps) == GRIDS[kind].size - 1 and s.sigmas[-1] == 0


def test_heun_discrete_takes_the_integer_timesteps_from_config():
    ex = presets.diffusers_timesteps(GRIDS["logsnr"])
    s = HeunDiscreteScheduler.from_config(ex.config)  # from_config ignores the DPM-Solver-only settings
    s.set_timesteps(timesteps=ex.values.tolist())
    # Heun evaluates twice per step: every interior node appears twice, then the scheduler's trailing 0
    np.testing.assert_array_equal(np.unique(s.timesteps.numpy())[::-1], ex.values)
    np.testing.assert_allclose(np.unique(s.sigmas.numpy())[::-1], ex.schedule, rtol=2e-5)


def test_k_diffusion_edm_grid_equals_diffusers_karras_schedule():
    # diffusers' EDMEulerScheduler with its default ramp builds Karras sigmas with a trailing 0: the k-diffusion
    # export of flowcert's EDM grid (rho = 7) must be the same list.
    N = 10
    ex = presets.k_diffusion(grids.edm(N, DELTA, T))
    s = EDMEulerScheduler(sigma_min=units.sigma_from_t(DELTA), sigma_max=units.sigma_from_t(T), rho=7.0)
    s.set_timesteps(num_inference_steps=N + 1)
    np.testing.assert_allclose(s.sigmas.numpy(), ex.values, rtol=2e-6)
    np.testing.assert_array_equal(presets.comfyui(grids.edm(N, DELTA, T)).values, ex.values)


# ----------------------------------------------------------------------------- sampling on the exact denoiser


@pytest.fixture(scope="module")
def start(ring8):
    return marginal.sample(ring8, T, 400, np.random.default_rng(1))


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_diffusers_euler_loop_equals_flowcert_euler(ring8, start, prediction_type):
    t = GRIDS["logsnr"]
    got, sched = ds.euler_discrete(ring8, start, t, prediction_type)
    want = samplers.sample_grid(ring8, start, t, "euler")
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_flowmatch_loop_is_euler_to_zero(ring8, start):
    # Euler in rectified-flow time and Euler in VE sigma are the same DDIM update; the appended r = 0 step
    # returns the x0 prediction.
    t = GRIDS["edm"]
    x0, at_last, _ = ds.flowmatch_euler(ring8, start, t, shift=3.0)
    model = samplers.mixture_denoiser(ring8)
    want = oracles.sample_euler(model, start * np.exp(T), presets.k_diffusion(t).values)
    np.testing.assert_allclose(x0, want, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(at_last, samplers.sample_grid(ring8, start, t, "euler"), atol=1e-4 * np.abs(want).max())


def test_dpmsolver_loop_equals_flowcert_dpmpp_2m(ring8):
    ex = presets.diffusers_timesteps(grids.edm(8, 1e-2, T))
    x = marginal.sample(ring8, ex.t[0], 400, np.random.default_rng(2))
    got, _ = ds.dpmsolver_multistep(ring8, x, ex)
    want = oracles.sample_dpmpp_2m(samplers.mixture_denoiser(ring8), x * np.exp(ex.t[0]), ex.schedule)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_dpmsolver_3m_export_loop_equals_k_diffusions_3m(ring8):
    ex = presets.diffusers_dpmsolver_3m(grids.edm(8, 1e-2, T))
    x = marginal.sample(ring8, ex.t[0], 400, np.random.default_rng(2))
    got, _ = ds.dpmsolver_multistep(ring8, x, ex)  # the scheduler as the export builds it (float32 sigmas)
    model = samplers.mixture_denoiser(ring8)
    want = consumers.k_sample_dpmpp_3m_sde(lambda y, s: torch.from_numpy(model(y.numpy(), float(s))),
                                           torch.from_numpy(x * np.exp(ex.t[0])),
                                           torch.tensor(ex.schedule, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
    # the same scheduler left at its DPM-Solver++(2M) defaults is another solver
    got2, _ = ds.dpmsolver_multistep(ring8, x, presets.diffusers_timesteps(grids.edm(8, 1e-2, T)))
    assert np.abs(got2 - want).max() > 1e-3 * np.abs(want).max()


def test_unipc_export_loop_equals_flowcert_unipc(ring8, start):
    # the export as a flow pipeline runs it: its float32 sigmas, N evaluations; with the appended r = 0 replaced
    # by rf(delta) the end point is flowcert's unipc on the grid (float32 sigmas: to 1e-4)
    t = GRIDS["logsnr"]
    ex = presets.diffusers_unipc(t)
    got, sched, calls = ds.unipc_flow(ring8, start, t, sigmas=ex.values, final=float(np.float32(units.rf_from_t(t[-1]))),
                                      float64=False, **ex.config)
    assert calls == t.size - 1 and sched.sigmas.dtype == torch.float32
    want = samplers.sample_grid(ring8, start, t, "unipc")
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
    # left as it is, the scheduler's last step returns the x_0 prediction near the end point
    x0, _, _ = ds.unipc_flow(ring8, start, t, sigmas=ex.values, final=None, float64=False, **ex.config)
    assert np.abs(x0 - want).max() < 0.1 * np.abs(want).max()


def test_diffusers_euler_converges_to_the_exact_flow_map(ring8, start):
    from flowcert.distill.teacher import Teacher

    exact = Teacher(ring8, step=0.02).flow(start, T, DELTA).numpy()  # RK4 step 0.02: endpoints within 4e-7 of step 0.005, far below the Euler errors
    errs = []
    for N in (8, 32, 128):
        got, _ = ds.euler_discrete(ring8, start, grids.edm(N, DELTA, T))
        errs.append(relative_mse(got, exact).value)
    # first order: error in x ~ 1/N, so the squared error falls ~16x per 4x steps
    assert errs[0] > errs[1] > errs[2]
    assert errs[1] / errs[2] > 6
    assert errs[2] < 2e-3


@pytest.mark.parametrize("preset", ["diffusers-euler", "diffusers-edm", "diffusers-flowmatch", "diffusers-unipc",
                                    "diffusers-timesteps", "diffusers-dpmsolver-3m"])
def test_cli_json_export_builds_the_scheduler(tmp_path, preset):
    import json

    from click.testing import CliRunner

    from flowcert.cli import main

    out = tmp_path / "g.json"
    extra = ["--shift", "2.5"] if preset in ("diffusers-flowmatch", "diffusers-unipc") else []
    r = CliRunner().invoke(main, ["grid", "square4", "--kind", "logsnr", "--steps", "6", "--T", "4", "--for", preset,
                                  *extra, "-o", str(out)])
    assert r.exit_code == 0, r.output
    g = json.loads(out.read_text())
    cls = {"diffusers-euler": EulerDiscreteScheduler, "diffusers-edm": EDMEulerScheduler,
           "diffusers-flowmatch": FlowMatchEulerDiscreteScheduler, "diffusers-unipc": UniPCMultistepScheduler,
           "diffusers-timesteps": DPMSolverMultistepScheduler,
           "diffusers-dpmsolver-3m": DPMSolverMultistepScheduler}[preset]
    s = cls(**g["scheduler_config"])
    arg = np.asarray(g[g["argument"]]) if preset == "diffusers-unipc" else g[g["argument"]]
    s.set_timesteps(**{g["argument"]: torch.tensor(arg) if preset == "diffusers-edm" else arg})
    np.testing.assert_allclose(s.sigmas.numpy(), g["schedule"], rtol=2e-5)
    t = grids.logsnr(6, DELTA, 4.0)
    want = units.rf_from_t(t) if preset in ("diffusers-flowmatch", "diffusers-unipc") else units.sigma_from_t(t)
    if preset == "diffusers-unipc":  # the first N nodes, then the scheduler's r = 0
        want = want[:-1]
    tol = 0.2 if preset in ("diffusers-timesteps", "diffusers-dpmsolver-3m") else 2e-6  # integer timesteps
    np.testing.assert_allclose(s.sigmas.numpy()[: want.size], want, rtol=tol)
