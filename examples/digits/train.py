"""A small diffusers ``UNet2DModel`` trained on scikit-learn's handwritten digits: a real trained model
that runs on a laptop CPU.

Data: the 1797 8 x 8 images of ``sklearn.datasets.load_digits`` (shipped inside scikit-learn, no
download), grey levels 0..16 scaled to [-1, 1] (x = v / 8 - 1), split once by a seeded permutation
into 1437 training and 360 held-out images (written beside the model as ``data/train.npy`` and
``data/test.npy``, shape (n, 64), float32).

Model: ``diffusers.UNet2DModel`` (two resolutions 8 x 8 and 4 x 4, 32 channels, no attention,
236k parameters) trained as a DDPM epsilon predictor on the linear beta schedule
(``DDPMScheduler`` defaults, 1000 steps) with continuous timesteps: n ~ U[0, 999] and
log alphabar interpolated linearly between integer steps, the same map flowcert uses to evaluate
the network at any VE sigma.  Adam with warm-up and cosine decay, gradient clipping, an
exponential moving average of the weights (the EMA weights are the saved model).

The run folder holds ``checkpoint.pt`` (weights, EMA, optimiser, step, random states; written
atomically every ``checkpoint_every`` steps), so a killed run continues where it stopped with the
same result; at the end the EMA model and its scheduler are saved with ``save_pretrained`` as a
``DDPMPipeline`` folder (``model_index.json``, ``unet/``, ``scheduler/``).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time

import numpy as np

from ...numcore.checks import InputError, integer, option, real
from ...numcore.io import no_progress, npy_bytes, write_atomic

TRAIN_DEFAULTS = dict(steps=4000, batch=128, lr=2e-3, warmup=200, ema=0.999, seed=0, held_out=360,
                      checkpoint_every=250)
UNET_CONFIG = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 32),
                   down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                   layers_per_block=1, norm_num_groups=8, time_embedding_dim=64, add_attention=False)
EXAMPLES = ("digits",)


def digits_split(held_out: int = 360, seed: int = 0):
    """(train, test) arrays of shape (n, 64), float32 in [-1, 1], from scikit-learn's digits."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 8.0 - 1.0
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    return x[perm[held_out:]], x[perm[:held_out]]


def log_alphabar(scheduler):
    """log alphabar_n for n = 0..N-1 of a diffusers scheduler, float64."""
    import torch

    return torch.log(scheduler.alphas_cumprod.double()).numpy()


def _lr(step: int, cfg: dict) -> float:
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    frac = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    return cfg["lr"] * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))


def _check(cfg: dict) -> dict:
    out = dict(TRAIN_DEFAULTS)
    for k, v in cfg.items():
        if v is None:
            continue
        if k not in out:
            raise InputError(f"`{k}` = {v!r}: not a training option (expected one of {', '.join(out)})")
        out[k] = v
    for k in ("steps", "batch", "warmup", "checkpoint_every"):
        out[k] = integer(k, out[k], low=1, high=10**7)
    out["seed"] = option("seed", out["seed"])
    out["held_out"] = integer("held_out", out["held_out"], low=16, high=1000)
    out["lr"] = real("lr", out["lr"], low=0.0, low_open=True, high=1.0)
    out["ema"] = real("ema", out["ema"], low=0.0, high=1.0, high_open=True)
    return out


def _resume(ckpt: str, cfg: dict, out: str) -> dict:
    """The checkpoint in ``out``, read without running code (``weights_only``) and checked: a dict of this
    configuration with a step count, a finite loss and the model, EMA, optimiser and generator states."""
    import math as _math

    import torch

    from ...distill.runfiles import torch_load_safe

    if not os.path.isfile(ckpt) or os.path.islink(ckpt):
        raise InputError(f"`out`: {ckpt!r} is not a regular file: expected the checkpoint of an earlier run (delete it "
                         "to train from scratch)")
    try:
        state = torch_load_safe(ckpt)
    except ValueError as exc:
        raise InputError(f"`out`: {ckpt!r} {exc}: delete it to train from scratch") from None
    keys = ("config", "unet_config", "step", "unet", "ema", "opt", "gen", "loss_avg")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise InputError(f"`out`: {ckpt!r} is not a flowcert training checkpoint: delete it to train from scratch")
    if state["config"] != cfg or state["unet_config"] != _jsonable(UNET_CONFIG):
        raise InputError(f"`out` = {out!r} holds a checkpoint of a different configuration: "
                         "expected the same options, or a new folder")
    step, loss = state["step"], state["loss_avg"]
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= cfg["steps"] or \
            not (loss is None or (isinstance(loss, float) and _math.isfinite(loss))) or \
            not isinstance(state["gen"], torch.Tensor):
        raise InputError(f"`out`: {ckpt!r} is damaged (step, loss or generator state out of range): delete it to "
                         "train from scratch")
    for part in ("unet", "ema"):
        if not isinstance(state[part], dict) or not all(isinstance(v, torch.Tensor) and
                                                         (not v.is_floating_point() or bool(torch.isfinite(v).all()))
                                                         for v in state[part].values()):
            raise InputError(f"`out`: {ckpt!r} is damaged ({part} holds non-tensors or non-finite weights): delete "
                             "it to train from scratch")
    return state


def _save_checkpoint(path, state) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue(), "out")


def save_pipeline(unet, scheduler, out: str) -> list[str]:
    """``DDPMPipeline(unet, scheduler).save_pretrained`` into ``out``, each file written atomically."""
    from diffusers import DDPMPipeline

    written = []
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        for root, _, files in os.walk(tmp):
            for f in files:
                src = os.path.join(root, f)
                rel = os.path.relpath(src, tmp)
                with open(src, "rb") as fh:
                    write_atomic(os.path.join(out, rel), fh.read(), "out", makedirs=True)
                written.append(rel)
    return sorted(written)


def train(example: str, out: str, *, progress=no_progress, threads: int | None = None, **options) -> dict:
    """Train the example model into the folder ``out`` (resuming from ``out/checkpoint.pt``).

    Args:
        example: ``digits``.
        out: the run and model folder (created).
        progress: progress-bar factory (one update per training step).
        threads: torch threads (default: torch's own).
        options: steps, batch, lr, warmup, ema, seed, held_out, checkpoint_every.

    Returns:
        dict with ``out``, ``files``, ``config``, ``steps_done``, ``resumed_from``, ``seconds``,
        ``final_loss`` (EMA of the training loss), ``parameters``, ``train_size``, ``test_size``.

    Raises:
        InputError: an unknown example, a bad option, a checkpoint from a different configuration or one that
            cannot be resumed (read with ``weights_only``: a file that would run code is refused, never run), a
            folder in use by another run.
    """
    if example not in EXAMPLES:
        raise InputError(f"`example` = {example!r}: expected one of {', '.join(EXAMPLES)}")
    cfg = _check(options)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise InputError(f"`out` = {out!r}: cannot be created: {exc.strerror}") from None
    from ...distill.runfiles import RunLock

    with RunLock(out):
        return _train(example, out, cfg, progress, threads)


def _train(example: str, out: str, cfg: dict, progress, threads) -> dict:
    """:func:`train` with ``out`` locked."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    if threads:
        torch.set_num_threads(int(threads))
    train_x, test_x = digits_split(cfg["held_out"], cfg["seed"])
    write_atomic(os.path.join(out, "data", "train.npy"), npy_bytes(train_x), "out", makedirs=True)
    write_atomic(os.path.join(out, "data", "test.npy"), npy_bytes(test_x), "out", makedirs=True)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    lab = torch.as_tensor(log_alphabar(scheduler), dtype=torch.float32)
    torch.manual_seed(cfg["seed"])
    unet = UNet2DModel(**UNET_CONFIG)
    ema = UNet2DModel(**UNET_CONFIG)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    step, loss_avg, resumed = 0, None, None
    ckpt = os.path.join(out, "checkpoint.pt")
    if os.path.lexists(ckpt):
        state = _resume(ckpt, cfg, out)
        try:
            unet.load_state_dict(state["unet"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["gen"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise InputError(f"`out`: {ckpt!r} cannot be resumed (its weights do not fit the model: "
                             f"{' '.join(str(exc).split())[:120]}): delete it to train from scratch") from None
        step, loss_avg, resumed = state["step"], state["loss_avg"], state["step"]
    data = torch.as_tensor(train_x).reshape(-1, 1, 8, 8)
    t0 = time.time()
    unet.train()
    with progress(cfg["steps"], f"train {example}") as bar:
        bar.update(step)
        while step < cfg["steps"]:
            idx = torch.randint(0, data.shape[0], (cfg["batch"],), generator=gen)
            x0 = data[idx]
            n = torch.rand(cfg["batch"], generator=gen) * 999.0
            lo = n.floor().long().clamp(max=998)
            frac = n - lo
            la = lab[lo] * (1 - frac) + lab[lo + 1] * frac
            a = torch.exp(0.5 * la).view(-1, 1, 1, 1)
            s = torch.sqrt(-torch.expm1(la)).view(-1, 1, 1, 1)
            eps = torch.randn(x0.shape, generator=gen)
            pred = unet(a * x0 + s * eps, n).sample
            loss = torch.mean((pred - eps) ** 2)
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            decay = min(cfg["ema"], (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), unet.parameters()):
                    pe.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
            val = loss.item()
            loss_avg = val if loss_avg is None else 0.99 * loss_avg + 0.01 * val
            step += 1
            bar.update(1)
            if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
                _save_checkpoint(ckpt, {"config": cfg, "unet_config": _jsonable(UNET_CONFIG), "step": step,
                                        "unet": unet.state_dict(), "ema": ema.state_dict(),
                                        "opt": opt.state_dict(), "gen": gen.get_state(), "loss_avg": loss_avg})
    ema.eval()
    files = save_pipeline(ema, scheduler, out)
    info = {"example": example, "config": cfg, "unet_config": _jsonable(UNET_CONFIG),
            "parameters": int(sum(p.numel() for p in ema.parameters())), "steps_done": step,
            "final_loss": loss_avg, "train_size": int(train_x.shape[0]), "test_size": int(test_x.shape[0]),
            "data": "sklearn.datasets.load_digits, x = v / 8 - 1, seeded split",
            "timesteps": "continuous n ~ U[0, 999], log alphabar interpolated linearly in n"}
    write_atomic(os.path.join(out, "training.json"), json.dumps(info, indent=1) + "\n", "out")
    return {**info, "out": out, "files": files + ["data/test.npy", "data/train.npy", "training.json"],
            "resumed_from": resumed, "seconds": time.time() - t0}


def _jsonable(cfg: dict) -> dict:
    return json.loads(json.dumps(cfg))
