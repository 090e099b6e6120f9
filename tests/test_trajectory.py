"""Per-trajectory certificates: they bound the measured flow Jacobian, and are exact in d = 1."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import mixtures
from flowcert.numcore.marginal import sample
from flowcert.numcore.mixture import builtin, from_spec
from flowcert.numcore.trajectory import flow, gronwall
from flowcert.numcore.units import rho_from_t, t_from_rho


def _closed_form(mean, cov, x, t, s):
    """Phi_{t->s} of one Gaussian: alpha_s mu + S(s)^{1/2} S(t)^{-1/2} (x - alpha_t mu), and its Jacobian."""
    lam, U = np.linalg.eigh(cov)
    st_, ss = np.exp(-2 * t) * lam - np.expm1(-2 * t), np.exp(-2 * s) * lam - np.expm1(-2 * s)
    M = U @ np.diag(np.sqrt(ss / st_)) @ U.T
    return np.exp(-s) * mean + (x - np.exp(-t) * mean) @ M.T, M


@settings(max_examples=25, deadline=None)
@given(mix=mixtures(d_max=4, K_max=4, var_lo=0.01), t0=st.floats(0.05, 3.0), ratio=st.floats(0.01, 0.5),
       seed=st.integers(0, 1000))
def test_certificate_bounds_the_measured_norm_on_every_trajectory(mix, t0, ratio, seed):
    t1 = max(1e-3, t0 * ratio)
    x = sample(mix, t0, 24, np.random.default_rng(seed))
    g = gronwall(mix, x, t0, t1, step=0.05)
    assert np.all(g.log_error >= 0)
    assert np.all(g.certified >= g.measured), (g.certified / g.measured).min()


def test_d1_estimate_equals_the_measured_norm_and_certificate_is_close():
    mix = builtin("line2")
    x = sample(mix, 2.0, 64, 3)
    g = gronwall(mix, x, 2.0, 1e-3, step=0.01)
    np.testing.assert_allclose(g.predicted, g.measured, rtol=1e-4)
    r = g.certified / g.measured
    assert np.all(r >= 1.0) and np.all(r < 1.05)


@pytest.mark.parametrize("cov", [np.diag([0.05, 0.8]), np.array([[0.3, 0.12], [0.12, 0.1]])])
def test_one_gaussian_matches_the_closed_form_flow_and_jacobian(cov):
    mean = np.array([0.7, -1.2])
    mix = from_spec({"means": [mean.tolist()], "cov": cov.tolist()})
    x = sample(mix, 1.5, 16, 0)
    g = gronwall(mix, x, 1.5, 0.01, step=0.01)
    end, M = _closed_form(mean, cov, x, 1.5, 0.01)
    np.testing.assert_allclose(g.endpoints, end, atol=1e-8)
    np.testing.assert_allclose(g.measured, np.linalg.norm(M, 2), rtol=1e-7)
    assert np.all(g.certified >= g.measured)


def test_propagated_jacobian_matches_finite_differences():
    mix = builtin("hetero3")
    x = sample(mix, 0.5, 4, 1)
    rhos = np.linspace(rho_from_t(0.5), rho_from_t(0.02), 120)
    _, W = flow(mix, x, rhos, jacobian=True)
    h = 1e-6
    for i in range(mix.d):
        e = np.zeros(mix.d)
        e[i] = h
        plus, _ = flow(mix, x + e, rhos)
        minus, _ = flow(mix, x - e, rhos)
        np.testing.assert_allclose(W[:, :, i], (plus[:, -1] - minus[:, -1]) / (2 * h), rtol=1e-5, atol=1e-6)


def test_rho_and_t_are_inverse():
    for t in (1e-3, 0.1, 2.0, 5.0):
        assert abs(t_from_rho(rho_from_t(t)) - t) < 1e-12 * max(1, t)


def test_gronwall_rejects_a_bad_window():
    with pytest.raises(ValueError):
        gronwall(builtin("line2"), np.zeros((1, 1)), 0.1, 0.2)
