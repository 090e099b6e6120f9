"""Files and the terminal: the one atomic writer, strict JSON, figures and progress bars.

Every file flowcert writes goes through :func:`write_atomic`: the bytes go to a
temporary file created exclusively (``tempfile.mkstemp``) in the destination's
folder, are flushed to disk, get the permissions the umask gives a new file,
and replace the destination by one rename.  A failure removes the temporary
file and raises :class:`~numcore.checks.InputError` naming the file.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
import tempfile

import numpy as np

from .checks import InputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_destination(path, param: str = "output") -> str:
    """Check before any work that ``path`` can be written; return it as a string.

    Raises InputError when the folder is missing or the path is a folder or a
    special file (a device, a FIFO): only regular files are ever replaced.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"`{param}` = {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"`{param}` = {path!r}: is a folder, expected a file name")
    if os.path.lexists(path):
        mode = os.stat(path).st_mode if os.path.exists(path) else 0
        if not stat.S_ISREG(mode):
            raise InputError(f"`{param}` = {path!r}: exists and is not a regular file")
    return path


def write_atomic(path, data: bytes | str, param: str = "output", *, makedirs: bool = False) -> str:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` in one rename; return the path.

    ``makedirs`` creates missing parent folders first (run folders); otherwise a
    missing folder is an error.

    Raises:
        InputError: the destination is not writable (missing folder, no permission,
            full disk, a special file); the message names the file.
    """
    if makedirs:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as exc:
            raise InputError(f"`{param}` = {os.fspath(path)!r}: its folder cannot be created: {exc.strerror}") from None
    path = check_destination(path, param)
    folder = os.path.dirname(os.path.abspath(path))
    payload = data.encode() if isinstance(data, str) else bytes(data)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(f"`{param}` = {path!r} cannot be written: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def jsonable(obj):
    """Plain JSON values: arrays to lists, numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(obj, indent: int | None = 2) -> str:
    """Strict JSON text (no NaN or Infinity: they become null) of dicts, lists, arrays and scalars."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def write_json(path, obj, param: str = "output") -> str:
    """:func:`to_json` of ``obj`` written atomically, with a trailing newline."""
    return write_atomic(path, to_json(obj) + "\n", param)


def read_json(path):
    """The JSON document in ``path``; InputError naming the file if it is unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise InputError(f"file {os.fspath(path)!r} cannot be read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"file {os.fspath(path)!r} is not valid JSON: {str(exc).splitlines()[0]}") from None


def npy_bytes(array) -> bytes:
    """The .npy encoding of ``array`` (for :func:`write_atomic`)."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def save_figure(fig, path, param: str = "plot", dpi: int = 120) -> str:
    """Render a matplotlib figure to PNG and write it atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return write_atomic(path, buf.getvalue(), param)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def progress(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on standard error (silent when disabled or not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled or None, leave=False,
                dynamic_ncols=True)


class _NoBar:
    """A progress bar that shows nothing (the default of library functions)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def close(self):
        pass


def no_progress(total: int = 0, desc: str = "") -> _NoBar:
    """The silent stand-in for :func:`progress`: library functions take either."""
    return _NoBar()
