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

MAX_READ_BYTES = 2**30  # the largest file flowcert reads back (run files)


def _umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status; elsewhere set and
    restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_destination(path, param: str = "output", inputs=()) -> str:
    """Check before any work that ``path`` can be written; return it as a string.

    Raises InputError when the folder is missing or not writable, the path is a folder or a
    special file (a device, a FIFO, a dangling link: only regular files are ever replaced),
    or the path is one of ``inputs`` (the input is never the output).
    """
    path = os.fspath(path)
    if not path:
        raise InputError(f"`{param}` is empty: expected a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"`{param}` = {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"`{param}` = {path!r}: is a folder, expected a file name")
    if os.path.lexists(path):
        mode = os.stat(path).st_mode if os.path.exists(path) else 0
        if not stat.S_ISREG(mode):
            raise InputError(f"`{param}` = {path!r}: exists and is not a regular file")
        for source in inputs:
            if source is not None and os.path.exists(os.fspath(source)) and _same_file(path, os.fspath(source)):
                raise InputError(f"`{param}` = {path!r}: is an input of this command (it would be overwritten); "
                                 "expected another file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"`{param}` = {path!r}: folder {folder!r} is not writable")
    return path


def check_outputs(outputs: dict, inputs=()) -> None:
    """:func:`check_destination` for each {param: path} (None skipped), and no two outputs the same file."""
    seen = {}
    for param, path in outputs.items():
        if path is None:
            continue
        check_destination(path, param, inputs)
        for other, prev in seen.items():
            if os.path.abspath(os.fspath(path)) == os.path.abspath(prev) or _same_file(os.fspath(path), prev):
                raise InputError(f"`{param}` = {os.fspath(path)!r}: the same file as `{other}`; expected another file")
        seen[param] = os.fspath(path)


def check_folder(path, param: str = "out") -> str:
    """Create the output folder ``path`` (and its parents) if needed and check that files can be
    created in it, before any work; InputError naming the folder otherwise."""
    path = os.fspath(path)
    if not path:
        raise InputError(f"`{param}` is empty: expected a folder name")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InputError(f"`{param}` = {path!r}: exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".flowcert-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"`{param}` = {path!r}: the folder cannot be written: {exc.strerror or exc}") from None
    return path


def write_atomic(path, data: bytes | str, param: str = "output", *, makedirs: bool = False) -> str:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` in one rename; return the path.

    The temporary file is created exclusively by ``tempfile.mkstemp`` in the destination's
    folder (a hidden name, never following a link), removed on any failure (KeyboardInterrupt
    included), given the permissions the umask gives a new file, and flushed to disk before the
    rename.  ``makedirs`` creates missing parent folders first (run folders); otherwise a missing
    folder is an error.

    Raises:
        InputError: the destination is not writable (missing folder, no permission, full disk,
            a special file); the message names the file.
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
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(f"`{param}` = {path!r} cannot be written: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def read_bounded(path, what: str = "file", limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file, at most ``limit`` (reads ``limit`` + 1 bytes to tell).

    The file is opened without blocking and checked on the open descriptor, so a FIFO, a
    device (a link to /dev/zero) or a folder is refused before anything is read.

    Raises:
        InputError: naming the file; never showing its content.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(f"{what} {path!r} cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
            raise InputError(f"{what} {path!r} is {kind}: expected a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputError(f"{what} {path!r} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise InputError(f"{what} {path!r} is larger than {limit} bytes: expected at most {limit} bytes")
    return b"".join(chunks)


def read_npy(path, what: str = "data", limit: int | None = None) -> np.ndarray:
    """The array in a ``.npy`` file, read without trusting the file: a regular file of at most ``limit`` bytes
    (default: the memory budget) read by :func:`read_bounded`, its header parsed on its own, the array built only
    when the bytes after the header hold exactly what the header claims, and never an object (pickled) array.

    Raises:
        InputError: naming the file and what is wrong (not a file, empty, not .npy, a corrupt header, object
            dtype, truncated or padded data); never showing its content.
    """
    from numpy.lib import format as npf

    from .checks import memory_budget

    path = os.fspath(path)
    raw = read_bounded(path, f"`{what}`", int(memory_budget()) if limit is None else limit)
    name = f"`{what}` = {path!r}"
    if not raw:
        raise InputError(f"{name} is empty: expected a .npy file (numpy.save)")
    buf = io.BytesIO(raw)
    try:
        version = npf.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = npf.read_array_header_2_0(buf)
        else:
            raise ValueError(f"format version {version}")
    except Exception:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors, ...
        raise InputError(f"{name} is not a .npy file numpy.save writes (its header does not parse): expected an "
                         "array saved with numpy.save") from None
    if dtype.hasobject:
        raise InputError(f"{name} holds Python objects (a pickle, never loaded): expected an array of numbers")
    count = math.prod(shape)
    need = count * dtype.itemsize
    have = len(raw) - buf.tell()
    if need != have:
        raise InputError(f"{name}: its header promises shape {tuple(shape)} of {dtype} ({need} bytes), the file holds "
                         f"{have} bytes after it: expected a complete .npy file (truncated or damaged?)")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=buf.tell())
    return arr.reshape(shape, order="F" if fortran else "C").copy()  # writable, independent of ``raw``


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


def read_json(path, what: str = "file"):
    """The JSON document in ``path`` (a regular file of at most 1 GiB); InputError naming the file
    if it is unreadable or not JSON (the message never shows the file's content)."""
    raw = read_bounded(path, what)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{what} {os.fspath(path)!r} is not UTF-8 text: expected JSON") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {os.fspath(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}") from None
    except (ValueError, RecursionError):
        raise InputError(f"{what} {os.fspath(path)!r} is not valid JSON") from None


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


def private_folder(name: str) -> str | None:
    """A folder of this user under the temporary directory (``<tmp>/<name>-<uid>``), created with mode
    0700 and used only if it is a real folder owned by this user and closed to others (caches hold
    content that is loaded back); None when no such folder can be had."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    path = os.path.join(tempfile.gettempdir(), f"{name}-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o077:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def _matplotlib_config() -> None:
    """Point MPLCONFIGDIR at a private folder when matplotlib's own (in the home folder) is not writable,
    so that a service user without a home gets no warnings from it."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    own = os.path.join(base, "matplotlib")
    try:
        os.makedirs(own, exist_ok=True)
        if os.access(own, os.W_OK | os.X_OK):
            return
    except OSError:
        pass
    folder = private_folder("flowcert-matplotlib")
    if folder is not None:
        os.environ["MPLCONFIGDIR"] = folder


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    _matplotlib_config()
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
