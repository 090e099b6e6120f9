"""Certified fixed-t score networks: sizes equal the formulas, measured error below eps, gadgets exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcert.bounds import codegen
from flowcert.bounds.certificate import certify, score_scale
from flowcert.bounds.verification import verify
from flowcert.numcore import gadgets, marginal
from flowcert.numcore.checks import InputError
from flowcert.numcore.mixture import builtin, from_spec
from flowcert.numcore.network import Network

import oracles
from conftest import random_spec

STRUCT = {"isotropic": "iso", "diagonal": "diag_k", "full": "full_k", "shared": "shared"}


def random_mixture(seed, d, K, kind):
    rng = np.random.default_rng(seed)
    return from_spec(random_spec(rng, d, K, STRUCT[kind], var_lo=0.02, var_hi=1.5), name=f"r{seed}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 8), K=st.integers(2, 8),
       kind=st.sampled_from(sorted(STRUCT)), logt=st.floats(math.log(1e-3), math.log(5.0)),
       p=st.sampled_from([1.0, 2.0]), logeps=st.floats(math.log(1e-6), math.log(1e-1)),
       cert_kind=st.sampled_from(["tight", "closed"]))
def test_random_mixtures_sizes_and_error(seed, d, K, kind, logt, p, logeps, cert_kind):
    mix = random_mixture(seed, d, K, kind)
    t = math.exp(logt)
    eps = min(math.exp(logeps), 0.5 * score_scale(mix, t))
    cert = certify(mix, t, eps, p, cert_kind)
    net = cert.build()
    assert (net.depth, net.width, net.params) == (cert.depth, cert.width, cert.params)
    assert cert.budget["total"] <= eps * (1 + 1e-12)
    res = verify(cert, net, 20000, seed=seed % 1000)
    assert res["ci_high"] < eps, res
    assert res["max_in_box_error"] <= res["in_box_bound"]


@pytest.mark.parametrize("name", ["ring8", "modes8d", "aniso3", "hetero3", "line2", "square4"])
def test_builtins_formulas_exact_and_tight_smaller(name):
    mix = builtin(name)
    tight, closed = certify(mix, 0.01, 1e-4, 2, "tight"), certify(mix, 0.01, 1e-4, 2, "closed")
    for c in (tight, closed):
        net = c.build()
        assert (net.depth, net.width, net.params) == (c.depth, c.width, c.params)
    assert tight.params < closed.params and tight.width <= closed.width
    assert tight.choices["R"] <= closed.choices["R"] and tight.choices["n"] <= closed.choices["n"]


def test_network_matches_oracle_pointwise_in_box():
    mix = builtin("hetero3")
    t, eps = 0.02, 1e-4
    cert = certify(mix, t, eps, 2, "tight")
    net = cert.build()
    rng = np.random.default_rng(3)
    R = cert.choices["R"]
    x = np.concatenate([marginal.sample(mix, t, 300, rng), rng.uniform(-R, R, size=(300, mix.d))])
    bound = cert.budget["trunc"] + cert.budget["exp"] + cert.budget["recip"]
    y = net(x)
    for xi, yi in zip(x, y):
        s = oracles.score(xi, mix.weights, mix.means, mix.covs, t)
        assert np.linalg.norm(yi - s) <= bound + 1e-9
    # outside the box the network returns its value at the clipped point
    far = np.array([[3 * R, -3 * R]])
    np.testing.assert_allclose(net(far), net(np.clip(far, -R, R)), rtol=0, atol=1e-12)


def test_each_budget_term_within_its_share():
    mix = builtin("modes8d")
    for kind in ("tight", "closed"):
        c = certify(mix, 0.1, 1e-5, 1.0, kind)
        b = c.budget
        assert b["tail"] <= 1e-5 / 2 * (1 + 1e-9)
        for k in ("trunc", "exp", "recip"):
            assert b[k] <= 1e-5 / 6 * (1 + 1e-9)
    # the tight choices are the smallest: one less n or J breaks its inequality
    from flowcert.bounds import _generated as gen

    c = certify(mix, 0.1, 1e-5, 1.0, "tight")
    ch, K, G = c.choices, mix.K, c.choices["G"]
    if ch["n"] > 3:
        smaller = gen.cert_exp(K, G, gen.cert_delta(ch["B"], float(ch["m"]), float(ch["n"] - 1)))
        assert smaller > 1e-5 / 6
    if ch["J"] > 3:
        assert gen.cert_recip(G, c.budget["theta"], float(ch["J"] - 1)) > 1e-5 / 6
    assert c.geometry.tail(ch["R"] * (1 - 1e-6), 1.0, 1e-5, "tight") > 1e-5 / 2 * (1 - 1e-6)


def test_gadgets_exact():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    lb = gadgets.LayerBuilder(2)
    x = gadgets.inputs(2)
    outs = [lb.mul(x[0], x[1]), lb.square(x[0]), lb.ident(x[1]), lb.mul_pos(x[0] + 5, x[1] + 5)]
    layer = lb.close()
    W, bb = gadgets.output_map(outs, layer.W.shape[0])
    net = Network([layer], W, bb)
    y = net(np.stack([a, b], 1))
    np.testing.assert_allclose(y[:, 0], a * b, atol=1e-14)
    np.testing.assert_allclose(y[:, 1], a * a, atol=1e-14)
    np.testing.assert_allclose(y[:, 2], b, atol=1e-15)
    np.testing.assert_allclose(y[:, 3], (a + 5) * (b + 5), rtol=1e-14)


def test_numba_numpy_torch_and_npz_agree(tmp_path):
    torch = pytest.importorskip("torch")
    mix = builtin("aniso3")
    net = certify(mix, 0.3, 1e-3, 2, "tight").build()
    x = marginal.sample(mix, 0.3, 500, 1)
    y = net(x)
    np.testing.assert_allclose(net.forward_numpy(x), y, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        from torch_network import to_torch

        yt = to_torch(net)(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(yt, y, rtol=1e-10, atol=1e-10)
    path = str(tmp_path / "n.npz")
    net.save(path)
    with np.load(path) as z:
        assert z["act0"].dtype == np.uint8 and z["W0"].shape == (net.widths[0], mix.d)
        assert {f"W{net.depth - 1}", "W_out", "b_out"} <= set(z.files) and f"W{net.depth}" not in z.files
    back = Network.load(path)
    np.testing.assert_array_equal(back(x), y)


def test_bad_requests():
    mix = builtin("ring8")
    for kw, word in ((dict(eps=0.0), "`eps`"), (dict(eps=1e3), "scale"), (dict(p=0.5), "`p`"), (dict(t=0.0), "`t`")):
        args = dict(t=0.1, eps=1e-3, p=2.0) | kw
        with pytest.raises(InputError, match=word):
            certify(mix, args["t"], args["eps"], args["p"])
    one = from_spec({"means": [[0.0]], "variance": 1.0})
    with pytest.raises(InputError, match="K >= 2"):
        certify(one, 0.1, 1e-3)


def test_generated_code_up_to_date():
    with open(codegen.TARGET) as fh:
        assert fh.read() == codegen.render()


def test_verify_estimate_matches_brute_force():
    mix = builtin("aniso3")
    t, p = 0.02, 1.0
    cert = certify(mix, t, 1e-3, p, "tight")
    net = cert.build()
    res = verify(cert, net, 3000, seed=7)
    x = marginal.sample(mix, t, 3000, np.random.default_rng(7))
    e = np.array([np.linalg.norm(yi - oracles.score(xi, mix.weights, mix.means, mix.covs, t)) ** p
                  for xi, yi in zip(x, net.forward_numpy(x))])
    assert res["mc_error"] == pytest.approx(e.mean() ** (1 / p), rel=1e-6)
    from scipy.stats import t as student_t

    half = student_t.ppf(0.975, e.size - 1) * e.std(ddof=1) / np.sqrt(e.size)
    assert res["ci_high"] == pytest.approx((e.mean() + half) ** (1 / p), rel=1e-6)
