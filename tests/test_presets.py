"""Presets: pure conversions checked against the unit formulas, and the CLI's bad-input paths."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from flowcert.cli import main
from flowcert.exports import presets
from flowcert.numcore import grids, units
from flowcert.numcore.checks import InputError

T_GRID = grids.logsnr(6, 1e-3, 5.0)


def test_every_preset_is_descending_and_starts_at_T():
    for name in presets.PRESETS:
        ex = presets.export(name, T_GRID)
        n = ex.values.size
        assert np.all(np.diff(ex.schedule) < 0), name
        assert ex.t.size == T_GRID.size
        if name.startswith(("k-diffusion", "comfyui")):
            assert n == T_GRID.size + 1 and ex.values[-1] == 0.0
        elif name == "diffusers-unipc":  # the first N nodes; the scheduler appends r = 0 for the last
            assert n == T_GRID.size - 1 and ex.schedule.size == T_GRID.size
        else:
            assert n == T_GRID.size
        assert ex.schedule[-1] == 0.0 or name == "diffusers-euler"


def test_each_preset_runs_the_registrys_solver():
    from flowcert.numcore import solvers

    assert presets.PRESET_SOLVER["diffusers-unipc"] == "unipc"
    assert presets.PRESET_SOLVER["diffusers-timesteps"] == "dpmpp_2m"
    assert presets.PRESET_SOLVER["diffusers-dpmsolver-3m"] == "dpmpp_3m"
    assert presets.PRESET_SOLVER["k-diffusion"] == presets.PRESET_SOLVER["comfyui"] == "euler"
    # one k-diffusion and one ComfyUI preset per solver those tools run, named after their sampler
    for s in solvers.SOLVERS.values():
        if s.k_diffusion:
            assert presets.PRESET_SOLVER["k-diffusion-" + s.k_diffusion.removeprefix("sample_")] == s.name
        if s.comfyui:
            assert presets.PRESET_SOLVER["comfyui-" + s.comfyui] == s.name
    assert {"comfyui-deis", "comfyui-ipndm", "comfyui-ipndm_v", "comfyui-dpmpp_3m_sde",
            "k-diffusion-dpmpp_3m_sde"} <= set(presets.PRESETS)
    assert set(presets.PRESET_SOLVER.values()) == set(solvers.NAMES)  # every solver has a consumer preset
    # sampler presets write what their tool's plain preset writes
    for name in presets.PRESETS:
        base = "comfyui" if name.startswith("comfyui") else "k-diffusion" if name.startswith("k-diffusion") else None
        if base:
            np.testing.assert_array_equal(presets.export(name, T_GRID).values, presets.export(base, T_GRID).values)
    text = presets.export("comfyui-ipndm", T_GRID).text()
    assert ", " in text and "e" not in text.lower()


def test_unipc_values_are_the_first_n_rf_times_with_the_shift_compensated():
    for shift in (1.0, 3.0):
        ex = presets.diffusers_unipc(T_GRID, shift)
        back = shift * ex.values / (1 + (shift - 1) * ex.values)
        np.testing.assert_allclose(back, units.rf_from_t(T_GRID[:-1]), rtol=1e-13)
        assert ex.config["use_flow_sigmas"] and ex.config["flow_shift"] == shift
        assert ex.schedule[-1] == 0 and ex.t.size == T_GRID.size
    # nodes whose integer timesteps int(1000 r) repeat (a repeated first one makes the scheduler start at node 1)
    with pytest.raises(InputError, match=r"grid nodes 0 and 1 .* collapse in UniPCMultistepScheduler .*integer"):
        presets.diffusers_unipc(np.array([5.0, 4.99, 1.0, 0.01]))


def test_sigmas_are_ve_sigmas_of_the_grid():
    sig = np.sqrt(np.exp(2 * T_GRID) - 1)
    np.testing.assert_allclose(presets.diffusers_euler(T_GRID).values, sig, rtol=1e-14)
    np.testing.assert_allclose(presets.k_diffusion(T_GRID).values[:-1], sig, rtol=1e-14)


def test_edm_ramp_inverts_karras():
    ex = presets.diffusers_edm(T_GRID)
    c = ex.config
    a, b = c["sigma_max"] ** (1 / 7), c["sigma_min"] ** (1 / 7)
    np.testing.assert_allclose((a + ex.values * (b - a)) ** 7, units.sigma_from_t(T_GRID), rtol=1e-12)
    # the schedule is what the scheduler stores: the float32 rounding of those sigmas
    np.testing.assert_array_equal(ex.schedule[:-1], np.float32((a + ex.values * (b - a)) ** 7))
    assert ex.values[0] == 0 and ex.values[-1] == 1


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.4])
def test_flowmatch_values_map_back_under_the_shift(shift):
    ex = presets.diffusers_flowmatch(T_GRID, shift)
    back = shift * ex.values / (1 + (shift - 1) * ex.values)
    r = units.rf_from_t(T_GRID)
    np.testing.assert_allclose(back, r, rtol=1e-13)
    # rectified-flow time: x_r = (1 - r) x0 + r eps  <=>  r / (1 - r) = VE sigma
    np.testing.assert_allclose(r / (1 - r), np.sqrt(np.expm1(2 * T_GRID)), rtol=1e-12)


def test_timesteps_are_the_nearest_integer_steps():
    ex = presets.diffusers_timesteps(T_GRID)
    assert ex.values.dtype.kind == "i" and np.all(np.diff(ex.values) < 0)
    tn = units.ddpm_times("linear")
    # brute force: nearest integer by the fractional step
    frac = np.interp(T_GRID, tn, np.arange(1000))
    np.testing.assert_array_equal(ex.values, np.rint(frac).astype(int))
    np.testing.assert_allclose(ex.t, tn[ex.values])


def test_timesteps_out_of_range_fails_or_clips_with_warning():
    with pytest.raises(InputError, match=r"scaled_linear DDPM schedule's range \[0.000425"):
        presets.diffusers_timesteps(T_GRID, "scaled_linear")
    ex = presets.diffusers_timesteps(T_GRID, "scaled_linear", clip=True)
    assert ex.values[0] == 999 and any("clipped" in w for w in ex.warnings)
    lo, hi = units.ddpm_range("scaled_linear")
    inside = T_GRID[T_GRID < hi]
    # the nodes above the range merge into one node at timestep 999, with a warning saying so
    assert ex.values.size == inside.size + 1 and any("merged" in w for w in ex.warnings)
    with pytest.raises(InputError, match="every grid node lies outside"):
        presets.diffusers_euler(grids.uniform(3, 3.0, 5.0), "scaled_linear", clip=True)


def test_rounding_collisions_are_reported():
    t = grids.uniform(400, 1e-3, 0.05)
    with pytest.raises(InputError, match="round to the same linear timestep"):
        presets.diffusers_timesteps(t)


def test_comfyui_text_is_comma_separated_and_round_trips():
    ex = presets.comfyui(T_GRID)
    vals = [float(s) for s in ex.text().split(",")]
    np.testing.assert_array_equal(vals, ex.values)
    assert vals[-1] == 0.0


# ----------------------------------------------------------------------------- CLI


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_cli_grid_for_json_and_txt(tmp_path):
    out = tmp_path / "sigmas.json"
    r = run("grid", "ring8", "--steps", "5", "--kind", "edm", "--for", "diffusers-euler", "-o", str(out))
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["for"] == "diffusers-euler" and len(data["sigmas"]) == 6
    np.testing.assert_allclose(data["sigmas"], units.sigma_from_t(grids.edm(5, 1e-3, 5.0)), rtol=1e-14)
    r = run("grid", "ring8", "--steps", "5", "--kind", "edm", "--for", "k-diffusion", "--format", "txt")
    assert r.exit_code == 0
    vals = [float(v) for v in r.output.split()]
    assert len(vals) == 7 and vals[-1] == 0.0 and vals == sorted(vals, reverse=True)


@pytest.mark.parametrize("args, needle", [
    (("--for", "diffusers-dpm"), "--for = 'diffusers-dpm': expected one of diffusers-euler"),
    (("--for", "diffusers-timesteps", "--beta-schedule", "scaled_linear"), "outside the scaled_linear DDPM"),
    (("--for", "diffusers-euler", "--beta-schedule", "scaled_linear"), "outside the scaled_linear DDPM"),
    (("--for", "k-diffusion", "--steps", "0"), "--steps = 0: expected an integer >= 1"),
    (("--for", "diffusers-flowmatch", "--shift", "0"), "--shift = 0: expected a number > 0"),
])
def test_cli_bad_input_is_one_line_exit_2(args, needle):
    r = run("grid", "ring8", "--kind", "uniform", *args)
    assert r.exit_code == 2, r.output
    err = r.stderr if hasattr(r, "stderr") else r.output
    assert needle in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_cli_clip_warns_and_exports():
    r = run("grid", "ring8", "--kind", "edm", "--steps", "4", "--for", "diffusers-timesteps",
            "--beta-schedule", "scaled_linear", "--clip", "--format", "txt")
    assert r.exit_code == 0
    assert "warning:" in r.stderr and "clipped" in r.stderr
    assert [int(v) for v in r.stdout.split()][0] == 999


# ----------------------------------------------------------------------------- limits and tables


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from flowcert.numcore.checks import limit_text  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(x=st.floats(min_value=1e-300, max_value=1e300), digits=st.integers(1, 17))
def test_printed_limits_round_inward(x, digits):
    lo, hi = limit_text(x, True, digits), limit_text(x, False, digits)
    assert float(lo) >= x >= float(hi)
    assert len(lo.split("e")[0].replace(".", "").lstrip("0")) <= digits + 1


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_named_tables_are_numcore_units_tables(schedule):
    np.testing.assert_array_equal(presets.ddpm_table(schedule).t, units.ddpm_times(schedule))


@pytest.mark.parametrize("cfg", [
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True},
    {"beta_schedule": "squaredcos_cap_v2"},
    {"beta_schedule": "linear", "num_train_timesteps": 500, "beta_start": 2e-4, "beta_end": 0.03},
    {"trained_betas": np.linspace(1e-4, 0.02, 300).tolist()},
])
def test_config_tables_are_diffusers_tables(cfg):
    # the oracle: diffusers' own (float32) alphas_cumprod; flowcert's float64 table agrees to float32 accuracy
    from diffusers import EulerDiscreteScheduler

    want = EulerDiscreteScheduler(**cfg).alphas_cumprod.double().numpy()
    got = presets.ddpm_table(cfg=cfg).alphas_cumprod
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-9)
