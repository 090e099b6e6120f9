"""Where models come from: diffusers folders on disk, ``FILE.py:NAME``, the shipped examples, and the exact mixture.

Sources: (a) a diffusers folder on disk (:func:`~.families.load_folder`: the class registry of
:mod:`.families`, conditional and flow-matching networks included; :func:`load_diffusers` is the older reader of
unconditional DDPM-family folders);
(b) any torch callable with a declared parametrisation (:func:`~.denoiser.torch_model`, or ``module.py:name``
naming one); (c) a flowcert mixture as its exact denoiser (:func:`~.exact.exact_model`, the oracle).  Every
source gives a :class:`~.denoiser.Denoiser`.  No network access: folders only.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os

import torch

from ..numcore.checks import InputError
from .denoiser import Denoiser, TorchModel
from .exact import exact_model

DENOISER_COMPONENTS = ("unet", "transformer", "prior", "decoder")
BUILTIN_MODELS = {"digits": "examples/digits/assets"}  # shipped with the package (relative to the package root)


# ----------------------------------------------------------------------------- (a) diffusers folders
def _read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except OSError as exc:
        raise InputError(f"`model`: {path!r} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"`model`: {path!r} is not valid JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise InputError(f"`model`: {path!r} is not a JSON object")
    return cfg


def _locate(folder: str) -> tuple[str, str | None]:
    """(model folder, scheduler config path or None) of a pipeline folder or a model folder."""
    index = os.path.join(folder, "model_index.json")
    if os.path.exists(index):
        cfg = _read_config(index)
        comp = next((c for c in DENOISER_COMPONENTS if c in cfg and os.path.isdir(os.path.join(folder, c))), None)
        if comp is None:
            raise InputError(f"`model` = {folder!r}: its model_index.json names no denoiser component "
                             f"(expected one of {', '.join(DENOISER_COMPONENTS)} with its folder)")
        sched = os.path.join(folder, "scheduler", "scheduler_config.json")
        return os.path.join(folder, comp), sched if os.path.exists(sched) else None
    if os.path.exists(os.path.join(folder, "config.json")):
        for cand in (os.path.join(folder, "scheduler_config.json"),
                     os.path.join(folder, "scheduler", "scheduler_config.json"),
                     os.path.join(os.path.dirname(os.path.abspath(folder)), "scheduler", "scheduler_config.json")):
            if os.path.exists(cand):
                return folder, cand
        return folder, None
    raise InputError(f"`model` = {folder!r}: no diffusers model in it (expected model_index.json, or config.json "
                     "with the weights)")


def _sample_shape(cls_name: str, cfg: dict) -> tuple:
    size, ch = cfg.get("sample_size"), cfg.get("in_channels")
    if size is None or ch is None:
        raise InputError(f"`model`: the {cls_name} config has no sample_size/in_channels: expected them, or "
                         "declare the sample shape with `shape`")
    if "1D" in cls_name:
        return (int(ch), int(size))
    hw = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
    return (int(ch), *hw)


def _classic_attention(module) -> int:
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


def load_diffusers(folder: str, *, prediction: str | None = None, shape=None, device: str = "cpu",
                   dtype: torch.dtype | None = None) -> TorchModel:
    """A diffusers model folder on disk as a :class:`TorchModel` (no network access).

    ``folder`` is a pipeline folder (``model_index.json`` with ``unet/`` or ``transformer/`` and
    ``scheduler/``) or a model folder (``config.json`` + weights) with ``scheduler_config.json`` in
    it, in ``scheduler/`` below it or in ``../scheduler/``.  The model class is the config's
    ``_class_name``: any diffusers ``ModelMixin`` whose forward takes (sample, timestep) and needs
    nothing else.  The scheduler gives ``alphas_cumprod`` (the VP schedule; timesteps are fractional
    DDPM steps) and ``prediction_type`` (epsilon, sample or v_prediction; ``prediction`` overrides it).

    Raises:
        InputError: no such folder, no model in it, an unsupported class (not a ModelMixin, or one that
            needs conditioning), no scheduler config, a scheduler without ``alphas_cumprod``, an
            unsupported prediction type, weights that do not load.
    """
    from ..numcore.checks import require

    require("diffusers", "torch", "a diffusers model")
    import diffusers
    from diffusers import ModelMixin

    if not os.path.isdir(folder):
        raise InputError(f"`model` = {folder!r}: no such folder")
    mdir, sched_path = _locate(folder)
    cfg = _read_config(os.path.join(mdir, "config.json"))
    cls_name = cfg.get("_class_name")
    cls = getattr(diffusers, str(cls_name), None) if cls_name else None
    if cls is None or not (inspect.isclass(cls) and issubclass(cls, ModelMixin)):
        raise InputError(f"`model` = {folder!r}: unsupported model class {cls_name!r}: expected a diffusers "
                         "ModelMixin denoiser such as UNet2DModel")
    params = inspect.signature(cls.forward).parameters
    needs = [p for p, v in params.items() if p not in ("self", "sample", "timestep")
             and v.default is inspect.Parameter.empty and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
    if "sample" not in params or "timestep" not in params or needs:
        raise InputError(f"`model` = {folder!r}: unsupported model class {cls_name}: expected an unconditional "
                         "denoiser taking (sample, timestep)" + (f"; it also needs {', '.join(needs)}" if needs else ""))
    if sched_path is None:
        raise InputError(f"`model` = {folder!r}: no scheduler_config.json (expected it beside the model, in "
                         "scheduler/ or in ../scheduler/: it gives the noise schedule and the prediction type)")
    scfg = _read_config(sched_path)
    scls = getattr(diffusers, str(scfg.get("_class_name")), None)
    if scls is None:
        raise InputError(f"`model`: unknown scheduler class {scfg.get('_class_name')!r} in {sched_path!r}")
    sched = scls.from_config(scfg)
    if not hasattr(sched, "alphas_cumprod"):
        raise InputError(f"`model`: scheduler {scfg.get('_class_name')} has no alphas_cumprod: expected a VP "
                         "(DDPM-family) scheduler")
    pred = prediction or scfg.get("prediction_type") or cfg.get("prediction_type")
    if pred not in ("epsilon", "sample", "v_prediction"):
        raise InputError(f"`prediction` = {pred!r}: expected epsilon, sample or v_prediction")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        net = cls.from_pretrained(mdir, local_files_only=True, low_cpu_mem_usage=False)
    except Exception as exc:  # diffusers raises OSError, ValueError, EnvironmentError...
        first = " ".join(str(exc).split())[:200]
        raise InputError(f"`model` = {folder!r}: the {cls_name} weights do not load: {first}") from None
    net.eval().requires_grad_(False)
    if dtype is not None:
        net = net.to(dtype)
    net = net.to(device)
    n_attn = _classic_attention(net)
    la = torch.log(sched.alphas_cumprod.double()).numpy()
    shp = tuple(shape) if shape is not None else _sample_shape(cls_name, cfg)

    def call(inputs, noise_level, **cond):
        out = net(inputs, noise_level, **cond)
        return out.sample if hasattr(out, "sample") else out[0]

    params_n = int(sum(p.numel() for p in net.parameters()))
    info = {"class": cls_name, "scheduler": scfg.get("_class_name"), "parameters": params_n,
            "train_timesteps": int(la.size), "attention_layers": n_attn, "scheduler_config": sched_path}
    return TorchModel(shape=shp, dtype=next(net.parameters()).dtype, device=device,
                      name=os.path.basename(os.path.normpath(folder)), source=f"diffusers folder {folder}", info=info,
                      fn=call, prediction=pred, scaling="vp", noise="ddpm", log_alphabar=la)


# ----------------------------------------------------------------------------- (b) module.py:name
def load_callable(ref: str) -> Denoiser:
    """``module.py:name``: a :class:`~.denoiser.Denoiser` (a :class:`~.denoiser.TorchModel`) in a Python file, or a
    function of no arguments returning one.  The file is run as Python code."""
    path, _, attr = ref.rpartition(":")
    if not path or not attr:
        raise InputError(f"`model` = {ref!r}: expected a folder, FILE.py:NAME or mixture:SPEC")
    if not os.path.isfile(path):
        raise InputError(f"`model` = {ref!r}: no such file {path!r}")
    spec = importlib.util.spec_from_file_location(f"flowcert_user_model_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        raise InputError(f"`model` = {ref!r}: importing {path!r} failed: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}") from None
    obj = getattr(mod, attr, None)
    if obj is None:
        raise InputError(f"`model` = {ref!r}: {path!r} defines no {attr!r}")
    if not isinstance(obj, Denoiser) and callable(obj):
        try:
            takes_none = not any(p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL,
                                                                                           p.VAR_KEYWORD)
                                 for p in inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            takes_none = False
        if takes_none:
            obj = obj()
    if not isinstance(obj, Denoiser):
        raise InputError(f"`model` = {ref!r}: expected a flowcert TorchModel (declare the parametrisation with "
                         "flowcert.torch_model(fn, shape=..., prediction=...)) or a function of no arguments "
                         "returning one")
    obj.source = obj.source or f"callable {ref}"
    return obj


def builtin_folder(name: str) -> str | None:
    """The folder of a model shipped with flowcert, or None."""
    rel = BUILTIN_MODELS.get(name)
    if rel is None:
        return None
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), rel)
    return path if os.path.isdir(path) else None


def load(source, *, prediction: str | None = None, device: str = "cpu", dtype=None, shape=None,
         conditioned: bool | None = None) -> Denoiser:
    """A model from a :class:`~.denoiser.Denoiser`, a :class:`GaussianMixture`, ``mixture:SPEC``, ``FILE.py:NAME``,
    a diffusers folder (:func:`~.families.load_folder`: every family of its registry), or the name of a shipped
    model (``digits``; a folder of that name wins).  ``device``, ``dtype`` and ``shape`` place and shape a diffusers
    network (and place a mixture); a loaded model or ``FILE.py:NAME`` declares its own.  ``conditioned`` False: a
    diffusers network that needs conditioning is refused before its weights are read."""
    from ..numcore.mixture import GaussianMixture
    from .families import load_folder, resolve_device, resolve_dtype

    own = isinstance(source, Denoiser) or (isinstance(source, (str, os.PathLike)) and ".py:" in os.fspath(source)
                                           and not os.path.isdir(source))
    if own and (device not in (None, "cpu") or dtype is not None or shape is not None):
        raise InputError("`device`, `dtype` and `shape` apply to diffusers folders and mixtures: a loaded model or "
                         "FILE.py:NAME declares its own (flowcert.torch_model(fn, shape=..., device=..., dtype=...))")
    if isinstance(source, Denoiser):
        return source
    device = resolve_device(device)
    if isinstance(source, GaussianMixture) or (isinstance(source, (str, os.PathLike))
                                               and os.fspath(source).startswith("mixture:")):
        if shape is not None:
            raise InputError("`shape` applies to diffusers folders: a mixture has its own dimension")
        mix = source
        if not isinstance(mix, GaussianMixture):
            from ..numcore.mixture import load as load_mixture

            mix = load_mixture(os.fspath(source)[len("mixture:"):])
        return exact_model(mix, device=device, dtype=resolve_dtype(dtype) or torch.float64)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"`model` = {source!r}: expected a folder, FILE.py:NAME, mixture:SPEC or a model")
    source = os.fspath(source)
    if os.path.isdir(source):
        return load_folder(source, prediction=prediction, device=device, dtype=dtype, shape=shape,
                           conditioned=conditioned)
    if ".py:" in source:
        return load_callable(source)
    shipped = builtin_folder(source)
    if shipped is not None:
        model = load_folder(shipped, prediction=prediction, device=device, dtype=dtype, shape=shape,
                            conditioned=conditioned)
        model.name = source  # the shipped model's name, not its folder's
        return model
    raise InputError(f"`model` = {source!r}: no such folder (expected a diffusers folder, FILE.py:NAME, "
                     f"mixture:SPEC or a shipped model: {', '.join(BUILTIN_MODELS)})")
