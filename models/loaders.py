"""Where models come from: diffusers folders on disk, ``FILE.py:NAME``, the shipped examples, and the exact mixture.

Sources: (a) a diffusers folder on disk (:func:`~.families.load_folder`: the class registry of
:mod:`.families`, conditional and flow-matching networks included; :func:`load_diffusers` is the older reader of
unconditional DDPM-family folders);
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

from ..numcore.checks import IMPORT_TIMEOUT_ENV, InputError, printable
from .denoiser import Denoiser, TorchModel
from .exact import exact_model

BUILTIN_MODELS = {"digits": "examples/digits/assets",  # shipped with the package (relative to the package root)
                  "digits-flow": "examples/digits_flow/assets"}
# the training and held-out data that ship with a shipped model (in its folder's data/), as .npy
BUILTIN_DATA = {"digits": {"train": "data/train.npy", "test": "data/test.npy"},
                "digits-flow": {"train": "data/train.npy", "test": "data/test.npy",
                                "train_labels": "data/train_labels.npy", "test_labels": "data/test_labels.npy"}}


# ----------------------------------------------------------------------------- (a) diffusers folders
MAX_FOLDER_FILES = 10_000  # files of a model folder counted as inputs (outputs may not replace them)


def load_diffusers(folder: str, *, prediction: str | None = None, shape=None, device: str = "cpu",
                   dtype: torch.dtype | None = None) -> TorchModel:
    """A diffusers folder on disk as a model: :func:`~.families.load_folder` (every family of its registry; the
    folder's files checked before diffusers reads them)."""
    from .families import load_folder

    return load_folder(folder, prediction=prediction, shape=shape, device=device, dtype=dtype)


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


def builtin_data(source) -> dict | None:
    """{'train': path, 'test': path} (and 'train_labels', 'test_labels' for a class-conditional one) of the data
    that ship with a shipped model named ``source`` (None for any other
    source, and where a folder of that name shadows the shipped model, as in :func:`load`)."""
    if not isinstance(source, str) or os.path.isdir(source):
        return None
    folder = builtin_folder(source)
    if folder is None or source not in BUILTIN_DATA:
        return None
    files = {k: os.path.join(folder, v) for k, v in BUILTIN_DATA[source].items()}
    return files if all(os.path.isfile(p) for p in files.values()) else None


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
