"""The digits-flow example (issue 19, item 8): training resumes to the same weights and saves a pipeline that
diffusers loads and samples; the shipped folder's files, sizes and config; its classifier on held-out digits;
the shipped model generates the class it is asked for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import flowcert  # noqa: E402
import flowcert.examples.digits_flow  # noqa: E402
from flowcert.examples.digits_flow import classifier  # noqa: E402
from flowcert.examples.digits_flow.spec import CLASSIFIER, NULL_CLASS, UNET_CONFIG  # noqa: E402
from flowcert.examples.trainer import digits_split  # noqa: E402

ASSETS = Path(flowcert.examples.digits_flow.__file__).parent / "assets"
SHIPPED = ("model_index.json", "training.json", CLASSIFIER, "scheduler/scheduler_config.json", "unet/config.json",
           "unet/flowcert.json",
           "unet/diffusion_pytorch_model.safetensors", "data/train.npy", "data/test.npy", "data/train_labels.npy",
           "data/test_labels.npy")


class _Killed(Exception):
    pass


def _killed_after(steps: int):
    """A progress-bar factory that stops the run after ``steps`` training steps (a killed run)."""

    class Bar:
        def __init__(self, *a):
            self.n = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k=1):
            self.n += k
            if self.n > steps:
                raise _Killed

    return Bar


def _safetensors(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "unet" / "diffusion_pytorch_model.safetensors"))


def test_train_example_digits_flow_resumes_to_the_same_weights_and_saves_a_loadable_pipeline(tmp_path):
    opts = dict(steps=4, batch=8, checkpoint_every=2, threads=1)
    whole = flowcert.train_example("digits-flow", str(tmp_path / "whole"), **opts)
    assert whole["steps_done"] == 4 and whole["resumed_from"] is None
    killed = str(tmp_path / "killed")
    with pytest.raises(_Killed):  # killed during step 4: the checkpoint of step 2 is on disk
        flowcert.train_example("digits-flow", killed, progress=_killed_after(3), **opts)
    again = flowcert.train_example("digits-flow", killed, **opts)
    assert again["resumed_from"] == 2 and again["steps_done"] == 4
    a, b = _safetensors(tmp_path / "whole"), _safetensors(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert flowcert.train_example("digits-flow", killed, **opts)["resumed_from"] == 4
    with pytest.raises(flowcert.InputError, match="different configuration"):
        flowcert.train_example("digits-flow", killed, **{**opts, "steps": 5})
    with pytest.raises(flowcert.InputError, match="label_dropout"):
        flowcert.train_example("digits-flow", str(tmp_path / "bad"), label_dropout=1.5)
    # the folder diffusers writes and reads: the pipeline class, its components, the null class for guidance
    index = json.loads((Path(killed) / "model_index.json").read_text())
    assert index["_class_name"] == "DigitsFlowPipeline" and "flowcert" not in index
    assert json.loads((Path(killed) / "unet" / "flowcert.json").read_text()) == {"null_class": 10}
    assert index["unet"] == ["diffusers", "UNet2DModel"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    from flowcert.examples.digits_flow.pipeline import DigitsFlowPipeline

    pipe = DigitsFlowPipeline.from_pretrained(killed)
    assert pipe.unet.config.num_class_embeds == 11
    x = pipe(class_labels=[0, 3], guidance_scale=2.0, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 8, 8) and np.all(np.isfinite(x))
    for name in ("train", "test"):
        assert np.load(Path(killed) / "data" / f"{name}_labels.npy").shape == \
            np.load(Path(killed) / "data" / f"{name}.npy").shape[:1]
    assert classifier.load(str(Path(killed) / CLASSIFIER))["w1"].shape == (64, classifier.HIDDEN)


def test_the_shipped_digits_flow_folder():
    """Files, sizes and config of the shipped pipeline (package data, at most 3 MB of safetensors)."""
    files = sorted(str(p.relative_to(ASSETS)) for p in ASSETS.rglob("*") if p.is_file())
    assert files == sorted(SHIPPED)
    weights = sum(p.stat().st_size for p in ASSETS.rglob("*.safetensors"))
    assert weights <= 3 * 2**20
    assert sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file()) <= 3 * 2**20
    assert not any(p.suffix in (".bin", ".pt", ".pkl", ".ckpt") for p in ASSETS.rglob("*"))
    index = json.loads((ASSETS / "model_index.json").read_text())
    assert index["_class_name"] == "DigitsFlowPipeline"
    assert json.loads((ASSETS / "unet" / "flowcert.json").read_text()) == {"null_class": NULL_CLASS}
    unet = json.loads((ASSETS / "unet" / "config.json").read_text())
    assert unet["_class_name"] == "UNet2DModel"
    for k, v in UNET_CONFIG.items():
        assert unet[k] == (list(v) if isinstance(v, tuple) else v), k
    sched = json.loads((ASSETS / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "FlowMatchEulerDiscreteScheduler"
    assert sched["shift"] == 1.0 and sched["num_train_timesteps"] == 1000 and not sched["use_dynamic_shifting"]
    info = json.loads((ASSETS / "training.json").read_text())
    assert info["objective"] == "flow-v" and info["steps_done"] == info["config"]["steps"]
    assert info["null_class_label"] == NULL_CLASS and info["config"]["label_dropout"] == 0.1
    train_x, train_y, test_x, test_y = digits_split(labels=True)  # the shipped split is digits' split
    np.testing.assert_array_equal(np.load(ASSETS / "data" / "test.npy"), test_x)
    np.testing.assert_array_equal(np.load(ASSETS / "data" / "train_labels.npy"), train_y)
    np.testing.assert_array_equal(np.load(ASSETS / "data" / "test.npy"),
                                  np.load(ASSETS.parent.parent / "digits" / "assets" / "data" / "test.npy"))


def test_the_classifier_on_held_out_real_digits():
    clf = classifier.load(str(ASSETS / CLASSIFIER))
    _, _, test_x, test_y = digits_split(labels=True)
    acc = np.mean(classifier.predict(clf, test_x) == test_y)
    assert acc >= 0.97, acc  # 98.6% measured (360 held-out digits)


def test_the_shipped_model_draws_the_class_it_is_asked_for():
    """Its own pipeline (FlowMatch scheduler, 16 Euler steps, guidance 2): the classifier reads the class asked."""
    from flowcert.examples.digits_flow.pipeline import DigitsFlowPipeline

    torch.set_num_threads(1)
    pipe = DigitsFlowPipeline.from_pretrained(str(ASSETS))
    labels = np.repeat(np.arange(10), 4)
    x = pipe(class_labels=labels, guidance_scale=2.0, num_inference_steps=16, generator=torch.Generator().manual_seed(0))
    acc = np.mean(classifier.predict(classifier.load(str(ASSETS / CLASSIFIER)), x.reshape(len(x), -1)) == labels)
    assert acc >= 0.9, acc


def test_the_classifier_file_is_never_unpickled(tmp_path):
    bad = tmp_path / "c.npz"
    np.savez(bad, w1=np.array([object()], dtype=object), b1=np.zeros(2), w2=np.zeros(2), b2=np.zeros(2))
    with pytest.raises(flowcert.InputError, match="not a flowcert digits classifier"):
        classifier.load(str(bad))


def test_digits_flow_loads_as_a_builtin_model_and_is_its_guided_unet():
    """``--model digits-flow`` is the UNet read the flow way (x_s = y / (1 + sigma), s = sigma / (1 + sigma),
    timestep 1000 s, D = x_s - s v) with guidance from the null class of its sidecar unet/flowcert.json."""
    from diffusers import UNet2DModel

    W, label = 2.0, 3
    m = flowcert.load_model("digits-flow", cond={"class_labels": np.array([label])}, guidance=W)
    assert m.info["guidance"] == W and m.info["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    with pytest.raises(flowcert.InputError, match="class_label"):  # digits 0..9 and the null class 10 only
        flowcert.load_model("digits-flow", cond={"class_labels": np.array([11])})
    unet = UNet2DModel.from_pretrained(str(ASSETS / "unet"), low_cpu_mem_usage=False).eval()
    y = torch.randn(5, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigma in (0.05, 0.7, 30.0):
        s = sigma / (1 + sigma)
        x_s = ((1 - s) * y).float().view(5, 1, 8, 8)
        t = torch.full((5,), 1000 * s)
        with torch.no_grad():
            v_c = unet(x_s, t, class_labels=torch.full((5,), label)).sample
            v_u = unet(x_s, t, class_labels=torch.full((5,), NULL_CLASS)).sample
        D = (x_s - s * (v_u + W * (v_c - v_u))).reshape(5, 64).double()
        torch.testing.assert_close(m(y, sigma), D, rtol=1e-4, atol=1e-5)
