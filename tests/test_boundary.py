"""The model boundary: one denoiser interface D(y, sigma, cond) for networks and the exact mixture, per-sample
sigma, conditioning passed through untouched, inputs moved to the network's device and dtype, outputs in the
state's dtype, and parametrisations looked up in registries."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import flowcert  # noqa: E402
from flowcert.models.denoiser import NOISE_MAPS, PREDICTIONS, SCALINGS, Denoiser, torch_model  # noqa: E402
from flowcert.models.exact import exact_model  # noqa: E402
from flowcert.numcore.marginal import denoiser as exact_denoiser  # noqa: E402


def _network_of(mix):
    """The exact mixture written as an epsilon network in VP scaling with an OU-time input (numpy closed forms)."""

    def fn(x, t, **cond):
        t_ = t.double().numpy()
        xs = x.double().numpy()
        alpha, svp = np.exp(-t_)[:, None], np.sqrt(-np.expm1(-2 * t_))[:, None]
        D = np.stack([exact_denoiser(mix, xs[i:i + 1], float(t_[i]))[0] for i in range(xs.shape[0])])
        return torch.as_tensor((xs - alpha * D) / svp, dtype=x.dtype)

    return fn


def test_exact_mixture_and_network_share_the_interface(device):
    mix = flowcert.load_mixture("hetero3")
    net = torch_model(_network_of(mix), shape=(mix.d,), prediction="epsilon", scaling="vp", noise="t",
                      dtype=torch.float64)
    exact = exact_model(mix, device=device)  # on a GPU where one is visible: the state stays on the CPU
    assert isinstance(net, Denoiser) and isinstance(exact, Denoiser)
    y = torch.randn(5, mix.d, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    for model in (net, exact):
        for sigma in (0.05, 1.0, 20.0):
            t = 0.5 * math.log1p(sigma**2)
            want = exact_denoiser(mix, y.numpy() / math.sqrt(1 + sigma**2), t)
            np.testing.assert_allclose(model(y, sigma).numpy(), want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("which", ["network", "exact"])
def test_per_sample_sigma_equals_one_call_per_sample(which):
    mix = flowcert.load_mixture("ring8")
    model = exact_model(mix) if which == "exact" else torch_model(
        _network_of(mix), shape=(mix.d,), prediction="epsilon", scaling="vp", noise="t", dtype=torch.float64)
    y = torch.randn(6, mix.d, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    sigma = torch.tensor([0.1, 2.0, 0.1, 7.0, 0.5, 2.0], dtype=torch.float64)
    got = model(y, sigma)
    for i in range(6):
        torch.testing.assert_close(got[i:i + 1], model(y[i:i + 1], float(sigma[i])), rtol=1e-12, atol=1e-12)


def test_a_sigma_of_the_wrong_shape_is_refused():
    model = exact_model(flowcert.load_mixture("line2"))
    with pytest.raises(flowcert.InputError, match="one sigma per sample"):
        model(torch.zeros(3, 1, dtype=torch.float64), torch.ones(2))


def test_conditioning_passes_through_untouched_and_the_call_overrides_the_model_own():
    """Keys and values reach the network as given; a leading batch dimension of 1 is broadcast over the samples
    (a view of the same numbers), a tensor with one row per sample and anything that is not a tensor are passed
    as they are, and a call's cond replaces the model's own."""
    seen = []
    emb, label, per, extra = torch.randn(1, 4, 3), torch.tensor([7]), torch.randn(3, 5), {"scale": 0.5}

    def fn(x, noise_level, **cond):
        seen.append(cond)
        return torch.zeros_like(x)

    model = torch_model(fn, shape=(2,), cond={"encoder_hidden_states": emb, "class_labels": label, "per": per,
                                              "cross_attention_kwargs": extra})
    model(torch.ones(3, 2), 1.0)
    got = seen[-1]
    assert set(got) == {"encoder_hidden_states", "class_labels", "per", "cross_attention_kwargs"}
    assert got["encoder_hidden_states"].shape == (3, 4, 3) and got["encoder_hidden_states"].data_ptr() == emb.data_ptr()
    assert torch.equal(got["encoder_hidden_states"], emb.expand(3, 4, 3))
    assert got["class_labels"].tolist() == [7, 7, 7] and got["class_labels"].dtype == torch.int64
    assert got["per"] is per and got["cross_attention_kwargs"] is extra
    model(torch.ones(1, 2), 1.0)
    assert seen[-1]["encoder_hidden_states"] is emb and seen[-1]["class_labels"] is label  # nothing to broadcast
    other = {"class_labels": torch.tensor([1])}
    model(torch.ones(3, 2), 1.0, other)
    assert seen[-1] is not other and seen[-1]["class_labels"].tolist() == [1, 1, 1] and len(seen[-1]) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_inputs_reach_the_network_in_its_dtype_and_the_output_comes_back_in_the_state_dtype(dtype):
    seen = {}

    def fn(x, noise_level, **cond):
        seen.update(x=x.dtype, noise=noise_level.dtype, device=x.device.type)
        return x  # a sample predictor returning its input

    model = torch_model(fn, shape=(3,), prediction="sample", dtype=dtype)
    y = torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(2, 3)
    out = model(y, 0.5)
    assert seen == {"x": dtype, "noise": dtype, "device": "cpu"}
    assert out.dtype == torch.float64 and out.device == y.device
    torch.testing.assert_close(out, y.to(dtype).double())


def test_inputs_are_moved_to_the_network_device():
    """A network on the `meta` device: its inputs must arrive there (a CUDA network gets them on CUDA)."""
    seen = {}

    class Stop(Exception):
        pass

    def fn(x, noise_level, **cond):
        seen.update(x=x.device.type, noise=noise_level.device.type)
        raise Stop

    model = torch_model(fn, shape=(2,), device="meta")
    with pytest.raises(flowcert.InputError, match="'fn' raised Stop at sigma = 1 "):  # the boundary names the network's failure
        model(torch.ones(4, 2), 1.0)
    assert seen == {"x": "meta", "noise": "meta"}


def test_every_parametrisation_of_the_registries_is_exact():
    """D = c_skip y + c_out F against each prediction's definition, for every scaling and noise map."""
    la = np.log(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    assert set(PREDICTIONS) >= {"sample", "epsilon", "v_prediction", "score", "flow"}
    assert set(SCALINGS) >= {"ve", "vp", "flow"} and set(NOISE_MAPS) >= {"flow", "flow1000"}
    for sname, sc in SCALINGS.items():
        for pname, pr in PREDICTIONS.items():
            for sigma in (0.03, 1.0, 30.0):
                alpha = 1 / math.sqrt(1 + sigma**2)
                c_in = sc.c_in(sigma)
                y, D = 1.7, 0.4  # a point and its denoised value; eps = (y - D) / sigma
                eps = (y - D) / sigma
                F = {"sample": D, "epsilon": eps, "v_prediction": alpha * eps - sigma * alpha * D,
                     "score": -(y - D) / sigma**2 / c_in, "flow": eps - D}[pname]
                assert math.isclose(pr.c_skip(sigma, c_in) * y + pr.c_out(sigma, c_in) * F, D, rel_tol=1e-12,
                                    abs_tol=1e-12), (sname, pname, sigma)
    for name, nm in NOISE_MAPS.items():
        c = nm.c_noise(0.7, la if nm.table else None)
        assert math.isfinite(c), name
