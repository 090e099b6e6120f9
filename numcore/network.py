"""A framework-free ReLU-ReQU network: a list of layers and one affine output map.

    z_0 = x,   z_{l+1} = act_l(W_l z_l + b_l),   N(x) = W_out z_H + b_out

with a per-neuron activation ``act_l[j]``: 0 = ReLU max(0, u), 1 = ReQU max(0, u)^2.

Sizes (the conventions of the size formulas in :mod:`bounds.sizes`):
depth = H (number of hidden layers), width = largest hidden layer,
params = nonzero entries of every W and b, output map included.

Evaluation runs a compiled kernel over the rows of a CSR copy of the weights
(the constructions are sparse), in parallel over chunks of points.  Files are
``.npz`` archives with ``W{l}`` (out x in), ``b{l}``, ``act{l}`` (uint8) for
l = 0..H-1, then ``W_out`` and ``b_out``; :meth:`Network.save` writes them
atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from . import jitcache

RELU, REQU = 0, 1
_JIT = dict(cache=jitcache.enabled(), fastmath=False, nogil=True)


@dataclass(frozen=True)
class Layer:
    """One hidden layer: W (out, in), b (out,), act (out,) uint8 (0 ReLU, 1 ReQU)."""

    W: np.ndarray
    b: np.ndarray
    act: np.ndarray
    name: str = ""


@dataclass(eq=False)
class Network:
    """Hidden layers plus an affine output map; see the module docstring."""

    layers: list
    W_out: np.ndarray
    b_out: np.ndarray
    meta: dict = field(default_factory=dict)
    _csr: tuple | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ sizes
    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def width(self) -> int:
        return max(L.W.shape[0] for L in self.layers)

    @property
    def widths(self) -> list[int]:
        return [L.W.shape[0] for L in self.layers]

    @property
    def params(self) -> int:
        """Nonzero entries of all weights and biases, output map included."""
        n = sum(np.count_nonzero(L.W) + np.count_nonzero(L.b) for L in self.layers)
        return int(n + np.count_nonzero(self.W_out) + np.count_nonzero(self.b_out))

    def layer_params(self) -> list[int]:
        return [int(np.count_nonzero(L.W) + np.count_nonzero(L.b)) for L in self.layers]

    @property
    def n_in(self) -> int:
        return self.layers[0].W.shape[1]

    @property
    def n_out(self) -> int:
        return self.W_out.shape[0]

    # ------------------------------------------------------------- evaluation
    def _compiled(self):
        if self._csr is None:
            mats = [L.W for L in self.layers] + [self.W_out]
            biases = [L.b for L in self.layers] + [self.b_out]
            acts = [L.act.astype(np.int64) for L in self.layers] + [np.full(self.n_out, -1, np.int64)]
            row_off, indptr, indices, data, b, a = [0], [0], [], [], [], []
            for W, bb, aa in zip(mats, biases, acts):
                for r in range(W.shape[0]):
                    nz = np.flatnonzero(W[r])
                    indices.append(nz)
                    data.append(W[r, nz])
                    indptr.append(indptr[-1] + nz.size)
                b.append(bb)
                a.append(aa)
                row_off.append(row_off[-1] + W.shape[0])
            self._csr = (
                np.asarray(row_off, np.int64), np.asarray(indptr, np.int64),
                np.concatenate(indices).astype(np.int64) if indices else np.zeros(0, np.int64),
                np.concatenate(data).astype(np.float64) if data else np.zeros(0),
                np.concatenate(b).astype(np.float64), np.concatenate(a),
                int(max(self.n_in, max(W.shape[0] for W in mats))),
            )
        return self._csr

    def __call__(self, x) -> np.ndarray:
        """N(x) for points x of shape (n, n_in), compiled kernel."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
        if x.ndim == 1 and self.n_in == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"x has shape {x.shape}: expected (n, {self.n_in})")
        row_off, indptr, indices, data, b, act, wmax = self._compiled()
        out = np.empty((x.shape[0], self.n_out))
        threads = nb.get_num_threads()
        size = max(1, -(-x.shape[0] // (4 * threads)))
        nch = -(-x.shape[0] // size) if x.shape[0] else 0
        _forward(x, row_off, indptr, indices, data, b, act, wmax, size, nch, out)
        return out

    def forward_numpy(self, x) -> np.ndarray:
        """The same map with dense numpy matrix products (reference and baseline)."""
        z = np.asarray(x, dtype=np.float64)
        if z.ndim == 1 and self.n_in == 1:
            z = z[:, None]
        for L in self.layers:
            u = z @ L.W.T + L.b
            r = np.maximum(u, 0.0)
            z = np.where(L.act == REQU, r * r, r)
        return z @ self.W_out.T + self.b_out

    # ------------------------------------------------------------------ files
    def arrays(self) -> dict:
        out = {}
        for l, L in enumerate(self.layers):
            out[f"W{l}"] = L.W
            out[f"b{l}"] = L.b
            out[f"act{l}"] = L.act.astype(np.uint8)
        out["W_out"] = self.W_out
        out["b_out"] = self.b_out
        return out

    def save(self, path: str, param: str = "export") -> str:
        """Write the .npz archive atomically (:func:`numcore.io.write_atomic`); InputError names the file."""
        from .io import write_atomic

        buf = io.BytesIO()
        np.savez(buf, **self.arrays())
        return write_atomic(path, buf.getvalue(), param)

    @classmethod
    def load(cls, path: str) -> "Network":
        """A network from a .npz archive written by :meth:`save` (a regular file of at most 1 GiB; no
        pickled objects); InputError naming the file when it is not one."""
        import zipfile

        from .checks import InputError
        from .io import read_bounded

        raw = read_bounded(path, "network file")
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                H = 0
                while f"W{H}" in z:
                    H += 1
                layers = [Layer(z[f"W{l}"], z[f"b{l}"], z[f"act{l}"].astype(np.uint8)) for l in range(H)]
                return cls(layers, z["W_out"], z["b_out"])
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"network file {path!r} is not a flowcert network archive "
                             f"({type(exc).__name__})") from None


BLOCK = 64  # points evaluated together: the inner loop runs over them (contiguous, vectorised)


@nb.njit(parallel=True, **_JIT)
def _forward(x, row_off, indptr, indices, data, b, act, wmax, size, nchunks, out):
    n, n_in = x.shape
    nlayers = row_off.shape[0] - 1
    for c in nb.prange(nchunks):
        z = np.empty((wmax, BLOCK))
        u = np.empty((wmax, BLOCK))
        lo = c * size
        hi = min(n, (c + 1) * size)
        for p0 in range(lo, hi, BLOCK):
            nb_ = min(BLOCK, hi - p0)
            for i in range(n_in):
                for p in range(nb_):
                    z[i, p] = x[p0 + p, i]
            for l in range(nlayers):
                r0 = row_off[l]
                r1 = row_off[l + 1]
                for r in range(r0, r1):
                    acc = u[r - r0]
                    bias = b[r]
                    for p in range(nb_):
                        acc[p] = bias
                    for q in range(indptr[r], indptr[r + 1]):
                        w = data[q]
                        src = z[indices[q]]
                        for p in range(nb_):
                            acc[p] += w * src[p]
                    a = act[r]
                    if a == 0:
                        for p in range(nb_):
                            acc[p] = acc[p] if acc[p] > 0.0 else 0.0
                    elif a == 1:
                        for p in range(nb_):
                            v = acc[p] if acc[p] > 0.0 else 0.0
                            acc[p] = v * v
                width = r1 - r0
                if l == nlayers - 1:
                    for i in range(width):
                        for p in range(nb_):
                            out[p0 + p, i] = u[i, p]
                else:
                    for i in range(width):
                        for p in range(nb_):
                            z[i, p] = u[i, p]
