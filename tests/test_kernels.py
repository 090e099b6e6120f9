"""Compiled p_t kernels against the plain-numpy oracles and finite differences."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import oracles as o
from conftest import mixtures
from flowcert.numcore import marginal as mg
from flowcert.numcore.lp import lp_error, score_lp_error
from flowcert.numcore.mixture import builtin, from_spec


@settings(max_examples=25, deadline=None)
@given(mix=mixtures(), t=st.floats(1e-3, 5.0))
def test_score_hessian_logdensity_match_oracle(mix, t):
    x = mg.sample(mix, t, 6, 1)
    x[-1] = 3.0 * x[-1] + 1.0  # one point far from the data
    logp, s = mg.log_density_and_score(mix, x, t)
    H = mg.hessian(mix, x, t)
    nrm = mg.jacobian_opnorm(mix, x, t)
    for i in range(len(x)):
        args = (x[i], mix.weights, mix.means, mix.covs, t)
        assert logp[i] == pytest.approx(o.log_density(*args), rel=1e-10, abs=1e-10)
        so = o.score(*args)
        np.testing.assert_allclose(s[i], so, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(so).max()))
        Ho = o.hessian(*args)
        np.testing.assert_allclose(H[i], Ho, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(Ho).max()))
        assert nrm[i] == pytest.approx(o.jacobian_opnorm(*args), rel=1e-8)


@settings(max_examples=15, deadline=None)
@given(mix=mixtures(var_lo=0.2), t=st.floats(0.05, 3.0))
def test_score_and_hessian_are_derivatives(mix, t):
    x = mg.sample(mix, t, 3, 2)
    s = mg.score(mix, x, t)
    H = mg.hessian(mix, x, t)
    for i in range(len(x)):
        args = (x[i], mix.weights, mix.means, mix.covs, t)
        np.testing.assert_allclose(s[i], o.score_fd(*args), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(H[i], o.hessian_fd(*args), rtol=1e-4, atol=1e-4)


def test_gram_fast_path_matches_dense_spectrum():
    """Isotropic components with d > K take the K x K Gram route; compare with dense eigvalsh."""
    rng = np.random.default_rng(3)
    mix = from_spec({"means": rng.normal(size=(3, 12)).tolist(), "variance": [0.02, 0.05, 0.1]})
    for t in (0.005, 0.1, 1.0):
        x = np.concatenate([mg.sample(mix, t, 50, 4), 0.5 * np.exp(-t) * (mix.means[:1] + mix.means[1:2])])
        ev = mg.jacobian_spectrum(mix, x, t)
        J = mg.velocity_jacobian(mix, x, t)
        dense = np.linalg.eigvalsh(J)
        np.testing.assert_allclose(ev[:, 0], dense[:, 0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ev[:, 1], dense[:, -1], rtol=1e-9, atol=1e-9)


def test_density_integrates_to_one_in_1d():
    mix = builtin("line2")
    for t in (0.01, 0.5):
        x = np.linspace(-6, 6, 200001)[:, None]
        p = np.exp(mg.log_density(mix, x, t))
        assert np.trapezoid(p, x[:, 0]) == pytest.approx(1.0, abs=1e-8)


def test_sampling_moments_match_mixture():
    mix = builtin("hetero3")
    t = 0.3
    x = mg.sample(mix, t, 400_000, 5)
    a = np.exp(-t)
    mean = a * (mix.weights @ mix.means)
    S = a * a * mix.covs + (1 - a * a) * np.eye(2)
    second = (mix.weights[:, None, None] * (S + np.einsum("ki,kj->kij", a * mix.means, a * mix.means))).sum(0)
    cov = second - np.outer(mean, mean)
    se = np.sqrt(np.diag(cov) / x.shape[0])
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(x.T), cov, rtol=0.02, atol=0.01)


def test_tiny_variance_and_far_points_stay_finite():
    mix = from_spec({"means": [[0.0, 0.0], [1.0, 0.0]], "variance": 1e-8})
    t = 1e-6
    x = np.array([[0.5 * np.exp(-t), 0.0], [1e3, -1e3], [0.3, 0.0]])
    logp, s = mg.log_density_and_score(mix, x, t)
    H = mg.hessian(mix, x, t)
    assert np.all(np.isfinite(logp)) and np.all(np.isfinite(s)) and np.all(np.isfinite(H))
    for i in range(len(x)):
        np.testing.assert_allclose(s[i], o.score(x[i], mix.weights, mix.means, mix.covs, t), rtol=1e-7)


def test_high_dimension_runs():
    rng = np.random.default_rng(0)
    mix = from_spec({"means": rng.normal(size=(4, 1024)).tolist(), "variance": 0.04})
    x = mg.sample(mix, 0.05, 8, 1)
    s = mg.score(mix, x, 0.05)
    np.testing.assert_allclose(s[0], o.score(x[0], mix.weights, mix.means, mix.covs, 0.05), rtol=1e-8, atol=1e-8)
    assert np.all(np.isfinite(mg.jacobian_opnorm(mix, x, 0.05)))


def test_denoiser_is_tweedie():
    mix = builtin("aniso3")
    t = 0.2
    x = mg.sample(mix, t, 5, 0)
    a = np.exp(-t)
    expect = (x + (1 - a * a) * mg.score(mix, x, t)) / a
    np.testing.assert_allclose(mg.denoiser(mix, x, t), expect, rtol=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_lp_error_matches_numpy_and_covers(p):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(50_000, 3)), rng.normal(size=(50_000, 3))
    e = np.linalg.norm(a - b, axis=1) ** p
    est = lp_error(a, b, p)
    assert est.value == pytest.approx(e.mean() ** (1 / p), rel=1e-12)
    assert est.ci_low < est.value < est.ci_high
    # coverage: the exact L^p norm of N(0, 2 I_3) differences lies inside most intervals
    mix = builtin("modes8d")
    t = 0.4
    x = mg.sample(mix, t, 20_000, 9)
    s = mg.score(mix, x, t)
    noisy = s + 0.1 * rng.normal(size=s.shape)
    fused = score_lp_error(mix, x, t, noisy, p)
    plain = lp_error(noisy, s, p)
    assert fused.value == pytest.approx(plain.value, rel=1e-12)


def test_lp_interval_coverage():
    """About 95% of intervals from independent samples contain the true L^2 norm."""
    rng = np.random.default_rng(11)
    truth = np.sqrt(3.0)  # E||Z||^2 = 3 for Z ~ N(0, I_3)
    hits = 0
    for _ in range(200):
        z = rng.normal(size=(500, 3))
        est = lp_error(z, np.zeros_like(z), 2.0)
        hits += est.ci_low <= truth <= est.ci_high
    assert 180 <= hits <= 199


@functools.cache
def _denoisers_both_ways():
    """An njit function (compiled once for every mixture) that fills D, W with the solver programs' written-out
    denoiser (numcore.kernels._denoise, blocks of BLOCK points, the last one partial) and Dg, Wg with
    _component_terms then _rotated_score point by point."""
    import numba as nb

    from flowcert.numcore import kernels as kn

    P = kn.BLOCK

    @nb.njit
    def both(y, two_sinh, scale, inv_s, mrot, logc, mats, D, W, Dg, Wg):
        K, n, d = mrot.shape[1], y.shape[0], y.shape[1]
        x, z, tmp, Y, Db = np.empty((d, P)), np.empty((d, P)), np.empty((d, P)), np.empty((d, P)), np.empty((d, P))
        q, lmax, tot = np.empty(P), np.empty(P), np.empty(P)
        lk, gk = np.empty((K, P)), np.empty((K, d, P))
        x1, z1, tmp1, out1 = np.empty(d), np.empty(d), np.empty(d), np.empty(d)
        lk1, gk1 = np.empty(K), np.empty((K, d))
        for j in range(two_sinh.shape[0]):
            M = mats[j] if mats.shape[0] > 1 else mats[0]
            for b0 in range(0, n, P):
                m = min(P, n - b0)
                for p in range(m):
                    for i in range(d):
                        Y[i, p] = y[b0 + p, i]
                kn._denoise(Y, m, two_sinh[j], scale[j], inv_s[j], mrot[j], logc[j], M, x, z, lk, gk, tmp, q, lmax,
                            tot, Db)
                for p in range(m):
                    for i in range(d):
                        D[j, b0 + p, i] = Db[i, p]
                    for k in range(K):
                        W[j, b0 + p, k] = lk[k, p]
            for p in range(n):
                for i in range(d):
                    x1[i] = y[p, i] * scale[j]
                kn._component_terms(x1, inv_s[j], mrot[j], logc[j], M, z1, lk1, gk1)
                kn._rotated_score(gk1, lk1, M, tmp1, out1)
                for i in range(d):
                    Dg[j, p, i] = y[p, i] + two_sinh[j] * out1[i]
                Wg[j, p] = lk1

    return both


@pytest.mark.parametrize("name", ["ring8", "aniso3", "hetero3", "modes8d"])  # identity basis, shared basis, own bases
def test_the_programs_denoiser_equals_the_general_helpers_bit_for_bit(name):
    # the solver programs' written-out denoiser (numcore.kernels._denoise, points innermost) repeats the arithmetic
    # of _component_terms then _rotated_score point by point: the same weights and D, to the last bit, on 200
    # points (full blocks and a partial one)
    import math

    from flowcert.numcore.samplers import evaluated_tables

    mix = builtin(name)
    t = np.array([5.0, 1.0, 0.2, 0.01, 1e-3])
    sig = np.sqrt(np.expm1(2 * t))
    tabs = evaluated_tables(mix, sig, sig, t)[1:]
    y = np.random.default_rng(3).standard_normal((200, mix.d)) * 3.0
    D, Dg = np.empty((t.size, 200, mix.d)), np.empty((t.size, 200, mix.d))
    W, Wg = np.empty((t.size, 200, mix.K)), np.empty((t.size, 200, mix.K))
    _denoisers_both_ways()(y, *tabs, D, W, Dg, Wg)
    assert np.array_equal(D, Dg) and np.array_equal(W, Wg) and math.isfinite(D.sum())


def test_the_kernels_exponential_is_within_one_ulp_of_maths():
    # numcore.kernels._exp_nonpositive (plain arithmetic, vectorised in the kernels' loops) against math.exp on
    # a dense grid of [-50, 0], random points down to the underflow, the subnormal range and the special values
    import math

    import numba as nb

    from flowcert.numcore import kernels as kn

    @nb.njit
    def both(x, got, want):
        for i in range(x.size):
            got[i] = kn._exp_nonpositive(x[i])
            want[i] = math.exp(x[i])

    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(-50.0, 0.0, 200001), -rng.exponential(100.0, 200000),
                        np.linspace(-760.0, -700.0, 20001), [0.0, -0.0, -5e-324, -746.0, -1e300, -np.inf, np.nan]])
    got, want = np.empty_like(x), np.empty_like(x)
    both(x, got, want)
    normal = want >= np.finfo(float).tiny
    ulps = np.abs(got - want)[normal] / np.spacing(want[normal])
    assert ulps.max() <= 1.0 and 0.0 < np.mean(ulps > 0) < 0.2  # 1 ulp at most, and only sometimes
    assert np.abs(got - want)[~normal & np.isfinite(want)].max() <= 5e-324  # one subnormal step at most
    assert got[-7] == got[-6] == 1.0 and got[-3] == got[-2] == 0.0 and math.isnan(got[-1])
