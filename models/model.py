"""A trained network seen as a denoiser in VE sigma, and from it the score, velocity and Jacobian in OU time.

Every model is a :class:`TorchModel`: a torch callable ``fn(inputs, cond)`` with a declared
parametrisation, turned into the denoiser

    D(y, sigma) = E[x_0 | x_0 + sigma z = y]     (VE coordinates: y = x / alpha, sigma = sqrt(e^{2t} - 1)).

Parametrisation (Karras et al. 2022, Table 1; Salimans & Ho 2022 for v):

    scaling   ``ve``: the network sees y;  ``vp``: it sees x = alpha y = alpha x_0 + sigma_vp z
              (alpha = 1 / sqrt(1 + sigma^2), sigma_vp = sigma alpha)
    noise     what ``cond`` holds: ``sigma``, ``t`` (OU time), ``logsnr`` (-2 log sigma), or ``ddpm``
              (the fractional training timestep n of a VP schedule: log alphabar_n interpolated
              linearly between integer steps, alphabar = alpha^2, exact at integer n)
    output    ``sample``: D;  ``epsilon``: eps with y = D + sigma eps, so D = y - sigma eps;
              ``v_prediction``: v = alpha eps - sigma_vp x_0, so D = alpha x - sigma_vp v;
              ``score``: grad log p of the input variable (D = y + sigma^2 s for ``ve``,
              D = (x + sigma_vp^2 s) / alpha for ``vp``)

These conversions are exact: a VP-trained model (DDPM, epsilon or v) evaluated at the timestep whose
alphabar equals alpha(sigma)^2 is the same function as its VE-sigma denoiser.  In OU time
(alpha = e^{-t}, x = alpha y) the score, the probability-flow velocity and its Jacobian are

    s(x, t) = (alpha D(x / alpha, sigma) - x) / sigma_vp^2,    v(x, t) = -x - s(x, t),
    J(x, t) = dv/dx = -I - (alpha^2 dD/dy - I) / sigma_vp^2       (dD/dy at y = x / alpha).

Sources: (a) a diffusers folder on disk (:func:`load_diffusers`: ``UNet2DModel`` or any unconditional
``ModelMixin`` taking (sample, timestep), with its scheduler's ``alphas_cumprod`` and
``prediction_type``); (b) any torch callable with a declared parametrisation (:func:`torch_model`, or
``module.py:name`` naming one); (c) a flowcert mixture as an exact torch module
(:func:`mixture_model`, the oracle).  No network access: folders only.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..numcore.checks import InputError

PREDICTIONS = ("sample", "epsilon", "v_prediction", "score")
SCALINGS = ("ve", "vp")
NOISES = ("sigma", "t", "logsnr", "ddpm")
DENOISER_COMPONENTS = ("unet", "transformer", "prior", "decoder")
BUILTIN_MODELS = {"digits": "examples/digits/assets"}  # shipped with the package (relative to the package root)


@dataclass
class TorchModel:
    """A torch callable with a declared parametrisation, as a denoiser in VE sigma.

    Attributes:
        fn: ``fn(inputs, cond) -> output``; ``inputs`` of shape (n, *shape), ``cond`` of shape (n,).
        shape: the shape of one sample (d = prod(shape) numbers).
        prediction: one of ``sample``, ``epsilon``, ``v_prediction``, ``score``.
        scaling: ``ve`` or ``vp`` (what the network sees, see the module doc).
        noise: ``sigma``, ``t``, ``logsnr`` or ``ddpm`` (what ``cond`` holds).
        log_alphabar: for ``ddpm``: log alphabar_n of the integer training steps n = 0..N-1.
        sigma_range: (sigma_min, sigma_max) the network was trained on (VE), or None (unbounded).
        dtype, device: of the network's inputs.
        name, source: labels for reports.
    """

    fn: Callable
    shape: tuple
    prediction: str = "sample"
    scaling: str = "ve"
    noise: str = "sigma"
    log_alphabar: np.ndarray | None = None
    sigma_range: tuple | None = None
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    name: str = "model"
    source: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise InputError(f"`prediction` = {self.prediction!r}: expected one of {', '.join(PREDICTIONS)}")
        if self.scaling not in SCALINGS:
            raise InputError(f"`scaling` = {self.scaling!r}: expected one of {', '.join(SCALINGS)}")
        if self.noise not in NOISES:
            raise InputError(f"`noise` = {self.noise!r}: expected one of {', '.join(NOISES)}")
        try:
            self.shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError):
            raise InputError(f"`shape` = {self.shape!r}: expected a tuple of positive integers") from None
        if not self.shape or min(self.shape) < 1:
            raise InputError(f"`shape` = {self.shape!r}: expected a tuple of positive integers")
        if self.noise == "ddpm":
            if self.log_alphabar is None:
                raise InputError("`noise` = 'ddpm': expected `log_alphabar` (the schedule's log alphas_cumprod)")
            la = np.asarray(self.log_alphabar, float)
            finite = np.isfinite(la)
            # a zero-terminal-SNR schedule ends at alphabar = 0: keep its finite part
            la = la[finite] if not finite.all() else la
            if la.ndim != 1 or la.size < 2 or np.any(np.diff(la) >= 0) or la[0] > 0:
                raise InputError("`log_alphabar`: expected a strictly decreasing sequence of log alphabar <= 0")
            self.log_alphabar = la
            if self.sigma_range is None:
                self.sigma_range = (float(np.sqrt(np.expm1(-la[0]))), float(np.sqrt(np.expm1(-la[-1]))))
        self.info = dict(self.info)

    # ------------------------------------------------------------------ sizes
    @property
    def d(self) -> int:
        """Numbers per sample."""
        return int(np.prod(self.shape))

    def t_range(self) -> tuple[float, float] | None:
        """(t_min, t_max) in OU time of the trained sigma range, or None."""
        if self.sigma_range is None:
            return None
        lo, hi = self.sigma_range
        return 0.5 * math.log1p(lo * lo), 0.5 * math.log1p(hi * hi)

    def describe(self) -> dict:
        """What the model is, for reports (JSON-ready)."""
        out = {"name": self.name, "source": self.source, "shape": list(self.shape), "d": self.d,
               "prediction": self.prediction, "scaling": self.scaling, "noise": self.noise,
               "dtype": str(self.dtype).replace("torch.", ""),
               "sigma_range": list(self.sigma_range) if self.sigma_range else None}
        return {**out, **self.info}

    # ------------------------------------------------------------------ the denoiser
    def _cond(self, sigma: float, n: int) -> torch.Tensor:
        if self.noise == "sigma":
            c = sigma
        elif self.noise == "t":
            c = 0.5 * math.log1p(sigma * sigma)
        elif self.noise == "logsnr":
            c = -2.0 * math.log(sigma)
        else:
            la = -math.log1p(sigma * sigma)  # log alpha^2
            tab = self.log_alphabar
            c = float(np.interp(-la, -tab, np.arange(tab.size, dtype=float)))
        return torch.full((n,), c, dtype=self.dtype, device=self.device)

    def denoise(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        """D(y, sigma) for y of shape (n, d) in VE coordinates and one sigma > 0; shape (n, d)."""
        sigma = float(sigma)
        n = y.shape[0]
        alpha = 1.0 / math.sqrt(1.0 + sigma * sigma)
        sig_vp = sigma * alpha
        y = y.to(self.dtype)
        inp = y if self.scaling == "ve" else alpha * y
        out = self.fn(inp.reshape(n, *self.shape), self._cond(sigma, n))
        out = _tensor_output(out).reshape(n, -1)
        if self.prediction == "sample":
            return out
        if self.prediction == "epsilon":
            return y - sigma * out
        if self.prediction == "v_prediction":
            return alpha * (alpha * y) - sig_vp * out
        # score of the input variable
        return y + sigma * sigma * out if self.scaling == "ve" else (alpha * y + sig_vp * sig_vp * out) / alpha

    def __call__(self, y, sigma):
        return self.denoise(y, sigma)

    # ------------------------------------------------------------------ OU time
    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """s(x, t) = grad log p_t(x) in OU coordinates, x of shape (n, d)."""
        alpha, var = math.exp(-t), -math.expm1(-2.0 * t)
        sigma = math.sqrt(math.expm1(2.0 * t))
        return (alpha * self.denoise(x.to(self.dtype) / alpha, sigma) - x) / var

    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """v(x, t) = -x - s(x, t), the forward-time probability-flow velocity."""
        return -x - self.score(x, t)

    def dense_jacobian(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """J(x, t) = dv/dx for each point, shape (n, d, d), by d reverse passes (for small d and checks)."""
        x = x.to(self.dtype).detach().requires_grad_(True)
        with torch.enable_grad():
            v = self.velocity(x, t)
            rows = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=i + 1 < v.shape[1])[0]
                    for i in range(v.shape[1])]
        return torch.stack(rows, 1).detach()


def _tensor_output(out):
    """The tensor in a model's output: itself, ``.sample``, or the first item of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise InputError(f"the model returned {type(out).__name__}: expected a tensor (or an output with .sample)")


def torch_model(fn: Callable, *, shape, prediction: str = "sample", scaling: str = "ve", noise: str = "sigma",
                log_alphabar=None, sigma_range=None, dtype=torch.float32, device: str = "cpu",
                name: str | None = None) -> TorchModel:
    """Declare the parametrisation of a torch callable ``fn(inputs, cond)`` (see :class:`TorchModel`)."""
    return TorchModel(fn, tuple(shape) if not isinstance(shape, int) else (shape,), prediction, scaling, noise,
                      log_alphabar, sigma_range, dtype, device, name or getattr(fn, "__name__", "model"),
                      "torch callable")


# ----------------------------------------------------------------------------- (c) mixtures
def mixture_model(mix, dtype=torch.float64, device: str = "cpu") -> TorchModel:
    """The exact denoiser of a flowcert mixture as a torch model (score of p_t in OU coordinates).

    Differentiable in x by autograd, so Jacobians of the model path can be checked against numcore's
    closed-form Hessians.
    """
    from .exact import TorchMixture

    tm = TorchMixture(mix, device, dtype)

    def fn(x, t):
        return tm.score(x.reshape(x.shape[0], -1), float(t[0]))

    return TorchModel(fn, (mix.d,), "score", "vp", "t", None, None, dtype, device, mix.name,
                      "flowcert mixture (exact score)")


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

    def call(inputs, cond):
        out = net(inputs, cond)
        return out.sample if hasattr(out, "sample") else out[0]

    params_n = int(sum(p.numel() for p in net.parameters()))
    info = {"class": cls_name, "scheduler": scfg.get("_class_name"), "parameters": params_n,
            "train_timesteps": int(la.size), "attention_layers": n_attn, "scheduler_config": sched_path}
    return TorchModel(call, shp, pred, "vp", "ddpm", la, None, next(net.parameters()).dtype, device,
                      os.path.basename(os.path.normpath(folder)), f"diffusers folder {folder}", info)


# ----------------------------------------------------------------------------- (b) module.py:name
def load_callable(ref: str) -> TorchModel:
    """``module.py:name``: a :class:`TorchModel` in a Python file, or a function of no arguments returning one."""
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
    if not isinstance(obj, TorchModel) and callable(obj):
        try:
            takes_none = not any(p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL,
                                                                                           p.VAR_KEYWORD)
                                 for p in inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            takes_none = False
        if takes_none:
            obj = obj()
    if not isinstance(obj, TorchModel):
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


def load(source, *, prediction: str | None = None, device: str = "cpu") -> TorchModel:
    """A model from a :class:`TorchModel`, a :class:`GaussianMixture`, ``mixture:SPEC``, ``FILE.py:NAME``,
    a diffusers folder, or the name of a shipped model (``digits``; a folder of that name wins)."""
    from ..numcore.mixture import GaussianMixture

    if isinstance(source, TorchModel):
        return source
    if isinstance(source, GaussianMixture):
        return mixture_model(source, device=device)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"`model` = {source!r}: expected a folder, FILE.py:NAME, mixture:SPEC or a TorchModel")
    source = os.fspath(source)
    if source.startswith("mixture:"):
        from ..numcore.mixture import load as load_mixture

        return mixture_model(load_mixture(source[len("mixture:"):]), device=device)
    if os.path.isdir(source):
        return load_diffusers(source, prediction=prediction, device=device)
    if ".py:" in source:
        return load_callable(source)
    shipped = builtin_folder(source)
    if shipped is not None:
        return load_diffusers(shipped, prediction=prediction, device=device)
    raise InputError(f"`model` = {source!r}: no such folder (expected a diffusers folder, FILE.py:NAME, "
                     f"mixture:SPEC or a shipped model: {', '.join(BUILTIN_MODELS)})")
