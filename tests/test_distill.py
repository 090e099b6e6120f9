"""distill: exact teacher, batched residual students, measurements (CPU, small sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowcert.numcore import marginal
from flowcert.numcore.mixture import builtin, from_spec
import oracles

from flowcert.distill import measure as M
from flowcert.distill.students import BlockStack, param_count, train_segments, width_for_total
from flowcert.distill.teacher import Teacher, TorchMixture, gaussian_flow

DELTA, T = 1e-3, 5.0


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- teacher
@pytest.mark.parametrize("name", ["ring8", "aniso3", "hetero3", "modes8d"])
def test_torch_score_and_hessian_match_numpy_oracle(name):
    mix = builtin(name)
    tm = TorchMixture(mix)
    for t in (0.01, 0.3, 2.0):
        x = marginal.sample(mix, t, 6, 1)
        s = tm.score(torch.tensor(x), t).numpy()
        H = tm.hessian(torch.tensor(x), t).numpy()
        for i in range(len(x)):
            s_ref = oracles.score(x[i], mix.weights, mix.means, mix.covs, t)
            H_ref = oracles.hessian(x[i], mix.weights, mix.means, mix.covs, t)
            np.testing.assert_allclose(s[i], s_ref, rtol=1e-9, atol=1e-9 * np.abs(s_ref).max())
            np.testing.assert_allclose(H[i], H_ref, rtol=1e-8, atol=1e-8 * np.abs(H_ref).max())


@pytest.mark.parametrize("spec", [
    {"means": [[0.5, -1.0]], "cov": [[0.3, 0.1], [0.1, 0.05]]},
    {"means": [[1.0, 2.0, -1.0]], "variance": 0.01},
])
def test_one_gaussian_flow_and_jacobian_closed_form(spec):
    mix = from_spec(spec)
    x = marginal.sample(mix, T, 64, 0)
    teacher = Teacher(mix)
    ref = gaussian_flow(mix.means[0], mix.covs[0], x, T, DELTA)
    np.testing.assert_allclose(teacher.flow(x, T, DELTA).numpy(), ref, atol=1e-9)
    y, J = teacher.flow_jacobian(x[:4], T, DELTA)
    np.testing.assert_allclose(y.numpy(), ref[:4], atol=1e-9)
    e = np.eye(mix.d)
    J_ref = gaussian_flow(mix.means[0], mix.covs[0], e, T, DELTA) - gaussian_flow(mix.means[0], mix.covs[0], 0 * e, T, DELTA)
    for Ji in J.numpy():
        np.testing.assert_allclose(Ji, J_ref.T, atol=1e-9)


def test_step_halving_converges_at_fourth_order():
    mix = builtin("ring8")
    x = marginal.sample(mix, T, 256, 3)
    ys = [Teacher(mix, step=h).flow(x, T, DELTA).numpy() for h in (0.04, 0.02, 0.01)]
    e1, e2 = np.abs(ys[0] - ys[1]).max(), np.abs(ys[1] - ys[2]).max()
    assert e2 < 1e-5  # the default step is accurate to ~1e-6 at t = delta
    assert e1 / e2 > 8  # RK4: halving h cuts the change ~16x


def test_trajectory_nodes_compose():
    mix = builtin("square4")
    x = marginal.sample(mix, T, 32, 4)
    teacher = Teacher(mix)
    traj = teacher.trajectory(x, [T, 1.0, 0.1, DELTA])
    np.testing.assert_allclose(traj[:, 0].numpy(), x)
    again = teacher.flow(traj[:, 1], 1.0, DELTA)
    np.testing.assert_allclose(again.numpy(), traj[:, -1].numpy(), atol=1e-7)


def test_flow_jacobian_matches_finite_differences():
    mix = builtin("ring8")
    teacher = Teacher(mix)
    x = marginal.sample(mix, 0.3, 3, 5)
    _, J = teacher.flow_jacobian(x, 0.3, 0.05)
    h = 1e-6
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        fd = (teacher.flow(x + e, 0.3, 0.05) - teacher.flow(x - e, 0.3, 0.05)).numpy() / (2 * h)
        np.testing.assert_allclose(J[:, :, j].numpy(), fd, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- students
def _segment_data(mix, t0, t1, n, seed):
    x = marginal.sample(mix, t0, n, seed)
    y = Teacher(mix).flow(x, t0, t1)
    return torch.tensor(x, dtype=torch.float32), y.float()


def test_param_count_matches_tensors_and_total_budget():
    stack = BlockStack.init(3, 5, 17, 3, torch.Generator().manual_seed(0))
    assert sum(p[0].numel() for p in stack.parameters()) == param_count(5, 17, 3)
    w = width_for_total(10000, 4, 2, 2)
    assert 4 * param_count(2, w, 2) <= 10000 < 4 * param_count(2, w + 1, 2)


def test_trained_block_beats_identity():
    mix = builtin("ring8")
    X, Y = _segment_data(mix, 0.3, 0.05, 2048, 0)
    stack = BlockStack.init(1, 2, 32, 2, torch.Generator().manual_seed(0))
    untrained = BlockStack.init(1, 2, 32, 2, torch.Generator().manual_seed(0))
    untrained.set_normalisation(X[None], Y[None])  # identity plus the mean displacement
    train_segments(stack, X[None], Y[None], iters=300, batch=256, lr=3e-3, generator=torch.Generator().manual_seed(1))
    Xv, Yv = _segment_data(mix, 0.3, 0.05, 1024, 9)
    with torch.no_grad():
        err = ((stack.apply_block(0, Xv) - Yv) ** 2).sum(1).mean()
        err0 = ((untrained.apply_block(0, Xv) - Yv) ** 2).sum(1).mean()
    ident = ((Xv - Yv) ** 2).sum(1).mean()
    assert err < 0.25 * ident
    assert err < 0.25 * err0


def test_batched_training_equals_one_block_at_a_time():
    mix = builtin("square4")
    data = [_segment_data(mix, a, b, 512, i) for i, (a, b) in enumerate([(2.0, 1.0), (1.0, 0.3), (0.3, 0.05)])]
    X = torch.stack([d[0] for d in data])
    Y = torch.stack([d[1] for d in data])
    together = BlockStack.init(3, 2, 16, 2, torch.Generator().manual_seed(0))
    init = together.state()
    train_segments(together, X, Y, iters=60, batch=128, lr=3e-3, generator=torch.Generator().manual_seed(5))
    for i in range(3):
        st = {k: [v[i:i + 1].clone() for v in vs] for k, vs in init.items()}
        alone = BlockStack.from_state(st)
        train_segments(alone, X[i:i + 1], Y[i:i + 1], iters=60, batch=128, lr=3e-3,
                       generator=torch.Generator().manual_seed(5))
        for a, b in zip(alone.parameters(), together.parameters()):
            np.testing.assert_allclose(a[0].numpy(), b[i].numpy(), rtol=1e-4, atol=1e-5)


def test_conv_blocks_are_their_plain_convolutions_and_train_like_one_at_a_time():
    """The conv stack's grouped convolution applies block i's own 3x3 layers to its own images (against
    torch's plain conv2d), its parameter count matches its tensors, and training blocks together equals training
    them one by one (as for the MLP)."""
    import torch.nn.functional as F

    from flowcert.distill.students import ConvStack, conv_param_count

    stack = ConvStack.init(3, (2, 4, 4), 5, 2, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert sum(p[0].numel() for p in stack.parameters()) == conv_param_count((2, 4, 4), 5, 2)
    with torch.no_grad():
        stack.weights[-1].normal_(generator=torch.Generator().manual_seed(2))
    x = torch.randn(3, 7, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    full = stack.residual(x)
    for i in range(3):
        h = ((x[i] - stack.m_in[i]) / stack.s_in[i]).reshape(7, 2, 4, 4)
        for li, (W, b) in enumerate(zip(stack.weights, stack.biases)):
            h = F.conv2d(h, W[i], b[i], padding=1)
            h = F.silu(h) if li < 2 else h
        ref = stack.m_out[i] + stack.s_out[i] * h.reshape(7, 32)
        np.testing.assert_allclose(full[i].numpy(), ref.numpy(), atol=1e-12)
        np.testing.assert_allclose((stack.apply_block(i, x[i]) - x[i]).numpy(), ref.numpy(), atol=1e-12)
    X = torch.randn(3, 256, 32, generator=torch.Generator().manual_seed(4))
    Y = 0.5 * X + 0.1 * X.roll(1, 2)
    together = ConvStack.init(3, (2, 4, 4), 6, 2, torch.Generator().manual_seed(0))
    init = together.state()
    train_segments(together, X, Y, iters=40, batch=64, lr=3e-3, generator=torch.Generator().manual_seed(5))
    for i in range(3):
        st = {k: [v[i:i + 1].clone() for v in vs] for k, vs in init.items() if k != "shape"} | {"shape": init["shape"]}
        alone = ConvStack.from_state(st)
        train_segments(alone, X[i:i + 1], Y[i:i + 1], iters=40, batch=64, lr=3e-3,
                       generator=torch.Generator().manual_seed(5))
        for a, b in zip(alone.parameters(), together.parameters()):
            np.testing.assert_allclose(a[0].numpy(), b[i].numpy(), rtol=1e-4, atol=1e-5)


def _numpy_block(stack, i, x):
    """psi_i(x) by plain numpy loops over layers (independent of the batched torch kernel)."""
    W = [w[i].double().numpy() for w in stack.weights]
    b = [v[i, 0].double().numpy() for v in stack.biases]
    m_in, s_in, m_out, s_out = (a[i, 0].double().numpy() for a in (stack.m_in, stack.s_in, stack.m_out, stack.s_out))
    h = (x - m_in) / s_in
    for Wl, bl in zip(W[:-1], b[:-1]):
        z = h @ Wl + bl
        h = z / (1 + np.exp(-z))
    return x + m_out + s_out * (h @ W[-1] + b[-1])


def test_chained_error_equals_composed_blocks_error():
    mix = builtin("ring8")
    nodes = [T, 1.0, 0.2, DELTA]
    teacher = Teacher(mix)
    traj = teacher.trajectory(marginal.sample(mix, T, 1024, 2), nodes)
    Xs = traj.transpose(0, 1).float()
    stack = BlockStack.init(3, 2, 16, 2, torch.Generator().manual_seed(0), dtype=torch.float64)
    train_segments(stack, Xs[:-1].double(), Xs[1:].double(), iters=100, batch=128, lr=3e-3,
                   generator=torch.Generator().manual_seed(1))
    x0 = traj[:200, 0]
    with torch.no_grad():
        out = stack.chain(x0).numpy()
    z = x0.numpy()
    for i in range(3):
        z = _numpy_block(stack, i, z)
    np.testing.assert_allclose(out, z, rtol=1e-10, atol=1e-10)
    ref = traj[:200, -1].numpy()
    rel = M.relative_error_stats(torch.tensor(out), traj[:200, -1])
    brute = sum(((z[k] - ref[k]) ** 2).sum() for k in range(200)) / sum((ref[k] ** 2).sum() for k in range(200))
    assert rel["value"] == pytest.approx(brute, rel=1e-10)
    assert rel["ci_low"] <= rel["value"] <= rel["ci_high"]


def test_fan_bound_holds_on_trained_tiny_student():
    from flowcert.bounds.stability import stability
    from flowcert.numcore.grids import build

    mix = builtin("ring8")
    st = {r: stability(mix, r, DELTA, T) for r in M.FAN_RATES}
    nodes = build("uniform", 4, DELTA, T)
    teacher = Teacher(mix)
    traj = teacher.trajectory(marginal.sample(mix, T, 2048, 7), nodes)
    X = traj.transpose(0, 1).float()
    stack = BlockStack.init(4, 2, 16, 2, torch.Generator().manual_seed(0))
    train_segments(stack, X[:-1], X[1:], iters=150, batch=256, lr=3e-3, generator=torch.Generator().manual_seed(1))
    test = teacher.trajectory(marginal.sample(mix, T, 512, 8), nodes)
    with torch.no_grad():
        out, states = stack.chain(test[:, 0].float(), keep=True)
    eps = []
    for i in range(4):
        z = states[i].double()
        eps.append(float(((states[i + 1].double() - teacher.flow(z, nodes[i], nodes[i + 1])) ** 2).sum(1).mean().sqrt()))
    measured = float(((out.double() - test[:, -1]) ** 2).sum(1).mean().sqrt())
    for r in M.FAN_RATES:
        Lam = st[r].integral(nodes)
        start, end = M.fan_bound(eps, Lam, "start"), M.fan_bound(eps, Lam, "end")
        brute = sum(e * np.exp(Lam[i] - Lam[-1]) for i, e in enumerate(eps))
        assert start == pytest.approx(brute, rel=1e-12)
        assert end <= start
        assert end >= measured  # the tighter form already holds


# ----------------------------------------------------------------------------- measurements
def test_amplification_one_gaussian_closed_form():
    mix = from_spec({"means": [[0.0, 1.0]], "cov": [[0.2, 0.05], [0.05, 0.1]]})
    rows = M.amplification(Teacher(mix), mix, [0.5, 2.0], DELTA, 16, 0)
    lam = np.linalg.eigvalsh(mix.covs[0])
    for row in rows:
        t = row["t"]
        s = lambda u: np.exp(-2 * u) * lam - np.expm1(-2 * u)  # noqa: E731
        ref = np.sqrt(s(DELTA) / s(t)).max()
        assert row["max"] == pytest.approx(ref, rel=1e-7)
        assert row["mean"]["value"] == pytest.approx(ref, rel=1e-7)


def test_block_jacobian_matches_finite_differences():
    stack = BlockStack.init(2, 3, 8, 2, torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        stack.weights[-1].normal_(generator=torch.Generator().manual_seed(2))
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    J = M.block_jacobian(stack, 1, x).numpy()
    h = 1e-6
    for j in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[j] = h
        fd = (stack.apply_block(1, x + e) - stack.apply_block(1, x - e)).numpy() / (2 * h)
        np.testing.assert_allclose(J[:, :, j], fd, rtol=1e-6, atol=1e-8)


def test_interval_estimators_cover():
    rng = np.random.default_rng(0)
    hits_mean = hits_q = hits_ratio = 0
    for _ in range(200):
        v = rng.exponential(size=400)
        m = M.mean_ci(v)
        q = M.quantile_ci(v, 0.9)
        r = M.ratio_ci(v, v + 1.0)
        hits_mean += m["ci_low"] <= 1.0 <= m["ci_high"]
        hits_q += q["ci_low"] <= np.log(10) <= q["ci_high"]
        hits_ratio += r["ci_low"] <= 0.5 <= r["ci_high"]
    for hits in (hits_mean, hits_q, hits_ratio):
        assert 0.88 * 200 <= hits <= 200


def test_end_to_end_finetuning_lowers_the_chained_error():
    from flowcert.distill.students import finetune_chain

    mix = builtin("ring8")
    nodes = [T, 0.5, DELTA]
    traj = Teacher(mix).trajectory(marginal.sample(mix, T, 1024, 11), nodes).float()
    X = traj.transpose(0, 1)
    stack = BlockStack.init(2, 2, 16, 2, torch.Generator().manual_seed(0))
    train_segments(stack, X[:-1], X[1:], iters=60, batch=256, lr=3e-3, generator=torch.Generator().manual_seed(1))

    def chained():
        with torch.no_grad():
            return float(((stack.chain(X[0]) - X[-1]) ** 2).sum(1).mean() / (X[-1] ** 2).sum(1).mean())

    before = chained()
    finetune_chain(stack, X[0], X[-1], iters=150, batch=256, lr=1e-3, generator=torch.Generator().manual_seed(2))
    assert chained() < 0.9 * before


from hypothesis import given, settings  # noqa: E402

from conftest import mixtures  # noqa: E402


@settings(max_examples=6, deadline=None)
@given(mixtures(structures=("iso", "iso_k", "shared"), d_max=3, K_max=4, var_lo=0.05, var_hi=1.0))
def test_measured_flow_jacobian_never_exceeds_exp_lambda(mix):
    """||D Phi_{t->s}(x)||_op <= exp(Lambda(t) - Lambda(s)) for the one-sided and sharp rates (random mixtures)."""
    from flowcert.bounds.stability import stability

    t, s = 0.8, 0.05
    x = marginal.sample(mix, t, 48, 0)
    _, J = Teacher(mix, step=0.02).flow_jacobian(x, t, s)
    measured = M.opnorm(J).max()
    for rate in ("onesided", "sharp", "tri"):
        bound = np.exp(stability(mix, rate, s, t).integral.total)
        assert measured <= bound * (1 + 1e-6), (rate, measured, bound)
