"""Time-input score networks: sizes equal the formulas, error below eps across [delta, T]."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracles
from flowcert.bounds.certificate import score_scale
from flowcert.bounds.certificate_time import certify_window, verify_window
from flowcert.cli import main
from conftest import random_spec
from flowcert.numcore import marginal, timecoef
from flowcert.numcore.mixture import builtin, from_spec

STRUCT = {"isotropic": "iso", "diagonal": "diag_k", "full": "full_k"}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 3), K=st.integers(2, 4),
       kind=st.sampled_from(sorted(STRUCT)), logdelta=st.floats(math.log(1e-3), math.log(0.1)),
       T=st.floats(1.0, 5.0), p=st.sampled_from([1.0, 2.0]), logeps=st.floats(math.log(1e-4), math.log(1e-1)))
def test_random_time_networks(seed, d, K, kind, logdelta, T, p, logeps):
    rng = np.random.default_rng(seed)
    mix = from_spec(random_spec(rng, d, K, STRUCT[kind], var_lo=0.02, var_hi=1.5))
    delta = math.exp(logdelta)
    eps = min(math.exp(logeps), 0.5 * min(score_scale(mix, delta), score_scale(mix, T)))
    cert = certify_window(mix, delta, T, eps, p, "tight")
    net = cert.build()
    assert (net.depth, net.width, net.params) == (cert.depth, cert.width, cert.params)
    for res in verify_window(cert, net, 4000, times=3, seed=seed % 100):
        assert res["ci_high"] < eps, res
        assert res["max_in_box_error"] <= res["in_box_bound"]


@pytest.mark.parametrize("name", ["ring8", "aniso3", "hetero3"])
def test_builtins_pointwise_against_oracle(name):
    mix = builtin(name)
    cert = certify_window(mix, 1e-3, 5.0, 1e-3, 2.0, "closed")
    net = cert.build()
    assert (net.depth, net.width, net.params) == (cert.depth, cert.width, cert.params)
    b = cert.budget
    bound = b["trunc"] + b["exp"] + b["recip"] + b["coef"]
    rng = np.random.default_rng(1)
    for t in (1e-3, 2.3e-3, 0.04, 0.9, 5.0):
        x = marginal.sample(mix, t, 40, rng)
        y = net(np.concatenate([x, np.full((40, 1), t)], 1))
        for xi, yi in zip(x, y):
            if np.all(np.abs(xi) <= cert.choices["R"]):
                s = oracles.score(xi, mix.weights, mix.means, mix.covs, t)
                assert np.linalg.norm(yi - s) <= bound


def test_interpolants_against_functions_and_decay():
    sig = np.array([0.01, 0.3, 2.0])
    errs = []
    for N in (4, 8, 12):
        co = timecoef.interpolate(1e-3, 5.0, sig, N)
        t = np.exp(np.random.default_rng(N).uniform(np.log(1e-3), np.log(5.0), 3000))
        vals = co.evaluate(t)
        true = np.stack([f(t) for f in timecoef.functions(co.sigma2)])
        err = np.abs(vals - true).max(1)
        assert np.all(err <= co.error * (1 + 1e-6) + 1e-15)  # the dense grid saw the sup
        assert np.all(co.error <= co.bound)                    # the proven bound holds
        errs.append(co.eta_f)
    assert errs[1] < errs[0] / 20 and errs[2] < errs[1] / 20  # geometric decay (about 3^-N)
    hats = timecoef.hat_values(co.tau, t)
    np.testing.assert_allclose(hats.sum(0), 1.0, atol=1e-12)


def test_cli_window_json(runner):
    r = runner.invoke(main, ["certify", "hetero3", "--eps", "1e-2", "--delta", "1e-3", "--T", "5",
                             "--verify", "3000", "--times", "3", "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["part"] == "B" and out["materialized"]["matches_formulas"]
    ts = [v["t"] for v in out["verification"]]
    assert ts[0] == pytest.approx(1e-3) and ts[-1] == pytest.approx(5.0) and len(ts) == 3
    assert all(v["ci_high"] < 1e-2 for v in out["verification"])
    for key in ("mc_error", "ci_low", "ci_high", "n_samples", "choices", "budget"):
        assert key in out
    assert "coef" in out["budget"] and "N_ch" in out["choices"]


@settings(max_examples=25, deadline=None)
@given(s2=st.floats(1e-3, 20.0), lo=st.floats(1e-4, 3.0), ratio=st.floats(1.1, 4.0), N=st.integers(3, 30))
def test_ellipse_bound_is_a_bound(s2, lo, ratio, N):
    hi = lo * ratio
    x = np.cos(np.linspace(0, np.pi, 3001))
    tt = 0.5 * (lo + hi) + 0.5 * (hi - lo) * x
    for kind, fn in (("alpha", timecoef.alpha), ("f", lambda t: timecoef.f_sigma(t, s2)),
                     ("ell", lambda t: timecoef.ell_sigma(t, s2))):
        c = timecoef._interpolant(lambda z: fn(0.5 * (lo + hi) + 0.5 * (hi - lo) * z), N)
        from numpy.polynomial import chebyshev as C

        err = np.abs(C.chebval(x, c) - fn(tt)).max()
        assert err <= timecoef.ellipse_bound(kind, s2, lo, hi, N) + 1e-14 * (np.abs(c).sum() + 1)  # + round-off
