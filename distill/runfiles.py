"""Files of a validation run folder: atomic writes (sub-folders created on demand), JSON, torch checkpoints.

Everything goes through :func:`numcore.io.write_atomic`.
"""

from __future__ import annotations

import io
import json

import numpy as np

from ..numcore.io import read_json  # noqa: F401  (the run folder's JSON reader)
from ..numcore.io import write_atomic as _write_atomic


def write_atomic(path, data) -> None:
    """numcore.io.write_atomic inside the run folder (its sub-folders are created on demand)."""
    _write_atomic(path, data, "out", makedirs=True)


def write_json(path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=False, default=_jsonable))


def _jsonable(o):
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def torch_save_atomic(path, obj) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())
