"""The torch-free exact flow map, the compiled solvers and their gradients, against independent oracles:
the torch teacher, the one-Gaussian closed form, the plain numpy sampler loops and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from conftest import mixtures
from flowcert.numcore import flowmap, grids, samplers, units
from flowcert.numcore.marginal import sample
from flowcert.numcore.mixture import builtin, from_spec
from flowcert.numcore.solvers import SOLVERS

DELTA, T = 1e-3, 5.0


def gaussian_flow(mean, cov, x, t, s):
    """Phi_{t->s} of one Gaussian: the whitened offset S(t)^{-1/2}(x - alpha_t mu) is constant along the flow."""
    lam, U = np.linalg.eigh(np.asarray(cov, float))
    st = np.exp(-2 * t) * lam - np.expm1(-2 * t)
    ss = np.exp(-2 * s) * lam - np.expm1(-2 * s)
    M = U @ np.diag(np.sqrt(ss / st)) @ U.T
    return np.exp(-s) * np.asarray(mean) + (np.asarray(x) - np.exp(-t) * np.asarray(mean)) @ M.T


@pytest.mark.parametrize("cov", [[[0.5, 0.2], [0.2, 0.3]], [[0.01, 0.0], [0.0, 0.04]], [[0.02, 0.0], [0.0, 0.02]]])
def test_one_gaussian_closed_form(cov):
    mix = from_spec({"means": [[0.7, -0.3]], "cov": cov})
    x = sample(mix, T, 300, np.random.default_rng(0))
    got = flowmap.flow(mix, x, T, DELTA)
    want = gaussian_flow(mix.means[0], mix.covs[0], x, T, DELTA)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())


@settings(max_examples=6, deadline=None)
@given(mix=mixtures(K_min=2, var_lo=0.01))
def test_equals_the_torch_teacher(mix):
    torch = pytest.importorskip("torch")
    from flowcert.distill.teacher import Teacher

    x = sample(mix, T, 40, np.random.default_rng(1))
    times = [T, 0.05, DELTA]
    got = flowmap.trajectory(mix, x, times, step=0.05)  # the same scheme and steps: equal to round-off
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost time
    try:
        want = Teacher(mix, dtype=torch.float64, step=0.05).trajectory(x, times).numpy()
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * max(1.0, np.abs(want).max()))


def test_segments_do_not_change_the_map_and_the_error_estimate_is_honest():
    mix = builtin("ring8")
    x = sample(mix, T, 200, np.random.default_rng(2))
    one = flowmap.flow(mix, x, T, DELTA, step=0.05)
    many = flowmap.flow(mix, x, T, DELTA, step=0.05, segments=7)
    fine = flowmap.flow(mix, x, T, DELTA, step=0.005)
    # segments only split the RK4 steps differently: the same map to RK4 accuracy
    assert np.sqrt(np.sum((one - many) ** 2) / np.sum(fine**2)) < 5e-7
    y, est = flowmap.endpoints(mix, x, T, DELTA, step=0.05, check=200)
    true = np.sqrt(np.sum((y - fine) ** 2) / np.sum(fine**2))
    assert 0.5 * true < est < 2.0 * true and est < 1e-6


@settings(max_examples=15, deadline=None)
@given(mix=mixtures(K_min=1, var_lo=0.01))
def test_compiled_solvers_equal_the_numpy_loops(mix):
    x = sample(mix, T, 30, np.random.default_rng(3))
    # starts a few ulps away: how far rounding alone moves each end point (the solver's own conditioning)
    x_near = x * (1.0 + 4.4e-16 * np.random.default_rng(4).choice([-1.0, 1.0], size=x.shape))
    for t in (grids.kl_optimal(6, DELTA, T), grids.edm(3, DELTA, T)):
        for solver in SOLVERS:
            got = samplers.sample_grid(mix, x, t, solver)
            want = samplers.sample_grid(mix, x, t, solver, compiled=False)
            near = samplers.sample_grid(mix, x_near, t, solver)
            # the two sum in other orders at the VE scale e^T |x| ~ 10^2-10^3, and a point that the flow pulls
            # between modes amplifies those roundings (seen: 2.6e-11 on a 6-d mixture, 6x the VE scale's 1e-14):
            # the tolerance adds 30 times each point's measured sensitivity (over 90 random mixtures the largest
            # difference is 0.1 of it)
            sens = np.abs(got - near).max(axis=1, keepdims=True)
            tol = 1e-10 * np.abs(want) + 1e-14 * np.exp(T) * np.abs(x).max() + 30.0 * sens
            assert np.all(np.abs(got - want) <= tol), (solver, t.size - 1, np.max(np.abs(got - want) - tol))


@settings(max_examples=10, deadline=None)
@given(mix=mixtures(K_min=1, var_lo=0.01, d_max=4))
def test_solver_gradients_equal_finite_differences(mix):
    x = sample(mix, T, 24, np.random.default_rng(4))
    target = flowmap.flow(mix, x, T, DELTA, step=0.05)
    t = grids.kl_optimal(5, DELTA, T)
    rho = units.rho_from_t(t)

    def loss(r, solver):
        return np.sum((samplers.sample_grid(mix, x, units.t_from_rho(r), solver) - target) ** 2)

    for solver in SOLVERS:
        value, grad = samplers.squared_error_and_grad(mix, x, target, t, solver)
        assert value == pytest.approx(loss(rho, solver), rel=1e-10)
        fd = []
        for k in range(1, t.size - 1):
            e = np.zeros_like(rho)
            e[k] = 1e-6
            fd.append((loss(rho + e, solver) - loss(rho - e, solver)) / 2e-6)
        np.testing.assert_allclose(grad[1:-1], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
