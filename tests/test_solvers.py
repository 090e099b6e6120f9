"""Samplers against closed forms and orders of accuracy; error measures against brute force; the solvers command."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from flowcert.cli import main
from flowcert.distill.teacher import gaussian_flow
from flowcert.numcore import grids, marginal, samplers
from flowcert.numcore.distances import directions, relative_mse, sliced_wasserstein
from flowcert.numcore.mixture import builtin, from_spec

DELTA, T = 1e-2, 3.0


@pytest.fixture(scope="module")
def gauss():
    return from_spec({"means": [[0.7, -0.3]], "cov": [[0.5, 0.2], [0.2, 0.3]]}, name="gauss")


def test_denoiser_is_the_posterior_mean_for_one_gaussian(gauss):
    # x_t = alpha x0 + sigma_vp z: E[x0 | x_t] = mu + alpha C (alpha^2 C + sigma_vp^2 I)^{-1} (x_t - alpha mu)
    t, sigma = 0.4, np.sqrt(np.expm1(0.8))
    y = np.random.default_rng(0).standard_normal((5, 2)) * 2
    a, C, mu = np.exp(-t), np.array([[0.5, 0.2], [0.2, 0.3]]), np.array([0.7, -0.3])
    x = y * a
    want = mu + (x - a * mu) @ np.linalg.solve(a * a * C + (1 - a * a) * np.eye(2), a * C).T
    np.testing.assert_allclose(samplers.mixture_denoiser(gauss)(y, sigma), want, rtol=1e-10)


@pytest.mark.parametrize("solver, order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_order_of_accuracy_on_the_closed_form_gaussian_flow(gauss, solver, order):
    x = marginal.sample(gauss, T, 200, np.random.default_rng(1))
    exact = gaussian_flow(gauss.means[0], gauss.covs[0], x, T, DELTA)
    err = [np.sqrt(relative_mse(samplers.sample_grid(gauss, x, grids.logsnr(N, DELTA, T), solver), exact).value)
           for N in (16, 32, 64)]
    rates = np.log2(np.array(err[:-1]) / np.array(err[1:]))
    assert np.all(rates > order - 0.3), rates


def test_sampler_steps_read_like_the_equations():
    # one Euler step on D = 0 scales y by sigma_1/sigma_0; one DPM++ step is exact for constant D
    y = np.ones((1, 2))
    np.testing.assert_allclose(samplers.sample_euler(lambda y, s: 0 * y, y, [2.0, 0.5]), 0.25 * y)
    D = np.array([[0.3, -1.0]])
    got = samplers.sample_dpmpp_2m(lambda y, s: D + 0 * y, y, [2.0, 0.5, 0.1])
    np.testing.assert_allclose(got, D + (y - D) * 0.1 / 2.0, rtol=1e-12)
    assert np.all(samplers.sample_heun(lambda y, s: D + 0 * y, y, [2.0, 1.0, 0.0]) == D)


def test_relative_mse_and_its_interval():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((4000, 3)) + 2
    x = ref + 0.1 * rng.standard_normal(ref.shape)
    e = relative_mse(x, ref)
    brute = sum(np.dot(a - b, a - b) for a, b in zip(x, ref)) / sum(np.dot(b, b) for b in ref)
    assert e.value == pytest.approx(brute, rel=1e-12)
    # coverage of the 95% interval for the true ratio E|noise|^2 / E|ref|^2 = 0.03 / (3 + 12)
    hits = 0
    for _ in range(300):
        ref = rng.standard_normal((400, 3)) + 2
        e = relative_mse(ref + 0.1 * rng.standard_normal(ref.shape), ref)
        hits += e.ci_low < 0.002 < e.ci_high
    assert 0.90 < hits / 300 < 0.99


def test_sliced_wasserstein_brute_force_and_gaussian_shift():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((300, 2)), rng.standard_normal((300, 2))
    th = directions(2, 5, rng)
    brute = np.sqrt(np.mean([np.mean((np.sort(x @ u) - np.sort(y @ u)) ** 2) for u in th]))
    assert sliced_wasserstein(x, y, th) == pytest.approx(brute, rel=1e-12)
    # a shift by m: SW2^2 -> E_theta (theta.m)^2 = |m|^2 / d for exact distributions
    z = rng.standard_normal((2000, 2))
    th = directions(2, 1000, rng)
    assert sliced_wasserstein(z, z + np.array([1.0, 0.0]), th) == pytest.approx(np.sqrt(0.5), rel=0.05)


def test_solvers_command_json_and_plot(tmp_path):
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    r = CliRunner().invoke(main, ["solvers", "line2", "--steps", "2,4", "--samples", "200", "--T", "3",
                                  "--delta", "0.01", "--train-samples", "128", "--format", "json", "-o", str(out),
                                  "--plot", str(png)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert png.stat().st_size > 10000
    assert len(res["rows"]) == 8 * 2 * 3
    assert {row["grid"] for row in res["rows"]} == {"balanced-tri", "balanced-sharp", "balanced-empirical",
                                                    "uniform", "edm", "logsnr", "kl-optimal", "optimal"}
    assert res["teacher"]["relative_rms_error"] < 1e-5 and res["optimal"]["train_samples"] == 128
    for solver in ("euler", "heun", "dpmpp_2m"):
        for N in ("2", "4"):
            opt = res["optimal"]["grids"][solver][N]
            assert len(opt["t"]) == int(N) + 1 and opt["stop"]
            # the league of one mixture: every grid over the optimal one on the same batch
            cell = res["league"]["table"][solver][N]["grids"]
            err = {row["grid"]: row["rel_mse"] for row in res["rows"] if row["solver"] == solver
                   and row["steps"] == int(N)}
            assert cell["logsnr"]["geo_mean"] == pytest.approx(err["logsnr"] / err["optimal"], rel=1e-12)
            assert cell["optimal"]["geo_mean"] == 1.0
    for row in res["rows"]:
        assert row["rel_mse_ci"][0] <= row["rel_mse"] <= row["rel_mse_ci"][1]
        assert row["nfe"] == row["steps"] * (2 if row["solver"] == "heun" else 1)
    for solver, s in res["summary"].items():
        best = min(s["geo_mean_rel_mse"].values())
        assert s["geo_mean_rel_mse"][s["overall_winner"]] == best
    assert res["sw_floor"]["mean"] > 0


def test_league_over_random_mixtures():
    from flowcert import solvers
    from flowcert.numcore.mixture import RANDOM_FAMILIES, random_mixtures

    mixes = random_mixtures(3, seed=4)
    assert [m.structure for m in mixes] == ["isotropic", "shared", "component"] and len(RANDOM_FAMILIES) == 3
    assert all(1 <= m.d <= 8 and 2 <= m.K <= 8 for m in mixes)
    again = random_mixtures(3, seed=4)
    assert all(np.array_equal(a.means, b.means) for a, b in zip(mixes, again))
    res = solvers(None, [2], random=2, seed=4, samples=128, train_samples=64, T=3.0, delta=0.01)
    assert [s["mixture"] for s in res["studies"]] == [m.name for m in mixes[:2]]
    cell = res["league"]["table"]["euler"][2]
    logs = [np.log({r["grid"]: r["rel_mse"] for r in s["rows"] if r["solver"] == "euler"}["kl-optimal"]
                   / {r["grid"]: r["rel_mse"] for r in s["rows"] if r["solver"] == "euler"}["optimal"])
            for s in res["studies"]]
    assert cell["grids"]["kl-optimal"]["geo_mean"] == pytest.approx(np.exp(np.mean(logs)), rel=1e-12)
    lo, hi = cell["grids"]["kl-optimal"]["ci"]
    assert lo <= cell["grids"]["kl-optimal"]["geo_mean"] <= hi
    assert cell["grids"]["kl-optimal"]["within"] == np.mean(np.exp(logs) <= 1.1)


@pytest.mark.parametrize("args, needle", [
    (("--steps", "4,0"), "--steps = 0: expected an integer >= 1"),
    (("--steps", "four"), "--steps = 'four': expected an integer"),
    (("--samples", "3"), "--samples = 3: expected an integer >= 16"),
    (("--delta", "6"), "--delta = 6: expected a value below --T = 5"),
    (("--steps", "65"), "--steps = 65: expected an integer <= 64"),
    (("--random", "-1"), "--random = -1: expected an integer >= 0"),
])
def test_solvers_bad_input(args, needle):
    r = CliRunner().invoke(main, ["solvers", "ring8", *args])
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.output
