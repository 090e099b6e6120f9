"""Lipschitz bounds are bounds: brute force on random mixtures, tightness, closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flowcert.bounds import codegen
from flowcert.bounds.lipschitz import LipschitzBound
from flowcert.bounds.stability import stability
from conftest import mixtures
from flowcert.numcore.empirical import jacobian_stats
from flowcert.numcore.mixture import builtin, from_spec

TIMES = st.floats(1e-3, 5.0).map(float)


@settings(max_examples=40, deadline=None)
@given(mix=mixtures(structures=("iso", "shared")), t=TIMES)
def test_global_bounds_exceed_brute_force(mix, t):
    lb = LipschitzBound(mix)
    assert lb.scope == "global"
    r = jacobian_stats(mix, t, 3000, 0, per_segment=129)
    tri, sharp, m = lb(t, "tri")[0], lb(t, "sharp")[0], lb(t, "onesided")[0]
    assert sharp <= tri * (1 + 1e-12)
    assert r.sup <= sharp * (1 + 1e-9) + 1e-12
    assert r.sup_growth <= m + 1e-9 * abs(m) + 1e-12


@settings(max_examples=30, deadline=None)
@given(mix=mixtures(structures=("iso_k", "diag_k", "full_k"), K_min=2), t=TIMES)
def test_ball_bounds_exceed_brute_force_inside_ball(mix, t):
    lb = LipschitzBound(mix)
    assert lb.scope == "ball"
    R = lb.radius(t)[0]
    r = jacobian_stats(mix, t, 3000, 0, per_segment=129, radius=R)
    assert r.sup <= lb(t, "sharp")[0] * (1 + 1e-9) + 1e-12
    assert r.sup <= lb(t, "tri")[0] * (1 + 1e-9) + 1e-12
    m = lb(t, "onesided")[0]
    assert r.sup_growth <= m + 1e-9 * abs(m) + 1e-12


@settings(max_examples=20, deadline=None)
@given(mix=mixtures(structures=("iso_k", "full_k"), K_min=2, d_max=3), t=TIMES)
def test_ball_radius_holds_its_mass(mix, t):
    """R(t) for mass 0.99 contains at least ~99% of samples (binomial slack)."""
    from flowcert.numcore.marginal import sample

    lb = LipschitzBound(mix, ball_mass=0.99)
    x = sample(mix, t, 20000, 1)
    inside = (np.linalg.norm(x, axis=1) <= lb.radius(t)[0]).mean()
    assert inside >= 0.99 - 4 * np.sqrt(0.99 * 0.01 / 20000)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 6), t=TIMES)
def test_sharp_is_tight_for_two_components(seed, d, t):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 0.8)
    spec = {"weights": [w, 1 - w], "means": rng.normal(scale=2.0, size=(2, d)).tolist(),
            "variance": float(np.exp(rng.uniform(np.log(0.05), np.log(1.5))))}
    mix = from_spec(spec)
    r = jacobian_stats(mix, t, 4000, 0)
    assert r.sup / LipschitzBound(mix)(t, "sharp")[0] >= 0.99


def test_two_mode_midpoint_attains_sharp():
    """At the equal-weight point on the line of the means, ||J|| = b - a exactly (THEORY 2)."""
    from flowcert.numcore.marginal import jacobian_opnorm

    mix = from_spec({"weights": [0.3, 0.7], "means": [[-1.0, 0.5], [2.0, -0.5]], "variance": 0.04})
    for t in (0.002, 0.05, 0.5):
        a, s = np.exp(-t), mix.marginal_eigvals(t)[0, 0]
        D2 = np.sum((mix.means[1] - mix.means[0]) ** 2)
        lam = 0.5 + s * np.log(0.3 / 0.7) / (a * a * D2)
        x = a * (mix.means[0] + lam * (mix.means[1] - mix.means[0]))
        got = jacobian_opnorm(mix, x[None], t)[0]
        b_minus_a = LipschitzBound(mix)(t, "onesided")[0]
        assert got == pytest.approx(b_minus_a, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(sigma2=st.floats(0.005, 0.95), D=st.floats(0.1, 6.0), delta=st.floats(1e-4, 0.05))
def test_isotropic_lambda_closed_form(sigma2, D, delta):
    """int a = 1/2 log s, int b = -D^2/(8 c s) with c = 1 - sigma^2 (THEORY 2)."""
    mix = from_spec({"means": [[0.0], [D]], "variance": sigma2})
    T = 5.0
    c = 1 - sigma2
    s = lambda t: 1 - c * np.exp(-2 * t)  # noqa: E731
    F = lambda t: 0.5 * np.log(s(t)) - D**2 / (8 * c * s(t))  # noqa: E731
    st_ = stability(mix, "tri", delta, T)
    assert st_.integral.total == pytest.approx(F(T) - F(delta), rel=1e-10)
    tm = np.sqrt(delta * T)
    assert st_.integral(tm)[0] == pytest.approx(F(tm) - F(delta), rel=1e-10)


def test_generated_code_matches_sympy():
    with open(codegen.TARGET) as fh:
        assert fh.read() == codegen.render(), "run python -m flowcert.bounds.codegen"


def test_isotropic_closed_form_expression_equals_generated():
    import sympy as sp

    from flowcert.bounds import formulas as f

    mix = builtin("ring8")
    lb = LipschitzBound(mix)
    ts = np.geomspace(1e-3, 5, 13)
    for which in ("tri", "sharp", "onesided"):
        expr = f.isotropic_closed_form(sp.Rational(1, 100), sp.Integer(4), which)
        fn = sp.lambdify(f.t, expr, "numpy")
        np.testing.assert_allclose(fn(ts), lb(ts, which), rtol=1e-12)


def test_latex_mentions_each_bound():
    tex = LipschitzBound(builtin("hetero3")).latex()
    assert r"L_{\mathrm{tri}}" in tex and r"L_{\mathrm{sharp}}" in tex and "R(t)" in tex


@settings(max_examples=30, deadline=None)
@given(mix=mixtures(structures=("iso_k", "diag_k", "full_k"), K_min=2, K_max=5, d_max=5, var_lo=0.01),
       t=TIMES, seed=st.integers(0, 1000))
def test_pair_inequality_holds_in_the_ball(mix, t, seed):
    """||g_k - g_j||^2 <= C - D sign (l_k - l_j) at random points of the ball and of its sphere (numpy oracle)."""
    from oracles import logpdf_terms

    lb = LipschitzBound(mix)
    R = lb.radius(t)[0]
    C, D, sign = (v[0] for v in lb.pair_constants(t))
    k, j = np.triu_indices(mix.K, 1)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((60, mix.d))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    pts = np.concatenate([z[:30] * R, z[30:] * R * rng.uniform(0, 1, (30, 1)) ** (1 / mix.d),
                          np.exp(-t) * mix.means])
    for x in pts:
        l, g, _ = logpdf_terms(x, mix.weights, mix.means, mix.covs, t)
        lhs = ((g[k] - g[j]) ** 2).sum(1)
        rhs = C - D * sign * (l[k] - l[j])
        assert np.all(lhs <= rhs * (1 + 1e-9) + 1e-9 * np.abs(C) + 1e-12), (lhs - rhs).max()


@settings(max_examples=15, deadline=None)
@given(mix=mixtures(structures=("iso_k", "full_k"), K_min=2, K_max=5, d_max=4, var_lo=0.01), t=TIMES)
def test_ball_bounds_exceed_the_strong_oracle(mix, t):
    """Samples, mean lines and local maximisation in the ball (seeded on pair saddles) stay below the bounds."""
    lb = LipschitzBound(mix)
    R = lb.radius(t)[0]
    r = jacobian_stats(mix, t, 500, 0, per_segment=33, radius=R, refine=8)
    assert r.sup <= lb(t, "sharp")[0] * (1 + 1e-9) + 1e-12
    m = lb(t, "onesided")[0]
    assert r.sup_growth <= m + 1e-9 * abs(m) + 1e-12


def test_weighted_pair_form_tightens_per_component_bounds():
    """The weighted pair form is never above the diameter form's minimum and is far below it at low noise."""
    mix = from_spec({"means": [[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0]], "variance": [0.01, 0.3, 1.0]})
    lb = LipschitzBound(mix)
    ts = np.geomspace(1e-3, 1.0, 9)
    V = lb.spread(ts)
    assert np.all(V <= lb.weighted_spread(ts) * (1 + 1e-12))
    R = lb.radius(ts)
    b = lb.ball
    from flowcert.bounds import _generated as gen

    diameter = gen.ball_spread_pair(ts[:, None], b["lmin_k"], b["lmin_j"], b["dS"], b["dmu"], b["nmu_k"], b["nmu_j"],
                                    R[:, None]).max(1)
    assert np.all(V <= diameter * (1 + 1e-12)) and V[0] < 0.1 * diameter[0]


def test_bound_check_tool_quick_setting_finds_no_violation():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bound_check.py"
    spec = importlib.util.spec_from_file_location("bound_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run(**mod.QUICK)
    assert res["violations"] == {"sharp": 0, "tri": 0, "onesided": 0}
    assert set(res["tightness"]) == set(mod.STRUCTURES)
    for v in res["tightness"].values():
        assert 0 < v["sharp"]["median"] <= 1 and v["sharp"]["max"] <= 1 + 1e-9


@settings(max_examples=20, deadline=None)
@given(K=st.integers(2, 8), seed=st.integers(0, 10**6))
def test_simplex_max_is_the_maximum_of_the_quadratic_form(K, seed):
    """q >= w^T C w at many random points of the simplex, and q is reached (within 10%) by the best of them."""
    from flowcert.bounds.lipschitz import simplex_max

    rng = np.random.default_rng(seed)
    k, j = np.triu_indices(K, 1)
    Cp = rng.exponential(size=(1, k.size)) ** 3
    q = simplex_max(Cp, K)[0]
    C = np.zeros((K, K))
    C[k, j] = C[j, k] = Cp[0]
    w = np.concatenate([rng.dirichlet(np.full(K, a), size=20000) for a in (0.2, 1.0)])
    vals = np.einsum("sa,ab,sb->s", w, C, w)
    assert vals.max() <= q and vals.max() >= 0.9 * q or K == 2 and vals.max() <= q
