"""flowcert validate: resumable sweep, executors, results, bad options (CPU, tiny sizes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowcert.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["ring8", "--steps", "1,2", "--grids", "uniform,balanced", "--seeds", "1", "--iters", "120",
        "--train-samples", "512", "--test-samples", "256", "--width", "16", "--batch", "128", "--group", "1",
        "--amp-times", "2", "--amp-samples", "32", "--lip-samples", "16", "--device", "cpu", "--quiet", "--no-plots"]


def strip_timing(obj):
    """Everything but wall-clock times (which differ between runs by nature)."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k != "timing"}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def results(out) -> dict:
    return strip_timing(json.loads((Path(out) / "results.json").read_text()))


def invoke(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("ref") / "run"
    r = CliRunner().invoke(main, ["validate", *TINY, "--out", str(out), "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_results_fields_and_checks(reference):
    doc = json.loads((reference / "results.json").read_text())
    for key in ("config", "seeds", "versions", "device", "mixtures", "amplification", "jobs", "summary",
                "fan_bound_holds_everywhere", "timing"):
        assert key in doc
    assert len(doc["jobs"]) == 4
    for job in doc["jobs"]:
        rel = job["rel_mse"]
        assert 0 < rel["ci_low"] <= rel["value"] <= rel["ci_high"]
        assert len(job["local_error_chain"]) == job["N"] == len(job["lipschitz"])
        for r in ("tri", "sharp", "onesided"):
            fan = job["fan"][r]
            assert fan["bound_end"] <= fan["bound"]
            assert fan["holds"] == (fan["bound"] >= fan["measured_rms"])
            assert fan["bound_ci"][0] <= fan["bound"] <= fan["bound_ci"][1]
            assert fan["measured_rms_ci"][0] <= fan["measured_rms"] <= fan["measured_rms_ci"][1]
        assert job["nodes"][0] == 5.0 and job["nodes"][-1] == 1e-3
    one = {j["grid"]: j for j in doc["jobs"] if j["N"] == 1}
    # N = 1: both grids are [T, delta], and paired seeds make the students identical
    assert one["uniform"]["rel_mse"] == one["balanced"]["rel_mse"]
    rows = {(r["grid"], r["N"]): r for r in doc["summary"]}
    assert rows[("balanced", 1)]["change_vs_uniform"] == 0.0
    for row in doc["amplification"]["0-ring8"]:
        assert row["holds"]["tri"] and row["holds"]["sharp"]  # exp(Lambda) bounds the measured max
        # the per-trajectory certificate bounds every measured trajectory, and is far below exp(Lambda)
        assert row["certificate_holds"] == row["certificate_checked"] == 32
        assert row["max"] <= row["certified"]["max"] * (1 + 1e-6) < row["predicted"]["tri"]
    tr = doc["trajectory"]["0-ring8"]
    assert tr["one_step"]["holds"] == tr["one_step"]["n"] == 32
    assert tr["one_step"]["measured_max"] <= tr["one_step"]["certified_max"]
    for key, g in tr["grids"].items():
        N = int(key.split("/")[1])
        assert len(g["segments"]) == N and len(g["rms_certified_to_delta"]) == N + 1
        assert all(s["holds"] == 32 for s in g["segments"])
        assert g["rms_certified_to_delta"][-1] == 1.0
    for job in doc["jobs"]:
        f = job["fan_trajectory"]
        assert 0 < f["estimate_end"] <= job["fan"]["onesided"]["bound_end"]
    text = (reference / "summary.md").read_text()
    assert "Lipschitz mismatch" in text and "certified p99 / max" in text


def test_resume_after_sigkill_gives_identical_results(reference, tmp_path, runner):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "flowcert.cli", "validate", *TINY, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
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
    r = invoke(runner, "validate", "--resume", str(out), "--quiet")
    assert r.exit_code == 0, r.output
    assert results(out) == results(reference)


def test_process_pool_gives_identical_results(reference, tmp_path, runner):
    out = tmp_path / "pool"
    r = invoke(runner, "validate", *TINY, "--out", str(out), "--executor", "process", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert results(out) == results(reference)


def test_ray_gives_identical_results(reference, tmp_path, runner):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    r = invoke(runner, "validate", *TINY, "--out", str(out), "--executor", "ray", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert results(out) == results(reference)


def test_same_out_same_config_is_a_no_op_resume(reference, runner):
    before = results(reference)
    r = invoke(runner, "validate", *TINY, "--out", str(reference))
    assert r.exit_code == 0, r.output
    assert results(reference) == before


@pytest.mark.parametrize("args, needle", [
    (["ring8", "--steps", "0"], "--steps = 0"),
    (["ring8", "--steps", "2,x"], "--steps = 'x'"),
    (["ring8", "--grids", "uniform,karras"], "--grids = 'karras'"),
    (["ring8", "--seeds", "0"], "--seeds = 0"),
    (["ring8", "--budget", "total", "--total-params", "10"], "--total-params = 10"),
    (["ring8", "--delta", "6"], "--delta = 6"),
    (["nosuchmixture"], "nosuchmixture"),
    ([], "SPEC is missing"),
    (["ring8", "--resume", "."], "drop the SPEC"),
    (["--resume", "/nonexistent/run"], "no such directory"),
])
def test_bad_options_one_line_exit_2(runner, tmp_path, args, needle):
    r = runner.invoke(main, ["validate", *args, "--out", str(tmp_path / "o")] if "--resume" not in args
                      else ["validate", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output and r.output.count("\n") == 1


def test_cuda_without_gpu_is_an_input_error(runner, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    r = runner.invoke(main, ["validate", "ring8", "--device", "cuda", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--device = 'cuda'" in r.output


def test_out_with_other_config_is_refused(reference, runner):
    r = runner.invoke(main, ["validate", *TINY[:-2], "--seeds", "2", "--out", str(reference)])
    assert r.exit_code == 2 and "different configuration" in r.output


def test_quick_preset_is_the_ring8_comparison():
    from flowcert.distill.config import build_config
    from flowcert.numcore.mixture import builtin

    cfg = build_config(["ring8"], [builtin("ring8").to_spec()], preset="quick")
    assert cfg.steps == [1, 4, 8] and cfg.grids == ["uniform", "balanced"] and cfg.seeds == 2
    cfg = build_config(["ring8"], [builtin("ring8").to_spec()], preset="quick", steps="2")
    assert cfg.steps == [2]  # explicit options override the preset


def test_total_budget_widths_fit_and_per_block_widths_do_not_change():
    from flowcert.distill.config import build_config
    from flowcert.distill.students import param_count
    from flowcert.distill.validation import block_width
    from flowcert.numcore.mixture import builtin

    spec = [builtin("ring8").to_spec()]
    cfg = build_config(["ring8"], spec, steps="1,2,4,8", budget="total", width=32, depth=2)
    total = 8 * param_count(2, 32, 2)
    widths = [block_width(cfg, N, 2) for N in cfg.steps]
    assert widths[-1] == 32 and widths == sorted(widths, reverse=True) and widths[0] > 64
    for N, w in zip(cfg.steps, widths):
        assert N * param_count(2, w, 2) <= total < N * param_count(2, w + 1, 2)
    cfg = build_config(["ring8"], spec, steps="1,2,4,8", width=32)
    assert {block_width(cfg, N, 2) for N in cfg.steps} == {32}


def test_bound_empirical_balances_on_the_data_aware_rate(tmp_path):
    from flowcert.distill.config import build_config
    from flowcert.distill.validation import load_mixtures, stability_phase
    from flowcert.numcore.mixture import builtin

    spec = [builtin("square4").to_spec() | {"name": "square4"}]
    cfg = build_config(["square4"], spec, steps="4", grids="balanced,empirical,uniform", bound="empirical",
                       empirical_samples=256)
    info = stability_phase(cfg, load_mixtures(cfg), tmp_path, progress=False)["0-square4"]
    assert info["grids"]["balanced/4"]["nodes"] == info["grids"]["empirical/4"]["nodes"]
    assert info["grids"]["balanced/4"]["nodes"] != info["grids"]["uniform/4"]["nodes"]
    assert info["Lambda_T"]["empirical"] < info["Lambda_T"]["sharp"] <= info["Lambda_T"]["tri"]
