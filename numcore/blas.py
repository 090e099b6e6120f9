"""numpy's and scipy's own BLAS on one thread, for a while.

The grid search's L-BFGS-B iterations and the sliced W2 of a study's rows call BLAS on tiny matrices (n = 31
free nodes; 64 directions x d <= 8): a multithreaded OpenBLAS wakes its threads for each call, and on a busy
machine they wait for a core, so that each call costs milliseconds of CPU (100x its work for L-BFGS-B, 15x for
the projections of the sliced W2).  :func:`one_thread` sets the thread count of the BLAS libraries that numpy
and scipy load (their wheels' own, found by threadpoolctl) to 1 and restores it; other libraries' pools
(torch's, numba's) keep their threads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import numpy as np


@functools.cache
def _ours() -> tuple:
    """threadpoolctl's controllers of the BLAS libraries under numpy's or scipy's installation."""
    import scipy
    from threadpoolctl import ThreadpoolController

    homes = tuple(os.path.dirname(os.path.dirname(m.__file__)) for m in (np, scipy))
    return tuple(lib for lib in ThreadpoolController().lib_controllers
                 if lib.user_api == "blas" and lib.filepath.startswith(homes))


_LOCK = threading.Lock()
_HELD = [0, []]  # blocks open now (over every thread), the thread counts to restore when the last one closes


@contextlib.contextmanager
def one_thread():
    """Within the block, numpy's and scipy's BLAS run on one thread (results are unchanged up to the summation
    order of a matrix product); the previous thread counts are restored when the last open block (of any thread:
    the study's searches run in two threads) closes."""
    libs = _ours()
    with _LOCK:
        if _HELD[0] == 0:
            _HELD[1] = [lib.num_threads for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _HELD[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _HELD[0] -= 1
            if _HELD[0] == 0:
                for lib, n in zip(libs, _HELD[1]):
                    lib.set_num_threads(n)
