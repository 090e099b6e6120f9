"""Flow pipelines: their default grids (flow-shift, flux-mu) and exports that survive the pipeline's own re-shifting.

Every export here is run through the *unmodified* diffusers scheduler of the pipeline's config
(``FlowMatchEulerDiscreteScheduler.from_config(cfg)``, ``set_timesteps(sigmas=values, mu=mu)``) and through the
pipelines' own ``calculate_shift`` + ``retrieve_timesteps`` (imported from diffusers' Flux and SD3 pipeline modules),
and must step through the grid's flow times to float32 precision.  ComfyUI's and k-diffusion's samplers (emulated in
tests/consumers.py) run on the exact mixture written in flow form."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift as flux_calculate_shift
from diffusers.pipelines.flux.pipeline_flux import retrieve_timesteps as flux_retrieve_timesteps
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
    calculate_shift as sd3_calculate_shift,
    retrieve_timesteps as sd3_retrieve_timesteps,
)

from consumers import K_SAMPLERS, comfyui_manual_sigmas
from flowcert import api
from flowcert.cli import main
from flowcert.exports import presets
from flowcert.numcore import grids, units
from flowcert.numcore.checks import InputError
from flowcert.numcore.mixture import builtin
from flowcert.numcore.samplers import mixture_denoiser, run as run_program, sample_grid

EPS32 = float(np.finfo(np.float32).eps)
SD3 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.29.0", "num_train_timesteps": 1000,
       "shift": 3.0}
FLUX = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0", "base_image_seq_len": 256,
        "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True}
RESOLUTIONS = [(256, 256), (512, 768), (1024, 1024), (768, 1360), (2048, 2048)]
DELTA, T = 1e-3, 5.0


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, needle):
    assert r.exit_code == 2, r.output
    assert needle in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def unmodified(cfg, ex):
    """The pipeline's own scheduler, given the export's sigmas (and mu): what it steps through."""
    s = FlowMatchEulerDiscreteScheduler.from_config(cfg)
    s.set_timesteps(sigmas=ex.values.tolist(), mu=ex.mu)
    return s


def max_rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a / b - 1)))


# ----------------------------------------------------------------------------- the grid kinds


def test_flow_kinds_are_the_pipelines_defaults_on_the_window():
    for shift in (1.0, 3.0, 0.5, 7.0):
        t = grids.build("flow-shift", 8, DELTA, T, shift=shift)
        assert t[0] == T and t[-1] == DELTA and np.all(np.diff(t) < 0)
        sig = units.sigma_from_t(t) / shift  # the static shift multiplies the VE sigma by `shift`
        u = sig / (1 + sig)  # the flow time before the shift: uniform, as the pipelines' linspace(1, 1/N, N)
        np.testing.assert_allclose(np.diff(u), np.diff(u)[0], rtol=1e-9)
        s = units.rf_from_t(t)
        np.testing.assert_allclose(shift * u / (1 + (shift - 1) * u), s, rtol=1e-12)  # diffusers' formula
    np.testing.assert_allclose(np.diff(units.rf_from_t(grids.flow_shift(6, DELTA, T, 1.0))),
                               np.diff(units.rf_from_t(grids.flow_shift(6, DELTA, T, 1.0)))[0], rtol=1e-9)
    for mu in (0.5, 1.15, -0.3):
        t = grids.build("flux-mu", 8, DELTA, T, mu=mu)
        np.testing.assert_allclose(t, grids.flow_shift(8, DELTA, T, math.exp(mu)), rtol=1e-13)
        sig = units.sigma_from_t(t) / math.exp(mu)
        u = sig / (1 + sig)
        s = units.rf_from_t(t)
        np.testing.assert_allclose(math.exp(mu) / (math.exp(mu) + (1 / u - 1)), s, rtol=1e-12)
    # flux-mu of a resolution: the mu diffusers computes for it (the default line)
    np.testing.assert_array_equal(grids.build("flux-mu", 6, DELTA, T, resolution="512,512"),
                                  grids.build("flux-mu", 6, DELTA, T, mu=grids.mu_for_resolution(512, 512)))
    with pytest.raises(InputError, match="expected one of them"):
        grids.build("flux-mu", 6, DELTA, T, resolution=(512, 512), mu=1.0)
    # defaults: SD3's shift 3 and Flux's mu at 1024 x 1024
    np.testing.assert_array_equal(grids.build("flow-shift", 5, DELTA, T), grids.flow_shift(5, DELTA, T, 3.0))
    assert grids.DEFAULT_MU == pytest.approx(1.15, abs=1e-12)
    # the window's extremes stay finite and descending
    t = grids.build("flux-mu", 16, 1e-10, 50.0, mu=80.0)
    assert np.all(np.isfinite(t)) and np.all(np.diff(t) < 0)


@pytest.mark.parametrize("hw", RESOLUTIONS)
def test_mu_of_a_resolution_is_the_pipelines_own(hw):
    h, w = hw
    flux_tokens = (2 * (h // 16) // 2) * (2 * (w // 16) // 2)  # FluxPipeline: packed 2x2 latents of an 8x VAE
    sd3_tokens = (h // 8 // 2) * (w // 8 // 2)  # SD3 pipeline: latent / patch_size 2
    assert grids.image_seq_len(h, w) == flux_tokens == sd3_tokens
    assert grids.mu_for_resolution(h, w) == flux_calculate_shift(flux_tokens, 256, 4096, 0.5, 1.15)
    assert grids.mu_for_resolution(h, w, base_shift=0.3, max_shift=2.0, base_image_seq_len=64,
                                   max_image_seq_len=8192) == sd3_calculate_shift(sd3_tokens, 64, 8192, 0.3, 2.0)


# ----------------------------------------------------------------------------- exports in the unmodified scheduler

KINDS = ["logsnr", "kl-optimal", "edm", "flow-shift", "flux-mu"]


@pytest.mark.parametrize("kind", KINDS)
def test_sd3_static_shift_is_pre_inverted_in_the_unmodified_scheduler(kind):
    t = grids.build(kind, 8, DELTA, T)
    ex = presets.export("diffusers-flowmatch", t, scheduler_config=SD3)
    assert ex.mu is None and ex.config["shift"] == 3.0 and ex.config["use_dynamic_shifting"] is False
    s = unmodified(SD3, ex)
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(ex.schedule))  # `schedule` is what it runs
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(t)) <= 2 * EPS32
    assert s.sigmas[-1] == 0 and len(s.timesteps) == t.size


@pytest.mark.parametrize("hw", RESOLUTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_flux_dynamic_mu_is_pre_inverted_in_the_unmodified_scheduler(kind, hw):
    t = grids.build(kind, 8, DELTA, T)
    ex = presets.export("diffusers-flowmatch", t, scheduler_config=FLUX, resolution=hw)
    assert ex.mu == flux_calculate_shift(grids.image_seq_len(*hw), 256, 4096, 0.5, 1.15)
    assert ex.config["use_dynamic_shifting"] is True  # the pipeline's own setting, not pinned off
    s = unmodified(FLUX, ex)
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(ex.schedule))
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(t)) <= 2 * EPS32


def round_trip_figures():
    """The largest relative difference between the grid's flow times and what the unmodified scheduler runs, per
    config, kind and N (the figures docs/samplers.md quotes)."""
    out = {}
    for kind in KINDS:
        for N in (4, 8, 16, 32):
            t = grids.build(kind, N, DELTA, T)
            r = units.rf_from_t(t)
            out[("SD3 shift 3", kind, N)] = max_rel(unmodified(SD3, presets.export(
                "diffusers-flowmatch", t, scheduler_config=SD3)).sigmas.numpy()[:-1], r)
            for hw in RESOLUTIONS:
                ex = presets.export("diffusers-flowmatch", t, scheduler_config=FLUX, resolution=hw)
                out[(f"Flux {hw[0]}x{hw[1]}", kind, N)] = max_rel(unmodified(FLUX, ex).sigmas.numpy()[:-1], r)
    return out


def test_the_old_pinned_export_lands_off_the_grid_in_an_unmodified_flux_pipeline():
    # the oracle for the change: values pre-shifted for the config's static shift 3 (the old export, which pinned
    # use_dynamic_shifting off) run by the pipeline's own dynamic scheduler at mu(H, W) land where e^mu / 3 puts them
    t = grids.logsnr(8, DELTA, T)
    r = units.rf_from_t(t)
    old = presets.unshift(r, 3.0)
    worst = {}
    for hw in RESOLUTIONS:
        s = FlowMatchEulerDiscreteScheduler.from_config(FLUX)
        s.set_timesteps(sigmas=old.tolist(), mu=grids.mu_for_resolution(*hw))
        got = s.sigmas.numpy()[:-1].astype(float)
        worst[hw] = max_rel(got / (1 - got), r / (1 - r))  # in noise level (VE sigma)
        assert worst[hw] == pytest.approx(abs(math.exp(grids.mu_for_resolution(*hw)) / 3 - 1), rel=1e-3)
    assert worst[(256, 256)] > 0.4 and worst[(1024, 1024)] > 0.05
    assert max(round_trip_figures().values()) <= 2 * EPS32


@pytest.mark.parametrize("module", ["flux", "sd3"])
@pytest.mark.parametrize("hw", [(512, 512), (1024, 1024), (768, 1360)])
def test_what_a_user_passing_sigmas_and_mu_to_the_pipeline_gets(module, hw):
    # the pipelines' own path: mu from the latent token count by calculate_shift with the scheduler's config, then
    # retrieve_timesteps(scheduler, sigmas=..., mu=...)
    h, w = hw
    t = grids.build("kl-optimal", 10, DELTA, T)
    ex = presets.export("diffusers-flowmatch", t, scheduler_config=FLUX, resolution=hw)
    s = FlowMatchEulerDiscreteScheduler.from_config(FLUX)
    if module == "flux":
        tokens = (2 * (h // 16) // 2) * (2 * (w // 16) // 2)
        calc, retrieve, fallback = flux_calculate_shift, flux_retrieve_timesteps, 1.15
    else:
        tokens = (h // 8 // 2) * (w // 8 // 2)
        calc, retrieve, fallback = sd3_calculate_shift, sd3_retrieve_timesteps, 1.16
    mu = calc(tokens, s.config.get("base_image_seq_len", 256), s.config.get("max_image_seq_len", 4096),
              s.config.get("base_shift", 0.5), s.config.get("max_shift", fallback))
    assert mu == ex.mu  # the pipeline computes the export's mu to the last bit
    timesteps, n = retrieve(s, 28, "cpu", sigmas=ex.values.tolist(), mu=mu)
    assert n == t.size and timesteps.shape == (t.size,)
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(t)) <= 2 * EPS32
    np.testing.assert_allclose(timesteps.numpy(), 1000 * np.float32(ex.schedule[:-1]), rtol=1e-7)
    # and the SD3 pipeline's static path (no mu): the static shift pre-inverted
    if module == "sd3":
        ex3 = presets.export("diffusers-flowmatch", t, scheduler_config=SD3)
        s3 = FlowMatchEulerDiscreteScheduler.from_config(SD3)
        retrieve(s3, 28, "cpu", sigmas=ex3.values.tolist())
        assert max_rel(s3.sigmas.numpy()[:-1], units.rf_from_t(t)) <= 2 * EPS32


def test_the_pipelines_default_grid_exports_as_the_pipelines_own_linspace():
    # flow-shift for an SD3 scheduler and flux-mu at the pipeline's resolution for a Flux scheduler are the grids the
    # pipelines run by default (on flowcert's window): their exported sigmas are uniform, like linspace(1, 1/N, N)
    for cfg, kind, kw in ((SD3, "flow-shift", {}), (FLUX, "flux-mu", {"resolution": (768, 1360)})):
        out = api.export_grid("ring8", 8, "diffusers-flowmatch", kind=kind, scheduler_config=cfg, **kw)
        v = out["export"].values
        np.testing.assert_allclose(np.diff(v), np.diff(v)[0], rtol=1e-9)
    r = run("grid", "ring8", "--steps", 8, "--kind", "flux-mu", "--resolution", "768,1360", "--for",
            "diffusers-flowmatch", "--mu", 1.0)
    one_line_error(r, "expected one of them")


def test_dynamic_scheduler_without_a_config_and_the_linear_time_shift():
    t = grids.logsnr(8, DELTA, T)
    ex = presets.export("diffusers-flowmatch", t, mu=0.8)  # no config: a dynamically shifting scheduler, Flux's line
    assert ex.mu == 0.8 and ex.config["use_dynamic_shifting"] is True
    s = FlowMatchEulerDiscreteScheduler(**ex.config)
    s.set_timesteps(sigmas=ex.values.tolist(), mu=ex.mu)
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(t)) <= 2 * EPS32
    lin = {**FLUX, "time_shift_type": "linear"}
    ex = presets.export("diffusers-flowmatch", t, scheduler_config=lin, mu=2.5)
    s = unmodified(lin, ex)
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(ex.schedule))
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(t)) <= 2 * EPS32
    with pytest.raises(InputError, match="expected mu > 0"):
        presets.export("diffusers-flowmatch", t, scheduler_config=lin, mu=-1.0)


def test_shift_terminal_runs_a_grid_that_ends_there_and_refuses_one_that_does_not():
    cfg = {**SD3, "shift_terminal": 0.1}
    t = grids.logsnr(8, DELTA, T)
    with pytest.raises(InputError, match="shift_terminal") as exc:
        presets.export("diffusers-flowmatch", t, scheduler_config=cfg)
    delta = float(str(exc.value).split("expected `delta` = ")[1].split(",")[0])
    assert units.rf_from_t(delta) == pytest.approx(0.1, rel=1e-12)
    t = grids.logsnr(8, delta, T)
    ex = presets.export("diffusers-flowmatch", t, scheduler_config=cfg)
    s = unmodified(cfg, ex)
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(ex.schedule))
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(t)) <= 4 * EPS32
    # dynamic + terminal together
    cfg = {**FLUX, "shift_terminal": 0.1}
    ex = presets.export("diffusers-flowmatch", t, scheduler_config=cfg, resolution=(1024, 1024))
    assert max_rel(unmodified(cfg, ex).sigmas.numpy()[:-1], units.rf_from_t(t)) <= 4 * EPS32


def test_invert_sigmas_is_pre_inverted_and_float32_limits_refused():
    cfg = {**SD3, "invert_sigmas": True}
    t = grids.logsnr(8, DELTA, T)
    ex = presets.export("diffusers-flowmatch", t, scheduler_config=cfg)
    s = unmodified(cfg, ex)
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(ex.schedule))
    assert s.sigmas[-1] == 1.0  # the scheduler stores 1 - s and ends at 1
    assert max_rel(1.0 - s.sigmas.numpy()[:-1].astype(float), units.rf_from_t(t)) <= 1e-5
    # 1 - s of a tiny flow time cannot be held in float32: refused in one line
    r = run("grid", "ring8", "--steps", 4, "--kind", "logsnr", "--delta", 1e-13, "--for", "diffusers-flowmatch",
            "--scheduler-config", write_cfg(cfg))
    one_line_error(r, "FlowMatchEulerDiscreteScheduler")


@pytest.mark.parametrize("flag", ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"])
def test_schedulers_that_replace_given_sigmas_are_refused(flag):
    with pytest.raises(InputError, match=f"{flag} = true: .* no sigmas make it run the grid"):
        presets.export("diffusers-flowmatch", grids.logsnr(6, DELTA, T), scheduler_config={**SD3, flag: True})
    # the oracle: such a scheduler replaces the grid by its own ramp between the ends
    s = FlowMatchEulerDiscreteScheduler.from_config({**SD3, flag: True})
    vals = presets.export("diffusers-flowmatch", grids.logsnr(6, DELTA, T), scheduler_config=SD3).values
    s.set_timesteps(sigmas=vals.tolist())
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(grids.logsnr(6, DELTA, T))) > 0.01


def test_a_mu_whose_pre_inversion_float32_cannot_hold_is_refused():
    t = grids.logsnr(8, DELTA, T)
    with pytest.raises(InputError, match="float32"):
        presets.export("diffusers-flowmatch", t, scheduler_config=FLUX, mu=-20.0)


# ----------------------------------------------------------------------------- the command line


_COUNT = iter(range(10**6))


@pytest.fixture(autouse=True)
def _folder(tmp_path, monkeypatch):
    monkeypatch.setattr(__import__(__name__), "FOLDER", tmp_path, raising=False)


def write_cfg(cfg):
    """A scheduler_config.json holding ``cfg`` in the test's temporary folder."""
    path = FOLDER / f"scheduler_config_{next(_COUNT)}.json"
    path.write_text(json.dumps(cfg))
    return path


def test_cli_flux_export_carries_mu_and_runs_in_the_unmodified_scheduler(tmp_path):
    cfg = write_cfg(FLUX)
    out = tmp_path / "flux.json"
    r = run("grid", "ring8", "--steps", 8, "--kind", "logsnr", "--for", "diffusers-flowmatch", "--scheduler-config",
            cfg, "--resolution", "1024,1024", "-o", out)
    assert r.exit_code == 0, r.output
    g = json.loads(out.read_text())
    assert g["mu"] == grids.mu_for_resolution(1024, 1024)
    s = FlowMatchEulerDiscreteScheduler.from_config(FLUX)
    s.set_timesteps(sigmas=g["sigmas"], mu=g["mu"])
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(g["schedule"]))
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(g["t"])) <= 2 * EPS32


@pytest.mark.parametrize("args, needle", [
    (["--kind", "flux-mu", "--mu", "nan"], "--mu = nan: expected a finite real number"),
    (["--kind", "flux-mu", "--resolution", "1000,1024"], "divisible by 16"),
    (["--kind", "flux-mu", "--resolution", "1024"], "expected HEIGHT,WIDTH"),
    (["--kind", "flux-mu", "--resolution", "a,b"], "expected HEIGHT,WIDTH"),
    (["--kind", "flux-mu", "--mu", "1e9"], "--mu = 1e+09: expected a number <= 80"),
    (["--kind", "flow-shift", "--shift", "0"], "--shift = 0: expected a number > 0"),
    (["--kind", "flow-shift", "--shift", "-2"], "expected a number > 0"),
    (["--kind", "logsnr", "--mu", "1"],
     "expected only with --kind flux-mu, or --for diffusers-flowmatch; it does nothing"),
    (["--kind", "logsnr", "--for", "k-diffusion", "--shift", "3"],
     "expected only with --kind flow-shift, or --for diffusers-flowmatch, diffusers-unipc; it does nothing"),
    (["--kind", "logsnr", "--for", "diffusers-flowmatch", "--mu", "1", "--resolution", "512,512"],
     "expected one of them"),
    (["--kind", "logsnr", "--for", "diffusers-flowmatch", "--shift", "-1"], "--shift = -1: expected a number > 0"),
    (["--kind", "logsnr", "--for", "diffusers-flowmatch", "--shift", "2", "--mu", "1"], "not both"),
])
def test_bad_flow_input_is_one_line(args, needle):
    one_line_error(run("grid", "ring8", "--steps", 4, *args), needle)


@pytest.mark.parametrize("cfg, args, needle", [
    (FLUX, [], "--mu missing: the scheduler config shifts dynamically"),
    (FLUX, ["--shift", "3"], "its static shift is not used"),
    (SD3, ["--mu", "1.15"], "shifts statically"),
    (SD3, ["--shift", "2"], "disagrees with the scheduler config's shift 3"),
    ({**FLUX, "base_shift": None}, ["--resolution", "512,512"], "no line"),
    ({**SD3, "time_shift_type": "cubic"}, [], "time_shift_type"),
    ({**SD3, "shift_terminal": 1.5}, [], "shift_terminal = 1.5"),
])
def test_bad_flow_config_is_one_line(cfg, args, needle):
    one_line_error(run("grid", "ring8", "--steps", 4, "--kind", "logsnr", "--for", "diffusers-flowmatch",
                       "--scheduler-config", write_cfg(cfg), *args), needle)


def test_a_kinds_own_option_is_the_grids_alone_when_a_config_defines_the_scheduler():
    # --kind flow-shift --shift 5 for an SD3 pipeline (shift 3): the grid is flow-shift 5, pre-inverted for 3
    r = run("grid", "ring8", "--steps", 6, "--kind", "flow-shift", "--shift", 5, "--for", "diffusers-flowmatch",
            "--scheduler-config", write_cfg(SD3), "--format", "json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    assert g["grid_params"] == {"shift": 5.0} and g["scheduler_config"]["shift"] == 3.0
    np.testing.assert_allclose(g["t"], grids.flow_shift(6, DELTA, T, 5.0), rtol=1e-12)
    s = FlowMatchEulerDiscreteScheduler.from_config(SD3)
    s.set_timesteps(sigmas=g["sigmas"])
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(g["t"])) <= 2 * EPS32
    # flux-mu with a static config: --resolution is the grid's; a Flux config's own line sets the kind's default
    r = run("grid", "ring8", "--steps", 4, "--kind", "flux-mu", "--resolution", "512,512", "--scheduler-config",
            write_cfg({**FLUX, "max_shift": 2.0}), "--format", "json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    assert g["mu"] == grids.mu_for_resolution(512, 512, base_shift=0.5, max_shift=2.0)


# ----------------------------------------------------------------------------- ComfyUI and k-diffusion on a flow model


@pytest.fixture(scope="module")
def ring8():
    return builtin("ring8")


def flow_form(mix):
    """The exact mixture written in flow form: the velocity v(x_s, s) = eps - x_0 of x_s = (1 - s) x_0 + s eps, and
    its x_0 prediction x_s - s v (what ComfyUI's CONST model sampling returns as denoised)."""
    ve = mixture_denoiser(mix)

    def x0(x, s):
        x, s = np.asarray(x, float), float(s)
        return ve(x / (1 - s), s / (1 - s))  # x_VE = x_s / (1 - s), sigma_VE = s / (1 - s)

    def velocity(x, s):
        return (np.asarray(x, float) - x0(x, s)) / float(s)

    return velocity, x0


def torch_model(fn):
    return lambda x, sigma: torch.as_tensor(fn(x.double().numpy(), float(sigma)), dtype=torch.float32)


def test_comfyui_for_a_flow_model_gives_flow_times_that_samplercustom_runs_as_given(ring8):
    t = grids.build("kl-optimal", 8, DELTA, T)
    ex = presets.export("comfyui", t, scheduler_config=FLUX)
    sig = comfyui_manual_sigmas(ex.text())  # what the manual-sigmas node reads
    np.testing.assert_array_equal(sig.numpy().astype(float), ex.schedule)
    np.testing.assert_allclose(ex.values[:-1], units.rf_from_t(t), rtol=1e-15)
    assert ex.values[-1] == 0
    velocity, _ = flow_form(ring8)
    # ComfyUI's CONST: denoised = x - s v(x, s); its Euler on the flow times; x_T in flow scale x_OU/(alpha+sigma_vp)
    rng = np.random.default_rng(0)
    from flowcert.numcore.marginal import sample

    x_T = sample(ring8, T, 256, rng)
    scale = lambda tt: math.exp(-tt) + math.sqrt(-math.expm1(-2 * tt))  # noqa: E731
    denoised = torch_model(lambda x, s: x - s * velocity(x, s))
    x = K_SAMPLERS["sample_euler"](denoised, torch.as_tensor(x_T / scale(T), dtype=torch.float32), sig[:-1])
    want = sample_grid(ring8, x_T, t, "euler")
    got = x.double().numpy() * scale(DELTA)
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())
    # the model sampling node's shift would only change ComfyUI's own schedulers: a SIGMAS input is not shifted
    r = run("grid", "ring8", "--steps", 8, "--kind", "kl-optimal", "--for", "comfyui", "--scheduler-config",
            write_cfg(SD3), "--format", "txt")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(comfyui_manual_sigmas(r.stdout).numpy(), sig.numpy())


@pytest.mark.parametrize("sampler, solver", [("sample_euler", "euler"), ("sample_heun", "heun"),
                                             ("sample_dpmpp_2m", "dpmpp_2m")])
def test_k_diffusion_runs_a_flow_model_on_ve_sigmas_through_the_documented_wrapper(ring8, sampler, solver):
    # k-diffusion's samplers are written for x = x_0 + sigma eps: the export stays VE sigmas, and a velocity network
    # is wrapped as D(x, sigma) = x_s - s v(x_s, s), s = sigma/(1 + sigma), x_s = x/(1 + sigma)
    t = grids.build("logsnr", 6, DELTA, T)
    ex = presets.export("k-diffusion", t)
    velocity, _ = flow_form(ring8)

    def wrapped(x, sigma):
        s = sigma / (1 + sigma)
        xs = x / (1 + sigma)
        return xs - s * velocity(xs, s)

    rng = np.random.default_rng(1)
    from flowcert.numcore.marginal import sample

    x_T = sample(ring8, T, 128, rng)
    y0 = x_T * math.exp(T)  # VE scale
    sig = torch.as_tensor(ex.values[:-1], dtype=torch.float32)  # drop the 0: stop at delta, as flowcert's solvers do
    got = K_SAMPLERS[sampler](torch_model(wrapped), torch.as_tensor(y0, dtype=torch.float32), sig).double().numpy()
    want = run_program(mixture_denoiser(ring8), y0, units.sigma_from_t(t), solver)  # flowcert's solver, VE
    np.testing.assert_allclose(got, want, atol=3e-5 * np.abs(want).max())
    np.testing.assert_allclose(want * math.exp(-DELTA), sample_grid(ring8, x_T, t, solver), atol=1e-9)


# ----------------------------------------------------------------------------- studies


def test_winning_flow_export_weighs_the_pipelines_defaults():
    out = api.export_grid("line2", 4, "diffusers-flowmatch", scheduler_config=FLUX, resolution=(512, 512),
                          train_samples=64, test_samples=64, effort=0.05)
    sel = out["selection"]
    assert {"flow-shift", "flux-mu", "logsnr", "kl-optimal", "edm"} <= set(sel["baselines"])
    assert set(sel["train_rel_mse"]) >= {"optimal", "flow-shift", "flux-mu"}
    ex = out["export"]
    assert ex.mu == grids.mu_for_resolution(512, 512)
    assert max_rel(unmodified(FLUX, ex).sigmas.numpy()[:-1], units.rf_from_t(ex.t)) <= 2 * EPS32
    # the candidates are the kinds' grids with the pipeline's own parameters: flux-mu at mu(512, 512)
    nope = api.export_grid("line2", 4, "diffusers-euler", kind=None, train_samples=64, test_samples=64, effort=0.05)
    assert "flow-shift" not in nope["selection"]["baselines"]


def test_the_solver_study_weighs_the_flow_kinds_on_mixtures_and_on_flow_models_only(tmp_path):
    import flowcert
    from flowcert.studies.solver_study import labels
    from flowcert.studies.targets import MixtureTarget, ModelTarget

    assert {"flow-shift", "flux-mu"} <= set(labels(MixtureTarget(flowcert.load_mixture("line2"))))

    class Stub:
        name, d = "stub", 2

        def __init__(self, cfg):
            self.path = write_cfg(cfg)

        def describe(self):
            return {"name": self.name, "scheduler_config": str(self.path)}

    flow = ModelTarget(Stub({**FLUX, "max_shift": 2.0}))
    assert {"flow-shift", "flux-mu"} <= set(labels(flow))
    assert flow.flow_params()["mu"] == grids.mu_for_resolution(1024, 1024, max_shift=2.0)
    assert ModelTarget(Stub(SD3)).flow_params()["shift"] == 3.0
    ddpm = ModelTarget(Stub({"_class_name": "DDPMScheduler", "beta_schedule": "linear"}))
    assert not {"flow-shift", "flux-mu"} & set(labels(ddpm))
    res = flowcert.solvers("line2", [2], samples=64, train_samples=64, effort=0.05)
    assert res["flow_params"] == {"flow-shift": {"shift": 3.0}, "flux-mu": {"mu": grids.DEFAULT_MU}}
    assert {r["grid"] for r in res["rows"]} >= {"flow-shift", "flux-mu"}


def test_a_models_own_config_reaches_only_the_presets_that_read_one():
    # a trained model's DDPM scheduler config once reached comfyui, which refused it: `--model digits --for comfyui`
    import flowcert
    from flowcert.studies.targets import MixtureTarget
    from flowcert.studies.timegrid import export

    class WithConfig(MixtureTarget):
        def __init__(self, mix, cfg):
            super().__init__(mix)
            self.cfg = cfg

        def scheduler_config(self):
            return self.cfg

    mix = flowcert.load_mixture("line2")
    ddpm = {"_class_name": "DDPMScheduler", "beta_schedule": "linear", "num_train_timesteps": 1000}
    for preset in ("comfyui", "k-diffusion"):
        ex = export(WithConfig(mix, ddpm), 4, preset, kind="logsnr", T=2.0)["export"]
        np.testing.assert_allclose(ex.values[:-1], units.sigma_from_t(grids.logsnr(4, DELTA, 2.0)))
    ex = export(WithConfig(mix, SD3), 4, "comfyui", kind="logsnr", T=2.0)["export"]  # a flow model: flow times
    np.testing.assert_allclose(ex.values[:-1], units.rf_from_t(grids.logsnr(4, DELTA, 2.0)))


# ----------------------------------------------------------------------------- flow pipeline folders end to end


@pytest.fixture(scope="module")
def flow_folders(tmp_path_factory):
    """Tiny SD3 (static shift 3) and Flux (dynamic shift, diffusers' line) pipeline folders, as save_pretrained
    writes them (the families' own builder), with their conditioning files."""
    from test_families import _build, _cond, _save_cond

    root = tmp_path_factory.mktemp("flow_pipelines")
    out = {}
    for kind in ("sd3", "flux"):
        _build(kind, root / kind)
        out[kind] = (str(root / kind), _save_cond(root / f"{kind}.safetensors", _cond(kind)))
    return out


def model_args(flow_folders, kind):
    folder, cond = flow_folders[kind]
    return ["--model", folder, "--cond", cond, *(["--shape", "4,8,8"] if kind == "flux" else [])]


def folder_scheduler(folder):
    """The pipeline folder's own scheduler, unmodified (what `FluxPipeline.from_pretrained(folder)` holds)."""
    return FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")


def test_a_flow_pipeline_folders_own_scheduler_runs_its_export(flow_folders):
    # Flux: the folder's dynamic config needs the image size; the export's mu is the one the pipeline computes from
    # the folder's own config, and the folder's scheduler given (sigmas, mu) runs the grid
    flux = model_args(flow_folders, "flux")
    one_line_error(run("grid", *flux, "--steps", 4, "--kind", "logsnr", "--for", "diffusers-flowmatch"),
                   "--mu missing")
    r = run("grid", *flux, "--steps", 4, "--kind", "logsnr", "--for", "diffusers-flowmatch", "--resolution", "512,768",
            "--format", "json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    s = folder_scheduler(flow_folders["flux"][0])
    c = s.config
    assert g["mu"] == flux_calculate_shift(grids.image_seq_len(512, 768), c.base_image_seq_len, c.max_image_seq_len,
                                           c.base_shift, c.max_shift)
    flux_retrieve_timesteps(s, 28, "cpu", sigmas=g["sigmas"], mu=g["mu"])
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(g["t"])) <= 2 * EPS32
    # flux-mu on the folder: its own line at 1024 x 1024 by default, --resolution's mu otherwise
    for extra, mu in (([], grids.DEFAULT_MU), (["--resolution", "256,256"], grids.mu_for_resolution(256, 256))):
        r = run("grid", *flux, "--steps", 4, "--kind", "flux-mu", *extra, "--format", "json")
        assert r.exit_code == 0, r.output
        g = json.loads(r.stdout)
        assert g["mu"] == mu
        np.testing.assert_allclose(g["t"], grids.flux_mu(4, g["delta"], g["T"], mu), rtol=1e-12)
    # SD3: the folder's static shift 3 is flow-shift's default and is pre-inverted; the pipeline passes no mu
    sd3 = model_args(flow_folders, "sd3")
    r = run("grid", *sd3, "--steps", 4, "--kind", "flow-shift", "--for", "diffusers-flowmatch", "--format", "json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    assert g["grid_params"] == {"shift": 3.0} and "mu" not in g
    np.testing.assert_allclose(g["t"], grids.flow_shift(4, g["delta"], g["T"], 3.0), rtol=1e-12)
    s = folder_scheduler(flow_folders["sd3"][0])
    sd3_retrieve_timesteps(s, 28, "cpu", sigmas=g["sigmas"])
    assert max_rel(s.sigmas.numpy()[:-1], units.rf_from_t(g["t"])) <= 2 * EPS32
    one_line_error(run("grid", *sd3, "--steps", 4, "--kind", "logsnr", "--for", "diffusers-flowmatch", "--mu", 1),
                   "shifts statically")


def test_a_flow_pipeline_folders_studies_weigh_its_own_shifts(flow_folders):
    import flowcert
    from flowcert.studies.solver_study import labels
    from flowcert.studies.targets import ModelTarget

    # SD3's folder: its static shift (and Flux's default mu); Flux's: its line at 1024 x 1024 (and SD3's default shift)
    for kind, shift, mu in (("sd3", 3.0, grids.DEFAULT_MU), ("flux", 3.0, grids.mu_for_resolution(1024, 1024))):
        folder, cond = flow_folders[kind]
        target = ModelTarget(flowcert.load_model(folder, cond=cond, shape=(4, 8, 8) if kind == "flux" else None))
        assert {"flow-shift", "flux-mu"} <= set(labels(target))
        params = target.flow_params()
        assert grids.KINDS["flow-shift"].parameters(**params) == {"shift": shift}
        assert grids.KINDS["flux-mu"].parameters(**params) == {"mu": mu}
    # a folder whose config says otherwise: its shift and its line are the kinds' parameters
    folder, cond = flow_folders["sd3"]
    sched = os.path.join(folder, "scheduler", "scheduler_config.json")
    cfg = json.load(open(sched))
    try:
        json.dump({**cfg, "shift": 5.0}, open(sched, "w"))
        params = ModelTarget(flowcert.load_model(folder, cond=cond)).flow_params()
        assert grids.KINDS["flow-shift"].parameters(**params) == {"shift": 5.0}
    finally:
        json.dump(cfg, open(sched, "w"))
