"""diffusers networks by class: a registry keyed by the config's ``_class_name`` that says how each is called, what
its forward needs beside (x, timestep), how its output maps to the sample, and which latent shape it takes; and
the scheduler that says how the network is parametrised.

Folders are read as ``save_pretrained`` writes them: a pipeline folder (``model_index.json``, the denoiser in
``unet/`` or ``transformer/``, the scheduler in ``scheduler/``) or a model folder (``config.json`` + weights) with
its scheduler config beside it, in ``scheduler/`` or in ``../scheduler/``.  Weights are safetensors only (a
pickle is never unpickled).  Nothing is downloaded.

Families (:data:`FAMILIES`):

=========================  ==========================================================================================
``UNet2DModel``            (sample, timestep[, class_labels]); class-conditional with ``num_class_embeds`` (its null
                           class, for guidance, from ``flowcert.json`` ``{"null_class": N}`` beside its config)
``UNet2DConditionModel``   SD 1.x/2.x: (sample, timestep, encoder_hidden_states); SDXL (``addition_embed_type``
                           ``text_time``): ``text_embeds`` and ``time_ids`` go in as ``added_cond_kwargs``
``DiTTransformer2DModel``  (hidden_states, timestep, class_labels); its null class is ``num_embeds_ada_norm``; with
                           a learned sigma (out_channels = 2 in_channels) the second half of the output is dropped
``SD3Transformer2DModel``  (hidden_states, encoder_hidden_states, pooled_projections, timestep = 1000 s)
``FluxTransformer2DModel`` latents packed in 2x2 patches (sequence of (H/2)(W/2) tokens of 4C numbers),
                           img_ids built for the latent size, txt_ids (zeros by default), ``guidance`` when the config
                           has ``guidance_embeds`` (the distilled guidance, a conditioning input), timestep = s
=========================  ==========================================================================================

Schedulers: a DDPM-family scheduler (``alphas_cumprod``, ``prediction_type`` epsilon, v_prediction or sample) means
scaling ``vp`` and noise ``ddpm``; a FlowMatch scheduler (no ``alphas_cumprod``) means prediction ``flow``, scaling
``flow`` and the family's flow time input (``flow1000``, or ``flow`` for Flux, whose pipeline passes t / 1000),
with the flow-time range from its ``shift`` and ``num_train_timesteps``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re
from dataclasses import dataclass
from typing import Callable

import torch

from ..numcore.checks import (
    COMPONENT,
    CONFIG_BYTES,
    MODEL_CONFIG,
    PIPELINE_INDEX,
    SCHEDULER_CONFIG,
    SIDECAR_CONFIG,
    InputError,
    check_config,
    fits_memory,
    kind_of,
    printable,
)
from ..numcore.io import read_json, safetensors_header, tensor_name
from .denoiser import Needs, TorchModel

WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # never read: unpickling runs code
SIDECAR = "flowcert.json"  # {"null_class": N}: what diffusers' config has no field for
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
MAX_SAMPLE_VALUES = 2**24


# ----------------------------------------------------------------------------- device and dtype
def resolve_device(device) -> str:
    """A torch device that exists here: ``cpu``, ``cuda[:i]`` or ``mps``; InputError in one line otherwise."""
    name = str(device if device is not None else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"`device` = {name!r}: expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"`device` = {name!r}: torch sees no CUDA device here (torch {torch.__version__}"
                             f"{', a CPU-only build' if torch.version.cuda is None else ''}): expected cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"`device` = {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InputError(f"`device` = {name!r}: no Apple MPS device here: expected cpu")
    elif dev.type not in ("cpu", "meta"):
        raise InputError(f"`device` = {name!r}: expected cpu, cuda, cuda:N or mps")
    return name


def resolve_dtype(dtype) -> torch.dtype | None:
    """None, a torch dtype or its name (float32, bfloat16, float16, float64)."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.replace("torch.", "") in DTYPES:
        return DTYPES[dtype.replace("torch.", "")]
    raise InputError(f"`dtype` = {dtype!r}: expected one of {', '.join(DTYPES)}")


# ----------------------------------------------------------------------------- conditioning checks
def _dims(cond: dict, key: str, ndim: int, last: dict, what: str) -> torch.Tensor | None:
    """cond[key] with ``ndim`` dimensions (the first the batch) and the given sizes of the last ones; InputError
    naming the key, its shape and the expected one."""
    if key not in cond:
        return None
    v = cond[key]
    if not isinstance(v, torch.Tensor):
        raise InputError(f"`cond` {key} is {type(v).__name__}: expected a tensor (a {ndim}-dimensional array)")
    bad = v.ndim != ndim or any(v.shape[i] != n for i, n in last.items())
    if bad:
        want = ["1 (batch)"] + ["L" if i not in last else str(last[i]) for i in range(1, ndim)]
        raise InputError(f"`cond` {key} has shape {tuple(v.shape)}: {what} expects ({', '.join(want)})")
    if not v.is_floating_point():
        raise InputError(f"`cond` {key} has dtype {str(v.dtype).replace('torch.', '')}: expected floating-point "
                         "numbers")
    return v


def _labels(cond: dict, classes: int, null: int | None, what: str) -> None:
    """class_labels: integers, one per batch row, each a class in [0, classes) or the null class."""
    if "class_labels" not in cond:
        return
    lab = cond["class_labels"]
    if not isinstance(lab, torch.Tensor) or lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        kind = type(lab).__name__ if not isinstance(lab, torch.Tensor) else str(lab.dtype).replace("torch.", "")
        raise InputError(f"`cond` class_labels is {kind}: expected integer class labels (shape (1,))")
    if lab.ndim != 1:
        raise InputError(f"`cond` class_labels has shape {tuple(lab.shape)}: {what} expects (1,) (one label per "
                         "batch row)")
    for v in lab.tolist():
        if not (0 <= v < classes or (null is not None and v == null)):
            extra = f", or its null class {null}" if null is not None else ""
            raise InputError(f"`class_label` = {v}: {what} has classes 0..{classes - 1}{extra}")


# ----------------------------------------------------------------------------- the families
@dataclass(frozen=True)
class Family:
    """How one diffusers class is used.

    Attributes:
        name: the ``_class_name``.
        needs: ``needs(config, sidecar)`` -> :class:`~.denoiser.Needs`, or refuses the config in one line.
        shape: ``shape(config)`` -> the latent shape (C, H, W) from the config, or None when only ``shape`` gives it.
        check_shape: ``check_shape(config, shape)`` refuses a latent shape the network cannot take.
        forward: ``forward(net, config, x, timestep, cond)`` -> the network's prediction, shaped like x.
        flow_noise: the timestep a FlowMatch scheduler feeds it: ``flow1000`` (1000 s) or ``flow`` (s).
        classic_attention: swap fused attention for diffusers' AttnProcessor (UNets: double backward on CPU).
    """

    name: str
    needs: Callable
    shape: Callable
    check_shape: Callable
    forward: Callable
    flow_noise: str = "flow1000"
    classic_attention: bool = False


def _size_hw(cfg: dict) -> tuple | None:
    size = cfg.get("sample_size")
    if size is None:
        return None
    sizes = [size] if isinstance(size, int) else list(size)
    return (int(sizes[0]), int(sizes[0])) if len(sizes) == 1 else (int(sizes[0]), int(sizes[1]))


def _image_shape(cfg: dict):
    hw = _size_hw(cfg)
    return None if hw is None or cfg.get("in_channels") is None else (int(cfg["in_channels"]), *hw)


def _keep_channels(out: torch.Tensor, channels: int) -> torch.Tensor:
    """The predicted mean's channels: a learned-sigma output (2C channels) loses its second half."""
    return out[:, :channels] if out.shape[1] == 2 * channels else out


def _shape_check(channels: int, multiple: int, what: str):
    def check(cfg, shape):
        if len(shape) != 3 or shape[0] != channels or shape[1] % multiple or shape[2] % multiple:
            raise InputError(f"`shape` = {','.join(map(str, shape))}: the {what} takes latents ({channels}, H, W) with "
                             f"H and W multiples of {multiple}")
    return check


# UNet2DModel ------------------------------------------------------------------
def _unet2d_needs(cfg, side):
    n = cfg.get("num_class_embeds")
    if cfg.get("class_embed_type") not in (None,):
        raise InputError(f"`model`: UNet2DModel class_embed_type = {cfg.get('class_embed_type')!r}: expected integer "
                         "class labels (num_class_embeds) or none")
    if n is None:
        return Needs(what="UNet2DModel", accepted=())
    null = side.get("null_class")
    if null is not None and not (isinstance(null, int) and 0 <= null < n):
        raise InputError(f"`model` {SIDECAR}: null_class = {null!r}: expected a class in [0, {n}) of num_class_embeds")
    classes = n - 1 if null == n - 1 else n
    what = f"the class-conditional UNet2DModel ({n} class embeddings)"
    return Needs(what=what, required=("class_labels",), accepted=("class_labels",), classes=classes,
                 null=None if null is None else {"class_labels": torch.tensor([null])},
                 check=lambda cond: _labels(cond, classes, null, what))


def _unet2d_forward(net, cfg, x, t, cond):
    out = net(x, t, class_labels=cond.get("class_labels")).sample
    return _keep_channels(out, x.shape[1])


def _unet_multiple(cfg):
    return 2 ** (len(cfg.get("block_out_channels") or (0,)) - 1)


# UNet2DConditionModel ---------------------------------------------------------
_UNET_COND_KEYS = ("encoder_hidden_states", "class_labels", "timestep_cond", "attention_mask", "encoder_attention_mask",
                   "text_embeds", "time_ids")


def _unet_cond_needs(cfg, side):
    add = cfg.get("addition_embed_type")
    hid = cfg.get("encoder_hid_dim_type")
    if add not in (None, "text", "text_time") or hid not in (None, "text_proj"):
        raise InputError(f"`model`: UNet2DConditionModel with addition_embed_type = {add!r}, encoder_hid_dim_type = "
                         f"{hid!r}: expected a text-conditioned UNet (SD 1.x/2.x, SDXL): load it through FILE.py:NAME")
    cross = cfg.get("encoder_hid_dim") if hid == "text_proj" else cfg.get("cross_attention_dim")
    cross = cross[0] if isinstance(cross, (list, tuple)) else cross
    required = ["encoder_hidden_states"]
    if add == "text_time":
        required += ["text_embeds", "time_ids"]
    n_cls = cfg.get("num_class_embeds")
    if n_cls is not None or cfg.get("class_embed_type") is not None:
        required.append("class_labels")
    what = "the UNet2DConditionModel" + (" (SDXL-style, text_time)" if add == "text_time" else "")
    proj, tdim = cfg.get("projection_class_embeddings_input_dim"), cfg.get("addition_time_embed_dim")

    def check(cond):
        _dims(cond, "encoder_hidden_states", 3, {2: int(cross)}, what)
        if add == "text_time":
            te = _dims(cond, "text_embeds", 2, {}, what)
            ti = _dims(cond, "time_ids", 2, {}, what)
            if te is not None and ti is not None and proj is not None and tdim is not None \
                    and te.shape[1] + ti.shape[1] * tdim != proj:
                raise InputError(f"`cond` text_embeds {tuple(te.shape)} and time_ids {tuple(ti.shape)}: {what} expects "
                                 f"text_embeds dim + {tdim} x time_ids count = {proj}")
        if n_cls is not None:
            _labels(cond, int(n_cls), None, what)

    return Needs(what=what, required=tuple(required), accepted=_UNET_COND_KEYS, text=True,
                 classes=n_cls, check=check)


def _unet_cond_forward(net, cfg, x, t, cond):
    kw = {k: v for k, v in cond.items() if k not in ("text_embeds", "time_ids")}
    added = {k: cond[k] for k in ("text_embeds", "time_ids") if k in cond}
    if added:
        kw["added_cond_kwargs"] = added
    out = net(x, t, **kw).sample
    return _keep_channels(out, x.shape[1])


# DiTTransformer2DModel --------------------------------------------------------
def _dit_needs(cfg, side):
    n = cfg.get("num_embeds_ada_norm")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"`model`: DiTTransformer2DModel num_embeds_ada_norm = {n!r}: expected its number of classes")
    what = f"the DiTTransformer2DModel ({n} classes)"
    return Needs(what=what, required=("class_labels",), accepted=("class_labels",), classes=n,
                 null={"class_labels": torch.tensor([n])}, check=lambda cond: _labels(cond, n, n, what))


def _dit_forward(net, cfg, x, t, cond):
    out = net(x, timestep=t, class_labels=cond["class_labels"]).sample
    return _keep_channels(out, x.shape[1])


# SD3Transformer2DModel --------------------------------------------------------
def _sd3_needs(cfg, side):
    what = "the SD3Transformer2DModel"
    joint, pooled = int(cfg.get("joint_attention_dim", 4096)), int(cfg.get("pooled_projection_dim", 2048))

    def check(cond):
        _dims(cond, "encoder_hidden_states", 3, {2: joint}, what)
        _dims(cond, "pooled_projections", 2, {1: pooled}, what)

    keys = ("encoder_hidden_states", "pooled_projections")
    return Needs(what=what, required=keys, accepted=keys, text=True, check=check)


def _sd3_forward(net, cfg, x, t, cond):
    return net(hidden_states=x, encoder_hidden_states=cond["encoder_hidden_states"],
               pooled_projections=cond["pooled_projections"], timestep=t).sample


def _sd3_check_shape(cfg, shape):
    p, c = int(cfg.get("patch_size", 2)), int(cfg.get("in_channels", 16))
    _shape_check(c, p, "SD3Transformer2DModel")(cfg, shape)
    limit = cfg.get("pos_embed_max_size")
    if limit is not None and max(shape[1], shape[2]) // p > int(limit):
        raise InputError(f"`shape` = {','.join(map(str, shape))}: the SD3Transformer2DModel's positional embedding "
                         f"covers at most {limit} x {limit} patches of {p}: expected H, W <= {int(limit) * p}")


# FluxTransformer2DModel -------------------------------------------------------
def pack_latents(x: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) latents as Flux's token sequence (n, (H/2)(W/2), 4C): each 2x2 patch one token, its numbers
    channel-major (c, dy, dx)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 2) * (w // 2), 4 * c)


def unpack_latents(seq: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`pack_latents`: (n, (H/2)(W/2), 4C) tokens back to (n, C, H, W)."""
    n, _, c4 = seq.shape
    c = c4 // 4
    return seq.reshape(n, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def image_ids(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Flux's position ids of the packed latent tokens, ((H/2)(W/2), 3): (0, row, column) in row-major order."""
    rows = torch.arange(h // 2, dtype=dtype, device=device)[:, None].expand(h // 2, w // 2)
    cols = torch.arange(w // 2, dtype=dtype, device=device)[None, :].expand(h // 2, w // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3)


def _flux_needs(cfg, side):
    what = "the FluxTransformer2DModel" + (" (guidance-distilled)" if cfg.get("guidance_embeds") else "")
    joint, pooled = int(cfg.get("joint_attention_dim", 4096)), int(cfg.get("pooled_projection_dim", 768))
    required = ["encoder_hidden_states", "pooled_projections"] + (["guidance"] if cfg.get("guidance_embeds") else [])

    def check(cond):
        ehs = _dims(cond, "encoder_hidden_states", 3, {2: joint}, what)
        _dims(cond, "pooled_projections", 2, {1: pooled}, what)
        if "txt_ids" in cond:
            ids = cond["txt_ids"]
            length = None if ehs is None else ehs.shape[1]
            ok = isinstance(ids, torch.Tensor) and ids.ndim in (2, 3) and ids.shape[-1] == 3 and (
                length is None or ids.shape[-2] == length) and (ids.ndim == 2 or ids.shape[0] == 1)
            if not ok:
                shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
                raise InputError(f"`cond` txt_ids has shape {shape}: {what} expects (1, L, 3) with L the "
                                 "encoder_hidden_states length")
        if "guidance" in cond:
            g = cond["guidance"]
            if not isinstance(g, torch.Tensor) or g.ndim != 1 or not g.is_floating_point():
                shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
                raise InputError(f"`cond` guidance has shape {shape}: {what} expects (1,) (the distilled guidance "
                                 "scale, e.g. 3.5)")
            if not bool(torch.isfinite(g).all()) or bool((g < 0).any()):
                raise InputError(f"`cond` guidance = {g.tolist()}: expected a finite scale >= 0")

    accepted = ("encoder_hidden_states", "pooled_projections", "txt_ids") + (
        ("guidance",) if cfg.get("guidance_embeds") else ())
    return Needs(what=what, required=tuple(required), accepted=accepted, text=True, shared=("txt_ids",), check=check)


def _flux_forward(net, cfg, x, t, cond):
    n, c, h, w = x.shape
    ehs = cond["encoder_hidden_states"]
    ids = cond.get("txt_ids")
    if ids is None:
        ids = torch.zeros(ehs.shape[1], 3, dtype=x.dtype, device=x.device)
    elif ids.ndim == 3:
        ids = ids[0]
    out = net(hidden_states=pack_latents(x), encoder_hidden_states=ehs,
              pooled_projections=cond["pooled_projections"], timestep=t, img_ids=image_ids(h, w, x.device, x.dtype),
              txt_ids=ids.to(x.dtype), guidance=cond.get("guidance")).sample
    return unpack_latents(out, h, w)


def _flux_check_shape(cfg, shape):
    c4 = int(cfg.get("in_channels", 64))
    if c4 % 4 or int(cfg.get("patch_size", 1)) != 1:
        raise InputError(f"`model`: FluxTransformer2DModel in_channels = {c4}, patch_size = {cfg.get('patch_size')}: "
                         "expected 4 C packed channels and patch_size 1")
    _shape_check(c4 // 4, 2, "FluxTransformer2DModel (2x2 packing)")(cfg, shape)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("UNet2DModel", _unet2d_needs, _image_shape,
           lambda cfg, shape: _shape_check(int(cfg.get("in_channels", 3)), _unet_multiple(cfg), "UNet2DModel")(cfg, shape),
           _unet2d_forward, classic_attention=True),
    Family("UNet2DConditionModel", _unet_cond_needs, _image_shape,
           lambda cfg, shape: _shape_check(int(cfg.get("in_channels", 4)), _unet_multiple(cfg),
                                           "UNet2DConditionModel")(cfg, shape),
           _unet_cond_forward, classic_attention=True),
    Family("DiTTransformer2DModel", _dit_needs, _image_shape,
           lambda cfg, shape: _shape_check(int(cfg.get("in_channels", 4)), int(cfg.get("patch_size", 2)),
                                           "DiTTransformer2DModel")(cfg, shape),
           _dit_forward),
    Family("SD3Transformer2DModel", _sd3_needs, _image_shape, _sd3_check_shape, _sd3_forward),
    Family("FluxTransformer2DModel", _flux_needs, lambda cfg: None, _flux_check_shape, _flux_forward,
           flow_noise="flow"),
)}


# ----------------------------------------------------------------------------- reading a folder
DENOISER_COMPONENTS = ("unet", "transformer", "prior", "decoder")


WEIGHTS_INDEX = WEIGHTS + ".index.json"
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


@contextlib.contextmanager
def quiet_libraries():
    """diffusers', transformers' and huggingface_hub's log lines and Python warnings silenced while a model loads:
    what a load has to say, flowcert says in one line."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers", "huggingface_hub", "accelerate")]
    levels = [lg.level for lg in loggers]
    bars = []  # the libraries' own progress bars (loading components and weights), switched off meanwhile
    for lib in ("diffusers", "transformers"):
        try:
            mod = __import__(f"{lib}.utils.logging", fromlist=["logging"])
        except ImportError:
            continue
        if hasattr(mod, "is_progress_bar_enabled") and mod.is_progress_bar_enabled():
            mod.disable_progress_bar()
            bars.append(mod)
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        for mod in bars:
            mod.enable_progress_bar()


def _config(path: str, what: str, schema: dict, *, known=None, other=None) -> dict:
    """A configuration file read once, bounded and strictly (a FIFO or a device is refused before anything is
    read; no key twice), and checked field by field (numcore.checks.check_config)."""
    doc = read_json(path, f"`model` {what}", limit=CONFIG_BYTES, constants=True)
    return check_config(doc, schema, f"`model` {what} {path!r}", known=known, other=other)


def _class_of(doc, path: str, what: str) -> str | None:
    """The ``_class_name`` of a config document (checked as text), before the rest is checked against it."""
    if not isinstance(doc, dict):
        raise InputError(f"`model` {what} {path!r} is {kind_of(doc)}: expected a JSON object")
    name = doc.get("_class_name")
    if name is not None:
        check_config({"_class_name": name}, MODEL_CONFIG, f"`model` {what} {path!r}")
    return name


def locate(folder: str) -> tuple[str, str | None, str | None]:
    """(model folder, scheduler config path or None, pipeline folder or None) of a pipeline or model folder."""
    index = os.path.join(folder, "model_index.json")
    if os.path.lexists(index):
        cfg = _config(index, "model_index.json", PIPELINE_INDEX, other=COMPONENT)
        comp = next((c for c in DENOISER_COMPONENTS if isinstance(cfg.get(c), list) and cfg[c][:1] != [None]
                     and os.path.isdir(os.path.join(folder, c))), None)
        if comp is None:
            raise InputError(f"`model` = {folder!r}: its model_index.json names no denoiser component "
                             f"(expected one of {', '.join(DENOISER_COMPONENTS)} with its folder)")
        sched = os.path.join(folder, "scheduler", "scheduler_config.json")
        return os.path.join(folder, comp), sched if os.path.lexists(sched) else None, folder
    if os.path.lexists(os.path.join(folder, "config.json")):
        parent = os.path.dirname(os.path.abspath(folder))
        for cand in (os.path.join(folder, "scheduler_config.json"),
                     os.path.join(folder, "scheduler", "scheduler_config.json"),
                     os.path.join(parent, "scheduler", "scheduler_config.json")):
            if os.path.lexists(cand):
                return folder, cand, parent if os.path.lexists(os.path.join(parent, "model_index.json")) else None
        return folder, None, None
    raise InputError(f"`model` = {folder!r}: no diffusers model in it (expected model_index.json, or config.json "
                     "with the weights)")


def _weight_files(mdir: str, folder: str) -> list[str]:
    """The safetensors files of a model folder: ``diffusion_pytorch_model.safetensors``, or the shards its index
    names.  Pickled weights (.bin, .pt, .ckpt, ...) are never read: a folder with only those is refused."""
    single, index = os.path.join(mdir, WEIGHTS), os.path.join(mdir, WEIGHTS_INDEX)
    if os.path.lexists(single):
        return [single]
    if os.path.lexists(index):
        doc = read_json(index, "`model` weights index", limit=CONFIG_BYTES)
        shards = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(shards, dict) or not shards or not all(
                isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_.\-]{1,200}\.safetensors", v) for v in shards.values()):
            raise InputError(f"`model` weights index {index!r}: weight_map is not a mapping of tensors to "
                             "safetensors files in the same folder: expected diffusers' index")
        return [os.path.join(mdir, f) for f in dict.fromkeys(shards.values())]
    try:
        names = sorted(os.listdir(mdir))
    except OSError as exc:
        raise InputError(f"`model` = {folder!r}: {mdir!r} cannot be listed: {exc.strerror}") from None
    pickles = [n for n in names if n.lower().endswith(PICKLES)]
    if pickles:
        raise InputError(f"`model` = {folder!r}: its weights {printable(pickles[0])!r} are a pickle, which flowcert "
                         f"never loads (unpickling runs code): expected {WEIGHTS} (diffusers writes it with "
                         "save_pretrained; convert a trusted .bin with safetensors.torch.save_file)")
    raise InputError(f"`model` = {folder!r}: no {WEIGHTS} in {mdir!r}: expected the model's weights in safetensors")


def _load_weights(cls, cfg: dict, cls_name: str, mdir: str, folder: str):
    """The network of ``cfg`` with its safetensors weights, checked before any tensor is read: the class builds on
    the meta device (no memory), its size is checked against the memory budget, and the files' headers must
    name exactly its tensors, with its shapes, in a floating-point dtype; then every tensor is read and must be
    finite.  InputError naming the weights file (and the tensor) otherwise."""
    files = _weight_files(mdir, folder)
    header: dict = {}
    for path in files:
        for k, v in safetensors_header(path, "`model` weights").items():
            if k in header:
                raise InputError(f"`model` weights {path!r}: tensor {tensor_name(k)} is also in {header[k][0]!r}: "
                                 "expected each tensor in one shard")
            header[k] = (path, *v)
    try:
        with quiet_libraries(), torch.device("meta"):
            meta = cls.from_config(cfg)
    except Exception as exc:  # diffusers raises ValueError, TypeError, ZeroDivisionError... on a bad config
        first = " ".join(str(exc).split())[:160]
        raise InputError(f"`model` config {os.path.join(mdir, 'config.json')!r} does not build a {cls_name}: "
                         f"{type(exc).__name__}: {first}") from None
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    numel = sum(math.prod(s) for s in expected.values())
    fits_memory("model", folder, 2 * 4 * numel, f"the {cls_name} of {numel} parameters (float32, with its weights "
                "file's copy)")
    where = files[0] if len(files) == 1 else os.path.join(mdir, WEIGHTS_INDEX)
    missing = [k for k in expected if k not in header]
    if missing:
        raise InputError(f"`model` weights {where!r} lack {len(missing)} tensor(s) of the {cls_name} of its config "
                         f"(first {tensor_name(missing[0])}): expected weights saved with this config")
    extra = [k for k in header if k not in expected]
    if extra:
        raise InputError(f"`model` weights {where!r} hold {len(extra)} tensor(s) the {cls_name} of its config does "
                         f"not have (first {tensor_name(extra[0])}): expected weights saved with this config")
    for k, shape in expected.items():
        path, dtype, got = header[k]
        if got != shape:
            raise InputError(f"`model` weights {path!r}: tensor {tensor_name(k)} has shape {got}, the {cls_name} of "
                             f"its config {shape}: expected weights saved with this config")
        if dtype not in FLOAT_DTYPES:
            raise InputError(f"`model` weights {path!r}: tensor {tensor_name(k)} has dtype {dtype}: expected "
                             f"floating-point weights ({', '.join(FLOAT_DTYPES)})")
    from safetensors.torch import load_file

    state = {}
    for path in files:
        try:
            tensors = load_file(path, device="cpu")
        except Exception as exc:  # the header was checked; what is left is an unreadable file
            raise InputError(f"`model` weights {path!r} cannot be read: {' '.join(str(exc).split())[:120]}") from None
        for k, v in tensors.items():
            if not bool(torch.isfinite(v).all()):
                raise InputError(f"`model` weights {path!r}: tensor {tensor_name(k)} holds NaN or infinite numbers: "
                                 "expected finite weights")
        state.update(tensors)
    with quiet_libraries():
        net = cls.from_config(cfg)
    net.load_state_dict(state, strict=True)
    return net


def _init_keys(cls) -> set:
    """The fields a diffusers class's configuration takes (its constructor's parameters)."""
    return {p for p, v in inspect.signature(cls.__init__).parameters.items()
            if p != "self" and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}


def classic_attention(module) -> int:
    """Swap fused attention kernels (no double backward on CPU) for diffusers' plain AttnProcessor."""
    try:
        from diffusers.models.attention_processor import Attention, AttnProcessor
    except ImportError:  # pragma: no cover - very old diffusers
        return 0
    n = 0
    for m in module.modules():
        if isinstance(m, Attention):
            m.set_processor(AttnProcessor())
            n += 1
    return n




def _math_attention():
    """A context in which torch's scaled-dot-product attention runs its math kernel (differentiable twice, which
    the Jacobian products need; the fused CPU and CUDA kernels have no double backward)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    except ImportError:  # pragma: no cover - torch < 2.3
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False, enable_math=True)


# ----------------------------------------------------------------------------- the scheduler
def parametrisation(scfg: dict, sched, family: Family | None, prediction: str | None, path: str) -> dict:
    """What the scheduler says about the network: prediction, scaling, noise map, log alphabar and sigma range."""
    name = scfg.get("_class_name")
    pred_type = scfg.get("prediction_type")
    flow = not hasattr(sched, "alphas_cumprod") and hasattr(sched, "sigmas") or pred_type == "flow_prediction"
    if flow:
        if prediction not in (None, "flow"):
            raise InputError(f"`prediction` = {prediction!r}: a {name} model predicts the flow velocity: expected flow")
        n = int(scfg.get("num_train_timesteps") or 1000)
        shift = 1.0 if scfg.get("use_dynamic_shifting") else float(scfg.get("shift", scfg.get("flow_shift", 1.0)) or 1.0)
        s_min = shift * (1.0 / n) / (1.0 + (shift - 1.0) * (1.0 / n))  # the scheduler's smallest training time
        return {"prediction": "flow", "scaling": "flow", "noise": family.flow_noise if family else "flow1000",
                "log_alphabar": None, "sigma_range": (s_min / (1.0 - s_min), math.inf), "kind": "flow",
                "flow_shift": shift, "train_timesteps": n}
    if not hasattr(sched, "alphas_cumprod"):
        raise InputError(f"`model` scheduler {name} in {path!r} has neither alphas_cumprod nor flow sigmas: expected a "
                         "DDPM-family or a FlowMatch scheduler")
    pred = prediction or pred_type or "epsilon"
    if pred not in ("epsilon", "sample", "v_prediction"):
        raise InputError(f"`prediction` = {pred!r}: expected epsilon, sample or v_prediction (or a FlowMatch "
                         "scheduler for flow)")
    abar = sched.alphas_cumprod.double()
    # (a zero-terminal-SNR schedule ends at alphabar = 0 exactly)
    ok = abar.numel() >= 2 and bool(torch.isfinite(abar).all()) and bool((abar[:-1] > 0).all()) \
        and bool((abar <= 1).all()) and bool(abar[-1] >= 0) and bool((abar[1:] < abar[:-1]).all())
    if not ok:
        raise InputError(f"`model` scheduler config {path!r} gives alphas_cumprod that are not strictly decreasing in "
                         "(0, 1]: expected a valid noise schedule")
    la = torch.log(abar).numpy()
    return {"prediction": pred, "scaling": "vp", "noise": "ddpm", "log_alphabar": la, "sigma_range": None,
            "kind": "vp", "train_timesteps": int(la.size)}


# ----------------------------------------------------------------------------- loading
def load_folder(folder: str, *, prediction: str | None = None, shape=None, device: str = "cpu",
                dtype=None, conditioned: bool | None = None) -> TorchModel:
    """A diffusers folder on disk as a :class:`~.denoiser.TorchModel` whose ``needs`` say what its forward needs.

    The class is the config's ``_class_name``: a family of :data:`FAMILIES`, or any other diffusers ``ModelMixin``
    whose forward takes (sample, timestep) and nothing else.  ``shape`` (C, H, W) sets the latent shape (required
    where the config has no ``sample_size``, as for Flux); ``device`` and ``dtype`` place the network.
    ``conditioned`` False: no conditioning will be given, so a network that needs some is refused before its
    weights are read.

    Raises:
        InputError: no such folder, no model in it, an unsupported class, no scheduler config, a scheduler that
            is neither DDPM-family nor FlowMatch, weights that are pickled, missing or damaged, a shape the network
            cannot take, a device torch does not see.
    """
    from ..numcore.checks import require

    require("diffusers", "torch", "a diffusers model")
    require("safetensors", "torch", "a diffusers model")
    import diffusers
    from diffusers import ModelMixin, SchedulerMixin

    device = resolve_device(device)
    dtype = resolve_dtype(dtype)
    if not os.path.isdir(folder):
        raise InputError(f"`model` = {folder!r}: no such folder")
    mdir, sched_path, pipe = locate(folder)
    cfg_path = os.path.join(mdir, "config.json")
    raw = read_json(cfg_path, "`model` config", limit=CONFIG_BYTES, constants=True)
    cls_name = _class_of(raw, cfg_path, "config")
    cls = getattr(diffusers, str(cls_name), None) if isinstance(cls_name, str) else None
    if cls is None or not (inspect.isclass(cls) and issubclass(cls, ModelMixin)):
        raise InputError(f"`model` = {folder!r}: unsupported model class {cls_name!r}: expected one of "
                         f"{', '.join(FAMILIES)} or an unconditional diffusers denoiser (anything else: FILE.py:NAME)")
    family = FAMILIES.get(cls_name)
    if family is None:  # any other ModelMixin taking (sample, timestep) and nothing else
        params = inspect.signature(cls.forward).parameters
        needs_more = [p for p, v in params.items() if p not in ("self", "sample", "timestep")
                      and v.default is inspect.Parameter.empty and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
        if "sample" not in params or "timestep" not in params or needs_more:
            raise InputError(f"`model` = {folder!r}: unsupported model class {cls_name}: expected one of "
                             f"{', '.join(FAMILIES)} or an unconditional denoiser taking (sample, timestep)"
                             + (f"; it also needs {', '.join(needs_more)} (load it through FILE.py:NAME)"
                                if needs_more else ""))
    cfg = check_config(raw, MODEL_CONFIG, f"`model` config {cfg_path!r}", known=_init_keys(cls))
    side_path = os.path.join(mdir, SIDECAR)
    side = _config(side_path, SIDECAR, SIDECAR_CONFIG, known=set(SIDECAR_CONFIG)) if os.path.lexists(side_path) else {}
    needs = family.needs(cfg, side) if family else Needs(what=cls_name, accepted=())
    if conditioned is False:
        from .conditioning import require_conditioning

        require_conditioning(needs)
    if shape is not None:
        shp = parse_shape(shape)
        if family:
            family.check_shape(cfg, shp)
    else:
        shp = family.shape(cfg) if family else _image_shape(cfg) if "1D" not in cls_name else (
            (int(cfg["in_channels"]), int(cfg["sample_size"])) if cfg.get("sample_size") else None)
        if shp is None:
            raise InputError(f"`model`: the {cls_name} config has no sample size: expected `shape` C,H,W (the latent "
                             "shape" + (", C = in_channels / 4, H and W even, e.g. 16,128,128 for 1024 px)"
                                        if cls_name == "FluxTransformer2DModel" else ")"))
    if math.prod(shp) > MAX_SAMPLE_VALUES:
        raise InputError(f"`model` config {cfg_path!r}: samples of shape {shp} hold {math.prod(shp)} numbers: "
                         f"expected at most {MAX_SAMPLE_VALUES} (sample_size and in_channels, or `shape`)")
    if sched_path is None:
        raise InputError(f"`model` = {folder!r}: no scheduler_config.json (expected it beside the model, in "
                         "scheduler/ or in ../scheduler/: it gives the noise schedule and the prediction type)")
    sraw = read_json(sched_path, "`model` scheduler config", limit=CONFIG_BYTES, constants=True)
    sname = _class_of(sraw, sched_path, "scheduler config")
    scls = getattr(diffusers, str(sname), None) if sname else None
    if scls is None or not (inspect.isclass(scls) and issubclass(scls, SchedulerMixin)):
        raise InputError(f"`model` scheduler config {sched_path!r}: _class_name = {sname!r}: expected a diffusers "
                         "scheduler class such as DDPMScheduler or FlowMatchEulerDiscreteScheduler")
    scfg = check_config(sraw, SCHEDULER_CONFIG, f"`model` scheduler config {sched_path!r}",
                        known=_init_keys(scls) | set(SCHEDULER_CONFIG))
    try:
        with quiet_libraries():
            sched = scls.from_config(scfg)
    except Exception as exc:  # a combination of fields the scheduler refuses
        raise InputError(f"`model` scheduler config {sched_path!r} does not build a {sname}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]}") from None
    par = parametrisation(scfg, sched, family, prediction, sched_path)
    net = _load_weights(cls, cfg, cls_name, mdir, folder)
    net.eval().requires_grad_(False)
    if dtype is not None:
        net = net.to(dtype)
    net = net.to(device)
    n_attn = classic_attention(net) if family is None or family.classic_attention else 0
    forward = family.forward if family else (lambda net_, cfg_, x, t, cond: net_(x, t).sample)

    def call(inputs, noise_level, **cond):
        ctx = _math_attention() if torch.is_grad_enabled() else contextlib.nullcontext()
        with ctx:
            return forward(net, cfg, inputs, noise_level, cond)

    info = {"class": cls_name, "scheduler": sname,
            "parameters": int(sum(p.numel() for p in net.parameters())), "train_timesteps": par["train_timesteps"],
            "attention_layers": n_attn, "scheduler_config": sched_path, "needs": list(needs.required)}
    if par["kind"] == "flow":
        info["flow_shift"] = par["flow_shift"]
    if pipe is not None:
        info["pipeline"] = pipe
    return TorchModel(shape=shp, dtype=next(net.parameters()).dtype, device=device,
                      name=printable(os.path.basename(os.path.normpath(folder))),
                      source=f"diffusers folder {printable(folder, None)}", info=info,
                      needs=needs, fn=call, prediction=par["prediction"], scaling=par["scaling"], noise=par["noise"],
                      log_alphabar=par["log_alphabar"], sigma_range=par["sigma_range"], module=net)


def parse_shape(shape) -> tuple:
    """A latent shape: ``C,H,W`` text or a sequence of positive integers."""
    raw = shape.split(",") if isinstance(shape, str) else shape
    try:
        out = tuple(int(str(s).strip()) for s in raw)
    except (TypeError, ValueError):
        raise InputError(f"`shape` = {shape!r}: expected C,H,W (positive integers)") from None
    if not out or min(out) < 1 or len(out) > 4:
        raise InputError(f"`shape` = {shape!r}: expected C,H,W (positive integers)")
    return out

