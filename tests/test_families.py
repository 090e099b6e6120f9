"""The models people sample, built tiny from configs (as diffusers' own tests do), saved as pipeline folders with
save_pretrained, loaded through the API and the command line, and evaluated: each family's denoiser equals a
direct call of the diffusers network on the inputs the boundary should produce (conditioning passed through
unchanged), under DDPM-family and FlowMatch schedulers; guidance against its formula; bad input in one line."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
safetensors_torch = pytest.importorskip("safetensors.torch")

import flowcert  # noqa: E402
from flowcert.cli import main  # noqa: E402

EHS = torch.randn(1, 5, 12, generator=torch.Generator().manual_seed(11))  # a "prompt embedding": 5 tokens of 12
POOLED = torch.randn(1, 10, generator=torch.Generator().manual_seed(12))


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def _quiet():
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


# ----------------------------------------------------------------------------- tiny models of every family
def _unet_cond(**kw):
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=12, attention_head_dim=4, norm_num_groups=4, **kw)


def _build(kind: str, folder):
    """A tiny randomly initialised model of one family saved as a pipeline folder; (network, scheduler)."""
    _quiet()
    torch.manual_seed(0)
    none = dict(vae=None, text_encoder=None, tokenizer=None)
    if kind == "sd":
        net, sched = _unet_cond(), diffusers.DDIMScheduler(prediction_type="v_prediction", clip_sample=False)
        diffusers.StableDiffusionPipeline(unet=net, scheduler=sched, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False, **none).save_pretrained(folder)
    elif kind == "sdxl":
        net = _unet_cond(addition_embed_type="text_time", addition_time_embed_dim=4,
                         projection_class_embeddings_input_dim=10 + 6 * 4)
        sched = diffusers.EulerDiscreteScheduler(prediction_type="epsilon")
        diffusers.StableDiffusionXLPipeline(unet=net, scheduler=sched, text_encoder_2=None, tokenizer_2=None,
                                            **none).save_pretrained(folder)
    elif kind == "dit":
        net = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                              out_channels=8, num_layers=1, sample_size=8, patch_size=2,
                                              num_embeds_ada_norm=10, norm_num_groups=4)
        sched = diffusers.DDPMScheduler(clip_sample=False)
        diffusers.DiTPipeline(transformer=net, vae=None, scheduler=sched).save_pretrained(folder)
    elif kind == "sd3":
        net = diffusers.SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=1,
                                              attention_head_dim=8, num_attention_heads=2, joint_attention_dim=12,
                                              caption_projection_dim=16, pooled_projection_dim=10, out_channels=4,
                                              pos_embed_max_size=16)
        sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
        diffusers.StableDiffusion3Pipeline(transformer=net, scheduler=sched, text_encoder_2=None, tokenizer_2=None,
                                           text_encoder_3=None, tokenizer_3=None, **none).save_pretrained(folder)
    elif kind == "flux":
        net = diffusers.FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                               attention_head_dim=16, num_attention_heads=2, joint_attention_dim=12,
                                               pooled_projection_dim=10, guidance_embeds=True, axes_dims_rope=(4, 4, 8))
        sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
        diffusers.FluxPipeline(transformer=net, scheduler=sched, text_encoder_2=None, tokenizer_2=None,
                               **none).save_pretrained(folder)
    elif kind in ("unet-class", "unet-class-null"):
        net = diffusers.UNet2DModel(sample_size=4, in_channels=1, out_channels=1, block_out_channels=(8, 8),
                                    down_block_types=("DownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=4,
                                    num_class_embeds=4 if kind == "unet-class-null" else 3)
        sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0)  # a class-conditional flow-matching UNet
        diffusers.DDPMPipeline(unet=net, scheduler=sched).save_pretrained(folder)
        if kind == "unet-class-null":
            with open(os.path.join(folder, "unet", "flowcert.json"), "w") as fh:
                json.dump({"null_class": 3}, fh)
    else:
        raise ValueError(kind)
    return net.eval(), sched


KINDS = ("sd", "sdxl", "dit", "sd3", "flux", "unet-class", "unet-class-null")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    out = {}
    for kind in KINDS:
        folder = root / kind
        net, sched = _build(kind, folder)
        out[kind] = (str(folder), net, sched)
    return out


def _cond(kind: str) -> dict:
    return {"sd": {"encoder_hidden_states": EHS},
            "sdxl": {"encoder_hidden_states": EHS, "text_embeds": POOLED, "time_ids": torch.tensor(
                [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])},
            "dit": {"class_labels": torch.tensor([7])},
            "sd3": {"encoder_hidden_states": EHS, "pooled_projections": POOLED},
            "flux": {"encoder_hidden_states": EHS, "pooled_projections": POOLED, "guidance": torch.tensor([3.5])},
            "unet-class": {"class_labels": torch.tensor([2])},
            "unet-class-null": {"class_labels": torch.tensor([1])}}[kind]


def _save_cond(path, cond: dict) -> str:
    safetensors_torch.save_file({k: v.contiguous() for k, v in cond.items()}, str(path))
    return str(path)


def _direct(kind, net, sched, x, sigma, cond):
    """What the pipeline computes: the diffusers network called directly on the point the boundary should feed it
    (VP x at the DDPM timestep whose alphabar is alpha^2; flow x_s = y / (1 + sigma) at s or 1000 s), converted
    to x_0 with the scheduler's own formula; x is the VE point y (n, C, H, W)."""
    n = x.shape[0]
    if isinstance(sched, diffusers.FlowMatchEulerDiscreteScheduler):
        s = sigma / (1 + sigma)
        xs = (x / (1 + sigma)).float()
        t = torch.full((n,), s if kind == "flux" else 1000 * s)
        if kind == "flux":
            from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

            c, h, w = x.shape[1:]
            packed = FluxPipeline._pack_latents(xs, n, c, h, w)
            ids = FluxPipeline._prepare_latent_image_ids(n, h // 2, w // 2, "cpu", torch.float32)
            v = net(hidden_states=packed, encoder_hidden_states=cond["encoder_hidden_states"].expand(n, -1, -1),
                    pooled_projections=cond["pooled_projections"].expand(n, -1), timestep=t, img_ids=ids,
                    txt_ids=torch.zeros(cond["encoder_hidden_states"].shape[1], 3),
                    guidance=cond["guidance"].expand(n)).sample
            v = FluxPipeline._unpack_latents(v, h * 8, w * 8, 8)
        elif kind == "sd3":
            v = net(hidden_states=xs, encoder_hidden_states=cond["encoder_hidden_states"].expand(n, -1, -1),
                    pooled_projections=cond["pooled_projections"].expand(n, -1), timestep=t).sample
        else:
            v = net(xs, t, class_labels=cond["class_labels"].expand(n)).sample
        return (xs - s * v).double()
    # DDPM family at an integer timestep: sigma = sqrt(1 / alphabar_k - 1)
    abar = sched.alphas_cumprod.double()
    k = int(torch.argmin((torch.sqrt(1 / abar - 1) - sigma).abs()))
    a = float(abar[k])
    xv = (x * math.sqrt(a)).float()
    t = torch.full((n,), k)
    if kind == "dit":
        out = net(xv, timestep=t, class_labels=cond["class_labels"].expand(n)).sample[:, :4]
    elif kind == "sdxl":
        out = net(xv, t, encoder_hidden_states=EHS.expand(n, -1, -1),
                  added_cond_kwargs={"text_embeds": cond["text_embeds"].expand(n, -1),
                                     "time_ids": cond["time_ids"].expand(n, -1)}).sample
    else:
        out = net(xv, t, encoder_hidden_states=cond["encoder_hidden_states"].expand(n, -1, -1)).sample
    pred = sched.config.prediction_type
    if pred == "epsilon":
        x0 = (xv - math.sqrt(1 - a) * out) / math.sqrt(a)
    else:  # v_prediction
        x0 = math.sqrt(a) * xv - math.sqrt(1 - a) * out
    return x0.double()


def _sigma_for(sched, kind):
    if isinstance(sched, diffusers.FlowMatchEulerDiscreteScheduler):
        return 0.37
    abar = sched.alphas_cumprod.double()
    return float(torch.sqrt(1 / abar[400] - 1))


@pytest.mark.parametrize("kind", ["sd", "sdxl", "dit", "sd3", "flux", "unet-class"])
def test_each_family_loads_and_equals_a_direct_call_of_its_network(folders, kind):
    folder, net, sched = folders[kind]
    cond = _cond(kind)
    m = flowcert.load_model(folder, cond=cond, shape=(4, 8, 8) if kind == "flux" else None)
    flow = isinstance(sched, diffusers.FlowMatchEulerDiscreteScheduler)
    assert m.prediction == ("flow" if flow else sched.config.prediction_type)
    assert m.noise == ("flow" if kind == "flux" else "flow1000" if flow else "ddpm")
    assert m.info["class"] == type(net).__name__
    y = torch.randn(3, m.d, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2
    sigma = _sigma_for(sched, kind)
    with torch.no_grad():
        got = m(y, sigma)
        want = _direct(kind, net, sched, y.reshape(3, *m.shape), sigma, cond).reshape(3, -1)
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-4)
    # the conditioning is the one given, passed through unchanged (a leading batch of 1 broadcast at the boundary)
    assert set(m.cond) == set(cond) and all(torch.equal(m.cond[k], cond[k]) for k in cond)


def test_the_same_folder_through_the_command_line(folders, runner, tmp_path):
    for kind in KINDS:
        folder, net, sched = folders[kind]
        args = ["grid", "--model", folder, "--steps", 4, "--kind", "logsnr", "--format", "json"]
        if kind == "dit":
            args += ["--class-label", 3, "--guidance", 4]
        elif kind == "unet-class-null":
            args += ["--class-label", 1, "--guidance", 2]
        else:
            args += ["--cond", _save_cond(tmp_path / f"{kind}.safetensors", _cond(kind))]
        if kind == "flux":
            args += ["--shape", "4,8,8"]
        res = run(runner, *args)
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert out["model"]["class"] == type(net).__name__ and len(out["t"]) == 5
        if kind == "dit":
            assert out["model"]["guidance"] == 4.0 and out["model"]["network_passes_per_evaluation"] == 2
    # a model evaluated through a command: the Jacobian table of the guided DiT on data
    data = tmp_path / "data.npy"
    np.save(data, np.random.default_rng(0).normal(size=(16, 256)))
    res = run(runner, "lipschitz", "--model", folders["dit"][0], "--class-label", 3, "--guidance", 2, "--data", data,
              "--points", 2, "--empirical", 4, "--iters", 2, "--format", "json", "--threads", 1)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert np.all(np.isfinite(out["empirical_mean"])) and out["model"]["guidance"] == 2.0


def test_a_python_file_model_gets_its_conditioning_from_a_file(runner, tmp_path):
    """--model FILE.py:NAME with --cond: the arrays reach fn as keyword arguments, broadcast over the samples."""
    src = tmp_path / "net.py"
    src.write_text(
        "import torch, flowcert\n"
        "def fn(x, s, scale=None, offset=None):\n"
        "    assert scale.shape == (x.shape[0], 1) and offset.dtype == torch.int64\n"
        "    return x * scale + offset\n"
        "model = flowcert.torch_model(fn, shape=(3,), prediction='flow', scaling='flow', noise='flow')\n")
    cond = tmp_path / "cond.npz"
    np.savez(cond, scale=np.array([[0.5]]), offset=np.array([[2]]))
    res = run(runner, "lipschitz", "--model", f"{src}:model", "--cond", cond, "--points", 2, "--empirical", 4,
              "--iters", 2, "--data", _npy(tmp_path, (8, 3)), "--format", "json")
    assert res.exit_code == 0, res.output
    m = flowcert.load_model(f"{src}:model", cond=str(cond))
    y = torch.ones(4, 3, dtype=torch.float64)
    # v = 0.5 x_s + 2: D = x_s - s v at sigma = 1 (s = 1/2, x_s = y / 2)
    torch.testing.assert_close(m(y, 1.0), 0.5 - 0.5 * (0.25 + 2.0) * torch.ones(4, 3, dtype=torch.float64))


def _npy(tmp_path, shape):
    path = tmp_path / "data.npy"
    np.save(path, np.random.default_rng(0).normal(size=shape))
    return path


def test_flux_packing_is_the_pipelines(folders):
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

    from flowcert.models.families import image_ids, pack_latents, unpack_latents

    x = torch.randn(2, 4, 6, 8)
    torch.testing.assert_close(pack_latents(x), FluxPipeline._pack_latents(x, 2, 4, 6, 8))
    torch.testing.assert_close(unpack_latents(pack_latents(x), 6, 8), x)
    torch.testing.assert_close(image_ids(6, 8), FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32))


def test_a_flowmatch_scheduler_gives_the_flow_parametrisation_and_its_range(folders):
    folder, net, sched = folders["sd3"]
    m = flowcert.load_model(folder, cond=_cond("sd3"))
    s_min = 3.0 * 1e-3 / (1 + 2.0 * 1e-3)  # shift 3 applied to 1 / num_train_timesteps
    assert m.sigma_range[0] == pytest.approx(s_min / (1 - s_min)) and m.sigma_range[1] == math.inf
    assert (m.prediction, m.scaling, m.noise) == ("flow", "flow", "flow1000")
    assert m.describe()["scheduler"] == "FlowMatchEulerDiscreteScheduler"


# ----------------------------------------------------------------------------- guidance
@pytest.mark.parametrize("kind", ["dit", "sd3", "unet-class-null"])
def test_guidance_is_the_formula_and_batches_both_branches_in_one_call(folders, kind):
    folder, net, sched = folders[kind]
    cond = _cond(kind)
    uncond = {"sd3": {"encoder_hidden_states": torch.zeros_like(EHS), "pooled_projections": torch.zeros_like(POOLED)},
              "dit": {"class_labels": torch.tensor([10])},  # DiT's null class = num_embeds_ada_norm
              "unet-class-null": {"class_labels": torch.tensor([3])}}[kind]
    W = 3.5
    g = flowcert.load_model(folder, cond=cond, guidance=W, uncond=None if kind != "sd3" else uncond)
    c = flowcert.load_model(folder, cond=cond)
    u = flowcert.load_model(folder, cond=uncond)
    y = torch.randn(4, c.d, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    calls = []
    handle = g.model.module.register_forward_pre_hook(lambda mod, args, kw=None: calls.append(1))
    try:
        with torch.no_grad():
            got = g(y, 0.8)
    finally:
        handle.remove()
    assert len(calls) == 1  # one network call of 2n samples, as pipelines batch it
    with torch.no_grad():
        want = u(y, 0.8) + W * (c(y, 0.8) - u(y, 0.8))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert g.describe()["guidance"] == W


def test_flux_true_cfg_with_a_negative_prompt_of_another_length(folders):
    """Flux guided by an unconditional branch with another text length: two calls (txt_ids built for each length),
    its distilled guidance inherited from the conditional branch."""
    folder, net, sched = folders["flux"]
    neg = {"encoder_hidden_states": torch.randn(1, 3, 12), "pooled_projections": torch.zeros(1, 10)}
    g = flowcert.load_model(folder, cond=_cond("flux"), uncond=neg, guidance=2.0, shape=(4, 8, 8))
    c = flowcert.load_model(folder, cond=_cond("flux"), shape=(4, 8, 8))
    u = flowcert.load_model(folder, cond={**neg, "guidance": torch.tensor([3.5])}, shape=(4, 8, 8))
    y = torch.randn(2, c.d, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(g(y, 0.6), u(y, 0.6) + 2.0 * (c(y, 0.6) - u(y, 0.6)), rtol=1e-5, atol=1e-5)


def test_a_model_folder_with_its_scheduler_config_beside_it(folders, tmp_path):
    folder, net, sched = folders["sd3"]
    single = tmp_path / "sd3-transformer"
    net.save_pretrained(single)
    sched.save_config(single)
    m = flowcert.load_model(str(single), cond=_cond("sd3"))
    ref = flowcert.load_model(folder, cond=_cond("sd3"))
    y = torch.randn(2, m.d, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(y, 0.4), ref(y, 0.4))
    assert m.noise == "flow1000" and "pipeline" not in m.info


def test_flux_embedded_guidance_is_conditioning_not_cfg(folders):
    folder, net, sched = folders["flux"]
    a = flowcert.load_model(folder, cond=_cond("flux"), shape=(4, 8, 8))
    b = flowcert.load_model(folder, cond={**_cond("flux"), "guidance": torch.tensor([1.0])}, shape=(4, 8, 8))
    y = torch.randn(2, a.d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert not torch.allclose(a(y, 0.5), b(y, 0.5))
    assert type(a).__name__ == "TorchModel"  # no second branch


# ----------------------------------------------------------------------------- device and precision
def test_the_network_gets_its_dtype_and_the_state_stays_float64(folders):
    folder, net, sched = folders["dit"]
    m = flowcert.load_model(folder, class_label=1, dtype="bfloat16")
    seen = []
    m.module.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(
        (args[0].dtype, args[0].device.type, kwargs["class_labels"].dtype, kwargs["timestep"].dtype)), with_kwargs=True)
    y = torch.randn(3, m.d, dtype=torch.float64)
    out = m(y, 0.5)
    assert seen == [(torch.bfloat16, "cpu", torch.int64, torch.bfloat16)]
    assert out.dtype == torch.float64 and next(m.module.parameters()).dtype == torch.bfloat16
    from flowcert.models.flow import solve

    end = solve(m, np.random.default_rng(0).normal(size=(3, m.d)), np.array([2.0, 0.5, 0.05]), "euler")
    assert end.dtype == np.float64 and np.all(np.isfinite(end))


def test_cuda_without_cuda_is_one_line(folders, runner):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    res = run(runner, "grid", "--model", folders["dit"][0], "--class-label", 1, "--device", "cuda", "--steps", 4,
              "--kind", "logsnr")
    assert res.exit_code == 2 and "--device = 'cuda'" in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.gpu
def test_a_family_runs_on_cuda_in_half_precision(folders):
    folder, net, sched = folders["sd3"]
    m = flowcert.load_model(folder, cond=_cond("sd3"), device="cuda", dtype="float16")
    ref = flowcert.load_model(folder, cond=_cond("sd3"))
    y = torch.randn(4, m.d, dtype=torch.float64)
    out = m(y, 0.5)
    assert out.device.type == "cpu" and out.dtype == torch.float64
    torch.testing.assert_close(out, ref(y, 0.5), rtol=3e-2, atol=3e-2)


# ----------------------------------------------------------------------------- bad input: one line, exit 2
class _Trap:
    """Unpickling this writes a marker file: a test fails if anything ever unpickles it."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _one_line(res, *needles):
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_conditioning_is_refused_in_one_line(folders, runner, tmp_path):
    import pickle

    sd3, dit = folders["sd3"][0], folders["dit"][0]
    base = ["grid", "--steps", 4, "--kind", "logsnr", "--model"]
    _one_line(run(runner, *base, sd3), "--cond missing", "encoder_hidden_states, pooled_projections")
    only = _save_cond(tmp_path / "only.safetensors", {"encoder_hidden_states": EHS})
    _one_line(run(runner, *base, sd3, "--cond", only), "lacks pooled_projections")
    wrong = _save_cond(tmp_path / "wrong.safetensors", {"encoder_hidden_states": torch.randn(1, 5, 7),
                                                       "pooled_projections": POOLED})
    _one_line(run(runner, *base, sd3, "--cond", wrong), "encoder_hidden_states has shape (1, 5, 7)")
    nobatch = tmp_path / "nobatch.npz"
    np.savez(nobatch, encoder_hidden_states=np.zeros((2, 5, 12), np.float32), pooled_projections=np.zeros((1, 10)))
    _one_line(run(runner, *base, sd3, "--cond", nobatch), "leading batch dimension of 1")
    extra = _save_cond(tmp_path / "extra.safetensors", {**_cond("sd3"), "class_labels": torch.tensor([1])})
    _one_line(run(runner, *base, sd3, "--cond", extra), "class_labels", "does not take")
    # pickles: by name, and inside an .npz; never unpickled
    marker = tmp_path / "UNPICKLED"
    _Trap.marker = str(marker)
    for name in ("cond.bin", "cond.pt", "cond.pkl"):
        with open(tmp_path / name, "wb") as fh:
            pickle.dump(_Trap(), fh)
        _one_line(run(runner, *base, sd3, "--cond", tmp_path / name), "pickle")
    np.savez(tmp_path / "obj.npz", encoder_hidden_states=np.array([_Trap()], dtype=object))
    _one_line(run(runner, *base, sd3, "--cond", tmp_path / "obj.npz"), "pickled data")
    with open(tmp_path / "renamed.npz", "wb") as fh:
        pickle.dump(_Trap(), fh)
    _one_line(run(runner, *base, sd3, "--cond", tmp_path / "renamed.npz"))
    assert not marker.exists()
    # classes, guidance
    _one_line(run(runner, *base, dit, "--class-label", 10), "--class-label = 10", "classes 0..9")
    _one_line(run(runner, *base, dit, "--class-label", 1, "--guidance", "nan"), "--guidance = nan")
    _one_line(run(runner, *base, dit, "--class-label", 1, "--guidance", -2), "--guidance = -2")
    good = _save_cond(tmp_path / "good.safetensors", _cond("sd3"))
    _one_line(run(runner, *base, sd3, "--cond", good, "--guidance", 4), "text-conditioned", "--negative-prompt")
    _one_line(run(runner, *base, folders["unet-class"][0], "--class-label", 1, "--guidance", 2), "no null class")
    _one_line(run(runner, *base, dit), "--cond missing", "--class-label N")
    flux = _save_cond(tmp_path / "flux.safetensors", {k: v for k, v in _cond("flux").items() if k != "guidance"})
    _one_line(run(runner, *base, folders["flux"][0], "--shape", "4,8,8", "--cond", flux), "lacks guidance")
    _one_line(run(runner, *base, folders["flux"][0], "--cond", flux), "--shape")
    _one_line(run(runner, *base, folders["flux"][0], "--shape", "4,7,8", "--cond", flux), "--shape = 4,7,8")


def test_prompts_need_text_encoders_and_the_models_extra(folders, runner, monkeypatch):
    base = ["grid", "--steps", 4, "--kind", "logsnr", "--model", folders["sd3"][0]]
    _one_line(run(runner, *base, "--prompt", "a cat"), "no text encoders")
    import sys

    from flowcert.models import prompts

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if flowcert[models] were not installed
    monkeypatch.setattr(prompts, "_present", lambda folder, index, comp: comp.startswith(("text_encoder", "tok")))
    _one_line(run(runner, *base, "--prompt", "a cat"), "transformers", "flowcert[models]")


def test_pickled_weights_are_never_unpickled(folders, runner, tmp_path):
    import pickle
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(folders["dit"][0], folder)
    os.remove(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    marker = tmp_path / "UNPICKLED"
    _Trap.marker = str(marker)
    with open(folder / "transformer" / "diffusion_pytorch_model.bin", "wb") as fh:
        pickle.dump(_Trap(), fh)
    _one_line(run(runner, "grid", "--model", folder, "--class-label", 1, "--steps", 4, "--kind", "logsnr"), "pickle")
    assert not marker.exists()
