"""Every registered solver against its consumer's own implementation on the same grid, with the exact mixture
denoiser: the end points agree to 1e-6 relative (measured: about 1e-13).

The consumers: diffusers' schedulers as installed (UniPCMultistepScheduler on the mixture written in flow form,
DPMSolverMultistepScheduler on the integer timesteps it accepts), and the k-diffusion and ComfyUI algorithms written
out in tests/consumers.py (source and commit named there).  The diffusers schedulers store float32 sigmas; here their
sigmas are replaced by the grid's float64 values, so that the comparison is of the algorithm, not of float32
rounding (tests/test_diffusers.py runs the exports with what the schedulers store); DPMSolverMultistepScheduler
also rounds its state to float32 in every step, which is made a float64 rounding for the 1e-6 comparison (and
kept, to float32's precision, beside it)."""

import numpy as np
import pytest
import torch

import consumers as C
import diffusers_sampling as ds
from flowcert.exports import presets
from flowcert.numcore import grids, marginal, samplers, solvers
from flowcert.numcore.mixture import builtin

DELTA, T = 1e-2, 3.0
TOL = 1e-6
CASES = [(kind, N) for kind in ("edm", "logsnr", "kl-optimal", "uniform") for N in (1, 2, 3, 5, 9)]


def rel(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="module", params=["ring8", "hetero3"])
def mix(request):
    return builtin(request.param)


def start(mix, t0, n=48, seed=5):
    return marginal.sample(mix, t0, n, np.random.default_rng(seed))


def torch_model(mix):
    D = samplers.mixture_denoiser(mix)
    return lambda x, s: torch.from_numpy(D(x.numpy(), float(s)))


# the k-diffusion and ComfyUI samplers that run each solver (tests/consumers.py), on VE sigmas ending at sigma_N
TOOL = {
    "euler": C.k_sample_euler, "heun": C.k_sample_heun, "dpmpp_2m": C.k_sample_dpmpp_2m,
    "dpmpp_3m": C.k_sample_dpmpp_3m_sde, "ipndm": C.comfy_sample_ipndm, "ipndm_v": C.comfy_sample_ipndm_v,
    "deis": lambda model, x, sigmas: C.comfy_sample_deis(model, x, sigmas, exact=True),
}


def test_every_solver_has_a_consumer_check():
    assert set(TOOL) | {"unipc"} == set(solvers.NAMES)
    # and every k-diffusion / ComfyUI name in the registry is one of the consumers' samplers
    for s in solvers.SOLVERS.values():
        if s.k_diffusion:
            assert C.K_SAMPLERS[s.k_diffusion] is TOOL[s.name]
        if s.comfyui and s.name != "deis":
            assert C.COMFY_SAMPLERS[s.comfyui] is TOOL[s.name]


@pytest.mark.parametrize("solver", sorted(TOOL))
def test_k_diffusion_and_comfyui_samplers_equal_the_registry(mix, solver):
    model = torch_model(mix)
    x = start(mix, T)
    for kind, N in CASES:
        t = grids.build(kind, N, DELTA, T)
        sig = torch.from_numpy(np.sqrt(np.expm1(2 * t)))
        want = TOOL[solver](model, torch.from_numpy(x * np.exp(T)), sig).numpy() * np.exp(-DELTA)
        got = samplers.sample_grid(mix, x, t, solver)
        assert rel(got, want) < TOL, (kind, N, rel(got, want))


def test_comfyuis_own_deis_table_is_its_integrals_to_a_sum_error():
    # ComfyUI tabulates DEIS's coefficients with a 10^4-point Riemann sum in float32: its end points differ from
    # the same algorithm with the integrals done exactly by that sum's error (up to 5e-4 relative here), which
    # flowcert's exact integrals do not reproduce; with exact integrals the two agree to rounding (test above)
    mix = builtin("ring8")
    model = torch_model(mix)
    x = start(mix, T)
    worst = 0.0
    for kind, N in (("uniform", 3), ("logsnr", 5), ("edm", 9)):
        t = grids.build(kind, N, DELTA, T)
        sig = torch.from_numpy(np.sqrt(np.expm1(2 * t)))
        comfy = C.comfy_sample_deis(model, torch.from_numpy(x * np.exp(T)), sig).numpy() * np.exp(-DELTA)
        worst = max(worst, rel(samplers.sample_grid(mix, x, t, "deis"), comfy))
    assert 1e-7 < worst < 1e-3


def test_deis_time_variable_is_comfyuis():
    sig = torch.tensor([80.0, 14.6, 1.0, 0.1, 0.002], dtype=torch.float64)
    tau, _, _ = C.comfy_edm2t(sig)
    np.testing.assert_allclose(solvers.deis_tau(sig.numpy()), tau.numpy(), rtol=1e-14)
    # the fit's ends: tau(80) = 1; tau(0.002) = 1e-3 only to 0.4%, ComfyUI's float32 logs moving BETA_MIN by 1%
    np.testing.assert_allclose(solvers.deis_tau(np.array([0.002, 80.0])), [1e-3, 1.0], rtol=5e-3)


def test_diffusers_unipc_equals_the_registry(mix):
    # N sigmas (rf of t_0 .. t_{N-1}), N model evaluations; the appended final sigma replaced by rf(t_N)
    x = start(mix, T)
    for kind, N in CASES:
        t = grids.build(kind, N, DELTA, T)
        want, sched, calls = ds.unipc_flow(mix, x, t, final="grid")
        assert calls == N == solvers.SOLVERS["unipc"].evaluations(N) and sched.config.solver_type == "bh2"
        got = samplers.sample_grid(mix, x, t, "unipc")
        assert rel(got, want) < TOL, (kind, N, rel(got, want))


def test_diffusers_unipc_with_its_own_final_zero_returns_the_x0_prediction(mix):
    # as a pipeline runs the export: the last step goes to r = 0 and returns D at the last corrected state's
    # predictor, i.e. flowcert's unipc on the same nodes with t_N -> 0
    x = start(mix, T)
    t = grids.logsnr(6, DELTA, T)
    x0, _, calls = ds.unipc_flow(mix, x, t)
    assert calls == 6
    for tail in (1e-5, 1e-7):
        tt = np.concatenate([t[:-1], [tail]])
        near = samplers.sample_grid(mix, x, tt, "unipc")
        assert rel(near, x0) < 30 * np.sqrt(np.expm1(2 * tail))


@pytest.mark.parametrize("preset, solver", [("diffusers-timesteps", "dpmpp_2m"),
                                            ("diffusers-dpmsolver-3m", "dpmpp_3m")])
def test_diffusers_dpmsolver_on_its_timesteps_equals_the_registry(mix, preset, solver):
    for kind, N in (("edm", 1), ("edm", 2), ("edm", 4), ("logsnr", 6), ("kl-optimal", 9)):
        ex = presets.export(preset, grids.build(kind, N, 2e-2, 4.0))
        x = start(mix, ex.t[0])
        x0, at_last, sched = ds.dpmsolver_multistep_float64(mix, x, ex)
        got = samplers.sample_grid(mix, x, ex.t, solver)
        assert rel(got, at_last) < TOL, (kind, N, rel(got, at_last))
        # as installed, the scheduler rounds its state to float32 every step: the same to float32's precision
        _, cast, _ = ds.dpmsolver_multistep_float64(mix, x, ex, cast=True)
        assert rel(got, cast) < 1e-5
        # the appended sigma = 0 returns the denoiser at the last node
        D = samplers.mixture_denoiser(mix)
        sN = float(np.sqrt(np.expm1(2 * ex.t[-1])))
        assert rel(x0, D(got * np.exp(ex.t[-1]), sN)) < TOL


def test_diffusers_deis_scheduler_takes_no_grid():
    # why `deis` is ComfyUI's sample_deis and there is no diffusers-deis preset: DEISMultistepScheduler (its
    # log-rho DEIS, another algorithm) sets its own timesteps from a step count and takes neither sigmas nor
    # timesteps, so no exported grid can run in it; if a diffusers release adds them, this fails and a preset is due
    import inspect

    from diffusers import DEISMultistepScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    def takes(cls):
        return {"sigmas", "timesteps"} & set(inspect.signature(cls.set_timesteps).parameters)

    assert takes(DEISMultistepScheduler) == set()
    assert takes(UniPCMultistepScheduler) and takes(DPMSolverMultistepScheduler)  # the two that have presets
