"""Stability integral, inversion, grids and units against scipy quad and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.integrate import quad

from flowcert.bounds.lipschitz import LipschitzBound
from flowcert.bounds.stability import stability
from conftest import mixtures
from flowcert.numcore import grids, units
from flowcert.numcore.mixture import builtin
from flowcert.numcore.integral import StabilityIntegral


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(mix=mixtures(), which=st.sampled_from(["tri", "sharp"]))
def test_lambda_matches_quad_and_grid_nodes_solve_lambda_equal_levels(mix, which):
    delta, T = 1e-3, 5.0
    lb = LipschitzBound(mix)
    L = lambda u: lb(u, which)[0]  # noqa: E731

    def oracle(a, b):  # quad with dense log-spaced breakpoints: with few, its own error estimate can be fooled
        # by the peak of L near delta and by kinks of the max over mean pairs (seen: 1.2e-6 off)
        n = max(8, int(np.ceil(200 * np.log(b / a) / np.log(T / delta))))  # 200 over [delta, T], pro rata
        return quad(L, a, b, points=list(np.geomspace(a, b, n)[1:-1]), limit=5000, epsabs=0, epsrel=1e-13)

    st_ = stability(mix, which, delta, T, bound=lb)
    t = grids.balanced(8, st_.integral)
    # one quad per piece [t_{i+1}, t_i] between the grid's nodes (each point of L is evaluated once: L is costly);
    # Lambda(t_i) = int_delta^{t_i} L is the sum of the pieces below t_i, and its quad error the sum of theirs
    pieces = np.array([oracle(t[i + 1], t[i]) for i in range(8)])
    below = np.cumsum(pieces[::-1], axis=0)[::-1]  # below[i] = (int_delta^{t_i} L, its error)
    ref, err = below[0]
    # per-component bounds take the best of several valid forms, so L(t) can step where the best one changes
    # (by < 1% of V); quad then reports a larger error of its own, which the comparison allows, and neither
    # integrator's error estimate is reliable below ~1e-8 relative across a step (seen: 2.2e-8 at a grid node,
    # K = 5, d = 6), so the relative tolerance is 1e-7 there and 1e-9 where L is smooth
    steps = mix.basis.shape[0] > 1
    assert st_.integral.total == pytest.approx(ref, rel=1e-7 if steps else 1e-9, abs=2 * err)
    assert st_.integral.error < 1e-6 * ref
    for i, ti in enumerate(t[1:-1], start=1):
        level = ref * (8 - i) / 8
        # t_i solves Lambda(t) = level; as dLambda/dt = L, an error dt in t_i moves Lambda by L(t_i) dt:
        # the node is within relative 1e-8 of the exact root (plus quad's own error where the bound steps)
        value, err_i = below[i]
        assert abs(value - level) <= 1e-8 * ti * L(ti) + (1e-7 * level if steps else 0.0) + 2 * (err + err_i)


def test_balanced_grid_equalises_lambda():
    st_ = stability(builtin("ring8"), "tri", 1e-3, 5.0)
    t = grids.balanced(16, st_.integral)
    lam = st_.integral(t)
    np.testing.assert_allclose(-np.diff(lam), st_.integral.total / 16, rtol=1e-9)
    assert t[0] == 5.0 and t[-1] == 1e-3 and np.all(np.diff(t) < 0)


def test_stability_integral_of_known_rate():
    """int_delta^t 1/u du = log(t/delta); its inverse is delta e^level."""
    si = StabilityIntegral(lambda u: 1.0 / u, 1e-4, 10.0, panels=64)
    assert si.total == pytest.approx(np.log(1e5), rel=1e-13)
    np.testing.assert_allclose(si.invert([1.0, 5.0]), 1e-4 * np.exp([1.0, 5.0]), rtol=1e-12)


@pytest.mark.parametrize("N", [1, 3, 8])
def test_baseline_grids_follow_their_definitions(N):
    delta, T = 2e-3, 4.0
    u = grids.uniform(N, delta, T)
    np.testing.assert_allclose(np.diff(u), (delta - T) / N)
    e = grids.edm(N, delta, T)
    r = units.sigma_from_t(e) ** (1 / 7)
    np.testing.assert_allclose(np.diff(r), np.diff(r).mean(), rtol=1e-9)
    ls = units.logsnr_from_t(grids.logsnr(N, delta, T))
    np.testing.assert_allclose(np.diff(ls), np.diff(ls).mean(), rtol=1e-9)
    for g in (u, e):
        assert g[0] == T and g[-1] == delta and g.size == N + 1


@settings(max_examples=50, deadline=None)
@given(t=st.floats(1e-6, 20.0))
def test_units_round_trip(t):
    for unit in ("t", "sigma", "alpha", "logsnr"):
        back = units.to_t(units.convert(t, unit), unit)
        assert back == pytest.approx(t, rel=1e-9, abs=1e-15)
    # sigma_vp and rf saturate at 1: t is recoverable only up to float64's e^{-2t} resolution
    if t < 15:
        for unit in ("sigma_vp", "rf"):
            back = units.to_t(units.convert(t, unit), unit)
            assert back == pytest.approx(t, rel=1e-9 + 1e-15 * np.exp(2 * t) / t, abs=1e-15)


def test_unit_values():
    t = np.array([0.1, 1.0])
    np.testing.assert_allclose(units.sigma_from_t(t) ** 2, np.exp(2 * t) - 1)
    np.testing.assert_allclose(units.logsnr_from_t(t), -np.log(np.exp(2 * t) - 1))
    a, s = np.exp(-t), np.sqrt(1 - np.exp(-2 * t))
    np.testing.assert_allclose(units.rf_from_t(t), s / (a + s))


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_ddpm_timesteps(schedule):
    b = units.betas(schedule)
    abar = np.cumprod(1 - b)
    n = np.array([0, 10, 500, 999])
    tn = -0.5 * np.log(abar[n])
    np.testing.assert_allclose(units.ddpm_from_t(tn, schedule), n, atol=1e-9)
    mid = 0.5 * (tn[1] + tn[2])
    assert units.t_from_ddpm(units.ddpm_from_t(mid, schedule), schedule) == pytest.approx(mid, rel=1e-12)
    from flowcert.numcore.checks import InputError

    with pytest.raises(InputError, match="outside"):
        units.ddpm_from_t(30.0, schedule)
    assert units.ddpm_from_t(30.0, schedule, clip=True) == 999
