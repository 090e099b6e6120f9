"""Where models come from: diffusers folders on disk, ``FILE.py:NAME``, the shipped examples, and the exact mixture.

Sources: (a) a diffusers folder on disk (:func:`load_diffusers`: ``UNet2DModel`` or any unconditional
``ModelMixin`` taking (sample, timestep), with its scheduler's ``alphas_cumprod`` and ``prediction_type``);
(b) any torch callable with a declared parametrisation (:func:`~.denoiser.torch_model`, or ``module.py:name``
naming one); (c) a flowcert mixture as its exact denoiser (:func:`~.exact.exact_model`, the oracle).  Every
source gives a :class:`~.denoiser.Denoiser`.  No network access: folders only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import math
import os
import re

import torch

from ..numcore.checks import (
    COMPONENT,
    CONFIG_BYTES,
    IMPORT_TIMEOUT_ENV,
    MODEL_CONFIG,
    PIPELINE_INDEX,
    SCHEDULER_CONFIG,
    InputError,
    check_config,
    fits_memory,
    kind_of,
    printable,
)
from ..numcore.io import read_json, safetensors_header, tensor_name
from .denoiser import Denoiser, TorchModel
from .exact import exact_model

DENOISER_COMPONENTS = ("unet", "transformer", "prior", "decoder")
BUILTIN_MODELS = {"digits": "examples/digits/assets"}  # shipped with the package (relative to the package root)


# ----------------------------------------------------------------------------- (a) diffusers folders
WEIGHTS = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX = WEIGHTS + ".index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # never loaded: unpickling can run code
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
MAX_SAMPLE_VALUES = 2**24  # numbers in one sample (3 x 2048 x 2048 pixels fit; a 4096^3 "image" does not)
MAX_FOLDER_FILES = 10_000  # files of a model folder counted as inputs (outputs may not replace them)


@contextlib.contextmanager
def quiet_libraries():
    """diffusers', transformers' and huggingface_hub's log lines and Python warnings silenced while a model loads:
    what a load has to say, flowcert says in one line."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers", "huggingface_hub", "accelerate")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


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


def _locate(folder: str) -> tuple[str, str | None]:
    """(model folder, scheduler config path or None) of a pipeline folder or a model folder."""
    index = os.path.join(folder, "model_index.json")
    if os.path.lexists(index):
        cfg = _config(index, "model_index.json", PIPELINE_INDEX, other=COMPONENT)
        comp = next((c for c in DENOISER_COMPONENTS if c in cfg and os.path.isdir(os.path.join(folder, c))), None)
        if comp is None:
            raise InputError(f"`model` = {folder!r}: its model_index.json names no denoiser component "
                             f"(expected one of {', '.join(DENOISER_COMPONENTS)} with its folder)")
        sched = os.path.join(folder, "scheduler", "scheduler_config.json")
        return os.path.join(folder, comp), sched if os.path.lexists(sched) else None
    if os.path.lexists(os.path.join(folder, "config.json")):
        for cand in (os.path.join(folder, "scheduler_config.json"),
                     os.path.join(folder, "scheduler", "scheduler_config.json"),
                     os.path.join(os.path.dirname(os.path.abspath(folder)), "scheduler", "scheduler_config.json")):
            if os.path.lexists(cand):
                return folder, cand
        return folder, None
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
    pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
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


def _sample_shape(cls_name: str, cfg: dict) -> tuple:
    size, ch = cfg.get("sample_size"), cfg.get("in_channels")
    if size is None or ch is None:
        raise InputError(f"`model`: the {cls_name} config has no sample_size/in_channels: expected them, or "
                         "declare the sample shape with `shape`")
    sizes = [size] if isinstance(size, int) else list(size)
    if "1D" in cls_name:
        if len(sizes) != 1:
            raise InputError(f"`model`: the {cls_name} config has sample_size = {sizes}: expected one length")
        return (int(ch), int(sizes[0]))
    if len(sizes) not in (1, 2):
        raise InputError(f"`model`: the {cls_name} config has sample_size = {sizes}: expected a size or (height, "
                         "width)")
    hw = (sizes[0], sizes[0]) if len(sizes) == 1 else tuple(sizes)
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

    Every file is checked before diffusers sees it: the configs are read bounded and strict (a FIFO or a
    device refused before anything is read, no key twice) and checked field by field against
    ``numcore.checks.MODEL_CONFIG`` / ``SCHEDULER_CONFIG`` / ``PIPELINE_INDEX`` (a field the class does not
    take is refused); the weights are ``diffusion_pytorch_model.safetensors`` (or its shards), never a
    pickle, checked against the config's network built on the meta device (:func:`_load_weights`).
    diffusers' log lines are silenced while it builds the scheduler and the network.

    Raises:
        InputError: no such folder, no model in it, an unsupported class (not a ModelMixin, or one that
            needs conditioning), no scheduler config, a config field outside its domain, a scheduler without
            ``alphas_cumprod`` or with an invalid schedule, an unsupported prediction type, a sample of more
            than 2^24 numbers, weights that are missing, pickled, damaged, of another shape or dtype, or not
            finite; every message names the file.
    """
    from ..numcore.checks import require

    require("diffusers", "torch", "a diffusers model")
    require("safetensors", "torch", "a diffusers model")
    import diffusers
    from diffusers import ModelMixin, SchedulerMixin

    if not os.path.isdir(folder):
        raise InputError(f"`model` = {folder!r}: no such folder")
    mdir, sched_path = _locate(folder)
    cfg_path = os.path.join(mdir, "config.json")
    raw = read_json(cfg_path, "`model` config", limit=CONFIG_BYTES, constants=True)
    cls_name = _class_of(raw, cfg_path, "config")
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
    cfg = check_config(raw, MODEL_CONFIG, f"`model` config {cfg_path!r}", known=_init_keys(cls))
    if sched_path is None:
        raise InputError(f"`model` = {folder!r}: no scheduler_config.json (expected it beside the model, in "
                         "scheduler/ or in ../scheduler/: it gives the noise schedule and the prediction type)")
    sraw = read_json(sched_path, "`model` scheduler config", limit=CONFIG_BYTES, constants=True)
    sname = _class_of(sraw, sched_path, "scheduler config")
    scls = getattr(diffusers, str(sname), None) if sname else None
    if scls is None or not (inspect.isclass(scls) and issubclass(scls, SchedulerMixin)):
        raise InputError(f"`model` scheduler config {sched_path!r}: _class_name = {sname!r}: expected a diffusers "
                         "scheduler class such as DDPMScheduler")
    scfg = check_config(sraw, SCHEDULER_CONFIG, f"`model` scheduler config {sched_path!r}",
                        known=_init_keys(scls) | set(SCHEDULER_CONFIG))
    try:
        with quiet_libraries():
            sched = scls.from_config(scfg)
    except Exception as exc:  # a combination of fields the scheduler refuses
        raise InputError(f"`model` scheduler config {sched_path!r} does not build a {sname}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]}") from None
    if not hasattr(sched, "alphas_cumprod"):
        raise InputError(f"`model`: scheduler {sname} has no alphas_cumprod: expected a VP "
                         "(DDPM-family) scheduler")
    abar = sched.alphas_cumprod.double()
    # (a zero-terminal-SNR schedule ends at alphabar = 0 exactly)
    valid = abar.numel() >= 2 and bool(torch.isfinite(abar).all()) and bool((abar[:-1] > 0).all()) \
        and bool((abar <= 1).all()) and abar[-1] >= 0 and bool((abar[1:] < abar[:-1]).all())
    if not valid:
        raise InputError(f"`model` scheduler config {sched_path!r} gives alphas_cumprod that are not strictly "
                         "decreasing in (0, 1]: expected a valid noise schedule")
    pred = prediction or scfg.get("prediction_type") or cfg.get("prediction_type")
    if pred not in ("epsilon", "sample", "v_prediction"):
        raise InputError(f"`prediction` = {pred!r}: expected epsilon, sample or v_prediction")
    shp = tuple(shape) if shape is not None else _sample_shape(cls_name, cfg)
    if math.prod(shp) > MAX_SAMPLE_VALUES:
        raise InputError(f"`model` config {cfg_path!r}: samples of shape {shp} hold {math.prod(shp)} numbers: "
                         f"expected at most {MAX_SAMPLE_VALUES} (sample_size and in_channels)")
    net = _load_weights(cls, cfg, cls_name, mdir, folder)
    net.eval().requires_grad_(False)
    if dtype is not None:
        net = net.to(dtype)
    net = net.to(device)
    n_attn = _classic_attention(net)
    la = torch.log(abar).numpy()

    def call(inputs, noise_level, **cond):
        out = net(inputs, noise_level, **cond)
        return out.sample if hasattr(out, "sample") else out[0]

    params_n = int(sum(p.numel() for p in net.parameters()))
    info = {"class": cls_name, "scheduler": sname, "parameters": params_n,
            "train_timesteps": int(la.size), "attention_layers": n_attn, "scheduler_config": sched_path}
    return TorchModel(shape=shp, dtype=next(net.parameters()).dtype, device=device,
                      name=printable(os.path.basename(os.path.normpath(folder))),
                      source=f"diffusers folder {printable(folder, None)}", info=info,
                      fn=call, prediction=pred, scaling="vp", noise="ddpm", log_alphabar=la)


# ----------------------------------------------------------------------------- (b) module.py:name
class _ImportTimeout(BaseException):
    """Raised by the alarm when a model file runs past the import limit (a BaseException: user code that catches
    Exception cannot swallow it)."""


def _split_ref(ref: str) -> tuple[str, str]:
    path, _, attr = ref.rpartition(":")
    if not path or not attr:
        raise InputError(f"`model` = {ref!r}: expected a folder, FILE.py:NAME or mixture:SPEC")
    if not os.path.isfile(path):
        raise InputError(f"`model` = {ref!r}: no such file {path!r}")
    return path, attr


@contextlib.contextmanager
def _alarm(seconds: float):
    """_ImportTimeout after ``seconds`` (main thread with SIGALRM only; elsewhere no limit here: the child check
    has one)."""
    import signal
    import threading

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum, frame):
        raise _ImportTimeout()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _load_here(ref: str, path: str, attr: str, seconds: float) -> Denoiser:
    """Import ``path`` in this process and return its model ``attr`` (calling it when it is a function of no
    arguments).  Whatever the file does -- raise anything, call sys.exit, raise KeyboardInterrupt, run past
    ``seconds`` -- ends here as one InputError."""
    spec = importlib.util.spec_from_file_location(f"flowcert_user_model_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    step = f"importing {path!r}"
    try:
        with _alarm(seconds):
            spec.loader.exec_module(mod)
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
                    step = f"calling {attr}() of {path!r}"
                    obj = obj()
    except InputError:
        raise
    except _ImportTimeout:
        raise InputError(f"`model` = {ref!r}: {step} took more than {seconds:g} s ({IMPORT_TIMEOUT_ENV}): expected a "
                         "file that returns its model promptly") from None
    except SystemExit as exc:
        raise InputError(f"`model` = {ref!r}: {step} called sys.exit({printable(repr(exc.code), 40)}): expected a "
                         "file that defines the model without exiting") from None
    except BaseException as exc:  # noqa: BLE001 - user code: KeyboardInterrupt and GeneratorExit included
        text = printable(" ".join(str(exc).split()), 200)
        raise InputError(f"`model` = {ref!r}: {step} failed: {type(exc).__name__}" + (f": {text}" if text else "")
                         + ": expected a file that defines the model") from None
    if not isinstance(obj, Denoiser):
        raise InputError(f"`model` = {ref!r}: expected a flowcert TorchModel (declare the parametrisation with "
                         "flowcert.torch_model(fn, shape=..., prediction=...)) or a function of no arguments "
                         "returning one")
    obj.name = printable(obj.name)
    obj.source = printable(obj.source or f"callable {ref}", None)
    return obj


_CHILD = """import sys, json, os
sys.path[:0] = json.loads(sys.argv[1])
from {package}.models.loaders import _child_check
_child_check(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
"""


def _child_check(ref: str, fd: int, seconds: float) -> None:
    """In the checking child: load the model and report ``ok`` or the one error line through ``fd``, then end
    at once.  A file that ends the process itself (os._exit) reports nothing, which the parent sees."""
    try:
        path, attr = _split_ref(ref)
        _load_here(ref, path, attr, seconds)
        message = b"ok"
    except InputError as exc:
        message = b"error:" + str(exc).encode("utf-8", "backslashreplace")
    os.write(fd, message)
    os._exit(0)


def _check_in_child(ref: str, path: str, attr: str, seconds: float) -> None:
    """Import ``path`` and return ``attr`` in a child process first: a file that ends the process (sys.exit,
    os._exit, a signal), raises, or runs past ``seconds`` is refused in one line before this process runs it.
    The child's output is discarded; it gets this process's ``sys.path``, working folder and environment."""
    import json
    import signal
    import subprocess
    import sys

    package = __name__.rsplit(".models.loaders", 1)[0]
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD.format(package=package), json.dumps(sys.path), ref, str(write_end),
             repr(seconds)],
            pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
    except OSError as exc:
        os.close(read_end)
        raise InputError(f"`model` = {ref!r}: the import check could not start a Python process: "
                         f"{exc.strerror}") from None
    finally:
        os.close(write_end)
    try:
        try:
            # the child's own alarm answers first; this is for a stuck child (with room for importing torch on a
            # busy machine: the battery saw plain model loads take 50 s there)
            rc = proc.wait(timeout=seconds + max(120.0, seconds))
        except subprocess.TimeoutExpired:
            rc = None
        with os.fdopen(read_end, "rb") as fh:
            read_end = None
            message = fh.read(4096) if rc is not None else b""
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        if read_end is not None:
            os.close(read_end)
    if message == b"ok":
        return
    if message.startswith(b"error:"):
        raise InputError(message[6:].decode("utf-8", "replace"))
    if rc is None:
        raise InputError(f"`model` = {ref!r}: importing {path!r} and returning {attr!r} took more than {seconds:g} s "
                         f"({IMPORT_TIMEOUT_ENV}): expected a file that returns its model promptly")
    how = f"exit status {rc}" if rc >= 0 else f"signal {-rc}"
    raise InputError(f"`model` = {ref!r}: importing {path!r} ended the process ({how}) before {attr!r} was returned "
                     "(os._exit, or a crash): expected a file that defines the model without exiting")


def load_callable(ref: str, *, check: bool = True) -> Denoiser:
    """``FILE.py:NAME``: a :class:`~.denoiser.Denoiser` (a :class:`~.denoiser.TorchModel`) in a Python file, or a
    function of no arguments returning one.

    The file is run as Python code, with this process's rights: name only files you trust.  With ``check`` (the
    default) it is first imported, and NAME returned, in a child process, so that a file that ends the process
    (``sys.exit``, ``os._exit``), raises (``KeyboardInterrupt`` included) or runs past ``$FLOWCERT_IMPORT_TIMEOUT``
    seconds (default 60) is refused in one line instead of ending flowcert with no output; then it is imported
    here, under the same rules (an alarm for the time limit, in the main thread).  The file therefore runs twice.

    Raises:
        InputError: no such file, no NAME in it, NAME not a model, or the file failed, exited or ran too long.
    """
    from ..numcore.checks import import_timeout

    path, attr = _split_ref(ref)
    seconds = import_timeout()
    if check:
        _check_in_child(ref, path, attr, seconds)
    return _load_here(ref, path, attr, seconds)


def builtin_folder(name: str) -> str | None:
    """The folder of a model shipped with flowcert, or None."""
    rel = BUILTIN_MODELS.get(name)
    if rel is None:
        return None
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), rel)
    return path if os.path.isdir(path) else None


def input_files(source) -> list[str]:
    """The files a model source reads, which no output of the same command may replace: every file in a diffusers
    folder (and a scheduler config it takes from ``../scheduler/``), the ``FILE.py`` of ``FILE.py:NAME``, the spec
    of ``mixture:SPEC``, the shipped model's folder; nothing for a model object.  Paths, not opened."""
    if not isinstance(source, (str, os.PathLike)):
        return []
    source = os.fspath(source)
    if source.startswith("mixture:"):
        return [source[len("mixture:"):]]
    folder = source if os.path.isdir(source) else builtin_folder(source) if ".py:" not in source else None
    if folder is None:
        return [source.rpartition(":")[0]] if ".py:" in source else []
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [os.path.join(root, n) for n in sorted(names)]
        if len(files) > MAX_FOLDER_FILES:
            raise InputError(f"`model` = {source!r}: more than {MAX_FOLDER_FILES} files in it: expected a model folder")
    outside = os.path.join(os.path.dirname(os.path.abspath(folder)), "scheduler", "scheduler_config.json")
    return files + ([outside] if os.path.lexists(outside) else [])


def load(source, *, prediction: str | None = None, device: str = "cpu") -> Denoiser:
    """A model from a :class:`~.denoiser.Denoiser`, a :class:`GaussianMixture`, ``mixture:SPEC``, ``FILE.py:NAME``,
    a diffusers folder, or the name of a shipped model (``digits``; a folder of that name wins)."""
    from ..numcore.mixture import GaussianMixture

    if isinstance(source, Denoiser):
        return source
    if isinstance(source, GaussianMixture):
        return exact_model(source, device=device)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"`model` = {source!r}: expected a folder, FILE.py:NAME, mixture:SPEC or a model")
    source = os.fspath(source)
    if source.startswith("mixture:"):
        from ..numcore.mixture import load as load_mixture

        return exact_model(load_mixture(source[len("mixture:"):]), device=device)
    if os.path.isdir(source):
        return load_diffusers(source, prediction=prediction, device=device)
    if ".py:" in source:
        return load_callable(source)
    shipped = builtin_folder(source)
    if shipped is not None:
        model = load_diffusers(shipped, prediction=prediction, device=device)
        model.name = source  # the shipped model's name, not its folder's
        return model
    raise InputError(f"`model` = {source!r}: no such folder (expected a diffusers folder, FILE.py:NAME, "
                     f"mixture:SPEC or a shipped model: {', '.join(BUILTIN_MODELS)})")
