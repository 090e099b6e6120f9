"""KL-optimal against its closed form and ComfyUI's scheduler; the grid search against exhaustive search; the
optimal grid against the closed forms on a fresh batch; the winning export's record and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from flowcert.studies import optimal
from flowcert.studies.targets import MixtureBatches
from flowcert.cli import main
from flowcert.numcore import flowmap, grids, gridsearch, units
from flowcert.numcore.mixture import BUILTINS, builtin

DELTA, T = 1e-3, 5.0


# ----------------------------------------------------------------------------- kl-optimal
@pytest.mark.parametrize("N", [1, 4, 8, 16])
def test_kl_optimal_is_the_closed_form(N):
    smax, smin = math.sqrt(math.expm1(2 * T)), math.sqrt(math.expm1(2 * DELTA))
    want = [math.tan((1 - i / N) * math.atan(smax) + (i / N) * math.atan(smin)) for i in range(N + 1)]
    got = np.sqrt(np.expm1(2 * grids.kl_optimal(N, DELTA, T)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(smax, rel=1e-14) and np.all(np.diff(got) < 0)


def comfyui_kl_optimal(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """ComfyUI's `kl_optimal` scheduler as its users get it: n sigmas (float32) from sigma_max to sigma_min,
    adj_i = i/(n - 1), sigma_i = tan(adj_i atan(sigma_min) + (1 - adj_i) atan(sigma_max)), then a trailing 0."""
    adj = np.arange(n, dtype=np.float32) / np.float32(n - 1)
    s = np.tan(adj * np.float32(math.atan(sigma_min)) + (1 - adj) * np.float32(math.atan(sigma_max)))
    return np.append(s.astype(np.float32), np.float32(0.0))


@pytest.mark.parametrize("N", [4, 8, 20])
def test_kl_optimal_is_what_comfyui_users_get(N):
    t = grids.kl_optimal(N, DELTA, T)
    sig = np.sqrt(np.expm1(2 * t))
    comfy = comfyui_kl_optimal(N + 1, float(sig[-1]), float(sig[0]))  # steps = N + 1 nodes, then 0
    # ComfyUI computes in float32: equal to its rounding in atan(sigma), where the schedule is uniform (tan near
    # pi/2 magnifies float32 rounding of the first node to ~1e-5 relative)
    np.testing.assert_allclose(np.arctan(sig), np.arctan(comfy[:-1].astype(float)), rtol=0, atol=4e-7)
    np.testing.assert_allclose(sig, comfy[:-1], rtol=2e-5)
    assert comfy[-1] == 0


# ----------------------------------------------------------------------------- the search
@settings(max_examples=30, deadline=None)
@given(z=st.lists(st.floats(-8, 8), min_size=1, max_size=12))
def test_every_parameter_is_a_valid_grid_and_round_trips(z):
    t = gridsearch.from_params(np.array(z), DELTA, T)
    assert t[0] == T and t[-1] == DELTA and np.all(np.diff(t) < 0)
    np.testing.assert_allclose(gridsearch.to_params(t), z, atol=1e-6)


@pytest.fixture(scope="module")
def small():
    return MixtureBatches(builtin("ring8"), DELTA, T, train=256, test=256, seed=5)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m"])
def test_two_steps_equal_a_dense_scan(small, solver):
    # N = 2: one free node; the exhaustive answer is a dense scan of log sigma
    err = small.training_error(solver)
    r0, r1 = units.rho_from_t(T), units.rho_from_t(DELTA)
    rho = np.linspace(r0, r1, 4002)[1:-1]
    scan = np.array([err(np.array([T, float(units.t_from_rho(r)), DELTA])) for r in rho])
    res = gridsearch.search(err, 2, DELTA, T, optimal.baseline_grids(2, DELTA, T))
    assert res.value <= scan.min() * (1 + 1e-6)
    assert abs(float(units.rho_from_t(res.t[1])) - rho[scan.argmin()]) < 2 * (rho[0] - rho[1])


def test_three_steps_equal_an_exhaustive_grid_of_candidates(small):
    err = small.training_error("euler")
    r0, r1 = float(units.rho_from_t(T)), float(units.rho_from_t(DELTA))
    cand = np.linspace(r0, r1, 122)[1:-1]  # 120 candidate nodes: every ordered pair
    best = min((err(units.t_from_rho(np.array([r0, a, b, r1]))), a, b)
               for i, a in enumerate(cand) for b in cand[i + 1:])
    res = gridsearch.search(err, 3, DELTA, T, optimal.baseline_grids(3, DELTA, T))
    # the continuous optimum is at least as good as the best candidate pair, and next to it
    assert res.value <= best[0] * (1 + 1e-9)
    assert np.abs(units.rho_from_t(res.t[1:3]) - np.array(best[1:])).max() < 2 * (cand[0] - cand[1])


def test_the_search_is_deterministic_and_never_worse_than_its_start(small):
    err = small.training_error("heun")
    starts = optimal.baseline_grids(12, DELTA, T)
    a = gridsearch.search(err, 12, DELTA, T, starts)
    b = gridsearch.search(err, 12, DELTA, T, starts)
    assert np.array_equal(a.t, b.t) and a.value == b.value
    assert a.value <= min(a.start_values.values())
    assert np.all(np.diff(a.t) < 0) and a.t[0] == T and a.t[-1] == DELTA
    assert set(a.ladder) == {6, 12} and a.ladder[12][1] == a.value


def test_a_screened_search_weighs_every_runs_end_on_the_whole_batch(small):
    # N <= 8 with a screen: one run from every start on the screen, each run's end and every start measured on the
    # whole batch, the best refined there; the result is never worse on the whole batch than any of them
    err, cheap = small.training_error("dpmpp_2m"), small.training_error("dpmpp_2m", 64)
    starts = optimal.baseline_grids(4, DELTA, T)
    res = gridsearch.search(err, 4, DELTA, T, starts, screen=cheap)
    inner = gridsearch.search(cheap, 4, DELTA, T, starts)
    assert set(inner.ends) == set(starts)
    assert res.value <= min(err(g) for g in [*inner.ends.values(), *starts.values()]) * (1 + 1e-12)
    assert res.value == pytest.approx(err(res.t), rel=1e-12)
    assert "from each of 3 starts] on the screening batch then l-bfgs-b(3) on the whole batch" in res.method
    # the previous N's optimum joins the starts on the screen
    coarse = gridsearch.search(err, 2, DELTA, T, optimal.baseline_grids(2, DELTA, T), screen=cheap)
    res2 = gridsearch.search(err, 4, DELTA, T, starts, screen=cheap, coarse=coarse.t)
    assert "from each of 4 starts" in res2.method


def test_one_blas_thread_is_set_and_restored():
    from threadpoolctl import threadpool_info

    from flowcert.numcore.blas import one_thread

    def counts():  # numpy's own OpenBLAS (its wheel's numpy.libs, or scipy's)
        return [i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas" and ("numpy" in i["filepath"] or "scipy" in i["filepath"])]

    before = counts()
    with one_thread():
        assert counts() and set(counts()) == {1}
        a = np.arange(12.0).reshape(3, 4)
        np.testing.assert_array_equal(a @ a.T, np.einsum("ij,kj->ik", a, a))
    assert counts() == before


def test_a_known_minimum_is_found():
    target = units.rho_from_t(grids.edm(6, DELTA, T))

    def error(t):
        return 1.0 + float(np.sum((units.rho_from_t(t) - target) ** 2))

    res = gridsearch.search(error, 6, DELTA, T, {"logsnr": grids.logsnr(6, DELTA, T)})
    np.testing.assert_allclose(units.rho_from_t(res.t), target, atol=1e-3)


def _midway(N):
    """The grid midway between EDM and log-SNR in log sigma (rho): the same ends, not a start."""
    return 0.5 * (units.rho_from_t(grids.edm(N, DELTA, T)) + units.rho_from_t(grids.logsnr(N, DELTA, T)))


class _Quadratic:
    """error(t) = |rho(t) - midway|^2 + 1e-10 with its exact gradient in rho (a known minimum at every N),
    counting calls."""

    calls = 0

    def __call__(self, t):
        return self.value_and_grad(t)[0]

    def value_and_grad(self, t):
        self.calls += 1
        d = units.rho_from_t(np.asarray(t, float)) - _midway(len(t) - 1)
        return float(np.sum(d**2)) + 1e-10, 2.0 * d


@pytest.mark.parametrize("N", [6, 12])
def test_the_split_search_finds_a_known_minimum_and_keeps_its_budget(N):
    """The split search (a trained model's: one budget for every run) finds the minimum of a quadratic in log
    sigma from closed-form and mid-dense starts, counts every call of the objective (an independent counter),
    and never spends more than its budget: SPLIT_EVALS x effort at N <= 8; above, the coarse stage's budget
    plus half of it for the final run; a budget too small to converge is kept and the result is never worse
    than the best start."""
    target = _midway(N)
    starts = {**optimal.baseline_grids(N, DELTA, T), **gridsearch.mid_dense_grids(N, DELTA, T)}
    err = _Quadratic()
    res = gridsearch.search(err, N, DELTA, T, starts, split=True)
    np.testing.assert_allclose(units.rho_from_t(res.t), target, atol=1e-3)
    budget = gridsearch.SPLIT_EVALS * (1 if N <= gridsearch.FULL_SIMPLEX else 1.5)
    assert err.calls == res.evaluations <= budget
    for effort in (0.02, 0.05):
        err = _Quadratic()
        res = gridsearch.search(err, N, DELTA, T, starts, effort=effort, split=True)
        small = int(effort * gridsearch.SPLIT_EVALS)
        assert err.calls == res.evaluations <= max(small, len(starts)) * (1 if N <= gridsearch.FULL_SIMPLEX else 2)
        assert res.value <= min(res.start_values.values())


# ----------------------------------------------------------------------------- against the closed forms
@pytest.mark.parametrize("name", list(BUILTINS))
def test_optimal_beats_every_closed_form_on_a_fresh_batch(name):
    mix = builtin(name)
    batches = MixtureBatches(mix, DELTA, T, seed=0)
    for solver in ("euler", "dpmpp_2m"):
        for N in (4, 8):
            rec = optimal.optimal_grid(mix, N, solver, delta=DELTA, T=T, batches=batches)
            best = min(v["rel_mse"] for v in rec["baselines"].values())
            assert rec["rel_mse"] <= best, (name, solver, N, rec["rel_mse"], rec["baselines"])


# ----------------------------------------------------------------------------- the command line
def run(*args):
    return CliRunner().invoke(main, list(args))


def test_for_without_kind_exports_the_winner_with_its_record(tmp_path):
    out = tmp_path / "s.json"
    r = run("grid", "square4", "--steps", "4", "--for", "diffusers-timesteps", "--train-samples", "256",
            "--test-samples", "512", "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["kind"] in ("optimal", "logsnr", "kl-optimal", "edm") and doc["solver"] == "dpmpp_2m"
    sel = doc["selection"]
    assert sel["solver_from"] == "implied by diffusers-timesteps"
    assert set(doc["baselines"]) == {"logsnr", "kl-optimal", "edm"}
    assert doc["rel_mse"] == sel["rel_mse"] and doc["rel_mse_ci"][0] <= doc["rel_mse"] <= doc["rel_mse_ci"][1]
    assert sel["train_samples"] == 256 and sel["test_samples"] == 512 and sel["search"]["stop"]
    for key in ("for", "argument", "timesteps", "scheduler_config", "schedule", "t", "conventions", "warnings",
                "mixture", "bound", "steps", "delta", "T"):
        assert key in doc
    assert len(doc["timesteps"]) == 5


def test_for_with_solver_and_text_output():
    r = run("grid", "ring8", "--steps", "4", "--for", "k-diffusion", "--solver", "heun", "--train-samples", "256",
            "--test-samples", "256")
    assert r.exit_code == 0, r.output
    assert "for heun (given)" in r.output and "logsnr" in r.output and "kl-optimal" in r.output


def test_kind_optimal_json_and_plain_grid_points_to_it():
    r = run("grid", "ring8", "--steps", "4", "--kind", "optimal", "--solver", "euler", "--train-samples", "256",
            "--test-samples", "256", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["kind"] == "optimal" and doc["solver"] == "euler" and len(doc["t"]) == 5
    rec = doc["optimal"]
    assert rec["train_samples"] == 256 and "relative MSE" in rec["objective"] and rec["search"]["stop"]
    assert rec["beaten_by"] is None and "warning" not in r.output  # ring8 Euler N = 4: far ahead of the closed forms
    plain = json.loads(run("grid", "ring8", "--steps", "4", "--format", "json").output)
    assert plain["kind"] == "balanced" and "--kind optimal" in plain["sampling"]
    kl = json.loads(run("grid", "ring8", "--steps", "4", "--kind", "kl-optimal", "--format", "json").output)
    np.testing.assert_allclose(kl["t"], grids.kl_optimal(4, DELTA, T), rtol=1e-14)


@pytest.mark.parametrize("solver", ["unipc", "dpmpp_3m", "deis", "ipndm", "ipndm_v"])
def test_kind_optimal_for_every_registered_solver(solver):
    r = run("grid", "ring8", "--steps", "3", "--kind", "optimal", "--solver", solver, "--train-samples", "128",
            "--test-samples", "128", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["solver"] == solver and len(doc["t"]) == 4 and doc["optimal"]["search"]["stop"]
    best = min(v["rel_mse"] for v in doc["optimal"]["baselines"].values())
    assert doc["optimal"]["train_rel_mse"] <= min(doc["optimal"]["search"]["start_train_rel_mse"].values())
    assert doc["optimal"]["rel_mse"] <= 1.5 * best  # a fresh batch of 128: no worse than noise allows


@pytest.mark.parametrize("preset", ["diffusers-unipc", "diffusers-dpmsolver-3m", "k-diffusion-dpmpp_3m_sde",
                                    "comfyui-deis", "comfyui-ipndm", "comfyui-ipndm_v"])
def test_for_exports_the_winner_for_the_presets_own_solver(preset):
    from flowcert.exports.presets import PRESET_SOLVER

    r = run("grid", "ring8", "--steps", "3", "--T", "2.5", "--for", preset, "--train-samples", "128",
            "--test-samples", "128", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # (warnings go to standard error)
    assert doc["for"] == preset and doc["solver"] == PRESET_SOLVER[preset]
    assert doc["selection"]["solver_from"] == f"implied by {preset}" and len(doc["t"]) == 4


@pytest.mark.parametrize("args, needle", [
    (("--kind", "optimal"), "--solver missing"),
    (("--kind", "optimal", "--solver", "rk4"), "'rk4' is not one of"),
    (("--for", "k-diffusion", "--solver", "lms"), "'lms' is not one of"),
    (("--kind", "optimal", "--solver", "euler", "--steps", "65"), "--steps = 65: expected an integer <= 64"),
    (("--for", "comfyui", "--steps", "80"), "--steps = 80: expected an integer <= 64"),
    (("--kind", "optimal", "--solver", "euler", "--train-samples", "3"), "--train-samples = 3"),
    (("--kind", "optimal", "--solver", "euler", "--effort", "0"), "--effort = 0"),
])
def test_bad_input_one_line_exit_2(args, needle):
    r = run("grid", "ring8", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_the_search_objective_has_the_same_bits_in_one_thread_and_two():
    # the reverse pass sums over a fixed number of chunks of points, so that the objective, its gradient and the
    # search that follows them (whose path through the rounding is chaotic) do not depend on the thread count
    import numba

    from flowcert.numcore.marginal import sample
    from flowcert.numcore.samplers import PARALLEL_WORK, squared_error_and_grad

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one numba thread on this machine")
    mix = builtin("square4")
    t = grids.build("logsnr", 16, DELTA, T)
    x = sample(mix, T, PARALLEL_WORK // 16 + 7, np.random.default_rng(0))  # the parallel kernel in two threads
    y, _ = flowmap.endpoints(mix, x, T, DELTA)
    threads = numba.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            numba.set_num_threads(n)
            out.append(squared_error_and_grad(mix, x, y * 1.01, t, "unipc"))
    finally:
        numba.set_num_threads(threads)
    (v1, g1), (v2, g2) = out
    assert v1 == v2 and np.array_equal(g1, g2) and v1 > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-9, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0)), min_size=1, max_size=5),
       st.floats(1e-9, 1.0))
def test_beaten_by_is_the_best_grid_whose_whole_interval_lies_below(cands, e):
    # brute force over the candidates: those with their upper 95% bound below the grid's error, the smallest of them
    others = {f"g{i}": {"rel_mse": v, "rel_mse_ci": [v * (1 - a), v * (1 + b)]} for i, (v, a, b) in enumerate(cands)}
    below = [k for k, c in others.items() if c["rel_mse_ci"][1] < e]
    got = optimal.beaten_by({"rel_mse": e}, others)
    if not below:
        assert got is None
    else:
        k = min(below, key=lambda n: others[n]["rel_mse"])
        assert got["grid"] == k and got["rel_mse"] == others[k]["rel_mse"] and got["factor"] == e / others[k]["rel_mse"]
        assert got["factor"] > 1


def test_a_beaten_optimal_grid_is_said_in_one_warning_line():
    from flowcert import render

    rec = {"solver": "ipndm", "rel_mse": 2.4e-5, "rel_mse_ci": [0.0, 7.1e-5], "test_samples": 4096, "seed": 0,
           "baselines": {"logsnr": {"rel_mse": 8.2e-6, "rel_mse_ci": [4.9e-6, 1.2e-5]},
                         "kl-optimal": {"rel_mse": 1.5e-6, "rel_mse_ci": [7.9e-7, 2.1e-6]}},
           "objective": "relative MSE", "train_samples": 4096, "train_rel_mse": 1.7e-7,
           "search": {"method": "l-bfgs-b", "start": "logsnr", "evaluations": 10, "seconds": 1.0, "stop": "done"}}
    rec["best_baseline"] = "kl-optimal"
    rec["gain_over_best_baseline"] = 1.5e-6 / 2.4e-5
    rec["beaten_by"] = optimal.beaten_by(rec, rec["baselines"])
    lines = render.optimal_lines(rec)
    warn = [line for line in lines if line.startswith("# warning")]
    assert len(warn) == 1 and "kl-optimal" in warn[0] and "16x below the optimal grid" in warn[0]
    assert "the best of them (kl-optimal) is 16x below it" in lines[0]
    rec["beaten_by"] = None
    assert not any(line.startswith("# warning") for line in render.optimal_lines(rec))
