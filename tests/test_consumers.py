"""Exports survive their consumers: every export is checked after the consumer's own conversion, and what is
accepted runs in the real diffusers schedulers (and in k-diffusion's and ComfyUI's float32 code, emulated in
tests/consumers.py) to the end, with the documented number of model evaluations.  The failing inputs found
against these consumers are test cases with their exact values."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import (
    DPMSolverMultistepScheduler,
    EDMEulerScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers import (
    COMFY_SAMPLERS,
    K_SAMPLERS,
    Counted,
    comfyui_manual_sigmas,
    diffusers_loop,
    gaussian_denoiser,
)
from flowcert.exports import presets
from flowcert.cli import main
from flowcert.numcore import grids, units
from flowcert.numcore.checks import InputError

SD15 = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "timestep_spacing": "leading", "trained_betas": None, "clip_sample": False}
ZERO_SNR = {**SD15, "_class_name": "DDIMScheduler", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing",
            "prediction_type": "v_prediction"}
FLUX = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
        "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True}
EDM_CFG = {"_class_name": "EDMDPMSolverMultistepScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5,
           "sigma_schedule": "karras", "rho": 7.0, "prediction_type": "epsilon", "num_train_timesteps": 1000}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, needle):
    assert r.exit_code == 2, r.output
    assert needle in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def eps_model(x_in, timestep, sigma):
    """Exact epsilon prediction for x_0 ~ N(0, I), given the VP-scale input: sigma / sqrt(1 + sigma^2) x_in."""
    return sigma / torch.sqrt(1 + sigma**2) * x_in


SCHEDULERS = {"diffusers-euler": EulerDiscreteScheduler, "diffusers-edm": EDMEulerScheduler,
              "diffusers-flowmatch": FlowMatchEulerDiscreteScheduler, "diffusers-unipc": UniPCMultistepScheduler,
              "diffusers-timesteps": DPMSolverMultistepScheduler,
              "diffusers-dpmsolver-3m": DPMSolverMultistepScheduler}
DIFFUSERS_PRESETS = list(SCHEDULERS)


def build(ex, cls=None, merge=None):
    """The scheduler an export is meant for, from its config (merged last into ``merge`` when given)."""
    cls = cls or SCHEDULERS[ex.preset]
    s = cls.from_config({**merge, **ex.config}) if merge is not None else cls(**ex.config)
    arg = ex.values.tolist()
    if ex.preset == "diffusers-edm":
        arg = torch.tensor(ex.values, dtype=torch.float64)
    if ex.preset == "diffusers-unipc":
        arg = np.asarray(ex.values)  # UniPCMultistepScheduler takes an array (a list fails in its shift)
    s.set_timesteps(**{ex.argument: arg})
    return s


def model_for(preset):
    if preset in ("diffusers-flowmatch", "diffusers-unipc"):
        return lambda x, timestep, sigma: -0.5 * x  # a velocity
    if preset == "diffusers-edm":
        return lambda x, timestep, sigma: 0.1 * x
    return eps_model


def run_loop(s, preset, x0=None):
    model = Counted(model_for(preset))
    shape = (1, 4) if preset == "diffusers-unipc" else (4,)  # UniPC's corrector wants (batch, channels, ...)
    x = torch.ones(shape, dtype=torch.float32) * float(getattr(s, "init_noise_sigma", 1.0)) if x0 is None else x0
    out = diffusers_loop(s, model, x)
    assert torch.isfinite(out).all()
    return model.calls


# ----------------------------------------------------------------------------- 1. float32 collapse

COLLAPSE = ("line2", "--delta", 1, "--T", "1.0000001", "--steps", 4, "--kind", "uniform")


@pytest.mark.parametrize("preset", ["diffusers-euler", "diffusers-flowmatch", "diffusers-edm"])
def test_float32_collapse_is_refused_in_one_line(preset):
    r = run("grid", *COLLAPSE, "--for", preset)
    one_line_error(r, "collapse in")
    assert "--steps" in r.stderr


def test_float32_collapse_really_breaks_the_unguarded_scheduler():
    # the oracle for the refusal: the float64 sigmas of that grid, passed as they were before, coincide in
    # float32 (2.52765846 three times), the first timestep repeats and the standard loop dies
    t = grids.uniform(4, 1.0, 1.0000001)
    sig = units.sigma_from_t(t)
    assert np.unique(sig).size == 5 and np.unique(sig.astype(np.float32)).size < 5
    assert np.sum(sig.astype(np.float32) == np.float32(2.52765846)) == 3
    s = EulerDiscreteScheduler(**presets.diffusers_euler(grids.uniform(4, 1.0, 2.0)).config)
    s.set_timesteps(sigmas=sig.tolist())
    assert s.timesteps[0] == s.timesteps[1]
    with pytest.raises(IndexError):
        run_loop(s, "diffusers-euler")
    r = units.rf_from_t(t)
    f = FlowMatchEulerDiscreteScheduler()
    f.set_timesteps(sigmas=r.tolist())
    assert f.timesteps[0] == f.timesteps[1]
    with pytest.raises(IndexError):
        run_loop(f, "diffusers-flowmatch")


GRID_KINDS = {"uniform": grids.uniform, "logsnr": grids.logsnr, "edm": grids.edm}


@st.composite
def hard_grids(draw):
    """Grids from ordinary to degenerate: windows down to 1e-7 relative width, N up to 40."""
    n = draw(st.integers(1, 40))
    delta = 10 ** draw(st.floats(-9, 0.3))
    T = delta * (1 + 10 ** draw(st.floats(-7, 2)))
    T = min(T, 44.0)
    if not T > delta:
        T = delta * 2
    return GRID_KINDS[draw(st.sampled_from(sorted(GRID_KINDS)))](n, delta, T)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=hard_grids(), preset=st.sampled_from(DIFFUSERS_PRESETS), shift=st.sampled_from([1.0, 3.0, 0.3, 1e4]))
def test_every_accepted_export_runs_in_the_real_scheduler(t, preset, shift):
    try:
        flow = preset in ("diffusers-flowmatch", "diffusers-unipc")
        ex = presets.export(preset, t, clip=True, shift=shift if flow else None)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    s = build(ex)
    n = ex.t.size - 1
    sig = s.sigmas.numpy().astype(float)
    assert np.all(np.diff(sig) < 0), (sig, ex.schedule)
    assert np.all(np.diff(s.timesteps.numpy().astype(float)) < 0)
    if preset in ("diffusers-euler", "diffusers-flowmatch", "diffusers-unipc"):
        np.testing.assert_array_equal(sig, ex.schedule)  # the emulation is the scheduler's own float32 arithmetic
    elif preset == "diffusers-edm":
        np.testing.assert_allclose(sig, ex.schedule, rtol=2.5e-7, atol=0)  # torch pow vs numpy pow: <= 2 ulp
    else:
        np.testing.assert_allclose(sig, ex.schedule, rtol=2e-5)  # diffusers' float32 beta table
    want = {"diffusers-euler": n, "diffusers-unipc": n}.get(preset, n + 1)
    assert run_loop(s, preset) == want


@settings(max_examples=30, deadline=None)
@given(t=hard_grids(), preset=st.sampled_from(["k-diffusion", "comfyui"]),
       sampler=st.sampled_from(sorted(K_SAMPLERS)))
def test_every_accepted_k_diffusion_and_comfyui_list_runs_in_float32(t, preset, sampler):
    try:
        ex = presets.export(preset, t)
    except InputError:
        return
    sig = comfyui_manual_sigmas(ex.text()) if preset == "comfyui" else torch.tensor(ex.values, dtype=torch.float32)
    np.testing.assert_array_equal(sig.numpy().astype(float), ex.schedule)
    model = Counted(gaussian_denoiser)
    x = K_SAMPLERS[sampler](model, torch.ones(3) * sig[0], sig)
    assert torch.isfinite(x).all()
    n = ex.t.size - 1
    assert model.calls == (2 * n + 1 if sampler == "sample_heun" else n + 1)


SAMPLER_PRESETS = [p for p in presets.PRESETS if p.startswith(("k-diffusion-", "comfyui-"))]


@pytest.mark.parametrize("preset", SAMPLER_PRESETS)
@pytest.mark.parametrize("kind, n", [("logsnr", 1), ("edm", 4), ("kl-optimal", 9)])
def test_every_sampler_preset_runs_in_its_sampler_in_float32(preset, kind, n):
    # a k-diffusion-* / comfyui-* export, as the tool reads it, in the sampler it is named after: N+1 steps (the
    # last to sigma = 0), one evaluation each (Heun: two but one on the last)
    from flowcert.numcore.solvers import SOLVERS

    ex = presets.export(preset, grids.build(kind, n, 1e-3, 5.0))
    solver = SOLVERS[presets.PRESET_SOLVER[preset]]
    if preset.startswith("comfyui"):
        sig, sampler = comfyui_manual_sigmas(ex.text()), COMFY_SAMPLERS[solver.comfyui]
    else:
        sig, sampler = torch.tensor(ex.values, dtype=torch.float32), K_SAMPLERS[solver.k_diffusion]
    np.testing.assert_array_equal(sig.numpy().astype(float), ex.schedule)
    model = Counted(gaussian_denoiser)
    x = sampler(model, torch.ones(3) * sig[0], sig)
    assert torch.isfinite(x).all() and x.dtype == torch.float32
    assert model.calls == (2 * n + 1 if solver.name == "heun" else n + 1)


# ----------------------------------------------------------------------------- 2. shift compensation


def test_shift_whose_compensation_float32_cannot_hold_is_refused():
    for shift in ("1e-5", "1e-3"):
        r = run("grid", "ring8", "--steps", 8, "--for", "diffusers-flowmatch", "--shift", shift)
        one_line_error(r, "float32 cannot represent the shift compensation")
    r = run("grid", "ring8", "--steps", 8, "--for", "diffusers-flowmatch", "--shift", "0.01", "--format", "json")
    assert r.exit_code == 0 and "float32 ulps" in r.stderr
    g = json.loads(r.stdout)
    assert any("float32 cannot represent" in w for w in g["warnings"])
    # `schedule` is exactly what the scheduler runs
    s = FlowMatchEulerDiscreteScheduler(**g["scheduler_config"])
    s.set_timesteps(sigmas=g["sigmas"])
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(g["schedule"]))


def test_the_unguarded_shift_1e5_drifts_in_the_real_scheduler():
    # the oracle: pre-shifted values for --shift 1e-5 all round to about 1 in float32, and the scheduler steps
    # through noise levels (VE sigma r / (1 - r)) far from the grid's
    from flowcert import api

    t = api.grid("ring8", 8)["t"]  # flowcert grid ring8 --steps 8
    r = units.rf_from_t(t)
    drift = {}
    for shift in (1e-5, 1e-3):
        s = FlowMatchEulerDiscreteScheduler(shift=shift)
        s.set_timesteps(sigmas=presets.unshift(r, shift).tolist())
        got = s.sigmas.numpy()[:-1].astype(float)
        drift[shift] = (np.max(np.abs(got / r - 1)), np.max(np.abs(got / (1 - got) / (r / (1 - r)) - 1)))
        with pytest.raises(InputError, match="noise level"):
            presets.diffusers_flowmatch(t, shift)
    assert drift[1e-3][0] == pytest.approx(9e-6, rel=0.05)  # "already 9e-6 relative at --shift 1e-3"
    assert drift[1e-3][1] > presets.DRIFT_MAX and drift[1e-5][1] > 0.05


@settings(max_examples=25, deadline=None)
@given(log_shift=st.floats(-2, 37), n=st.integers(1, 20))
def test_accepted_shifts_step_through_the_schedule_exactly(log_shift, n):
    t = grids.logsnr(n, 1e-3, 5.0)
    try:
        ex = presets.diffusers_flowmatch(t, 10.0**log_shift)
    except InputError:
        return
    s = build(ex)
    np.testing.assert_array_equal(s.sigmas.numpy().astype(float), ex.schedule)
    r = units.rf_from_t(t)
    noise = lambda x: x / (1 - x)  # noqa: E731
    assert np.max(np.abs(noise(ex.schedule[:-1]) / noise(r) - 1)) <= presets.DRIFT_MAX * 1.5


def test_shift_that_overflows_float32_is_refused_and_the_printed_limit_is_accepted():
    r = run("grid", "ring8", "--for", "diffusers-flowmatch", "--shift", "1e39")
    one_line_error(r, "overflows")
    limit = re.search(r"<= (\S+)$", r.stderr.strip()).group(1)
    assert float(limit) <= float(np.finfo(np.float32).max)
    r = run("grid", "ring8", "--for", "diffusers-flowmatch", "--shift", limit)
    assert "overflows" not in r.stderr


# ----------------------------------------------------------------------------- 3. printed limits are accepted


def test_the_true_ends_of_the_named_schedules():
    assert units.ddpm_range("linear") == (5.000250016667917e-05, 5.0588567712065515)
    assert units.ddpm_range("scaled_linear") == (0.00042518072741946184, 2.684359345461349)


def printed_range(stderr):
    lo, hi = re.search(r"range \[([^,\]]+), ([^\]]+)\]", stderr).groups()
    return lo, hi


@pytest.mark.parametrize("preset", ["diffusers-timesteps", "diffusers-euler"])
@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_each_printed_range_end_is_accepted_when_fed_back(preset, schedule):
    r = run("grid", "line2", "--steps", 4, "--T", 9, "--for", preset, "--beta-schedule", schedule)
    one_line_error(r, "outside the")
    lo, hi = printed_range(r.stderr)
    if schedule == "linear":
        assert (lo, hi) == ("5.00026e-05", "5.05885")
    r = run("grid", "line2", "--steps", 4, "--T", hi, "--delta", lo, "--for", preset, "--beta-schedule", schedule)
    assert r.exit_code == 0, r.output
    for value in (lo, hi):
        assert units.ddpm_from_t(float(value), schedule) is not None  # the unit conversion accepts them too


@pytest.mark.parametrize("args, flag", [
    (("--for", "k-diffusion", "--T", 50, "--kind", "logsnr"), "--T"),
    (("--for", "comfyui", "--delta", "1e-100", "--kind", "logsnr"), "--delta"),
    (("--for", "diffusers-edm", "--T", 48, "--kind", "logsnr"), "--T"),
])
def test_each_printed_float32_limit_is_accepted_when_fed_back(args, flag):
    r = run("grid", "ring8", "--steps", 4, *args)
    one_line_error(r, "float32")
    limit = re.search(rf"expected {flag} [<>]= (\S+)$", r.stderr.strip()).group(1)
    fixed = list(args)
    fixed[fixed.index(flag) + 1] = limit
    r = run("grid", "ring8", "--steps", 4, *fixed)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args", [("--t", "0.05"), ()])
def test_the_printed_score_scale_is_accepted_as_eps(args):
    r = run("certify", "ring8", "--eps", 10, *args, "--format", "json")
    one_line_error(r, "expected a value below the score's own scale")
    limit = re.search(r"= ([0-9.e+-]+)(?: at t = \S+)?$", r.stderr.strip()).group(1)
    r = run("certify", "ring8", "--eps", limit, *args, "--format", "json")
    assert r.exit_code == 0, r.output


def test_delta_above_T_prints_T_exactly():
    r = run("grid", "ring8", "--delta", "5.0588567712065515", "--T", "5.0588567712065515")
    one_line_error(r, "expected a value below --T = 5.0588567712065515")


def test_the_limits_printed_in_the_docs_are_accepted():
    text = (Path(__file__).resolve().parents[1] / "docs" / "samplers.md").read_text()
    found = re.findall(r"`(linear|scaled_linear)`[^`]*?`t` in \[([0-9.e-]+), ([0-9.e-]+)\]", text)
    assert {f[0] for f in found} == {"linear", "scaled_linear"}
    for schedule, lo, hi in found:
        r = run("grid", "line2", "--steps", 4, "--delta", lo, "--T", hi, "--for", "diffusers-timesteps",
                "--beta-schedule", schedule)
        assert r.exit_code == 0, (schedule, lo, hi, r.output)
    # the SD 1.x/XL ceiling recommended for ComfyUI and k-diffusion, in the page and in the export's conventions
    for ceiling in re.findall(r"pass `--T ([0-9.]+)`", text) + re.findall(r"`T` <= ([0-9.]+)",
                                                                           presets.comfyui([1.0, 0.5]).conventions):
        assert float(ceiling) <= units.ddpm_range("scaled_linear")[1]
        r = run("grid", "line2", "--steps", 4, "--T", ceiling, "--for", "diffusers-euler", "--beta-schedule",
                "scaled_linear")
        assert r.exit_code == 0, r.output
    # the float32 limits of the VE consumers
    delta_min = re.search(r"`--delta` below ([0-9.e-]+)", text).group(1)
    t_max = re.search(r"`--T` above ([0-9.]+)", text).group(1)
    r = run("grid", "line2", "--steps", 4, "--kind", "logsnr", "--delta", delta_min, "--T", t_max, "--for",
            "k-diffusion")
    assert r.exit_code == 0, r.output


# ----------------------------------------------------------------------------- 4. text the consumer parses


def test_comfyui_text_is_plain_decimals_that_its_parser_reads_back():
    r = run("grid", "ring8", "--steps", 8, "--T", 2.68, "--delta", "1e-9", "--kind", "balanced", "--for", "comfyui",
            "--format", "txt")
    assert r.exit_code == 0, r.output
    assert "e" not in r.stdout.lower()
    assert "0.000044721359572356476" in r.stdout
    got = comfyui_manual_sigmas(r.stdout)
    ex = presets.comfyui(json.loads(run("grid", "ring8", "--steps", 8, "--T", 2.68, "--delta", "1e-9",
                                        "--format", "json").stdout)["t"])
    assert got.numel() == 10 and got[-1] == 0
    np.testing.assert_array_equal(got.numpy().astype(float), ex.schedule)
    # the oracle: the float64 repr this used to print is read as two numbers, one too many
    assert comfyui_manual_sigmas("4.4721359572356476e-05, 0.0").tolist() == [pytest.approx(4.472136), -5.0, 0.0]


@settings(max_examples=100, deadline=None)
@given(x=st.floats(min_value=1e-38, max_value=1.8e19))
def test_plain_decimals_round_trip_through_comfyuis_parser(x):
    text = presets.plain_decimal(x)
    assert re.fullmatch(r"\d+\.\d+", text)
    assert re.findall(r"[-+]?(?:\d*\.*\d+)", text) == [text] and float(text) == x


def test_k_diffusion_underflow_is_refused_and_would_give_nan():
    r = run("grid", "ring8", "--steps", 8, "--delta", "1e-100", "--for", "k-diffusion")
    one_line_error(r, "underflows float32")
    # the oracle: in float32 the list ends 0.0, 0.0 and an Euler loop divides by sigma = 0
    sig = torch.tensor(units.sigma_from_t(grids.logsnr(8, 1e-100, 5.0)).tolist() + [0.0], dtype=torch.float32)
    assert sig[-2:].tolist() == [0.0, 0.0]
    assert torch.isnan(K_SAMPLERS["sample_euler"](gaussian_denoiser, torch.ones(2) * sig[0], sig)).any()


# ----------------------------------------------------------------------------- 5. the scheduler the user has


def write(tmp_path, cfg, name="scheduler_config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return path


def test_readme_route_with_an_sd15_config_fails_without_and_runs_with_scheduler_config(tmp_path):
    # the oracle: the default export (linear, T = 5) in an SD 1.5 Euler scheduler clamps the first sigmas to
    # timestep 999 and the loop dies
    ex = presets.export("diffusers-euler", grids.logsnr(8, 1e-3, 5.0))
    s = EulerDiscreteScheduler.from_config(SD15)
    s.set_timesteps(sigmas=ex.values.tolist())
    above = int(np.sum(ex.values > units.sigma_from_t(units.ddpm_range("scaled_linear")[1])))
    assert above >= 2 and np.all(s.timesteps.numpy()[:above] == 999) and s.timesteps[above] < 999
    with pytest.raises(IndexError):
        run_loop(s, "diffusers-euler")
    cfg = write(tmp_path, SD15)
    r = run("grid", "ring8", "--steps", 8, "--for", "diffusers-euler", "--scheduler-config", cfg)
    one_line_error(r, "scaled_linear DDPM schedule's range")
    lo, hi = printed_range(r.stderr)
    out = tmp_path / "sigmas.json"
    r = run("grid", "ring8", "--steps", 8, "--T", hi, "--for", "diffusers-euler", "--scheduler-config", cfg,
            "-o", out)
    assert r.exit_code == 0, r.output
    g = json.loads(out.read_text())
    s = EulerDiscreteScheduler.from_config({**SD15, **g["scheduler_config"]})
    s.set_timesteps(sigmas=g["sigmas"])
    np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(g["schedule"]))
    assert run_loop(s, "diffusers-euler") == 8
    # init_noise_sigma is the VE-scale spread of x_T ~ N(0, I): sqrt(1 + sigma_0^2)
    assert float(s.init_noise_sigma) == pytest.approx(math.sqrt(1 + g["schedule"][0] ** 2), rel=1e-6)


def test_a_merged_export_pins_zero_terminal_snr_off():
    # the oracle: an export whose config does not pin rescale_betas_zero_snr, merged into a zero-terminal-SNR
    # pipeline config, starts at sigma 2254 instead of 14.53
    t = grids.logsnr(8, 5e-3, 2.68)
    ex = presets.diffusers_timesteps(t, "scaled_linear")
    unpinned = {k: v for k, v in ex.config.items() if k != "rescale_betas_zero_snr"}
    s = DPMSolverMultistepScheduler.from_config({**ZERO_SNR, **unpinned})
    s.set_timesteps(timesteps=ex.values.tolist())
    assert float(s.sigmas[0]) == pytest.approx(2254.19, rel=1e-4)
    s = build(ex, merge=ZERO_SNR)
    assert float(s.sigmas[0]) == pytest.approx(14.53, rel=1e-3)
    np.testing.assert_allclose(s.sigmas.numpy(), ex.schedule, rtol=2e-5)


HOSTILE = {  # every schedule-changing key a pipeline config may carry, set away from the export's assumptions
    "rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "steps_offset": 1, "use_karras_sigmas": True,
    "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False, "use_flow_sigmas": False,
    "final_sigmas_type": "sigma_min", "interpolation_type": "log_linear", "beta_schedule": "squaredcos_cap_v2",
    "num_train_timesteps": 1000, "shift": 7.0, "use_dynamic_shifting": True, "shift_terminal": 0.3,
    "invert_sigmas": True, "stochastic_sampling": True, "sigma_schedule": "exponential", "rho": 3.0,
}


@pytest.mark.parametrize("preset", DIFFUSERS_PRESETS)
def test_merging_into_a_hostile_pipeline_config_changes_nothing(preset):
    t = grids.logsnr(6, 2e-3, 2.5)
    ex = presets.export(preset, t)
    alone = build(ex)
    merged = build(ex, merge=HOSTILE)
    np.testing.assert_array_equal(merged.sigmas.numpy(), alone.sigmas.numpy())
    np.testing.assert_array_equal(merged.timesteps.numpy(), alone.timesteps.numpy())
    assert float(getattr(merged, "init_noise_sigma", 1.0)) == float(getattr(alone, "init_noise_sigma", 1.0))
    assert run_loop(merged, preset) == run_loop(alone, preset)


@pytest.mark.parametrize("preset", ["diffusers-euler", "diffusers-timesteps"])
def test_zero_terminal_snr_scheduler_config_widens_the_range_and_runs(tmp_path, preset):
    t_max = 0.5 * 24 * math.log(2)  # alphabar = 2^-24 at the last step
    cfg = write(tmp_path, ZERO_SNR)
    r = run("grid", "ring8", "--steps", 6, "--T", 9, "--for", preset, "--scheduler-config", cfg)
    one_line_error(r, "zero terminal SNR")
    lo, hi = printed_range(r.stderr)
    assert float(hi) == pytest.approx(t_max, rel=1e-5) and float(hi) <= t_max
    r = run("grid", "ring8", "--steps", 6, "--T", hi, "--kind", "logsnr", "--for", preset, "--scheduler-config", cfg,
            "--format", "json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    assert g["scheduler_config"]["rescale_betas_zero_snr"] is True
    assert g["scheduler_config"]["prediction_type"] == "v_prediction"
    cls = EulerDiscreteScheduler if preset == "diffusers-euler" else DPMSolverMultistepScheduler
    s = cls.from_config({**ZERO_SNR, **g["scheduler_config"]})
    s.set_timesteps(**{g["argument"]: g[g["argument"]]})
    np.testing.assert_allclose(s.sigmas.numpy(), g["schedule"], rtol=2e-5)
    assert float(s.sigmas[0]) > 1000  # the scheduler's own near-terminal noise levels
    assert run_loop(s, preset) == (6 if preset == "diffusers-euler" else 7)


def test_flux_like_config_pre_inverts_the_pipeline_mu_for_its_unmodified_scheduler(tmp_path):
    # the export targets the pipeline's own scheduler (dynamic shifting on): mu from --resolution, pre-inverted, and
    # carried in the export; merging the export's scheduler_config changes nothing (it is the pipeline's own)
    cfg = write(tmp_path, FLUX)
    one_line_error(run("grid", "ring8", "--steps", 8, "--for", "diffusers-flowmatch", "--scheduler-config", cfg),
                   "expected --resolution H,W (or --mu)")
    r = run("grid", "ring8", "--steps", 8, "--for", "diffusers-flowmatch", "--scheduler-config", cfg,
            "--resolution", "1024,1024", "--kind", "logsnr", "--format", "json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    assert g["scheduler_config"]["use_dynamic_shifting"] is True and g["mu"] == pytest.approx(1.15, abs=1e-12)
    for config in (FLUX, {**FLUX, **g["scheduler_config"]}):
        s = FlowMatchEulerDiscreteScheduler.from_config(config)
        s.set_timesteps(sigmas=g["sigmas"], mu=g["mu"])  # what a Flux pipeline passes at 1024^2
        np.testing.assert_array_equal(s.sigmas.numpy(), np.float32(g["schedule"]))
        np.testing.assert_allclose(s.sigmas.numpy()[:-1], units.rf_from_t(g["t"]), rtol=2.4e-7)
    one_line_error(run("grid", "ring8", "--for", "diffusers-flowmatch", "--scheduler-config", cfg, "--shift", 2),
                   "its static shift is not used")
    sd3 = write(tmp_path, {**FLUX, "use_dynamic_shifting": False}, "sd3.json")
    one_line_error(run("grid", "ring8", "--for", "diffusers-flowmatch", "--scheduler-config", sd3, "--shift", 2),
                   "disagrees with the scheduler config's shift")


def test_edm_config_ramp_is_built_for_its_own_sigma_range(tmp_path):
    cfg = write(tmp_path, EDM_CFG)
    r = run("grid", "ring8", "--steps", 8, "--for", "diffusers-edm", "--scheduler-config", cfg)
    one_line_error(r, "outside the EDM scheduler's")
    lo, hi = printed_range(r.stderr)
    r = run("grid", "ring8", "--steps", 8, "--T", hi, "--for", "diffusers-edm", "--scheduler-config", cfg,
            "--format", "json")
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    assert g["scheduler_config"]["sigma_min"] == 0.002 and g["scheduler_config"]["sigma_max"] == 80.0
    s = EDMEulerScheduler.from_config({**EDM_CFG, **g["scheduler_config"]})
    s.set_timesteps(sigmas=torch.tensor(g["sigmas"], dtype=torch.float64))
    np.testing.assert_allclose(s.sigmas.numpy(), g["schedule"], rtol=2.5e-7)
    np.testing.assert_allclose(s.sigmas.numpy()[:-1], units.sigma_from_t(g["t"]), rtol=3e-7)


@pytest.mark.parametrize("cfg, preset, needle", [
    (FLUX, "diffusers-euler", "flow-matching"),
    (SD15, "diffusers-flowmatch", "DDPM-type"),
    (EDM_CFG, "diffusers-timesteps", "EDM"),
    (SD15, "k-diffusion", "applies to diffusers"),
])
def test_scheduler_config_of_another_family_is_refused(tmp_path, cfg, preset, needle):
    one_line_error(run("grid", "ring8", "--T", 2, "--for", preset, "--scheduler-config", write(tmp_path, cfg)),
                   needle)


def test_beta_schedule_that_disagrees_with_the_config_is_refused(tmp_path):
    cfg = write(tmp_path, SD15)
    one_line_error(run("grid", "ring8", "--T", 2, "--for", "diffusers-euler", "--scheduler-config", cfg,
                       "--beta-schedule", "linear"), "disagrees with the scheduler config's")
    r = run("grid", "ring8", "--T", 2, "--for", "diffusers-euler", "--scheduler-config", cfg,
            "--beta-schedule", "scaled_linear")
    assert r.exit_code == 0, r.output


def test_continuous_v_prediction_euler_config_checks_its_own_timesteps():
    cfg = {**SD15, "_class_name": "EulerDiscreteScheduler", "prediction_type": "v_prediction",
           "timestep_type": "continuous"}
    ex = presets.export("diffusers-euler", grids.logsnr(8, 1e-2, 2.5), scheduler_config=cfg)
    assert ex.config["timestep_type"] == "continuous" and ex.config["prediction_type"] == "v_prediction"
    s = build(ex, merge=cfg)
    np.testing.assert_allclose(s.timesteps.numpy(), 0.25 * np.log(np.float32(ex.schedule[:-1])), rtol=1e-6)
    assert run_loop(s, "diffusers-euler") == 8


# ----------------------------------------------------------------------------- model evaluations per scheduler


@pytest.mark.parametrize("cls, preset, evaluations, trailing_zero", [
    (EulerDiscreteScheduler, "diffusers-euler", lambda n: n, False),
    (EDMEulerScheduler, "diffusers-edm", lambda n: n + 1, True),
    (FlowMatchEulerDiscreteScheduler, "diffusers-flowmatch", lambda n: n + 1, True),
    (UniPCMultistepScheduler, "diffusers-unipc", lambda n: n, True),
    (DPMSolverMultistepScheduler, "diffusers-timesteps", lambda n: n + 1, True),
    (DPMSolverMultistepScheduler, "diffusers-dpmsolver-3m", lambda n: n + 1, True),
    (HeunDiscreteScheduler, "diffusers-timesteps", lambda n: 2 * n + 1, True),
])
@pytest.mark.parametrize("n", [1, 4, 9])
def test_model_evaluations_and_trailing_zero_per_named_scheduler(cls, preset, evaluations, trailing_zero, n):
    ex = presets.export(preset, grids.logsnr(n, 2e-3, 2.5))
    s = build(ex, cls=cls, merge={} if cls is HeunDiscreteScheduler else None)
    assert (float(s.sigmas[-1]) == 0.0) == trailing_zero
    # the last grid node is included: sigma(delta) (rf(delta) for flow matching; the rounded node for timesteps;
    # UniPC ends its N evaluations at t_{N-1} and steps from there to r = 0)
    last = float(s.sigmas[-2] if trailing_zero else s.sigmas[-1])
    want = {"diffusers-flowmatch": units.rf_from_t(2e-3), "diffusers-unipc": units.rf_from_t(ex.t[-2]),
            "diffusers-timesteps": units.sigma_from_t(ex.t[-1]),
            "diffusers-dpmsolver-3m": units.sigma_from_t(ex.t[-1])}.get(preset, units.sigma_from_t(2e-3))
    assert last == pytest.approx(want, rel=2e-5)
    assert np.all(np.diff(s.sigmas.numpy()) <= 0)  # descending, as documented (Heun repeats interior nodes)
    assert run_loop(s, preset) == evaluations(n)


# ----------------------------------------------------------------------------- the documented snippets

ROOT = Path(__file__).resolve().parents[1]


def doc_blocks(page):
    """(language, code) of each fenced block of a docs page, in order."""
    return re.findall(r"```(bash|python)\n(.*?)```", (ROOT / page).read_text(), re.S)


def fake_k_diffusion():
    """A `k_diffusion` module whose `sampling` holds the emulated samplers (tests/consumers.py)."""
    import types

    mod, sampling = types.ModuleType("k_diffusion"), types.ModuleType("k_diffusion.sampling")
    for name, fn in K_SAMPLERS.items():
        setattr(sampling, name, fn)
    mod.sampling = sampling
    return mod


def run_bash_line(line, tmp_path):
    args = line.split("#")[0].split()
    assert args[:2] == ["flowcert", "grid"], line
    args = ["ring8" if a == "my.yaml" else a for a in args[2:]]
    r = CliRunner().invoke(main, ["grid", *args])
    assert r.exit_code == 0, (line, r.output)
    if "-o" not in args:
        return r.stdout
    return None


@pytest.mark.slow
def test_every_snippet_of_the_sampler_recipes_runs(tmp_path, monkeypatch):
    import sys

    monkeypatch.chdir(tmp_path)
    (tmp_path / "scheduler_config.json").write_text(json.dumps(SD15))
    (tmp_path / "flux_scheduler_config.json").write_text(json.dumps(FLUX))  # the flow recipes' pipeline configs
    (tmp_path / "sd3_scheduler_config.json").write_text(json.dumps({**FLUX, "use_dynamic_shifting": False}))
    monkeypatch.setitem(sys.modules, "k_diffusion", fake_k_diffusion())
    blocks = doc_blocks("docs/samplers.md")
    ran = {"bash": 0, "python": 0}
    for lang, code in blocks:
        if lang == "bash":
            for line in code.strip().splitlines():
                if line.startswith("flowcert grid"):
                    out = run_bash_line(line, tmp_path)
                    if out is not None and "comfyui" in line:
                        assert comfyui_manual_sigmas(out).numel() == 10
            ran["bash"] += 1
            continue
        if "import flowcert" in code:
            ns = {}
        elif "class FlowcertSigmas" in code:  # the ComfyUI node: load the SIGMAS and run them in a sampler
            ns = {}
            exec(code, ns)
            sig = ns["FlowcertSigmas"]().load("sigmas.json")[0]
            assert sig.dtype == torch.float32 and sig[-1] == 0 and torch.all(sig[:-1] > sig[1:])
            text = (tmp_path / "sigmas.txt").read_text()
            np.testing.assert_array_equal(comfyui_manual_sigmas(text).numpy(), sig.numpy())
            model = Counted(gaussian_denoiser)
            assert torch.isfinite(K_SAMPLERS["sample_euler"](model, torch.ones(2) * sig[0], sig)).all()
            assert model.calls == 9
            ran["python"] += 1
            continue
        else:  # k-diffusion needs model, shape and device
            ns = {"model": Counted(gaussian_denoiser), "shape": (3,), "device": "cpu"}
        exec(code, ns)
        ran["python"] += 1
        if "samples" in ns:
            assert torch.isfinite(ns["samples"]).all() and ns["model"].calls == 9
        if "scheduler" in ns:
            s = ns["scheduler"]
            g = ns["g"]
            np.testing.assert_allclose(s.sigmas.numpy(), g["schedule"], rtol=2e-5)
            preset = g["for"]
            assert run_loop(s, preset) == (8 if preset in ("diffusers-euler", "diffusers-unipc") else 9)
        if "ex" in ns:
            ex = ns["ex"]
            s = build(ex)
            np.testing.assert_array_equal(s.sigmas.numpy(), ex.schedule)
    assert ran["python"] == sum(1 for lang, _ in blocks if lang == "python") >= 7


def test_readme_export_line_runs_in_diffusers():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    lines = [ln for ln in code.splitlines() if re.match(r"(import flowcert|mix =|g =|ex =)", ln)]
    assert len(lines) == 4
    ns = {}
    exec("\n".join(lines), ns)
    s = build(ns["ex"])
    np.testing.assert_array_equal(s.sigmas.numpy(), ns["ex"].schedule)
    assert run_loop(s, "diffusers-euler") == 8
    cmd = re.search(r"^flowcert grid my.yaml .*$", text, re.M).group(0)
    assert "--for diffusers-euler" in cmd


@pytest.mark.parametrize("content, needle", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"beta_schedule": "cosine"}', "scheduler_config.json': beta_schedule = 'cosine': expected one of"),
    ('{"beta_schedule": "linear", "beta_start": "abc"}', "scheduler_config.json': beta_start = 'abc'"),
    ('{"beta_schedule": "linear", "rescale_betas_zero_snr": "yes"}', "expected true or false"),
    ('{"num_train_timesteps": 1.5}', "scheduler_config.json': num_train_timesteps = 1.5"),
    ('{"beta_schedule": "linear", "beta_schedule": "scaled_linear"}', "'beta_schedule' twice"),
    ('{"beta_schedule": "linear", "beta_end": NaN}', "beta_end = nan"),
    ('{"trained_betas": [0.5, 1.5]}', "trained_betas"),
])
def test_bad_scheduler_config_is_one_line(tmp_path, content, needle):
    path = tmp_path / "scheduler_config.json"
    path.write_text(content)
    one_line_error(run("grid", "ring8", "--T", 2, "--for", "diffusers-euler", "--scheduler-config", path), needle)


def test_scheduler_config_without_for_and_missing_file_are_one_line(tmp_path):
    one_line_error(run("grid", "ring8", "--scheduler-config", tmp_path / "x.json"), "expected --for with it")
    one_line_error(run("grid", "ring8", "--for", "diffusers-euler", "--scheduler-config", tmp_path / "x.json"),
                   "cannot be read")
