"""The guided digits-flow model as a flowcert denoiser, locally, until the issue-19 loaders are merged.

    flowcert lipschitz --model benchmarks/digits_flow_local.py:class3_w2 --threads 1     # --class-label 3 --guidance 2
    flowcert grid --model benchmarks/digits_flow_local.py:class3_w1 --kind optimal --steps 8 --solver euler

The pipeline folder's ``UNet2DModel`` read the flow way: at VE sigma the flow time is s = sigma / (1 + sigma),
the network sees x_s = y / (1 + sigma) = (1 - s) y and timestep 1000 s and predicts v = eps - x_0, so
D = x_s - s v; classifier-free guidance v = v_u + W (v_c - v_u) with the null class of the sidecar
``unet/flowcert.json`` (``null_class``).  Declared to flowcert as a ``sample`` predictor in VE sigma
(``flowcert.torch_model``); one denoiser evaluation at W != 1 is two UNet passes (one batch of 2n).

``labels``: a class for every sample, or ``"cycle"``: sample i of a batch gets class i mod 10 (class-balanced
batches; flowcert's solvers and teachers evaluate batches from their start, at most 1024 samples, so a prefix
keeps its classes).
"""

from __future__ import annotations

import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "examples", "digits_flow", "assets")
CLASSES = 10


def class_cycle(n: int) -> torch.Tensor:
    if n > 1024:
        raise ValueError("class_cycle: batches of at most 1024 samples")
    return torch.arange(n) % CLASSES


def load_guided(folder: str = ASSETS, guidance: float = 1.0, labels="cycle"):
    from diffusers import UNet2DModel

    import flowcert

    with open(os.path.join(folder, "unet", "flowcert.json")) as fh:
        null = int(json.load(fh)["null_class"])
    with open(os.path.join(folder, "scheduler", "scheduler_config.json")) as fh:
        sched = json.load(fh)
    if sched["_class_name"] != "FlowMatchEulerDiscreteScheduler" or sched["shift"] != 1.0 or \
            sched.get("use_dynamic_shifting"):
        raise ValueError("load_guided: expected a FlowMatchEulerDiscreteScheduler with shift 1")
    n_train = float(sched["num_train_timesteps"])
    unet = UNet2DModel.from_pretrained(os.path.join(folder, "unet"), low_cpu_mem_usage=False).eval()
    unet.requires_grad_(False)
    W = float(guidance)

    def fn(y, sigma):
        n = y.shape[0]
        s = (sigma / (1.0 + sigma)).view(n, 1, 1, 1)
        x_s = (1.0 - s) * y
        tt = n_train * s.view(n)
        lab = class_cycle(n) if isinstance(labels, str) else torch.full((n,), int(labels))
        if W == 1.0:
            v = unet(x_s, tt, class_labels=lab).sample
        else:
            both = unet(torch.cat([x_s, x_s]), torch.cat([tt, tt]),
                        class_labels=torch.cat([lab, torch.full_like(lab, null)])).sample
            v_c, v_u = both.chunk(2)
            v = v_u + W * (v_c - v_u)
        return x_s - s * v

    # s in [1e-3, 0.999]: timesteps 1..999 of the 1000-step FlowMatch schedule
    what = "cycled classes" if isinstance(labels, str) else f"class {labels}"
    return flowcert.torch_model(fn, shape=(1, 8, 8), prediction="sample", scaling="ve", noise="sigma",
                                sigma_range=(1e-3 / (1 - 1e-3), 0.999 / 1e-3), name=f"digits-flow {what} W={W:g}")


def class3_w1():
    return load_guided(ASSETS, 1.0, 3)


def class3_w2():
    return load_guided(ASSETS, 2.0, 3)
