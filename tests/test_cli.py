"""The command line: outputs, formats, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowcert.cli import main


def run(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_grid_json_fields(runner):
    r = run(runner, "grid", "ring8", "--steps", "8", "--units", "sigma,logsnr,ddpm", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for key in ("t", "lambda", "kind", "bound", "steps", "sigma", "logsnr", "ddpm"):
        assert key in out
    t = np.array(out["t"])
    assert t.size == 9 and t[0] == 5.0 and t[-1] == 1e-3 and np.all(np.diff(t) < 0)
    lam = np.array(out["lambda"])
    np.testing.assert_allclose(np.diff(lam), -lam[0] / 8, rtol=1e-8)
    np.testing.assert_allclose(out["sigma"], np.sqrt(np.expm1(2 * t)))


@pytest.mark.parametrize("kind", ["uniform", "edm", "logsnr"])
def test_grid_kinds(runner, kind):
    out = json.loads(run(runner, "grid", "square4", "--kind", kind, "--steps", "4", "--format", "json").output)
    assert out["kind"] == kind and len(out["t"]) == 5


def test_grid_files(runner, tmp_path):
    for ext in ("json", "csv", "npy"):
        path = tmp_path / f"g.{ext}"
        r = run(runner, "grid", "line2", "--steps", "3", "--units", "sigma", "-o", str(path))
        assert r.exit_code == 0, r.output
        assert path.exists()
    rec = np.load(tmp_path / "g.npy")
    assert rec.dtype.names == ("t", "lambda", "sigma") and rec.shape == (4,)
    head = (tmp_path / "g.csv").read_text().splitlines()[0]
    assert head == "t,lambda,sigma"


def test_grid_empirical_states_samples_and_seed(runner):
    out = json.loads(run(runner, "grid", "line2", "--bound", "empirical", "--samples", "256", "--steps", "4",
                         "--format", "json").output)
    assert out["bound_info"]["samples"] == 256 and out["bound_info"]["seed"] == 0
    lo, hi = out["bound_info"]["lambda_T_mc_interval"]
    assert lo <= out["lambda_T"] <= hi


def test_lipschitz_json_and_plot(runner, tmp_path):
    png = tmp_path / "lt.png"
    r = run(runner, "lipschitz", "line2", "--points", "6", "--empirical", "500", "--format", "json", "--plot", str(png))
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for key in ("t", "tri", "sharp", "onesided", "empirical_sup", "empirical_mean", "trajectory_rate_mean",
                "trajectory_rate_p99"):
        assert len(out[key]) == 6
    assert np.all(np.array(out["empirical_sup"]) <= np.array(out["sharp"]) * (1 + 1e-9))
    # the along-trajectory rate lambda_max(-J) never exceeds the one-sided bound
    assert np.all(np.array(out["trajectory_rate_p99"]) <= np.array(out["onesided"]) * (1 + 1e-9) + 1e-12)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_lipschitz_ball_scope_reports_radius(runner):
    out = json.loads(run(runner, "lipschitz", "hetero3", "--points", "4", "--format", "json").output)
    assert out["scope"] == "ball" and len(out["radius"]) == 4 and out["ball_mass"] > 0.99


def test_mixture_summary(runner):
    r = run(runner, "mixture", "ring8", "--format", "json", "--amp-samples", "0")
    out = json.loads(r.output)
    assert out["K"] == 8 and out["d"] == 2 and out["bounds"]["tri"]["lambda_T"] > 0
    assert "amplification" not in out


def test_mixture_amplification_fields(runner):
    r = run(runner, "mixture", "line2", "--format", "json", "--amp-samples", "24", "--seed", "3")
    assert r.exit_code == 0, r.output
    a = json.loads(r.output)["amplification"]
    assert set(a["worst_case"]) == {"tri", "sharp", "onesided"}
    for key in ("certified", "measured", "predicted"):
        s = a[key]
        assert s["n"] == 24 and s["mean_ci"][0] <= s["mean"] <= s["mean_ci"][1] and s["p99"] <= s["max"]
    assert a["certificate_holds"] == a["trajectories"] == 24
    assert a["measured"]["max"] <= a["certified"]["max"] < a["worst_case"]["sharp"]
    # d = 1: the Gronwall integral is the log of the flow Jacobian
    assert abs(a["predicted"]["max"] / a["measured"]["max"] - 1) < 1e-3
    text = run(runner, "mixture", "line2", "--amp-samples", "8").output
    assert "certified" in text and "upper bound per trajectory" in text and "estimate" in text
    bad = runner.invoke(main, ["mixture", "line2", "--amp-samples", "-1"])
    assert bad.exit_code == 2 and "--amp-samples" in bad.output


def test_latex(runner):
    r = run(runner, "lipschitz", "ring8", "--latex")
    assert r"\max" in r.output and "e^{- 2 t}" in r.output


def _spec_file(tmp_path, text, ext="json", stem="m"):
    p = tmp_path / f"{stem}.{ext}"
    p.write_text(text)
    return str(p)


BAD = [
    ('{"means": [[0, 0], [1]], "variance": 0.1}', "means"),
    ('{"means": [[0, NaN]], "variance": 0.1}', "means contains nan"),
    ('{"means": [[0, 1e999]], "variance": 0.1}', "means contains inf"),
    ('{"means": [[0], [1]], "variance": -1}', "variance"),
    ('{"means": [[0], [1]], "variance": [0.1, 0.2, 0.3]}', "variance has 3 entries"),
    ('{"means": [[0, 0]], "cov": [[1, 0.5], [0, 1]]}', "not symmetric"),
    ('{"means": [[0, 0]], "cov": [[1, 2], [2, 1]]}', "positive-definite"),
    ('{"means": [[0, 0]], "cov": [[1, 0], [0, 1], [0, 0]]}', "cov has shape"),
    ('{"means": [[0], [1]], "weights": [1.5, -0.5], "variance": 1}', "weights"),
    ('{"means": [[0], [1]], "weights": [0.3, 0.3], "variance": 1}', "weights sum to 0.6"),
    ('{"means": [], "variance": 1}', "means"),
    ('{"means": [[0]], "variance": 1, "colour": "red"}', "unknown key 'colour'"),
    ('{"means": [[0]], "variance": 1, "cov": [[1]]}', "both variance and cov"),
    ('{"means": [[0]]}', "neither variance nor cov"),
    ('{"variance": 1}', "means is missing"),
    ('{"means": [[0]], "variance": 1e-12}', "too small"),
    ('[1, 2]', "expected a mapping"),
    ('{"means": [[0]], "variance": 1', "is not valid JSON"),
]


@pytest.mark.parametrize("text,needle", BAD)
def test_bad_spec_one_line_exit_2(runner, tmp_path, text, needle):
    r = runner.invoke(main, ["mixture", _spec_file(tmp_path, text)])
    assert r.exit_code == 2
    assert r.exception is None or isinstance(r.exception, SystemExit)
    msg = r.output.strip()
    assert msg.startswith("Error:") and "\n" not in msg and needle in msg, msg


def test_bad_files_and_limits(runner, tmp_path):
    cases = [
        (["mixture", str(tmp_path / "missing.yaml")], "neither a file nor a built-in"),
        (["mixture", _spec_file(tmp_path, "means: [[0]]\nvariance: 1\n", "txt")], "extension"),
        (["mixture", _spec_file(tmp_path, "means: [[0]\n", "yaml")], "does not parse as YAML"),
        (["mixture", _spec_file(tmp_path, "means = 3\nvariance = 1\n", "toml")], "means"),
        (["mixture", _spec_file(tmp_path, json.dumps({"means": np.zeros((1, 1025)).tolist(), "variance": 1}), stem="wide")],
         "d <= 1024"),
        (["mixture", _spec_file(tmp_path, json.dumps({"means": np.zeros((1025, 1)).tolist(), "variance": 1}), stem="many")],
         "K <= 1024"),
        (["grid", "ring8", "--steps", "0"], "--steps = 0"),
        (["grid", "ring8", "--delta", "1", "--T", "0.5"], "--delta = 1"),
        (["grid", "ring8", "--delta", "-1"], "--delta = -1"),
        (["grid", "ring8", "--units", "furlongs"], "--units = 'furlongs'"),
        (["grid", "ring8", "--units", "ddpm", "--beta-schedule", "scaled_linear"], "outside"),
        (["grid", "ring8", "--format", "npy"], "-o FILE.npy"),
        (["lipschitz", "ring8", "--bound", "loose"], "--bound = 'loose'"),
        (["lipschitz", "ring8", "--points", "1"], "--points = 1"),
        (["grid", "ring8", "-o", str(tmp_path / "nope" / "g.json")], "does not exist"),
    ]
    for args, needle in cases:
        r = runner.invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        msg = r.output.strip().splitlines()[-1]
        assert needle in msg, (args, msg)


def test_spec_formats_agree(runner, tmp_path):
    import yaml

    spec = {"weights": [0.25, 0.75], "means": [[0.0, 1.0], [2.0, -1.0]], "cov": [[0.2, 0.05], [0.05, 0.1]]}
    paths = [_spec_file(tmp_path, json.dumps(spec), "json"), _spec_file(tmp_path, yaml.safe_dump(spec), "yaml")]
    toml_text = 'weights = [0.25, 0.75]\nmeans = [[0.0, 1.0], [2.0, -1.0]]\ncov = [[0.2, 0.05], [0.05, 0.1]]\n'
    paths.append(_spec_file(tmp_path, toml_text, "toml"))
    outs = [json.loads(run(runner, "grid", p, "--steps", "4", "--format", "json").output)["t"] for p in paths]
    assert outs[0] == outs[1] == outs[2]


def test_clip_warns(runner):
    r = runner.invoke(main, ["grid", "ring8", "--units", "ddpm", "--beta-schedule", "scaled_linear", "--clip",
                             "--format", "json"])
    assert r.exit_code == 0
    assert "clipped" in r.output  # CliRunner mixes stderr into output


def test_demo_writes_its_files(runner, tmp_path):
    r = runner.invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert names == ["certify.json", "grid_balanced.json", "grid_edm.json", "grid_logsnr.json",
                     "grid_uniform.json", "lipschitz.json", "lipschitz.png", "net.npz"]
    cert = json.loads((tmp_path / "demo" / "certify.json").read_text())
    assert cert["ci_high"] < cert["eps"]
    lip = json.loads((tmp_path / "demo" / "lipschitz.json").read_text())
    assert all(v["holds_at_all_points"] for v in lip["tightness"].values())


def test_output_extension_sets_the_format_or_is_refused(tmp_path):
    """-o FILE.json writes JSON for every command that writes JSON (it wrote the text table into a .json file for
    lipschitz and solvers); an extension naming a format the command cannot write is refused, not filled with text."""
    from click.testing import CliRunner

    runner = CliRunner()
    out = tmp_path / "l.json"
    r = runner.invoke(main, ["lipschitz", "ring8", "--points", "3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "t" in json.loads(out.read_text())
    r = runner.invoke(main, ["solvers", "line2", "--steps", "2", "--samples", "64", "--train-samples", "32",
                             "--solvers", "euler", "-o", str(tmp_path / "s.csv")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "s.csv" in r.output and "json" in r.output
    assert not (tmp_path / "s.csv").exists()


def test_train_example_with_a_bad_option_leaves_no_folder(tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "never"
    r = CliRunner().invoke(main, ["train-example", "digits-flow", "--steps", "-5", "--out", str(out)])
    assert r.exit_code == 2 and "steps" in r.output
    assert not out.exists()
