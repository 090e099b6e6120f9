"""Where numba caches compiled kernels, decided once per process.

numba caches next to the source (``__pycache__``) or in the user's cache folder.  In a read-only
installation run by a user without a writable home neither works and numba refuses to define a
cached function ("no locator available").  Then the kernels are cached in a private folder of
this user under the temporary directory (created with mode 0700, and used only if it is a real
folder owned by this user and closed to others: a compiled-code cache is executable content), or,
when even that fails, compiled in every run.  Either fallback prints one note on standard error.
"""

from __future__ import annotations

import sys
import tempfile

_DECISION: bool | None = None


def _probe() -> bool:
    """Can numba define a cached function in this folder with the current settings?"""
    import numba

    def probe(x):  # pragma: no cover - never compiled, only registered
        return x

    try:
        numba.njit(cache=True)(probe)
    except RuntimeError:
        return False
    return True


def _note(text: str) -> None:
    sys.stderr.write(f"note: {text}\n")


def enabled() -> bool:
    """True when numba may cache (``cache=True`` is safe to pass), choosing a fallback folder if
    needed; False when every kernel is compiled in each run."""
    global _DECISION
    if _DECISION is not None:
        return _DECISION
    if _probe():
        _DECISION = True
        return True
    import numba

    from .io import private_folder

    private = private_folder("flowcert-numba")
    folders = [private] if private is not None else []
    if not folders:
        try:
            folders = [tempfile.mkdtemp(prefix="flowcert-numba-")]
        except OSError:
            folders = []
    for folder in folders:
        numba.config.CACHE_DIR = folder
        if _probe():
            _note(f"numba cannot cache next to flowcert or in the home folder; compiled kernels are cached "
                  f"in {folder}")
            _DECISION = True
            return True
    numba.config.CACHE_DIR = ""
    _note("numba has no writable cache folder; kernels are compiled in each run (slower start)")
    _DECISION = False
    return False
