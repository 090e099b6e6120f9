"""Files of a validation run folder: atomic writes (sub-folders created on demand), strict JSON,
torch checkpoints, and the lock that keeps a second process out of a folder in use.

Everything goes through :func:`numcore.io.write_atomic`; JSON is strict (no NaN or Infinity:
non-finite numbers are written as null).
"""

from __future__ import annotations

import io
import os

from ..numcore.checks import InputError
from ..numcore.io import read_json as _read_json
from ..numcore.io import to_json
from ..numcore.io import write_atomic as _write_atomic

LOCK_NAME = ".flowcert.lock"
# What a run writes into its folder (patterns relative to it): no input of the run may be one of them.
RUN_FILES = ("config.json", "grids.json", "amplification.json", "trajectory.json", "results.json", "summary.md",
             "*.png", "teacher/*", "jobs/*", "jacobian/*", LOCK_NAME, ".*.tmp")


def write_atomic(path, data) -> None:
    """numcore.io.write_atomic inside the run folder (its sub-folders are created on demand); an error
    names the file and says that the run can be resumed."""
    try:
        _write_atomic(path, data, "out", makedirs=True)
    except InputError as exc:
        raise InputError(f"{exc} (everything written before is kept: resume the run once this is fixed)") from None


def write_json(path, obj) -> None:
    """Strict JSON (non-finite numbers as null), written atomically."""
    write_atomic(path, to_json(obj, indent=1) + "\n")


def read_json(path):
    """A run file's JSON; InputError naming the file (unreadable, not a regular file, not JSON)."""
    return _read_json(path, "run file")


def torch_save_atomic(path, obj) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def torch_load_safe(path):
    """A torch checkpoint read with ``weights_only=True`` (tensors, numbers, strings and containers only: a pickle
    that would run code is refused, never executed), from the bytes of a regular file of at most 1 GiB (a FIFO or a
    device is refused before anything is read: torch would block on it).  Raises ValueError (with the reason) for
    a missing, special, truncated, foreign or code-bearing file; callers turn it into a one-line error that names
    the file."""
    import pickle
    import stat
    import warnings
    import zipfile

    import torch

    from ..numcore.io import read_bounded

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError("is missing") from None
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ValueError("is not a regular file (a FIFO, a device or a folder)")
    try:
        raw = read_bounded(path, "checkpoint")
    except InputError:
        raise ValueError("cannot be read (not a regular file, unreadable, or larger than 1 GiB)") from None
    try:
        with warnings.catch_warnings():  # torch warns on stderr about a foreign pickle protocol: the error says it
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError("cannot be loaded (it holds objects a checkpoint does not: refused by weights_only loading, "
                         "never run)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError,
            TypeError, IndexError, MemoryError, OverflowError):
        raise ValueError("cannot be loaded (truncated or not a checkpoint)") from None


class RunLock:
    """An exclusive lock on a run folder, held while a run writes into it.

    ``fcntl.flock`` on ``<folder>/.flowcert.lock`` where available: the kernel releases it when
    the process ends, however it ends, so a lock is never stale.  Elsewhere the file is created
    exclusively (``O_EXCL``) with the owner's pid; a file whose pid no longer runs is stale and
    is taken over.
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.fd = None

    def _busy(self, pid_text: str) -> InputError:
        pid = pid_text.strip() or "unknown"
        return InputError(f"run folder {self.folder!r} is in use by another flowcert process (pid {pid}, lock file "
                          f"{self.path!r}): wait for it to finish or stop it, then resume")

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self._acquire_excl()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise InputError(f"run folder {self.folder!r}: its lock file cannot be created: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                held_by = os.pread(fd, 32, 0).decode("ascii", "replace")
            finally:
                os.close(fd)
            raise self._busy(held_by) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: nothing of the run could be written either
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise InputError(f"run folder {self.folder!r}: its lock file cannot be written: {exc.strerror} "
                             "(everything written before is kept: resume the run once this is fixed)") from None
        self.fd = fd
        return self

    def _acquire_excl(self) -> "RunLock":  # pragma: no cover - not POSIX
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="ascii", errors="replace") as fh:
                        pid = fh.read(32)
                    os.kill(int(pid), 0)
                except (OSError, ValueError):  # no such process (or unreadable): a stale lock
                    os.unlink(self.path)
                    continue
                raise self._busy(pid) from None
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            return self
        raise self._busy("unknown")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except ImportError:  # pragma: no cover
            os.unlink(self.path)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
