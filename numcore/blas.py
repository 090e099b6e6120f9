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

import numpy as np


@functools.cache
def _ours() -> tuple:
    """threadpoolctl's controllers of the BLAS libraries under numpy's or scipy's installation."""
    import scipy
    from threadpoolctl import ThreadpoolController

    homes = tuple(os.path.dirname(os.path.dirname(m.__file__)) for m in (np, scipy))
    return tuple(lib for lib in ThreadpoolController().lib_controllers
                 if lib.user_api == "blas" and lib.filepath.startswith(homes))


@contextlib.contextmanager
def one_thread():
    """Within the block, numpy's and scipy's BLAS run on one thread (results are unchanged up to the summation
    order of a matrix product); the previous thread counts are restored on exit."""
    libs = _ours()
    old = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, old):
            lib.set_num_threads(n)
