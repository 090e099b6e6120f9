"""Samplers against closed forms and orders of accuracy; error measures against brute force; the solvers command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

import flowcert

from flowcert.cli import main
from flowcert.distill.teacher import gaussian_flow
from flowcert.numcore import flowmap, grids, marginal, samplers, solvers
from flowcert.numcore.checks import InputError
from flowcert.numcore.distances import directions, relative_mse, sliced_wasserstein
from flowcert.numcore.mixture import builtin, from_spec
from oracles import sample_dpmpp_2m, sample_euler, sample_heun

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


# A solver registered for these tests only: the explicit midpoint rule (RK2) in VE sigma, which evaluates the
# denoiser at a sigma that is no grid node.  It is what adding a solver takes: one entry and its scheme.
def midpoint(sig, ev, cx, cd):
    """k1 = (x - D(x, s_i)) / s_i, x_m = x + (s_m - s_i) k1 at s_m = (s_i + s_{i+1}) / 2, x <- x + (s_{i+1} - s_i)
    (x_m - D(x_m, s_m)) / s_m.  Rows X_0, M_0, X_1, ..., X_N."""
    for i in range(sig.shape[0] - 1):
        sm = 0.5 * (sig[i] + sig[i + 1])
        ev[2 * i], ev[2 * i + 1] = sig[i], sm  # D(X_i), D(M_i)
        cx[2 * i + 1, 0], cd[2 * i + 1, 0] = sm / sig[i], 1.0 - sm / sig[i]  # M_i = X_i + (s_m - s_i) k1
        dt = sig[i + 1] - sig[i]
        cx[2 * i + 2, 0], cd[2 * i + 2, 0], cx[2 * i + 2, 1] = dt / sm, -dt / sm, 1.0  # X_{i+1}


MIDPOINT = solvers.Solver("midpoint", "explicit midpoint", 2, 2, lambda N: 2 * N + 1, lambda N: 2 * N, midpoint,
                          "the explicit midpoint rule in VE sigma (a test solver)")
CASES = [*solvers.SOLVERS, MIDPOINT.name]


@pytest.fixture
def registry(monkeypatch):
    """The registry with the test solver in it (for this test only)."""
    monkeypatch.setitem(solvers.SOLVERS, MIDPOINT.name, MIDPOINT)
    return solvers.SOLVERS


@pytest.mark.parametrize("solver", CASES)
def test_order_of_accuracy_on_the_closed_form_gaussian_flow(gauss, registry, solver):
    x = marginal.sample(gauss, T, 200, np.random.default_rng(1))
    exact = gaussian_flow(gauss.means[0], gauss.covs[0], x, T, DELTA)
    err = [np.sqrt(relative_mse(samplers.sample_grid(gauss, x, grids.logsnr(N, DELTA, T), solver), exact).value)
           for N in (16, 32, 64)]
    rates = np.log2(np.array(err[:-1]) / np.array(err[1:]))
    assert np.all(rates > registry[solver].order - 0.3), rates


@pytest.mark.parametrize("solver", CASES)
def test_interpreter_equals_the_compiled_kernel_on_numpy_and_torch(registry, solver):
    torch = pytest.importorskip("torch")
    for name, N in (("ring8", 6), ("hetero3", 5), ("aniso3", 3)):
        mix = builtin(name)
        x = marginal.sample(mix, T, 64, np.random.default_rng(2))
        t = grids.kl_optimal(N, DELTA, T)
        got = samplers.sample_grid(mix, x, t, solver)
        want = samplers.sample_grid(mix, x, t, solver, compiled=False)  # samplers.run, numpy
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
        # the same interpreter on float64 tensors (the denoiser computed in numpy)
        D = samplers.mixture_denoiser(mix)
        sig = np.sqrt(np.expm1(2.0 * t))
        y = x * np.exp(t[0])
        on_torch = samplers.run(lambda v, s: torch.from_numpy(D(v.numpy(), s)), torch.from_numpy(y), sig, solver)
        assert on_torch.dtype == torch.float64
        np.testing.assert_allclose(on_torch.numpy(), samplers.run(D, y, sig, solver), rtol=1e-15, atol=0)


@pytest.mark.parametrize("solver", CASES)
def test_program_shape_and_evaluations(registry, solver):
    s = solvers.check(solver)
    for N in (1, 2, 7):
        sig = np.sqrt(np.expm1(2.0 * grids.edm(N, DELTA, T)))
        ev, cx, cd = s.program(sig)
        assert ev.shape == (s.rows(N),) and cx.shape == cd.shape == (s.rows(N), s.history)
        assert np.count_nonzero(ev > 0) == s.evaluations(N) and ev[-1] == 0
        calls = samplers.CountCalls(lambda y, sigma: 0.5 * y)
        samplers.run(calls, np.ones((3, 2)), sig, solver)
        assert calls.calls == s.evaluations(N)
        # row r reaches back at most W rows; every row's coefficients sum to 1 (affine: a constant is kept)
        assert np.all(cx[0] == 0) and np.all(cd[0] == 0)
        for r in range(1, s.rows(N)):
            assert not np.any(cx[r, r:]) and not np.any(cd[r, r:])
        np.testing.assert_allclose((cx + cd).sum(1)[1:], 1.0, rtol=1e-12)
        # the compiled scheme, on real and on complex grids, fills the same program
        for a, b in zip(s.program(sig, compiled=True), (ev, cx, cd)):
            np.testing.assert_allclose(a, b, rtol=1e-15, atol=0)
        for a, b in zip(s.program(sig + 0j, compiled=True), (ev, cx, cd)):
            np.testing.assert_allclose(a, b, rtol=1e-15, atol=0)


@pytest.mark.parametrize("solver", CASES)
def test_gradient_in_log_sigma_equals_central_differences(registry, solver):
    for name in ("ring8", "hetero3"):
        mix = builtin(name)
        x = marginal.sample(mix, T, 24, np.random.default_rng(4))
        target = flowmap.flow(mix, x, T, DELTA, step=0.05)
        t = grids.kl_optimal(5, DELTA, T)
        rho = flowmap.rho_from_t(t)

        def loss(r):
            return np.sum((samplers.sample_grid(mix, x, flowmap.t_from_rho(r), solver) - target) ** 2)

        value, grad = samplers.squared_error_and_grad(mix, x, target, t, solver)
        assert value == pytest.approx(loss(rho), rel=1e-12)
        fd = []
        for k in range(1, t.size - 1):  # the inner nodes (the ends' entries hold y_T and the target in VE scale)
            e = np.zeros_like(rho)
            e[k] = 1e-6
            fd.append((loss(rho + e) - loss(rho - e)) / 2e-6)
        np.testing.assert_allclose(grad[1:-1], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_solver_check_names_the_registry():
    assert solvers.NAMES == ("euler", "heun", "dpmpp_2m", "unipc", "dpmpp_3m", "deis", "ipndm", "ipndm_v") and solvers.check("heun") is solvers.SOLVERS["heun"]
    with pytest.raises(InputError, match=r"^`solver` = 'x': expected one of euler, heun, dpmpp_2m, unipc, dpmpp_3m, "
                                         r"deis, ipndm, ipndm_v$"):
        solvers.check("x")
    assert [s.evaluations(8) for s in solvers.SOLVERS.values()] == [8, 16, 8, 8, 8, 8, 8, 8]
    assert solvers.SOLVERS["dpmpp_2m"].label == "DPM-Solver++(2M)"
    assert solvers.check_list(None) == solvers.check_list([]) == solvers.NAMES
    assert solvers.check_list("deis, euler,deis") == ("euler", "deis")  # the registry's order, each once
    with pytest.raises(InputError, match=r"^`solvers` = 'dpmpp_3m_sde': expected one of euler, "):
        solvers.check_list("euler,dpmpp_3m_sde")


def weights(name, sig):
    """The multistep weights c_j of each row of an Adams-Bashforth-type solver: row i + 1 = x_i + (sigma_{i+1} -
    sigma_i) sum_j c_j (x_{i-j} - D_{i-j}) / sigma_{i-j}."""
    ev, cx, cd = solvers.SOLVERS[name].program(sig)
    return [[-cd[i + 1, j] * sig[i - j] / (sig[i + 1] - sig[i]) for j in range(min(i + 1, 4))]
            for i in range(sig.size - 1)]


def test_ipndm_weights_and_ipndm_v_as_comfyui_evaluates_them():
    equal = np.linspace(9.0, 1.0, 7)
    ab = [[1], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]]
    for i, w in enumerate(weights("ipndm", equal)):
        np.testing.assert_allclose(w, ab[min(i, 3)], rtol=1e-13)
    uneven = np.array([20.0, 9.0, 5.0, 3.0, 1.5, 0.5])
    assert all(np.allclose(w, ab[min(i, 3)], rtol=1e-13) for i, w in enumerate(weights("ipndm", uneven)))
    # iPNDM-v: Adams-Bashforth's weights up to third order at equal steps, but ComfyUI's fourth-order term gives
    # (57, -65, 43, -11)/24 there, and away from equal (or geometric) steps its weights do not sum to 1
    v = weights("ipndm_v", equal)
    for i in range(3):
        np.testing.assert_allclose(v[i], ab[i], rtol=1e-13)
    np.testing.assert_allclose(v[3], np.array([57, -65, 43, -11]) / 24, rtol=1e-13)
    np.testing.assert_allclose([sum(w) for w in weights("ipndm_v", np.geomspace(20, 0.5, 7))], 1.0, rtol=1e-13)
    sums = [sum(w) for w in weights("ipndm_v", uneven)]
    np.testing.assert_allclose(sums[:3], 1.0, rtol=1e-13)
    assert abs(sums[4] - 1) > 1e-2


def test_every_command_runs_without_the_jit():
    # NUMBA_DISABLE_JIT=1 runs every kernel as plain Python: the optimal grid's search and gradients included
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-m", "flowcert.cli", "grid", "ring8", "--kind", "optimal", "--solver", "heun",
                        "--steps", "2", "--train-samples", "64", "--test-samples", "64", "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["solver"] == "heun" and len(res["t"]) == 3


def test_sampler_steps_read_like_the_equations():
    # one Euler step on D = 0 scales y by sigma_1/sigma_0; one DPM++ step is exact for constant D
    y = np.ones((1, 2))
    np.testing.assert_allclose(sample_euler(lambda y, s: 0 * y, y, [2.0, 0.5]), 0.25 * y)
    D = np.array([[0.3, -1.0]])
    got = sample_dpmpp_2m(lambda y, s: D + 0 * y, y, [2.0, 0.5, 0.1])
    np.testing.assert_allclose(got, D + (y - D) * 0.1 / 2.0, rtol=1e-12)
    assert np.all(sample_heun(lambda y, s: D + 0 * y, y, [2.0, 1.0, 0.0]) == D)


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


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1.0])),
                         min_size=3, max_size=40), min_size=1, max_size=4).filter(lambda r: len({len(x) for x in r}) == 1))
def test_the_radix_sort_of_rows_gives_numpys_sorted_values(rows):
    # the sliced W2's sort (numcore.distances.sort_rows) against np.sort: the same values in every position, over
    # any finite or infinite doubles with repeats, both zeros and subnormals (-0.0 == 0.0 compare equal)
    from flowcert.numcore.distances import sort_rows

    a = np.array(rows, float)
    got = sort_rows(a)
    np.testing.assert_array_equal(got, np.sort(a, axis=1))
    rng = np.random.default_rng(len(rows))
    big = rng.standard_normal((3, 5000)) * 10.0 ** np.arange(-3, 3, 2)[:, None]
    np.testing.assert_array_equal(sort_rows(big), np.sort(big, axis=1))
    # values equal in their top 31 key bits (within 2e-6 relative): short runs and runs past the insertion sort's
    near = np.concatenate([1.0 + 1e-9 * rng.standard_normal((2, 10)), 3.0 + 1e-9 * rng.standard_normal((2, 300)),
                           rng.standard_normal((2, 200))], axis=1)
    np.testing.assert_array_equal(sort_rows(near), np.sort(near, axis=1))


def test_solvers_command_json_and_plot(tmp_path):
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    r = CliRunner().invoke(main, ["solvers", "line2", "--steps", "2,4", "--samples", "200", "--T", "3",
                                  "--delta", "0.01", "--train-samples", "128", "--format", "json", "-o", str(out),
                                  "--plot", str(png)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert png.stat().st_size > 10000
    from flowcert.studies.solver_study import labels
    from flowcert.studies.targets import MixtureTarget

    study = labels(MixtureTarget(flowcert.load_mixture("line2")))  # the grid registry's: one per rate, the closed
    assert {"balanced-tri", "balanced-sharp", "balanced-empirical", "uniform", "edm", "logsnr", "kl-optimal",
            "flow-shift", "flux-mu", "optimal"} == set(study)  # forms (the flow pipelines' among them), the optimum
    assert len(res["rows"]) == len(study) * 2 * len(solvers.NAMES)
    assert {row["grid"] for row in res["rows"]} == set(study)
    assert res["teacher"]["relative_rms_error"] < 1e-5 and res["optimal"]["train_samples"] == 128
    for solver in solvers.NAMES:
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
        assert row["nfe"] == solvers.SOLVERS[row["solver"]].evaluations(row["steps"])
    for solver, s in res["summary"].items():
        best = min(s["geo_mean_rel_mse"].values())
        assert s["geo_mean_rel_mse"][s["overall_winner"]] == best
    assert res["sw_floor"]["mean"] > 0


def test_solvers_option_picks_the_solvers_each_with_its_optimal_grid():
    r = CliRunner().invoke(main, ["solvers", "line2", "--steps", "2", "--solvers", "unipc,euler", "--samples", "200",
                                  "--T", "3", "--delta", "0.01", "--train-samples", "64", "--format", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["solvers"] == ["euler", "unipc"]  # the registry's order
    assert {row["solver"] for row in res["rows"]} == {"euler", "unipc"} and set(res["optimal"]["grids"]) == {"euler",
                                                                                                             "unipc"}
    assert set(res["league"]["table"]) == {"euler", "unipc"}
    budget = res["league"]["budget"]["2"]
    assert {c["solver"] for c in budget["candidates"].values()} == {"euler", "unipc"}
    best = budget["candidates"][budget["order"][0]]
    assert best["vs_best"]["geo_mean"] == 1.0 and best["geo_mean"] == min(c["geo_mean"]
                                                                          for c in budget["candidates"].values())
    r = CliRunner().invoke(main, ["solvers", "line2", "--solvers", "euler,lms"])
    assert r.exit_code == 2 and "--solvers = 'lms': expected one of euler, heun" in r.stderr


def test_the_study_searches_in_threads_as_in_one(monkeypatch):
    # a mixture study runs its solvers' searches in two threads; every grid and row equals the one-thread study's
    from flowcert.studies import solver_study
    from flowcert.studies.targets import MixtureTarget

    def study(threads):
        monkeypatch.setattr(solver_study, "SEARCH_THREADS", threads)
        return solver_study.run(MixtureTarget(builtin("square4")), [2, 4], DELTA, T, samples=300, train_samples=1200,
                                rate_samples=256, solvers=["euler", "dpmpp_2m", "unipc"])

    one, two = study(1), study(2)
    if not solver_study._threads_safe(MixtureTarget(builtin("square4"))):  # else both ran in one thread
        pytest.skip("numba's threading layer takes no parallel kernels from two threads here")
    assert one["rows"] == two["rows"]
    for s in ("euler", "dpmpp_2m", "unipc"):
        for N in (2, 4):
            np.testing.assert_array_equal(one["optimal"]["grids"][s][N]["t"], two["optimal"]["grids"][s][N]["t"])


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
