"""The exact conditional oracle and classifier-free guidance: a labelled mixture's class and guided denoisers
against numcore's closed forms, a class-conditional network written from the mixture against the oracle, the
guided Jacobian, and the guided field's Lipschitz bound against brute force."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import flowcert  # noqa: E402
from flowcert.bounds.guided import GuidedLipschitzBound  # noqa: E402
from flowcert.cli import main  # noqa: E402
from flowcert.models.denoiser import Needs, torch_model  # noqa: E402
from flowcert.models.exact import exact_model  # noqa: E402
from flowcert.models.guidance import GuidedDenoiser, merge_branches  # noqa: E402
from flowcert.numcore.marginal import denoiser as exact_denoiser  # noqa: E402
from flowcert.numcore.marginal import sample, velocity_jacobian  # noqa: E402
from flowcert.numcore.mixture import from_spec  # noqa: E402

SPEC = {"weights": [0.2, 0.3, 0.1, 0.4], "means": [[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0], [0.5, -2.0]],
        "cov": [[[0.05, 0.01], [0.01, 0.03]], [[0.02, 0.0], [0.0, 0.08]], [[0.1, 0.0], [0.0, 0.02]],
                [[0.03, 0.0], [0.0, 0.03]]],
        "labels": [0, 0, 1, 1]}


def _mix(spec=SPEC):
    return from_spec(spec, name="labelled")


def _guided_exact(mix, label, W, y, sigma):
    """(1 - W) D_u + W D_c from numcore's closed forms."""
    alpha, t = 1 / math.sqrt(1 + sigma**2), 0.5 * math.log1p(sigma**2)
    du = exact_denoiser(mix, y * alpha, t)
    dc = exact_denoiser(mix.restrict(label), y * alpha, t)
    return du + W * (dc - du)


def test_restrict_is_the_class_renormalised():
    mix = _mix()
    c = mix.restrict(1)
    np.testing.assert_allclose(c.weights, [0.2, 0.8])
    np.testing.assert_allclose(c.means, [[0.0, 2.0], [0.5, -2.0]])
    np.testing.assert_allclose(c.covs, mix.covs[2:])
    assert mix.classes == (0, 1) and c.classes == (1,) and from_spec(mix.to_spec()).labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("W", [0.0, 1.0, 2.5, 7.0])
def test_the_exact_guided_model_is_the_formula(W):
    mix = _mix()
    m = flowcert.load_model(f"mixture:{_spec_file(mix)}", class_label=1, guidance=W)
    y = torch.as_tensor(np.random.default_rng(0).normal(size=(9, 2)) * 2)
    for sigma in (0.05, 0.7, 9.0):
        np.testing.assert_allclose(m(y, sigma).numpy(), _guided_exact(mix, 1, W, y.numpy(), sigma), rtol=1e-9,
                                   atol=1e-9)
    assert isinstance(m, GuidedDenoiser) == (W != 1.0)


def _spec_file(mix, _cache={}):
    import tempfile

    if mix.name not in _cache:
        path = tempfile.mktemp(suffix=".json")
        with open(path, "w") as fh:
            json.dump(mix.to_spec(), fh)
        _cache[mix.name] = path
    return _cache[mix.name]


def test_the_guided_jacobian_is_the_combination_of_both_mixtures():
    mix = _mix()
    W, t = 3.0, 0.2
    m = flowcert.load_model(mix, class_label=0, guidance=W)
    x = sample(mix.restrict(0), t, 20, 1)
    J = m.dense_jacobian(torch.as_tensor(x), t).numpy()
    want = (1 - W) * velocity_jacobian(mix, x, t) + W * velocity_jacobian(mix.restrict(0), x, t)
    np.testing.assert_allclose(J, want, rtol=1e-7, atol=1e-7)


def _class_network(mix):
    """The labelled mixture written as a class-conditional epsilon network (VP input, OU-time input) whose null class
    is len(classes): what a DiT is, in closed form."""
    null = len(mix.classes)

    def fn(x, t, class_labels=None):
        xs, ts = x.double().numpy(), t.double().numpy()
        lab = class_labels.reshape(-1).expand(x.shape[0]).tolist()
        out = np.empty_like(xs)
        for i in range(xs.shape[0]):
            part = mix if lab[i] == null else mix.restrict(lab[i])
            alpha, svp = math.exp(-ts[i]), math.sqrt(-math.expm1(-2 * ts[i]))
            D = exact_denoiser(part, xs[i:i + 1], float(ts[i]))
            out[i] = ((xs[i:i + 1] - alpha * D) / svp)[0]
        return torch.as_tensor(out)

    needs = Needs(what="a class-conditional network", required=("class_labels",), accepted=("class_labels",),
                  classes=null, null={"class_labels": torch.tensor([null])})
    return torch_model(fn, shape=(mix.d,), prediction="epsilon", scaling="vp", noise="t", dtype=torch.float64,
                       needs=needs)


@pytest.mark.parametrize("W", [1.0, 4.0])
def test_a_class_conditional_network_with_a_null_class_equals_the_oracle(W):
    """Conditioning passed through (class_labels), the family's own null class as the unconditional branch, both
    branches in one call: the network written from the mixture gives the oracle's guided denoiser."""
    mix = _mix()
    net = flowcert.load_model(_class_network(mix), class_label=1, guidance=W)
    oracle = flowcert.load_model(mix, class_label=1, guidance=W)
    y = torch.as_tensor(np.random.default_rng(3).normal(size=(6, 2)) * 2)
    for sigma in (0.1, 2.0):
        torch.testing.assert_close(net(y, sigma), oracle(y, sigma), rtol=1e-9, atol=1e-9)


def test_an_unconditional_model_as_the_unconditional_branch():
    mix = _mix()
    cond, unc = exact_model(mix.restrict(0)), exact_model(mix)
    g = flowcert.load_model(cond, uncond=unc, guidance=2.0)
    y = torch.as_tensor(np.random.default_rng(4).normal(size=(5, 2)))
    np.testing.assert_allclose(g(y, 0.3).numpy(), _guided_exact(mix, 0, 2.0, y.numpy(), 0.3), rtol=1e-9, atol=1e-9)


def test_branches_that_cannot_share_a_call_run_in_two():
    seen = []

    def fn(x, t, encoder_hidden_states=None):
        seen.append(encoder_hidden_states.shape)
        return x * encoder_hidden_states.mean(dim=(1, 2))[:, None]

    m = torch_model(fn, shape=(3,), dtype=torch.float64)
    c, u = {"encoder_hidden_states": torch.ones(1, 4, 2)}, {"encoder_hidden_states": torch.full((1, 7, 2), 3.0)}
    assert merge_branches(c, u, 5) is None  # another sequence length
    g = flowcert.load_model(m, cond=c, uncond=u, guidance=2.0)
    y = torch.ones(5, 3, dtype=torch.float64)
    torch.testing.assert_close(g(y, 1.0), 3 * y + 2.0 * (y - 3 * y))
    assert seen == [(5, 4, 2), (5, 7, 2)]
    same = {"encoder_hidden_states": torch.zeros(1, 4, 2)}
    merged = merge_branches(c, same, 5)
    assert merged["encoder_hidden_states"].shape == (10, 4, 2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("W", [0.5, 3.0])
def test_the_guided_bound_holds_against_brute_force(seed, W):
    rng = np.random.default_rng(seed)
    K, d = 4, 2
    covs = []
    for _ in range(K):
        Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        covs.append(((Q * np.exp(rng.uniform(np.log(0.03), np.log(0.5), d))) @ Q.T).tolist())
    shared = seed % 2 == 0
    spec = {"means": rng.normal(scale=1.5, size=(K, d)).tolist(), "labels": [0, 1, 0, 1],
            **({"variance": 0.05} if shared else {"cov": covs})}
    mix = from_spec(spec)
    lb = GuidedLipschitzBound(mix, 1, W)
    for t in (0.01, 0.1, 0.5):
        pts = np.concatenate([sample(mix, t, 300, rng), sample(mix.restrict(1), t, 300, rng)])
        pts = pts[np.linalg.norm(pts, axis=1) <= lb.radius(t)[0]]
        J = (1 - W) * velocity_jacobian(mix, pts, t) + W * velocity_jacobian(mix.restrict(1), pts, t)
        ev = np.linalg.eigvalsh(J)
        assert np.abs(ev).max() <= lb(t, "sharp")[0] * (1 + 1e-9) <= lb(t, "tri")[0] * (1 + 1e-9)
        assert (-ev[:, 0]).max() <= lb(t, "onesided")[0] + 1e-9 * abs(lb(t, "onesided")[0])
        tri = abs(1 - W) * lb.u(t, "tri")[0] + W * lb.c(t, "tri")[0]
        assert lb(t, "tri")[0] == pytest.approx(tri)


def test_guidance_one_and_zero_are_the_class_and_the_unconditional_bounds():
    mix = _mix()
    t = np.geomspace(1e-3, 5, 7)
    from flowcert.bounds.lipschitz import LipschitzBound

    for which in ("tri", "sharp", "onesided"):
        np.testing.assert_allclose(GuidedLipschitzBound(mix, 0, 1.0)(t, which),
                                   LipschitzBound(mix.restrict(0))(t, which), rtol=1e-12)
        np.testing.assert_allclose(GuidedLipschitzBound(mix, 0, 0.0)(t, which), LipschitzBound(mix)(t, which),
                                   rtol=1e-12)


def test_lipschitz_prints_the_guided_bound(runner, tmp_path):
    spec = tmp_path / "lab.yaml"
    spec.write_text("means: [[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0], [0.0, -2.0]]\nvariance: 0.05\nlabels: [0, 0, 1, 1]\n")
    res = runner.invoke(main, ["lipschitz", str(spec), "--class-label", "1", "--guidance", "3", "--points", "5",
                               "--empirical", "400", "--format", "json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["class_label"] == 1 and out["guidance"] == 3.0 and out["scope"] == "global"
    assert all(v["holds_at_all_points"] for v in out["tightness"].values())
    mix = flowcert.load_mixture(str(spec))
    lb = GuidedLipschitzBound(mix, 1, 3.0)
    np.testing.assert_allclose(out["tri"], lb(np.array(out["t"]), "tri"))
    text = runner.invoke(main, ["lipschitz", str(spec), "--class-label", "1", "--guidance", "3", "--points", "3"])
    assert "class 1, guidance W = 3" in text.output and "not the probability flow of any density" in text.output


@pytest.mark.parametrize("bad,needle", [
    ({"labels": [0, 1]}, "labels has 2 entries"),
    ({"labels": [0, 1.5, 0, 1]}, "labels[1] = 1.5"),
    ({"labels": [0, -1, 0, 1]}, "labels[1] = -1"),
    ({"labels": [0, "a", 0, 1]}, "labels[1] is a string"),
    ({"labels": [0, True, 0, 1]}, "labels[1] is a boolean"),
    ({"labels": "0011"}, "labels is a string"),
])
def test_bad_labels_are_refused_one_value_at_a_time(bad, needle):
    with pytest.raises(flowcert.InputError, match=None) as exc:
        from_spec({**SPEC, **bad})
    assert needle in str(exc.value)


def test_a_guided_grid_of_the_exact_mixture_runs_through_the_model_path(runner, tmp_path):
    spec = tmp_path / "lab.json"
    spec.write_text(json.dumps(_mix().to_spec()))
    res = runner.invoke(main, ["grid", "--model", f"mixture:{spec}", "--class-label", "0", "--guidance", "2",
                               "--steps", "4", "--kind", "optimal", "--solver", "euler", "--train-samples", "16",
                               "--test-samples", "16", "--teacher-steps", "8", "--effort", "0.05", "--format", "json"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["model"]["guidance"] == 2.0 and len(out["t"]) == 5 and out["optimal"]["rel_mse"] >= 0
    bad = runner.invoke(main, ["grid", str(spec), "--class-label", "0", "--guidance", "2", "--steps", "4"])
    assert bad.exit_code == 2 and "--model mixture:SPEC" in bad.output
    ok = runner.invoke(main, ["grid", str(spec), "--class-label", "1", "--steps", "4", "--format", "json"])
    assert ok.exit_code == 0 and "class 1" in json.loads(ok.output)["mixture"]
