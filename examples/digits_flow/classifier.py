"""A small digits classifier that scores generated samples: a one-hidden-layer ReLU network trained by
scikit-learn's ``MLPClassifier`` on the real 8 x 8 training digits (x = v / 8 - 1), kept as plain arrays in a
``.npz`` file (never a pickle) and evaluated in numpy."""

from __future__ import annotations

import io

import numpy as np

from ...numcore.checks import InputError

HIDDEN = 64
ARRAYS = ("w1", "b1", "w2", "b2")


def fit(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """The classifier's arrays ``w1`` (64, H), ``b1`` (H,), ``w2`` (H, 10), ``b2`` (10,) fitted on (x, y)."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), alpha=1e-3, max_iter=1000, random_state=seed)
    clf.fit(np.asarray(x, np.float64), np.asarray(y))
    if list(clf.classes_) != list(range(10)):
        raise InputError("`y`: expected every digit 0..9 in the training labels")
    return {"w1": clf.coefs_[0].astype(np.float32), "b1": clf.intercepts_[0].astype(np.float32),
            "w2": clf.coefs_[1].astype(np.float32), "b2": clf.intercepts_[1].astype(np.float32)}


def logits(arrays: dict, x: np.ndarray) -> np.ndarray:
    """Class logits (n, 10) of images x (n, 64) in [-1, 1]."""
    h = np.maximum(np.asarray(x, np.float32).reshape(len(x), -1) @ arrays["w1"] + arrays["b1"], 0.0)
    return h @ arrays["w2"] + arrays["b2"]


def predict(arrays: dict, x: np.ndarray) -> np.ndarray:
    """Predicted digits (n,) of images x (n, 64) in [-1, 1]."""
    return np.argmax(logits(arrays, x), axis=1)


def npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: arrays[k] for k in ARRAYS})
    return buf.getvalue()


def load(path: str) -> dict:
    """The classifier's arrays from ``path`` (``allow_pickle=False``: object arrays are refused)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], np.float32) for k in ARRAYS}
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"`classifier`: {path!r} is not a flowcert digits classifier: {exc}") from None
    h = arrays["w1"].shape[1] if arrays["w1"].ndim == 2 else -1
    if arrays["w1"].shape != (64, h) or arrays["b1"].shape != (h,) or arrays["w2"].shape != (h, 10) or \
            arrays["b2"].shape != (10,):
        raise InputError(f"`classifier`: {path!r} has arrays of the wrong shapes")
    return arrays
