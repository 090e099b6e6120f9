"""flowcert validate --model: the sweep on a trained model's own teacher (CPU, tiny sizes).

A flowcert mixture wrapped as a model (``mixture:SPEC``: its exact denoiser behind the model interface) runs the
model path at the price of a mixture, and must give the mixture path's numbers within their intervals; the
shipped digits UNet runs once with the conv block.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowcert.cli import main

ROOT = Path(__file__).resolve().parents[1]
SIZES = ["--steps", "1,2", "--seeds", "1", "--iters", "100", "--train-samples", "256", "--test-samples", "128",
         "--width", "16", "--batch", "128", "--group", "1", "--amp-samples", "4", "--lip-samples", "4",
         "--device", "cpu", "--quiet", "--no-plots"]
MODEL = ["--model", "mixture:line2", "--grids", "uniform,empirical", "--empirical-samples", "32", "--rate-points", "6",
         "--teacher-steps", "32", "--local-samples", "64", *SIZES]


def strip_timing(obj):
    """Everything but wall-clock times (which differ between runs by nature)."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in ("timing", "seconds", "wall_s")}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def results(out) -> dict:
    return strip_timing(json.loads((Path(out) / "results.json").read_text()))


def one_line(r, *words):
    """Exit status 2 and one line on the output holding ``words``."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.output.count("\n") == 1, r.output
    for w in words:
        assert w in r.output, (w, r.output)


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("model") / "run"
    r = CliRunner().invoke(main, ["validate", *MODEL, "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_model_run_reports_its_teacher_costs_and_measured_amplification(model_run):
    doc = json.loads((model_run / "results.json").read_text())
    cfg = doc["config"]
    assert cfg["model"] == "mixture:line2" and cfg["specs"] == [] and cfg["shape"] == [1]
    (mk, info), = doc["mixtures"].items()
    assert info["kind"] == "model" and info["Lambda_T"]["empirical"] > 0
    # the teacher: its evaluations and self-convergence, per seed
    rec = doc["teacher"][mk]["0"]
    assert rec["self_convergence"]["rel_mse"] < 1e-8 and rec["self_convergence"]["against_steps"] == 64
    U = len(info["union_nodes"])
    steps = sum(math.ceil(abs(a - b) / ((math.log(math.sqrt(math.expm1(10))) - math.log(math.sqrt(math.expm1(2e-3))))
                                      / 32) - 1e-9) for a, b in zip(
        [0.5 * math.log(math.expm1(2 * t)) for t in info["union_nodes"]],
        [0.5 * math.log(math.expm1(2 * t)) for t in info["union_nodes"][1:]]))
    assert rec["model_evaluations"] == 4 * steps * (256 + 128)  # RK4 steps through the union nodes
    cost = doc["cost"][mk]
    assert cost["total_model_evaluations"] >= cost["teacher"]["model_evaluations"] > rec["model_evaluations"]
    assert cost["jacobian"]["reverse_passes"] > 0 and cost["jobs"]["model_evaluations"] > 0
    # amplification at every union node but delta, measured only (no analytic rate, nothing called a bound)
    rows = doc["amplification"][mk]
    assert [r["t"] for r in rows] == info["union_nodes"][:-1]
    assert all(r["predicted"] == {} and r["holds"] == {} for r in rows)
    assert doc["fan_bound_holds_everywhere"] == {}
    tr = doc["trajectory"][mk]
    assert tr["factor"] == "measured" and tr["one_step"]["n"] == 4
    for job in doc["jobs"]:
        assert job["fan"] == {}
        f = job["fan_trajectory"]
        assert f["factor"] == "measured" and f["estimate_end"] > 0 and "not a bound" in f["what"]
        key = f"{job['grid']}/{job['N']}"
        assert f["estimate_end"] == pytest.approx(sum(e["value"] * q for e, q in zip(
            job["local_error_chain"], tr["grids"][key]["rms_measured_to_delta"][1:])), rel=1e-12)
        # block and teacher Lipschitz constants on the same points: the teacher's are the Jacobian phase's
        for row, seg in zip(job["lipschitz"], tr["grids"][key]["segments"]):
            assert row["teacher_max"] == seg["measured_max"]
        assert job["local_error_chain"][0]["n"] == 64 and job["local_error_teacher"][0]["n"] == 128
        assert "distance" not in job  # no held-out data: --distance auto measures none
    one = {j["grid"]: j for j in doc["jobs"] if j["N"] == 1}
    assert one["uniform"]["rel_mse"] == one["empirical"]["rel_mse"]  # the same student, computed once
    text = (model_run / "summary.md").read_text()
    assert "self-convergence" in text and "Lipschitz mismatch" in text and "model evaluations" in text


def test_model_teacher_gives_the_mixture_teacher_on_a_wrapped_mixture():
    """NetworkTeacher on the exact denoiser = the mixture's exact torch teacher, node by node and in its Jacobians."""
    import torch

    from flowcert.distill.teacher import NetworkTeacher, Teacher
    from flowcert.models.exact import exact_model
    from flowcert.numcore import marginal
    from flowcert.numcore.mixture import builtin

    mix = builtin("square4")
    x = marginal.sample(mix, 5.0, 32, 0)
    nodes = [5.0, 1.0, 0.2, 0.05, 1e-3]
    net = NetworkTeacher(exact_model(mix), delta=1e-3, T=5.0, steps=400, via=nodes)
    traj = net.trajectory(x, nodes)
    np.testing.assert_allclose(traj.numpy(), Teacher(mix).trajectory(x, nodes).numpy(), atol=1e-6)
    # through the union nodes: the same steps (up to the rounding of e^{-t} e^{t} between OU and VE states)
    np.testing.assert_allclose(net.flow(traj[:, 1], 1.0, 1e-3).numpy(), traj[:, -1].numpy(), rtol=1e-12, atol=1e-12)
    states, J = net.segment_jacobians(x[:3], nodes)
    for k in range(len(nodes) - 1):
        _, ref = Teacher(mix).flow_jacobian(states[:, k], nodes[k], nodes[k + 1])
        np.testing.assert_allclose(J[k].numpy(), ref.numpy(), atol=1e-6 * float(ref.abs().max()))


def test_wrapped_mixture_gives_the_mixture_sweep_within_intervals(tmp_path, runner):
    """validate --model mixture:SPEC against validate SPEC: other x_T (N(0, I) against p_T) and another rate
    estimate (Lanczos on the network path), the same students' errors within their 95% intervals over 3 seeds."""
    common = [*SIZES[:2], "--seeds", "3", *SIZES[4:], "--grids", "uniform,empirical", "--empirical-samples", "64"]
    a, b = tmp_path / "mixture", tmp_path / "model"
    r = runner.invoke(main, ["validate", "square4", *common, "--out", str(a)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["validate", "--model", "mixture:square4", *common, "--teacher-steps", "64",
                             "--rate-points", "12", "--out", str(b)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows_a = {(r["grid"], r["N"]): r for r in json.loads((a / "results.json").read_text())["summary"]}
    rows_b = {(r["grid"], r["N"]): r for r in json.loads((b / "results.json").read_text())["summary"]}
    assert rows_a.keys() == rows_b.keys()
    for key, ra in rows_a.items():
        rb = rows_b[key]
        lo_a, hi_a = ra["rel_mse_ci"]
        lo_b, hi_b = rb["rel_mse_ci"]
        assert lo_a <= hi_b and lo_b <= hi_a, (key, ra["rel_mse_ci"], rb["rel_mse_ci"])
        assert 0.5 < ra["rel_mse"] / rb["rel_mse"] < 2.0, key
    grids_a = json.loads((a / "grids.json").read_text())["0-square4"]["grids"]["empirical/2"]["nodes"]
    grids_b = json.loads((b / "grids.json").read_text())["0-square4"]["grids"]["empirical/2"]["nodes"]
    assert grids_a[1] == pytest.approx(grids_b[1], rel=0.35)  # the balanced grid's interior node, two estimates


def test_model_run_resumes_after_sigkill_with_identical_results(model_run, tmp_path, runner):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "flowcert.cli", "validate", *MODEL, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not list(out.glob("jobs/*/group0.pt")):
            if proc.poll() is not None:
                pytest.fail("the run ended before it could be killed")
            time.sleep(0.05)
        assert list(out.glob("jobs/*/group0.pt")), "no checkpoint appeared"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "results.json").exists()  # killed mid-way
    assert (out / "jacobian").is_dir() and (out / "teacher").is_dir()
    r = runner.invoke(main, ["validate", "--resume", str(out), "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert results(out) == results(model_run)


def test_a_damaged_jacobian_file_is_named_with_the_way_back(model_run, tmp_path, runner):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model_run, run)
    (run / "results.json").unlink()
    for p in run.glob("jobs/*/result.json"):
        p.unlink()
    jac = next((run / "jacobian").glob("*.pt"))
    jac.write_bytes(jac.read_bytes()[:400])
    r = runner.invoke(main, ["validate", "--resume", str(run)])
    one_line(r, "run file", jac.name, "delete it")


@pytest.mark.parametrize("args, needle", [
    (["--model", "mixture:line2", "--distance", "sw2"], "--distance = 'sw2'"),
    (["--model", "mixture:line2", "--grids", "uniform,surrogate"], "--grids = 'surrogate'"),
    (["--model", "mixture:line2", "--steps", "8", "--teacher-steps", "4"], "--steps = 8"),
    (["--model", "mixture:line2", "--block", "conv"], "--block = 'conv'"),
    (["--model", "mixture:line2", "--bound", "tri"], "--bound = 'tri'"),
    (["ring8", "--model", "mixture:line2"], "not both"),
    (["ring8", "--block", "conv"], "--block = 'conv'"),
    (["ring8", "--grids", "uniform,surrogate"], "--grids = 'surrogate'"),
    (["ring8", "--data", "x.npy"], "--data"),
    (["--model", "nosuchmodel"], "--model = 'nosuchmodel'"),
    (["--model", "digits", "--delta", "1e-6"], "below the model's trained range"),
    (["--model", "digits", "--data", "bad.npy"], "has shape (10, 3)"),
    (["--model", "mixture:line2", "--resume", "."], "drop --model"),
])
def test_bad_model_options_one_line_exit_2(runner, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    np.save("bad.npy", np.zeros((10, 3)))
    np.save("x.npy", np.zeros((10, 2)))
    r = runner.invoke(main, ["validate", *args] + (["--out", str(tmp_path / "o")] if "--resume" not in args else []))
    one_line(r, needle)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The shipped digits UNet, conv blocks, at the smallest sizes (its own data: the held-out digits' SW2)."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("digits") / "run"
    r = CliRunner().invoke(main, ["validate", "--model", "digits", "--steps", "1,2", "--grids", "uniform,logsnr",
                                  "--block", "conv", "--width", "4", "--seeds", "1", "--train-samples", "48",
                                  "--test-samples", "32", "--teacher-steps", "4", "--iters", "10", "--batch", "16",
                                  "--amp-samples", "2", "--lip-samples", "2", "--local-samples", "8", "--device", "cpu",
                                  "--threads", "1", "--quiet", "--no-plots", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_digits_run_with_conv_blocks(digits_run):
    from flowcert.distill.students import conv_param_count

    doc = json.loads((digits_run / "results.json").read_text())
    cfg = doc["config"]
    assert cfg["shape"] == [1, 8, 8] and cfg["block"] == "conv"
    assert cfg["data"].endswith("train.npy") and cfg["reference"].endswith("test.npy") and len(cfg["data_sha256"]) == 64
    for job in doc["jobs"]:
        assert job["block"] == "conv" and job["params_per_block"] == conv_param_count((1, 8, 8), 4, 2)
        d = job["distance"]
        assert d["reference_samples"] == 360 and d["directions"] == 256
        assert 0 <= d["sw2"]["ci_low"] <= d["sw2"]["value"] <= d["sw2"]["ci_high"]
    (mk, c), = doc["cost"].items()
    assert c["teacher"]["model_evaluations"] > 0 and doc["teacher"][mk]["0"]["self_convergence"]["samples"] == 32


def test_a_guided_model_joins_through_model_options(tmp_path):
    """The hook for a class-conditional model at one guidance scale (the guided digits-flow of issue 19): a
    labelled mixture behind the model interface, conditioned and guided once, recorded in the configuration;
    bad values are refused by the conditioning's own checks before any work."""
    from flowcert.distill.sweeps import load_model
    from flowcert.distill.validation import model_config
    from flowcert.models.guidance import GuidedDenoiser
    from flowcert.numcore.checks import InputError

    spec = tmp_path / "lab.yaml"
    spec.write_text("means: [[-2.0], [2.0]]\nvariance: 0.25\nlabels: [0, 1]\n")
    cfg = model_config(f"mixture:{spec}", model_options={"class_label": 1, "guidance": 2.0}, steps=[1, 2],
                       grids=["uniform"], teacher_steps=8)
    assert cfg.model_options == {"class_label": 1, "guidance": 2.0}
    model = load_model(cfg.model, cfg.model_options, "cpu")
    assert isinstance(model, GuidedDenoiser)
    for bad, needle in (({"guidance": -1.0, "class_label": 1}, "`guidance` = -1"), ({"class_label": 7}, "`class_label` = 7"),
                        ({"seed": 1}, "`model_options`")):
        with pytest.raises(InputError, match=needle):
            model_config(f"mixture:{spec}", model_options=bad)


def test_class_label_keeps_only_the_class_rows_of_the_data(tmp_path):
    """A labels file selects one class's samples (brute force: the rows whose label matches), checked against its
    recorded sha256 like the data; a wrong count, non-integer labels and an empty class are refused in one line."""
    from flowcert.distill.sweeps import class_rows, file_sha256, load_data_checked
    from flowcert.numcore.checks import InputError

    rng = np.random.default_rng(0)
    x, lab = rng.normal(size=(50, 3)), rng.integers(0, 4, size=50)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", lab)
    xs, ys = str(tmp_path / "x.npy"), str(tmp_path / "y.npy")
    got = load_data_checked(xs, file_sha256(xs), 3, "data", ys, file_sha256(ys), 2)
    assert np.array_equal(got, x[lab == 2])
    assert np.array_equal(load_data_checked(xs, file_sha256(xs), 3, "data"), x)  # no labels: every row
    np.save(tmp_path / "y.npy", lab[::-1].copy())
    with pytest.raises(InputError, match="`data_labels` = .*changed since the run started"):
        load_data_checked(xs, file_sha256(xs), 3, "data", ys, "0" * 64, 2)
    for bad, needle in ((lab[:10], "expected 50 integer labels"), (lab.astype(float), "expected 50 integer labels"),
                        (np.zeros(50, int), "has 0 samples of this class")):
        np.save(tmp_path / "b.npy", bad)
        with pytest.raises(InputError, match=needle):
            class_rows(str(tmp_path / "b.npy"), 50, 2, "data")


def test_validate_cli_conditions_and_guides_a_model(runner, tmp_path, monkeypatch):
    """--class-label and --guidance reach the run as model_options (recorded in config.json); with the shipped
    guided model the data are its class's samples (its labels recorded); without --model they are refused."""
    from flowcert.distill.validation import model_config

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "lab.yaml"
    spec.write_text("means: [[-2.0], [2.0]]\nvariance: 0.25\nlabels: [0, 1]\n")
    r = runner.invoke(main, ["validate", "--model", f"mixture:{spec}", "--class-label", "1", "--guidance", "2",
                             "--grids", "uniform", "--steps", "1", "--seeds", "1", "--iters", "5", "--train-samples",
                             "32", "--test-samples", "16", "--width", "4", "--batch", "16", "--teacher-steps", "4",
                             "--amp-samples", "2", "--lip-samples", "2", "--local-samples", "8", "--quiet",
                             "--no-plots", "--out", "run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model_options"] == {"class_label": 1, "guidance": 2.0} and not cfg["data_labels"]
    one_line(runner.invoke(main, ["validate", "ring8", "--guidance", "2", "--out", "o"]), "--guidance", "--model")
    one_line(runner.invoke(main, ["validate", "--model", "digits-flow", "--class-label", "12", "--out", "o"]),
             "--class-label = 12", "classes 0..9")
    cfg = model_config("digits-flow", model_options={"class_label": 3}, steps=[1], grids=["uniform"])
    labels = np.load(cfg.data_labels)
    assert cfg.data_labels.endswith("train_labels.npy") and cfg.reference_labels.endswith("test_labels.npy")
    assert 0 < (labels == 3).sum() < labels.size and len(cfg.data_labels_sha256) == 64


def test_a_model_presets_options_are_not_refused_as_inert(runner, tmp_path, monkeypatch):
    """An option that acts through the model preset's grids (quick: uniform and empirical) is accepted: the check of
    what acts reads the model presets, as the run does (it fails later, on the bad model, not on the option)."""
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(main, ["validate", "--model", "nosuchmodel", "--preset", "quick", "--empirical-samples", "16",
                             "--out", "o"])
    one_line(r, "--model = 'nosuchmodel'")
    r = runner.invoke(main, ["validate", "ring8", "--preset", "quick", "--empirical-samples", "16", "--out", "o"])
    one_line(r, "--empirical-samples")
