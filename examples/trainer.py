"""One trainer for every example model: the objective, the network config and the saved pipeline are data.

An :class:`Example` names its training defaults, the diffusers ``UNet2DModel`` config, the scheduler
(class and config), the objective (a key of :data:`OBJECTIVES`), whether it is class-conditional (label
dropout to a null class for classifier-free guidance), the pipeline class that ``save_pretrained`` writes
and the sidecar files it writes beside a component's config (what diffusers' configs have no field for, e.g.
the null class of a class-conditional UNet in ``unet/flowcert.json``).  :func:`train` runs any of them into a run
folder: the folder is locked (:class:`~flowcert.distill.runfiles.RunLock`), ``checkpoint.pt`` (weights,
EMA, optimiser, step, generator state) is written atomically every ``checkpoint_every`` steps and read
back with ``weights_only`` (:func:`~flowcert.distill.runfiles.torch_load_safe`), so a killed run resumes
with the same result; at the end the EMA model and its scheduler are saved with ``save_pretrained``.

Objectives (the random draws of one step, in order, come from one seeded generator):

* ``ddpm-epsilon``: a DDPM epsilon predictor with continuous timesteps, n ~ U[0, 999] and log alphabar
  interpolated linearly between integer steps (the map flowcert evaluates the network with);
  x_n = sqrt(alphabar) x_0 + sqrt(1 - alphabar) eps, loss |eps_hat - eps|^2.
* ``flow-v``: flow matching (rectified flow, as SD3/Flux and diffusers' ``FlowMatchEulerDiscreteScheduler``
  with shift 1): s ~ U[0, 1], x_s = (1 - s) x_0 + s eps, the network is fed timestep = 1000 s and predicts
  v = eps - x_0, loss |v_hat - v|^2.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..numcore.checks import InputError, integer, option, real
from ..numcore.io import no_progress, npy_bytes, write_atomic

BASE_DEFAULTS = dict(steps=4000, batch=128, lr=2e-3, warmup=200, ema=0.999, seed=0, held_out=360,
                     checkpoint_every=250)


@dataclass(frozen=True)
class Example:
    """A trainable example (module doc).

    Attributes:
        name: the ``train-example`` argument.
        model_config: ``UNet2DModel`` keyword arguments.
        scheduler: (diffusers scheduler class name, its config keyword arguments).
        objective: a key of :data:`OBJECTIVES`.
        pipeline: the pipeline class that ``save_pretrained`` writes: a diffusers class name, or a callable
            returning the class (for a pipeline defined in flowcert).
        defaults: training options and their defaults (``label_dropout`` for a class-conditional example).
        classes: number of classes (labels 0..classes-1) for a class-conditional example, else 0; the null
            class (unconditional branch for guidance) is ``classes`` and ``model_config['num_class_embeds']``
            is ``classes + 1``.
        sidecars: JSON files written into the saved pipeline folder beside the components, by path relative to it
            (e.g. ``{"unet/flowcert.json": {"null_class": 10}}``, the sidecar the loaders read the null class from).
        extras: ``extras(out, train_x, train_y, test_x, test_y, cfg)`` writes further files (a classifier ...)
            and returns their names relative to ``out``.
        data: how the data is read, for ``training.json``.
        about: one line for the summary.
    """

    name: str
    model_config: dict
    scheduler: tuple
    objective: str
    pipeline: object
    defaults: dict = field(default_factory=lambda: dict(BASE_DEFAULTS))
    classes: int = 0
    sidecars: dict = field(default_factory=dict)
    extras: Callable | None = None
    data: str = "sklearn.datasets.load_digits, x = v / 8 - 1, seeded split"
    about: str = ""


# ----------------------------------------------------------------------------- objectives
def _ddpm_epsilon(net, x0, labels, gen, ctx, cond):
    import torch

    lab = ctx["log_alphabar"]
    n = torch.rand(x0.shape[0], generator=gen) * 999.0
    lo = n.floor().long().clamp(max=998)
    frac = n - lo
    la = lab[lo] * (1 - frac) + lab[lo + 1] * frac
    a = torch.exp(0.5 * la).view(-1, 1, 1, 1)
    s = torch.sqrt(-torch.expm1(la)).view(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=gen)
    pred = net(a * x0 + s * eps, n, **cond).sample
    return torch.mean((pred - eps) ** 2)


def _flow_v(net, x0, labels, gen, ctx, cond):
    import torch

    s = torch.rand(x0.shape[0], generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    sv = s.view(-1, 1, 1, 1)
    pred = net((1.0 - sv) * x0 + sv * eps, ctx["num_train_timesteps"] * s, **cond).sample
    return torch.mean((pred - (eps - x0)) ** 2)


def _ddpm_context(scheduler) -> dict:
    import torch

    return {"log_alphabar": torch.log(scheduler.alphas_cumprod.double()).float()}


def _flow_context(scheduler) -> dict:
    return {"num_train_timesteps": float(scheduler.config.num_train_timesteps)}


@dataclass(frozen=True)
class Objective:
    """A training objective: ``loss(net, x0, labels, gen, ctx, cond)`` and ``context(scheduler)`` (its tables)."""

    name: str
    loss: Callable
    context: Callable
    what: str


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("ddpm-epsilon", _ddpm_epsilon, _ddpm_context,
              "continuous n ~ U[0, 999], log alphabar interpolated linearly in n"),
    Objective("flow-v", _flow_v, _flow_context,
              "flow matching: s ~ U[0, 1], x_s = (1 - s) x_0 + s eps, timestep 1000 s, v = eps - x_0 prediction"),
)}


# ----------------------------------------------------------------------------- the registry
def examples() -> dict[str, Example]:
    """Every trainable example by name."""
    from .digits.train import DIGITS
    from .digits_flow.spec import DIGITS_FLOW

    return {e.name: e for e in (DIGITS, DIGITS_FLOW)}


EXAMPLE_NAMES = ("digits", "digits-flow")


def example(name: str) -> Example:
    ex = examples().get(name)
    if ex is None:
        raise InputError(f"`example` = {name!r}: expected one of {', '.join(EXAMPLE_NAMES)}")
    return ex


# ----------------------------------------------------------------------------- data
def digits_split(held_out: int = 360, seed: int = 0, labels: bool = False):
    """(train, test) arrays of shape (n, 64), float32 in [-1, 1], from scikit-learn's digits; with ``labels``
    (train, train_labels, test, test_labels), the labels int64 0..9.  The split is one seeded permutation."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32) / 8.0 - 1.0
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    tr, te = perm[held_out:], perm[:held_out]
    return (x[tr], y[tr], x[te], y[te]) if labels else (x[tr], x[te])


# ----------------------------------------------------------------------------- options and checkpoints
def _lr(step: int, cfg: dict) -> float:
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    frac = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    return cfg["lr"] * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))


def check_options(ex: Example, options: dict) -> dict:
    """The example's defaults updated with ``options`` (None: the default), each checked."""
    out = dict(ex.defaults)
    for k, v in options.items():
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
    if "label_dropout" in out:
        out["label_dropout"] = real("label_dropout", out["label_dropout"], low=0.0, high=1.0, high_open=True)
    return out


def _jsonable(cfg: dict) -> dict:
    return json.loads(json.dumps(cfg))


def _resume(ckpt: str, cfg: dict, model_config: dict, out: str) -> dict:
    """The checkpoint in ``out``, read without running code (``weights_only``) and checked: a dict of this
    configuration with a step count, a finite loss and the model, EMA, optimiser and generator states."""
    import torch

    from ..distill.runfiles import torch_load_safe

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
    if state["config"] != cfg or state["unet_config"] != _jsonable(model_config):
        raise InputError(f"`out` = {out!r} holds a checkpoint of a different configuration: "
                         "expected the same options, or a new folder")
    step, loss = state["step"], state["loss_avg"]
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= cfg["steps"] or \
            not (loss is None or (isinstance(loss, float) and math.isfinite(loss))) or \
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


def make_scheduler(ex: Example):
    import diffusers

    cls_name, kwargs = ex.scheduler
    return getattr(diffusers, cls_name)(**kwargs)


def save_pipeline(ex: Example, unet, scheduler, out: str) -> list[str]:
    """``Pipeline(unet, scheduler).save_pretrained`` into ``out`` (each file written atomically), with the
    example's sidecar files."""
    import diffusers

    cls = getattr(diffusers, ex.pipeline) if isinstance(ex.pipeline, str) else ex.pipeline()
    written = []
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        cls(unet=unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        for rel, doc in ex.sidecars.items():
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as fh:
                fh.write(json.dumps(_jsonable(doc), indent=2, sort_keys=True) + "\n")
        for root, _, files in os.walk(tmp):
            for f in files:
                src = os.path.join(root, f)
                rel = os.path.relpath(src, tmp)
                with open(src, "rb") as fh:
                    write_atomic(os.path.join(out, rel), fh.read(), "out", makedirs=True)
                written.append(rel)
    return sorted(written)


# ----------------------------------------------------------------------------- training
def train(name: str, out: str, *, progress=no_progress, threads: int | None = None, **options) -> dict:
    """Train the example ``name`` into the folder ``out`` (resuming from ``out/checkpoint.pt``).

    Args:
        name: an example name (:data:`EXAMPLE_NAMES`).
        out: the run and model folder (created).
        progress: progress-bar factory (one update per training step).
        threads: torch threads (default: torch's own).
        options: the example's training options (steps, batch, lr, warmup, ema, seed, held_out,
            checkpoint_every; label_dropout for a class-conditional example).

    Returns:
        dict with ``out``, ``files``, ``config``, ``steps_done``, ``resumed_from``, ``seconds``,
        ``final_loss`` (EMA of the training loss), ``parameters``, ``train_size``, ``test_size``.

    Raises:
        InputError: an unknown example, a bad option, a checkpoint from a different configuration or one that
            cannot be resumed (read with ``weights_only``: a file that would run code is refused, never run), a
            folder in use by another run.
    """
    ex = example(name)
    cfg = check_options(ex, options)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise InputError(f"`out` = {out!r}: cannot be created: {exc.strerror}") from None
    from ..distill.runfiles import RunLock

    with RunLock(out):
        return _train(ex, out, cfg, progress, threads)


def _train(ex: Example, out: str, cfg: dict, progress, threads) -> dict:
    """:func:`train` with ``out`` locked."""
    import torch
    from diffusers import UNet2DModel

    if threads:
        torch.set_num_threads(int(threads))
    train_x, train_y, test_x, test_y = digits_split(cfg["held_out"], cfg["seed"], labels=True)
    write_atomic(os.path.join(out, "data", "train.npy"), npy_bytes(train_x), "out", makedirs=True)
    write_atomic(os.path.join(out, "data", "test.npy"), npy_bytes(test_x), "out", makedirs=True)
    data_files = ["data/test.npy", "data/train.npy"]
    if ex.classes:
        write_atomic(os.path.join(out, "data", "train_labels.npy"), npy_bytes(train_y), "out")
        write_atomic(os.path.join(out, "data", "test_labels.npy"), npy_bytes(test_y), "out")
        data_files += ["data/test_labels.npy", "data/train_labels.npy"]
    scheduler = make_scheduler(ex)
    objective = OBJECTIVES[ex.objective]
    ctx = objective.context(scheduler)
    torch.manual_seed(cfg["seed"])
    unet = UNet2DModel(**ex.model_config)
    ema = UNet2DModel(**ex.model_config)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    step, loss_avg, resumed = 0, None, None
    ckpt = os.path.join(out, "checkpoint.pt")
    if os.path.lexists(ckpt):
        state = _resume(ckpt, cfg, ex.model_config, out)
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
    labels = torch.as_tensor(train_y)
    t0 = time.time()
    unet.train()
    with progress(cfg["steps"], f"train {ex.name}") as bar:
        bar.update(step)
        while step < cfg["steps"]:
            idx = torch.randint(0, data.shape[0], (cfg["batch"],), generator=gen)
            cond = {}
            if ex.classes:
                y = labels[idx].clone()
                y[torch.rand(cfg["batch"], generator=gen) < cfg["label_dropout"]] = ex.classes  # the null class
                cond = {"class_labels": y}
            loss = objective.loss(unet, data[idx], cond.get("class_labels"), gen, ctx, cond)
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
                _save_checkpoint(ckpt, {"config": cfg, "unet_config": _jsonable(ex.model_config), "step": step,
                                        "unet": unet.state_dict(), "ema": ema.state_dict(),
                                        "opt": opt.state_dict(), "gen": gen.get_state(), "loss_avg": loss_avg})
    ema.eval()
    files = save_pipeline(ex, ema, scheduler, out)
    extra = ex.extras(out, train_x, train_y, test_x, test_y, cfg) if ex.extras else []
    info = {"example": ex.name, "config": cfg, "unet_config": _jsonable(ex.model_config),
            "parameters": int(sum(p.numel() for p in ema.parameters())), "steps_done": step,
            "final_loss": loss_avg, "train_size": int(train_x.shape[0]), "test_size": int(test_x.shape[0]),
            "data": ex.data, "objective": ex.objective, "timesteps": objective.what}
    if ex.classes:
        info["classes"] = ex.classes
        info["null_class_label"] = ex.classes
    write_atomic(os.path.join(out, "training.json"), json.dumps(info, indent=1) + "\n", "out")
    return {**info, "out": out, "files": files + data_files + sorted(extra) + ["training.json"],
            "resumed_from": resumed, "seconds": time.time() - t0, "about": ex.about}
