"""Trained models: the parametrisations against the exact mixture denoiser and diffusers' own conversions,
loading diffusers folders, power iteration against dense Jacobians, the model path against numcore's exact
answers, fit and train-example, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import flowcert  # noqa: E402
from flowcert.cli import main  # noqa: E402
from flowcert.models.denoiser import NOISE_MAPS, PREDICTIONS, SCALINGS, TorchModel, torch_model  # noqa: E402
from flowcert.models.exact import exact_model as mixture_model  # noqa: E402
from flowcert.models.loaders import load_diffusers  # noqa: E402
from flowcert.models.jacobian import dense_opnorm, opnorm  # noqa: E402
from flowcert.numcore.marginal import denoiser, jacobian_opnorm, sample, score  # noqa: E402


def run(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


# ----------------------------------------------------------------------------- parametrisations
def _exact_fn(mix, prediction, scaling, noise, log_alphabar=None):
    """The mixture's exact network in one parametrisation, written from numcore's closed forms in numpy."""

    def fn(inp, cond):
        c = float(cond[0])
        if noise == "sigma":
            sigma = c
        elif noise == "t":
            sigma = math.sqrt(math.expm1(2 * c))
        elif noise == "logsnr":
            sigma = math.exp(-c / 2)
        elif noise in ("flow", "flow1000"):
            s = c / (1000.0 if noise == "flow1000" else 1.0)
            sigma = s / (1 - s)
        else:
            la = np.interp(c, np.arange(log_alphabar.size), log_alphabar)
            sigma = math.sqrt(math.expm1(-la))
        t = 0.5 * math.log1p(sigma * sigma)
        alpha, svp = math.exp(-t), math.sqrt(-math.expm1(-2 * t))
        z = inp.double().numpy()
        x = {"vp": z, "ve": alpha * z, "flow": alpha * (1 + sigma) * z}[scaling]  # OU-scale point
        D = denoiser(mix, x, t)
        eps = (x - alpha * D) / svp
        if prediction == "sample":
            out = D
        elif prediction == "epsilon":
            out = eps
        elif prediction == "v_prediction":
            out = alpha * eps - svp * D
        elif prediction == "flow":
            out = eps - D  # v = eps - x_0
        else:
            s_ou = score(mix, x, t)
            # d/dy log p(y) = alpha d/dx log p_t(x); the flow point y / (1 + sigma): another factor 1 + sigma
            out = {"vp": s_ou, "ve": s_ou * alpha, "flow": s_ou * alpha * (1 + sigma)}[scaling]
        return torch.as_tensor(out)

    return fn


@pytest.mark.parametrize("prediction", list(PREDICTIONS))
@pytest.mark.parametrize("scaling", list(SCALINGS))
@pytest.mark.parametrize("noise", list(NOISE_MAPS))
def test_each_parametrisation_gives_the_exact_denoiser(prediction, scaling, noise):
    mix = flowcert.load_mixture("hetero3")
    la = np.log(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    m = torch_model(_exact_fn(mix, prediction, scaling, noise, la), shape=(mix.d,), prediction=prediction,
                    scaling=scaling, noise=noise, log_alphabar=la if noise == "ddpm" else None, dtype=torch.float64)
    for t in (0.01, 0.3, 2.0):
        x = sample(mix, t, 64, 1)
        sigma = math.sqrt(math.expm1(2 * t))
        D = m.denoise(torch.as_tensor(x * math.exp(t)), sigma).numpy()
        np.testing.assert_allclose(D, denoiser(mix, x, t), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m.score(torch.as_tensor(x), t).numpy(), score(mix, x, t), rtol=1e-7, atol=1e-7)


def test_mixture_model_jacobian_is_numcores():
    for name in ("ring8", "hetero3", "modes8d"):
        mix = flowcert.load_mixture(name)
        m = mixture_model(mix)
        x = sample(mix, 0.2, 50, 0)
        J = m.dense_jacobian(torch.as_tensor(x), 0.2).numpy()
        from flowcert.numcore.marginal import velocity_jacobian

        np.testing.assert_allclose(J, velocity_jacobian(mix, x, 0.2), atol=1e-10)


# ----------------------------------------------------------------------------- diffusers folders
def _tiny_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=4, in_channels=1, out_channels=1, block_out_channels=(8, 8),
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                 norm_num_groups=4, attention_head_dim=4, time_embedding_dim=16)


def _save(tmp_path, prediction, schedule="linear", layout="pipeline"):
    unet = _tiny_unet()
    sched = diffusers.DDPMScheduler(beta_schedule=schedule, prediction_type=prediction, clip_sample=False)
    folder = tmp_path / f"{prediction}-{schedule}-{layout}"
    if layout == "pipeline":
        diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(folder)
    else:
        unet.save_pretrained(folder)
        sched.save_pretrained(folder)
    return str(folder), unet, sched


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_diffusers_folder_matches_the_schedulers_own_x0(tmp_path, prediction, schedule):
    """D(y, sigma) at an integer timestep equals DDPMScheduler.step's pred_original_sample (diffusers' conversion)."""
    folder, unet, sched = _save(tmp_path, prediction, schedule)
    m = load_diffusers(folder)
    assert m.shape == (1, 4, 4) and m.prediction == prediction and m.noise == "ddpm"
    g = torch.Generator().manual_seed(0)
    for n in (0, 10, 500, 999):
        ab = float(sched.alphas_cumprod[n])
        x = torch.randn(3, 1, 4, 4, generator=g)
        with torch.no_grad():
            out = unet(x, torch.full((3,), n)).sample
            ref = sched.step(out, n, x).pred_original_sample
        sigma = math.sqrt(1 / ab - 1)
        D = m.denoise((x / math.sqrt(ab)).reshape(3, -1), sigma)
        np.testing.assert_allclose(D.detach().numpy(), ref.reshape(3, -1).numpy(), rtol=2e-4, atol=2e-4)


def test_model_folder_with_scheduler_config_beside_it(tmp_path):
    folder, _, _ = _save(tmp_path, "epsilon", layout="model")
    m = flowcert.load_model(folder)
    assert m.info["class"] == "UNet2DModel" and m.d == 16
    lo, hi = m.sigma_range
    # diffusers keeps alphas_cumprod in float32: sigma_min = sqrt(1/alphabar_0 - 1) to its precision
    assert lo == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-3) and hi > 100


def test_attention_unet_power_iteration_matches_dense(tmp_path):
    """Reverse-over-reverse products work through attention and group norm; Lanczos = SVD of the dense J."""
    folder, _, _ = _save(tmp_path, "epsilon")
    m = load_diffusers(folder)
    x = torch.randn(3, m.d, generator=torch.Generator().manual_seed(1))
    for t in (0.05,):
        r = opnorm(m, x, t, iters=16, tol=1e-7)
        dense = dense_opnorm(m, x, t)
        np.testing.assert_allclose(r["norm"].numpy(), dense.numpy(), rtol=1e-4)
        assert bool(r["converged"].all())


def test_power_iteration_is_a_lower_estimate_that_converges_on_a_nonsymmetric_map():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(13, 64), torch.nn.Tanh(), torch.nn.Linear(64, 12)).double()

    def fn(y, sigma):
        return net(torch.cat([y, sigma[:, None].log()], 1))

    m = torch_model(fn, shape=(12,), dtype=torch.float64)
    x = torch.randn(40, 12, dtype=torch.float64)
    dense = dense_opnorm(m, x, 0.3)
    J = m.dense_jacobian(x, 0.3)
    assert not torch.allclose(J, J.transpose(1, 2))  # a genuinely non-symmetric Jacobian
    for iters in (1, 2, 4):
        r = opnorm(m, x, 0.3, iters=iters, tol=1e-12)
        assert torch.all(r["norm"] <= dense * (1 + 1e-10))
    r = opnorm(m, x, 0.3, iters=12, tol=1e-10)
    np.testing.assert_allclose(r["norm"].numpy(), dense.numpy(), rtol=1e-8)


# ----------------------------------------------------------------------------- the exact-mixture check
@pytest.mark.parametrize("name", ["ring8", "modes8d"])
def test_model_path_reproduces_numcores_empirical_table(name):
    """E||J|| of the mixture wrapped as a torch model agrees with numcore's exact-Jacobian table within the
    Monte-Carlo interval of their difference (independent samples) plus the Lanczos tolerance."""
    from flowcert.numcore.empirical import jacobian_table

    mix = flowcert.load_mixture(name)
    out = flowcert.model_lipschitz(f"mixture:{name}", points=10, samples=1500, data=sample(mix, 1e-12, 20000, 5),
                                   seed=2)
    ref = jacobian_table(mix, out["t"], 1500, seed=7, per_segment=33)
    mean = np.array([r.mean for r in ref])
    se = np.array([r.mean_se for r in ref])
    gap = np.abs(out["empirical_mean"] - mean)
    allowed = 4.0 * np.hypot(se, out["empirical_mean_se"]) + out["power_iteration"]["tol"] * mean + 1e-12
    assert np.all(gap <= allowed), (gap / allowed)
    assert np.all(out["converged_fraction"] == 1.0)


def test_model_path_solvers_equal_numcores_on_the_exact_mixture():
    from flowcert.models.flow import solve
    from flowcert.numcore import grids
    from flowcert.numcore.samplers import sample_grid
    from flowcert.numcore.solvers import SOLVERS

    mix = flowcert.load_mixture("square4")
    m = mixture_model(mix)
    xT = sample(mix, 5.0, 200, 0)
    for kind in ("edm", "logsnr"):
        t = grids.build(kind, 6, 1e-3, 5.0)
        for solver in SOLVERS:
            np.testing.assert_allclose(solve(m, xT, t, solver), sample_grid(mix, xT, t, solver), rtol=1e-9, atol=1e-9)


def test_model_teacher_matches_the_exact_flow_map():
    from flowcert.models.flow import teacher
    from flowcert.distill.teacher import Teacher

    mix = flowcert.load_mixture("ring8")
    xT = sample(mix, 5.0, 40, 0)
    te = teacher(mixture_model(mix), torch.as_tensor(xT), 5.0, 1e-3, steps=200, check=20)
    exact = Teacher(mix).flow(xT, 5.0, 1e-3).numpy()
    rel = np.sum((te["x"] - exact) ** 2) / np.sum(exact**2)
    assert rel < 1e-7 and te["self_convergence"]["rel_mse"] < 1e-7 and te["nfe"] == 800


def test_model_grid_balanced_matches_the_mixture_grid():
    mix = flowcert.load_mixture("square4")
    data = sample(mix, 1e-12, 20000, 3)
    g_model = flowcert.model_grid("mixture:square4", 6, samples=2000, data=data, seed=1)
    g_mix = flowcert.grid(mix, 6, bound="empirical", samples=2000, seed=1)
    np.testing.assert_allclose(np.log(g_model["t"]), np.log(g_mix["t"]), atol=0.05)
    lo, hi = g_model["bound_info"]["lambda_T_mc_interval"]
    assert lo <= g_mix["lambda_T"] * 1.01 and g_mix["lambda_T"] * 0.99 <= hi


# ----------------------------------------------------------------------------- the shipped model and the CLI
def test_shipped_digits_model_denoises_held_out_digits():
    m = flowcert.load_model("digits")
    assert m.info["class"] == "UNet2DModel" and m.d == 64 and m.info["parameters"] < 400_000
    test = np.load(flowcert.models.loaders.builtin_folder("digits") + "/data/test.npy")
    x0 = torch.as_tensor(test[:200], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    # measured on the shipped model: 0.41 of the noise left at sigma 0.1, 0.11 at sigma 1 (an untrained net: > 1)
    for sigma, limit in ((0.1, 0.6), (1.0, 0.25)):
        y = x0 + sigma * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            D = m.denoise(y, sigma).double()
        err = torch.mean((D - x0) ** 2) / torch.mean(x0**2)
        noisy = torch.mean((y - x0) ** 2) / torch.mean(x0**2)
        assert err < limit * noisy  # the network removes noise from digits it never saw


def test_cli_lipschitz_and_grid_with_a_model(runner, tmp_path):
    r = run(runner, "lipschitz", "--model", "mixture:ring8", "--points", "4", "--empirical", "64", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    for key in ("t", "empirical_mean", "empirical_mean_ci", "empirical_sup", "iterations_mean", "converged_fraction",
                "samples_from", "power_iteration", "model"):
        assert key in out
    assert "tri" not in out and out["bounds"] == []
    r = run(runner, "grid", "--model", "mixture:ring8", "--steps", "4", "--samples", "64", "--kind", "balanced",
            "--for", "k-diffusion", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["sigmas"]) == 6 and out["kind"] == "balanced" and out["bound"] == "empirical"
    small = ["--train-samples", "32", "--test-samples", "32", "--teacher-steps", "16"]
    r = run(runner, "grid", "--model", "mixture:ring8", "--steps", "4", "--for", "k-diffusion", *small,
            "--format", "json")  # no --kind: the grid that wins for the preset's solver, against the teacher
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    sel = out["selection"]
    assert len(out["sigmas"]) == 6 and out["kind"] in ("optimal", "logsnr", "kl-optimal", "edm")
    assert sel["solver"] == "euler" and sel["against"] == "teacher" and sel["train_samples"] == 32
    assert sel["train_rel_mse"][out["kind"]] == min(sel["train_rel_mse"].values())
    for part in ("teacher", "search", "gits"):
        assert sel["cost"][part]["model_evaluations"] > 0 and sel["cost"][part]["seconds"] >= 0
    r = run(runner, "grid", "--model", "mixture:ring8", "--steps", "3", "--kind", "optimal", "--solver", "dpmpp_2m",
            *small, "--format", "json")
    assert r.exit_code == 0, r.output
    opt = json.loads(r.stdout)["optimal"]
    assert opt["teacher"]["steps"] == 16 and "self_convergence" in opt["teacher"]
    assert opt["search"]["stop"] and opt["search"]["evaluations"] > 0 and opt["test_samples"] == 32
    # 32 x (4 x 16 + 1) evaluations for the training teacher's nodes, the GITS-style search's only cost here
    assert opt["cost"]["gits"]["model_evaluations"] == 32 * 65
    assert opt["train_rel_mse"] <= min(opt["search"]["start_train_rel_mse"].values())
    r = run(runner, "grid", "--model", "mixture:ring8", "--kind", "optimal", *small)
    assert r.exit_code == 2 and "--solver" in r.output


def _write(path, arr):
    np.save(path, arr)
    return str(path)


def test_bad_model_input_one_line_exit_2(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ae = tmp_path / "ae"
    ae.mkdir()
    (ae / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    cond = tmp_path / "cond"
    cond.mkdir()
    (cond / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    notdiff = tmp_path / "notdiff"
    notdiff.mkdir()
    (notdiff / "config.json").write_text(json.dumps({"_class_name": "os"}))
    wrong = _write(tmp_path / "wrong.npy", np.zeros((10, 3)))
    nan = np.zeros((10, 2))
    nan[3, 1] = np.nan
    nanf = _write(tmp_path / "nan.npy", nan)
    cases = [
        (("lipschitz", "--model", str(tmp_path / "nope")), "no such folder"),
        (("lipschitz", "--model", str(empty)), "no diffusers model"),
        (("lipschitz", "--model", str(ae)), "unsupported model class"),
        (("lipschitz", "--model", str(cond)), "encoder_hidden_states"),
        (("lipschitz", "--model", str(notdiff)), "unsupported model class"),
        (("lipschitz", "--model", "mixture:ring8", "--data", wrong), "--data"),
        (("lipschitz", "--model", "mixture:ring8", "--data", nanf), "nan"),
        (("lipschitz", "--model", "mixture:ring8", "--delta", "-1"), "--delta"),
        (("lipschitz", "ring8", "--model", "mixture:ring8"), "not both"),
        (("grid", "--model", "mixture:ring8", "--bound", "tri"), "--bound"),
        (("grid",), "--model"),
        (("lipschitz", "--model", str(tmp_path / "m.py") + ":f"), "no such file"),
        (("fit", nanf), "nan"),
        (("fit", str(tmp_path / "missing.npy")), "cannot be read"),
    ]
    for args, needle in cases:
        r = runner.invoke(main, list(args))
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("Error")]
        assert len(lines) == 1 and needle.lower() in lines[0].lower(), (args, r.output)


def test_module_file_model(runner, tmp_path):
    src = tmp_path / "mymodel.py"
    src.write_text(
        "import flowcert\n"
        "mix = flowcert.load_mixture('line2')\n"
        "def build():\n"
        "    from flowcert.models.exact import exact_model\n"
        "    return exact_model(mix)\n"
        "plain = lambda x, s: x\n")
    r = run(runner, "grid", "--model", f"{src}:build", "--kind", "logsnr", "--steps", "3", "--format", "json")
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["grid", "--model", f"{src}:plain", "--steps", "3"])
    assert r.exit_code == 2 and "torch_model" in r.output


# ----------------------------------------------------------------------------- fit and train-example
def test_fit_recovers_a_two_component_mixture_and_writes_a_loadable_spec(runner, tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([-3, 0], 0.5, (400, 2)), rng.normal([3, 1], 0.5, (600, 2))])
    data = _write(tmp_path / "d.npy", x)
    out = tmp_path / "s.yaml"
    r = run(runner, "fit", data, "--max-components", "5", "--covariance", "auto", "-o", str(out))
    assert r.exit_code == 0, r.output
    mix = flowcert.load_mixture(str(out))
    assert mix.K == 2
    order = np.argsort(mix.means[:, 0])
    np.testing.assert_allclose(mix.means[order], [[-3, 0], [3, 1]], atol=0.15)
    np.testing.assert_allclose(mix.weights[order], [0.4, 0.6], atol=0.03)


def test_train_example_resumes_and_saves_a_loadable_pipeline(tmp_path):
    out = str(tmp_path / "digits")
    a = flowcert.train_example("digits", out, steps=4, batch=8, checkpoint_every=2, threads=1)
    assert a["steps_done"] == 4
    b = flowcert.train_example("digits", out, steps=4, batch=8, checkpoint_every=2, threads=1)
    assert b["resumed_from"] == 4
    m = flowcert.load_model(out)
    assert isinstance(m, TorchModel) and m.shape == (1, 8, 8) and m.prediction == "epsilon"
    assert np.load(out + "/data/test.npy").shape == (360, 64)
    with pytest.raises(flowcert.InputError, match="different configuration"):
        flowcert.train_example("digits", out, steps=5, batch=8, checkpoint_every=2, threads=1)


def test_gits_dynamic_programme_equals_exhaustive_search():
    from itertools import combinations

    from flowcert.studies.gits import gits_search
    from flowcert.numcore.units import sigma_from_t

    mix = flowcert.load_mixture("ring8")
    g = gits_search(mixture_model(mix), sample(mix, 5.0, 64, 0), [2, 3], delta=1e-3, T=5.0, teacher_steps=7)
    C = g["cost_matrix"]
    M = C.shape[0]
    rho = np.linspace(np.log(sigma_from_t(5.0)), np.log(sigma_from_t(1e-3)), M)
    for N in (2, 3):
        best = min(sum(C[a, b] for a, b in zip((0, *mid), (*mid, M - 1))) for mid in combinations(range(1, M - 1), N - 1))
        nodes = [int(np.argmin(np.abs(rho - np.log(s)))) for s in sigma_from_t(g["t"][N])]
        got = sum(C[a, b] for a, b in zip(nodes, nodes[1:]))
        assert got == pytest.approx(best, rel=1e-12)
        assert np.all(np.diff(g["t"][N]) < 0) and g["t"][N][0] == 5.0 and g["t"][N][-1] == 1e-3


def test_sliced_wasserstein_unequal_sizes_is_the_quantile_integral():
    from flowcert.numcore.distances import directions, sliced_wasserstein, sliced_wasserstein_ci

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5
    th = directions(3, 4, rng)
    u = (np.arange(35) + 0.5) / 35  # 35 = lcm(7, 5): both quantile functions are constant on these cells
    px, py = np.sort(x @ th.T, axis=0), np.sort(y @ th.T, axis=0)
    brute = np.mean([np.mean((px[(u * 7).astype(int), k] - py[(u * 5).astype(int), k]) ** 2) for k in range(4)])
    assert sliced_wasserstein(x, y, th) == pytest.approx(np.sqrt(brute), rel=1e-12)
    big = rng.normal(size=(400, 3))
    e = sliced_wasserstein_ci(big, big + np.array([1.0, 0, 0]), directions(3, 64, rng), rng)
    assert e.ci_low <= e.value <= e.ci_high


def test_optimal_grid_of_a_wrapped_mixture_is_the_analytic_one():
    """The model path (torch denoiser of the exact mixture, RK4 teacher, torch solver) and the analytic path
    (numba solver, exact flow map) minimise the same objective on the same x_T: their optimal grids agree.

    Tolerance: the two objectives differ only through the teacher end points (model RK4 with 64 steps against
    the exact flow map: relative RMS difference eps ~ 2e-5, checked below) and rounding (1e-14).  A solver
    error of relative RMS r then changes the relative MSE r^2 by at most ~2 eps r, i.e. relatively by
    2 eps / r <= 2e-5 / 0.045 < 1e-3 for the errors here (r^2 > 2e-3): we allow 2e-3 on the training errors.
    From the same starts L-BFGS-B (exact gradients on both paths: autograd through the network there, the
    compiled reverse-mode kernel here) takes the same steps up to that relative difference, so the grids
    coincide to far below the search's tolerance; we allow 0.02 in every log sigma, far below a grid's spacing
    (> 1) and below the search's own tolerance (gaps within ~0.4% of the 8.4 range: 0.035).
    """
    from flowcert.numcore.units import sigma_from_t
    from flowcert.studies.optimal import optimal_grid
    from flowcert.studies.targets import MixtureBatches as Batches, MixtureTarget, ModelBatches, ModelTarget

    mix = flowcert.load_mixture("ring8")
    model = mixture_model(mix)
    mb = ModelBatches(model, 1e-3, 5.0, train=96, test=64, seed=3, teacher_steps=64, check=64, gradients=True)
    ab = Batches(mix, 1e-3, 5.0, seed=3, points=(mb.x_train.numpy(), mb.x_test.numpy()))
    eps = np.sqrt(np.sum((ab.y_train - mb.y_train) ** 2) / np.sum(ab.y_train**2))
    assert eps < 5e-5  # the model's teacher is the exact flow map within its RK4 error
    for solver in ("euler", "dpmpp_2m"):
        rec_m = optimal_grid(ModelTarget(model), 3, solver, delta=1e-3, T=5.0, batches=mb, effort=0.25)
        # the same starts as the model path: the closed forms (added by optimal_grid) and the GITS-style grid
        rec_a = optimal_grid(MixtureTarget(mix), 3, solver, delta=1e-3, T=5.0, effort=0.25, batches=ab,
                             starts={"gits": rec_m["gits"]["t"]})
        assert rec_a["train_rel_mse"] > 2e-3
        dm, da = np.log(sigma_from_t(rec_m["t"])), np.log(sigma_from_t(rec_a["t"]))
        assert np.max(np.abs(dm - da)) < 0.02, (solver, rec_m["t"], rec_a["t"])
        assert rec_m["train_rel_mse"] == pytest.approx(rec_a["train_rel_mse"], rel=2e-3)
        assert rec_m["rel_mse"] == pytest.approx(rec_a["rel_mse"], rel=2e-3)  # fresh test batch
        cross = ab.training_error(solver)(rec_m["t"])  # the model's grid on the analytic objective
        assert cross <= rec_a["train_rel_mse"] * (1 + 2e-3)
        # and the search improved on every start (closed forms and GITS-style) on the training batch
        assert rec_m["train_rel_mse"] <= min(rec_m["search"]["start_train_rel_mse"].values()) * (1 + 1e-12)


def test_model_export_reads_the_models_own_scheduler_config(runner, tmp_path):
    """A diffusers folder's export follows its scheduler_config.json (read from the path the model gives)."""
    out = tmp_path / "sigmas.json"
    r = run(runner, "grid", "--model", "digits", "--steps", "4", "--kind", "logsnr", "--for", "diffusers-euler",
            "--threads", "1", "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    import flowcert.examples.digits

    shipped = json.loads((Path(flowcert.examples.digits.__file__).parent / "assets" / "scheduler"
                          / "scheduler_config.json").read_text())
    assert doc["scheduler_config"]["num_train_timesteps"] == shipped["num_train_timesteps"]
    assert doc["scheduler_config"]["beta_schedule"] == shipped["beta_schedule"]


def test_solvers_api_takes_a_loaded_mixture_and_a_path(tmp_path):
    mix = flowcert.load_mixture("line2")
    spec = tmp_path / "two.json"
    spec.write_text(json.dumps({"means": [[0.0], [3.0]], "variance": 0.1}))
    for arg, name in ((mix, "line2"), (spec, "two")):
        res = flowcert.solvers(arg, steps=[2], samples=64, train_samples=64)
        assert res["mixture"] == name and res["rows"]


# ----------------------------------------------------------------------------- gradients through the network
def test_model_gradient_equals_numcores_reverse_mode_on_the_exact_mixture():
    """models.flow.squared_error_and_grad (the registry's program in torch with autograd, then complex steps
    through the scheme) on the exact mixture's torch denoiser equals numcore's compiled reverse-mode kernel
    (samplers.squared_error_and_grad), a separate implementation, for every registered solver: both compute the
    same number in float64 in a different order, so they agree to rounding (1e-9 allowed)."""
    from flowcert.models.flow import squared_error_and_grad
    from flowcert.numcore import grids, samplers
    from flowcert.numcore.solvers import SOLVERS

    mix = flowcert.load_mixture("ring8")
    m = mixture_model(mix)
    x = sample(mix, 5.0, 48, 0)
    y = samplers.sample_grid(mix, x, grids.build("logsnr", 64, 1e-3, 5.0), "heun")
    t = grids.build("edm", 6, 1e-3, 5.0)
    for solver in SOLVERS:
        va, ga = samplers.squared_error_and_grad(mix, x, y, t, solver)
        vb, gb = squared_error_and_grad(m, x, y, t, solver)
        assert vb == pytest.approx(va, rel=1e-9), solver
        np.testing.assert_allclose(gb[1:-1], ga[1:-1], rtol=1e-9, atol=1e-9 * np.max(np.abs(ga)), err_msg=solver)


def _smooth_network(d: int):
    """A fixed random tanh network fn(x, c_noise) in float64: smooth in both inputs, so central differences of
    a solver's end points in log sigma converge (a ReLU net's kinks or a float32 net's rounding would not)."""
    g = torch.Generator().manual_seed(0)
    W1 = torch.randn(d + 2, 24, generator=g, dtype=torch.float64) / 2
    b1 = torch.randn(24, generator=g, dtype=torch.float64) / 2
    W2 = torch.randn(24, d, generator=g, dtype=torch.float64) / 4

    def fn(x, c):
        z = torch.cat([x, torch.sin(c)[:, None], torch.tanh(c / 4)[:, None]], 1)
        return torch.tanh(z @ W1 + b1) @ W2

    return fn


@pytest.mark.parametrize("prediction,scaling,noise", [("epsilon", "vp", "t"), ("v_prediction", "ve", "sigma"),
                                                      ("sample", "ve", "logsnr")])
def test_model_gradient_matches_finite_differences(prediction, scaling, noise):
    """The grid gradient through a network (autograd in y and in sigma through the scalings and the noise
    input, complex steps through the scheme) against central differences of the plain forward solver
    (models.flow.solve: floats, no autograd) in each interior log sigma.

    Tolerance: step h = 1e-4 in log sigma; the differences' truncation error is ~h^2 |f'''| ~ 1e-8 relative
    and their rounding ~1e-16 / h ~ 1e-12; the scalings' own central differences (relative step 1e-5) add
    ~1e-10.  We allow 1e-6 of the largest entry, far below a wrong term (a missing dD/dsigma changes entries by
    O(1) relative, checked: the noise input alone moves them by > 1e-3)."""
    from flowcert.models.flow import solve, squared_error_and_grad
    from flowcert.numcore import grids
    from flowcert.numcore.solvers import SOLVERS
    from flowcert.numcore.units import rho_from_t, t_from_rho

    d = 3
    m = torch_model(_smooth_network(d), shape=(d,), prediction=prediction, scaling=scaling, noise=noise,
                    dtype=torch.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, d))
    y = rng.standard_normal((16, d)) * 0.5
    t = grids.build("logsnr", 5, 1e-3, 3.0)
    rho, h = rho_from_t(t), 1e-4

    def f(r, solver):
        tk = t_from_rho(r)
        tk[0], tk[-1] = t[0], t[-1]
        return float(np.sum((solve(m, x, tk, solver) - y) ** 2))

    for solver in SOLVERS:
        v, g = squared_error_and_grad(m, x, y, t, solver, batch=7)  # several chunks
        assert v == pytest.approx(f(rho, solver), rel=1e-12), solver
        fd = []
        for k in range(1, len(t) - 1):
            e = np.zeros_like(rho)
            e[k] = h
            fd.append((f(rho + e, solver) - f(rho - e, solver)) / (2 * h))
        fd = np.array(fd)
        np.testing.assert_allclose(g[1:-1], fd, rtol=0, atol=1e-6 * np.max(np.abs(fd)), err_msg=solver)


def test_exact_mixture_differentiable_in_sigma_with_per_sample_labels():
    """The exact class-conditional mixture with a sigma that requires grad and one label per sample: its value is
    the plain call's (float sigma), and its derivative in sigma matches central differences of the plain call
    (step 1e-6 relative: truncation ~1e-12, rounding ~1e-10; 1e-7 allowed)."""
    from flowcert.numcore.mixture import from_spec

    spec = {"weights": [0.2, 0.3, 0.1, 0.4], "means": [[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0], [0.5, -2.0]],
            "variance": [0.05, 0.02, 0.1, 0.03], "labels": [0, 0, 1, 1]}
    m = mixture_model(from_spec(spec, name="labelled"))
    y = torch.as_tensor(np.random.default_rng(0).standard_normal((6, 2)) * 1.5)
    cond = {"class_labels": torch.tensor([0, 1, 1, -1, 0, 1])}
    v = torch.as_tensor(np.random.default_rng(1).standard_normal((6, 2)))
    for s0 in (0.1, 0.8, 3.0):
        s = torch.tensor(s0, dtype=torch.float64, requires_grad=True)
        D = m(y, s, cond)
        np.testing.assert_allclose(D.detach().numpy(), m(y, s0, cond).numpy(), rtol=1e-14, atol=1e-14)
        g = float(torch.autograd.grad((D * v).sum(), s)[0])
        h = 1e-6 * s0
        fd = float(((m(y, s0 + h, cond) - m(y, s0 - h, cond)) * v).sum()) / (2 * h)
        assert g == pytest.approx(fd, rel=1e-7, abs=1e-7)
