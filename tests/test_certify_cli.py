"""flowcert certify: JSON fields, export, sweep/plot, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowcert.cli import main


def run(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_json_fields_verify_export(runner, tmp_path):
    path = tmp_path / "net.npz"
    r = run(runner, "certify", "ring8", "--eps", "1e-3", "--t", "0.05", "--verify", "20000",
            "--export", str(path), "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for key in ("depth", "width", "params", "eps", "p", "choices", "budget", "mc_error", "ci_low", "ci_high",
                "n_samples"):
        assert key in out
    for key in ("R", "G", "B", "m", "n", "J", "theta"):
        assert key in out["choices"]
    for key in ("tail", "trunc", "exp", "recip", "total"):
        assert key in out["budget"]
    assert out["ci_high"] < out["eps"] and out["n_samples"] == 20000
    assert out["formulas"]["depth"] == "D + J + L + m + 4" and "Max" in out["formulas"]["width"]
    assert out["materialized"]["matches_formulas"] and out["shrink_params"] > 1
    with np.load(path) as z:
        assert sum(1 for k in z.files if k.startswith("act")) == out["depth"]


def test_table_sweep_plot_latex(runner, tmp_path):
    png = tmp_path / "s.png"
    r = run(runner, "certify", "aniso3", "--eps", "1e-3", "--t", "0.1", "--sweep", "eps=1e-1:1e-4",
            "--plot", str(png), "--latex")
    assert r.exit_code == 0, r.output
    assert "\\frac" in r.output and "sweep over eps" in r.output and "sweep over delta" in r.output
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, word", [
    (("--eps", "0", "--t", "0.1"), "--eps"),
    (("--eps", "-1", "--t", "0.1"), "--eps"),
    (("--eps", "50", "--t", "0.1"), "scale"),
    (("--eps", "1e-3", "--t", "0.1", "--p", "0.5"), "--p"),
    (("--eps", "1e-3", "--t", "0"), "--t"),
    (("--eps", "1e-3", "--t", "-2"), "--t"),
    (("--eps", "1e-3", "--delta", "1", "--T", "0.5"), "--delta"),
    (("--eps", "1e-3", "--t", "0.1", "--sweep", "foo=1:2"), "--sweep"),
])
def test_bad_input_one_line_exit_2(runner, args, word):
    r = runner.invoke(main, ["certify", "ring8", *args])
    assert r.exit_code == 2, r.output
    lines = [l for l in r.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and word in lines[0], r.output


def test_latex_inside_json(runner):
    r = run(runner, "certify", "hetero3", "--eps", "1e-2", "--latex", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert "params_{B}" in out["latex"] and "\\mathrm{depth} = " + str(out["depth"]) in out["latex"]


def test_sweep_json_polylog_growth(runner):
    r = run(runner, "certify", "hetero3", "--eps", "1e-3", "--t", "0.01", "--sweep", "eps=1e-1:1e-8",
            "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["sweep"]["eps"]
    assert [row["eps"] for row in rows] == pytest.approx([10.0**-k for k in range(1, 9)])
    closed = [row["params_closed"] for row in rows]
    assert closed == sorted(closed)                      # more accuracy never costs less (closed form)
    # polylogarithmic: 7 decades of eps cost a few layers and well under 3x the parameters
    assert rows[-1]["depth"] - rows[0]["depth"] <= 8
    assert rows[-1]["params"] <= 3 * rows[0]["params"] and rows[-1]["params_closed"] <= 3 * rows[0]["params_closed"]
    assert all(row["params"] <= row["params_closed"] for row in rows)
