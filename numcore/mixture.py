"""The Gaussian mixture p_0 = sum_k pi_k N(mu_k, Sigma_k) and its OU marginals.

A mixture is stored in spectral form, Sigma_k = U_g diag(lam_k) U_g^T, where
the basis U_g is either the identity (isotropic or diagonal covariances), one
basis shared by all components, or one basis per component.  Under the unit-rate
OU process dX = -X dt + sqrt(2) dW the marginal at time t is

    p_t = sum_k pi_k N(alpha mu_k, S_k(t)),   alpha = e^{-t},
    S_k(t) = alpha^2 Sigma_k + (1 - alpha^2) I = U_g diag(alpha^2 lam_k + 1 - alpha^2) U_g^T,

so every time-dependent quantity only rescales the eigenvalues.

Specs come from a mapping (a parsed JSON/YAML/TOML file) or a built-in name;
:func:`load` is the single entry point and raises :class:`InputError` with a
one-line message on bad input.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .checks import InputError, array, kind_of, name as check_name, printable, show_value

MAX_COMPONENTS = 1024
MAX_DIM = 1024
MAX_FULL_ENTRIES = 2**24  # K * d^2 for per-component full covariances
MAX_FILE_BYTES = 64 * 2**20
MAX_ABS_MEAN = 1e12  # |mu_ki|: squared distances, precision-weighted distances and their products stay finite
MAX_VARIANCE = 1e12  # covariance eigenvalues (and |entries|) at most this, at least MIN_VARIANCE
MIN_VARIANCE = 1e-8
WEIGHT_TOL = 1e-6
MAX_LABEL = 2**31 - 1  # class labels: what a network's integer class embedding takes
SPEC_KEYS = ("name", "weights", "means", "variance", "cov", "labels")


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """A validated Gaussian mixture in spectral form.

    Attributes
    ----------
    weights : (K,) mixture weights pi_k, positive, summing to 1.
    means : (K, d) component means mu_k.
    eigvals : (K, d) eigenvalues lam_{k,i} of Sigma_k (variances along the basis).
    basis : (G, d, d) orthonormal bases (columns are eigenvectors); G = 0 means the
        identity, G = 1 one shared basis, G = K one basis per component.
    structure : "isotropic" (Sigma_k = sigma^2 I shared), "shared" (one Sigma for
        all components), or "component" (covariances differ between components).
    name : label used in reports.
    labels : (K,) optional class label of each component (integers >= 0), or None: the class-conditional
        density of class c is the mixture restricted to the components labelled c, renormalised
        (:meth:`restrict`).
    """

    weights: np.ndarray
    means: np.ndarray
    eigvals: np.ndarray
    basis: np.ndarray
    structure: str
    name: str = "mixture"
    labels: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def classes(self) -> tuple:
        """The distinct class labels, ascending (empty without labels)."""
        return () if self.labels is None else tuple(int(c) for c in np.unique(self.labels))

    def restrict(self, label: int) -> "GaussianMixture":
        """The class-conditional mixture p_0(x | c): the components labelled ``label``, weights renormalised.

        Raises:
            InputError: a mixture without labels, or a label no component has.
        """
        if self.labels is None:
            raise InputError(f"`class_label` = {label!r}: mixture {self.name!r} has no labels: expected a spec with "
                             "labels (a class per component)")
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) \
                or int(label) not in self.classes:
            raise InputError(f"`class_label` = {show_value(label)}: expected one of the mixture's classes "
                             f"{', '.join(str(c) for c in self.classes)}")
        key = ("restrict", int(label))
        if key not in self._cache:
            keep = np.flatnonzero(self.labels == int(label))
            spec = self.to_spec()
            sub = {"weights": (self.weights[keep] / self.weights[keep].sum()).tolist(),
                   "means": self.means[keep].tolist(), "labels": [int(label)] * keep.size}
            if "variance" in spec:
                v = spec["variance"]
                sub["variance"] = v if np.ndim(v) == 0 else [v[k] for k in keep]
            else:
                c = np.asarray(spec["cov"])
                sub["cov"] = c.tolist() if c.ndim == 2 else c[keep].tolist()
            self._cache[key] = from_spec(sub, name=f"{self.name}[class {int(label)}]")
        return self._cache[key]

    @property
    def K(self) -> int:
        return self.means.shape[0]

    @property
    def d(self) -> int:
        return self.means.shape[1]

    @property
    def group(self) -> np.ndarray:
        """Index of the basis used by each component (all 0 unless G = K)."""
        G = self.basis.shape[0]
        return np.arange(self.K, dtype=np.int64) if G == self.K and G > 1 else np.zeros(self.K, np.int64)

    @property
    def identity_basis(self) -> bool:
        return self.basis.shape[0] == 0

    @property
    def covs(self) -> np.ndarray:
        """(K, d, d) covariance matrices Sigma_k."""
        if "covs" not in self._cache:
            if self.identity_basis:
                out = np.zeros((self.K, self.d, self.d))
                idx = np.arange(self.d)
                out[:, idx, idx] = self.eigvals
            else:
                U = self.basis[self.group]
                out = (U * self.eigvals[:, None, :]) @ np.swapaxes(U, 1, 2)
            self._cache["covs"] = out
        return self._cache["covs"]

    @property
    def coordinate_variances(self) -> np.ndarray:
        """(K, d) diagonals of the Sigma_k, without building the (K, d, d) matrices."""
        if self.identity_basis:
            return self.eigvals
        U = self.basis[self.group] if self.basis.shape[0] > 1 else self.basis[0][None]
        return np.einsum("kij,kj->ki", U**2, self.eigvals)

    @property
    def isotropic_components(self) -> bool:
        """Every Sigma_k is a multiple of the identity (variances may differ)."""
        return bool(np.all(self.eigvals == self.eigvals[:, :1]))

    def marginal_eigvals(self, t: float) -> np.ndarray:
        """(K, d) eigenvalues of S_k(t) = alpha^2 Sigma_k + (1 - alpha^2) I (no cancellation)."""
        a2 = np.exp(-2.0 * t)
        return a2 * self.eigvals + (-np.expm1(-2.0 * t))

    def describe(self) -> dict:
        """Plain-data summary: sizes, structure, geometry constants (and the classes, with labels)."""
        sq = (self.means**2).sum(1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * self.means @ self.means.T, 0.0))
        off = dist[~np.eye(self.K, dtype=bool)]
        extra = {} if self.labels is None else {"classes": list(self.classes), "labels": self.labels.tolist()}
        return {**extra,
            "name": self.name,
            "K": self.K,
            "d": self.d,
            "structure": self.structure,
            "weights": self.weights.tolist(),
            "diameter": float(dist.max()),
            "min_separation": float(off.min()) if off.size else 0.0,
            "max_mean_norm": float(np.sqrt((self.means**2).sum(1)).max()),
            "min_variance": float(self.eigvals.min()),
            "max_variance": float(self.eigvals.max()),
        }

    def to_spec(self) -> dict:
        """A spec mapping that :func:`from_spec` turns back into this mixture."""
        spec = {"name": self.name, "weights": self.weights.tolist(), "means": self.means.tolist()}
        if self.labels is not None:
            spec["labels"] = self.labels.tolist()
        if self.structure == "isotropic":
            spec["variance"] = float(self.eigvals[0, 0])
        elif self.isotropic_components:
            spec["variance"] = self.eigvals[:, 0].tolist()
        elif self.structure == "shared":
            spec["cov"] = self.covs[0].tolist()
        else:
            spec["cov"] = self.covs.tolist()
        return spec


# ----------------------------------------------------------------------------- construction


def from_spec(spec, *, name: str = "mixture") -> GaussianMixture:
    """Validate a spec mapping and build the mixture.

    Keys: ``weights`` (optional, K positive numbers summing to 1 within 1e-6;
    default equal), ``means`` (K x d), and exactly one of ``variance`` (a number,
    or K numbers) or ``cov`` (one d x d matrix, or K of them); ``name`` optional;
    ``labels`` optional (K class labels, integers >= 0: a class per component).
    """
    if not isinstance(spec, dict):
        raise InputError(f"mixture spec is {kind_of(spec)}: expected a mapping with keys means, variance or cov")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        import difflib

        k = unknown[0]  # shown only when it is a plain word (a field name), never arbitrary content
        word = isinstance(k, str) and re.fullmatch(r"[A-Za-z_]{1,16}", k) is not None
        near = difflib.get_close_matches(k, SPEC_KEYS, n=1, cutoff=0.7) if word else []
        shown = (f"{k!r}" + (f" (did you mean {near[0]!r}?)" if near else "")) if word else "(not shown)"
        raise InputError(f"unknown key {shown} in mixture spec: expected only {', '.join(SPEC_KEYS)}")
    if "name" in spec and spec["name"] is not None:
        name = check_name("name", spec["name"])
    else:
        name = printable(name)  # a name flowcert derived (a file's stem): escaped, never refused
    if "means" not in spec:
        raise InputError("means is missing: expected a K x d list of component means")
    means = array("means", spec["means"], ndim=(1, 2), what="a K x d list of component means")
    if means.ndim == 1:
        raise InputError(
            f"means has shape {means.shape}: expected K x d (write [[m1], [m2]] for d = 1)"
        )
    K, d = means.shape
    _in_range("means", means, MAX_ABS_MEAN)
    if K == 0 or d == 0:
        raise InputError(f"means has shape {means.shape}: expected at least one component (K >= 1) and d >= 1")
    if K > MAX_COMPONENTS:
        raise InputError(f"means has K = {K} components: expected K <= {MAX_COMPONENTS}")
    if d > MAX_DIM:
        raise InputError(f"means has dimension d = {d}: expected d <= {MAX_DIM}")

    if "weights" in spec and spec["weights"] is not None:
        w = array("weights", spec["weights"], ndim=1, shape=(K,), what=f"{K} weights (one per mean)")
        if np.any(w <= 0):
            raise InputError(f"weights = {show_value(w)}: expected positive numbers")
        if abs(w.sum() - 1.0) > WEIGHT_TOL:
            raise InputError(f"weights sum to {w.sum():.9g}: expected 1 within {WEIGHT_TOL:g}")
        w = w / w.sum()
    else:
        w = np.full(K, 1.0 / K)
    labels = _labels(spec.get("labels"), K)

    has_var, has_cov = "variance" in spec, "cov" in spec
    if has_var == has_cov:
        raise InputError(
            "mixture spec has "
            + ("both variance and cov" if has_var else "neither variance nor cov")
            + ": expected exactly one of them"
        )
    if has_var:
        v = array("variance", spec["variance"], ndim=(0, 1), what=f"a number or {K} numbers")
        if v.ndim == 1 and v.shape[0] != K:
            raise InputError(f"variance has {v.shape[0]} entries: expected a number or {K} numbers (one per mean)")
        if np.any(v <= 0):
            raise InputError(f"variance = {show_value(v)}: expected positive numbers")
        _in_range("variance", v, MAX_VARIANCE)
        eig = np.broadcast_to(np.reshape(v, (-1, 1)), (K, d)).astype(np.float64).copy()
        structure = "isotropic" if (v.ndim == 0 or np.all(v == v[0])) else "component"
        return _build(w, means, eig, np.zeros((0, d, d)), structure, name, labels)

    c = array("cov", spec["cov"], ndim=(2, 3), what=f"a {d} x {d} matrix or {K} of them")
    if c.ndim == 2:
        c = c[None]
        shared = True
    else:
        shared = False
        if c.shape[0] != K:
            raise InputError(f"cov has {c.shape[0]} matrices: expected 1 or {K} (one per mean)")
    if c.shape[1:] != (d, d):
        raise InputError(f"cov has shape {tuple(c.shape[1:])} per matrix: expected {d} x {d} to match means")
    _in_range("cov", c, MAX_VARIANCE)
    if not shared and K * d * d > MAX_FULL_ENTRIES:
        raise InputError(
            f"cov has K*d^2 = {K * d * d} entries: expected at most {MAX_FULL_ENTRIES} for per-component covariances"
        )
    for k, ck in enumerate(c):
        scale = max(np.abs(ck).max(), 1e-300)
        if np.abs(ck - ck.T).max() > 1e-9 * scale:
            where = "cov" if shared else f"cov[{k}]"
            i, j = np.unravel_index(np.argmax(np.abs(ck - ck.T)), ck.shape)
            raise InputError(
                f"{where} is not symmetric ({where}[{i}][{j}] = {ck[i, j]:g} but [{j}][{i}] = {ck[j, i]:g}): "
                "expected a symmetric positive-definite matrix"
            )
    c = 0.5 * (c + np.swapaxes(c, 1, 2))
    if not shared and np.all(c == c[0]):
        shared = True
        c = c[:1]
    diagonal = bool(np.all(c[:, ~np.eye(d, dtype=bool)] == 0.0))
    if diagonal:
        eig = np.diagonal(c, axis1=1, axis2=2).copy()
        basis = np.zeros((0, d, d))
    else:
        eig, basis = np.linalg.eigh(c)
    for k, ek in enumerate(eig):
        if ek.min() <= 0:
            where = "cov" if shared else f"cov[{k}]"
            raise InputError(
                f"{where} has smallest eigenvalue {ek.min():.3g}: expected a positive-definite matrix"
            )
    if shared:
        eig = np.broadcast_to(eig, (K, d)).copy()
        structure = "isotropic" if np.all(eig == eig[0, 0]) else "shared"
        if structure == "isotropic":
            basis = np.zeros((0, d, d))
    else:
        structure = "component"
        if not diagonal and np.allclose(basis, basis[0]):
            basis = basis[:1]
    return _build(w, means, eig, basis, structure, name, labels)


def _labels(value, K: int) -> np.ndarray | None:
    """The spec's optional ``labels``: K integers in [0, MAX_LABEL], each checked (one line per bad value)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise InputError(f"labels is {kind_of(value)}: expected a list of {K} class labels (one per mean)")
    if len(value) != K:
        raise InputError(f"labels has {len(value)} entries: expected {K} class labels (one per mean)")
    out = np.empty(K, np.int64)
    for k, v in enumerate(value):
        ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        if not ok and isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
            ok, v = True, int(v)
        if not ok:
            number = isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
            shown = f"= {show_value(v)}" if number else f"is {kind_of(v)}"
            raise InputError(f"labels[{k}] {shown}: expected a class label (an integer >= 0)")
        if not 0 <= int(v) <= MAX_LABEL:
            raise InputError(f"labels[{k}] = {int(v)}: expected a class label in [0, {MAX_LABEL}]")
        out[k] = int(v)
    return out


def _in_range(field: str, values: np.ndarray, limit: float) -> None:
    """Entries of a spec field within [-limit, limit]: beyond it, float64 overflows downstream."""
    big = np.abs(values).max() if values.size else 0.0
    if big > limit:
        raise InputError(f"{field} has an entry of magnitude {big:.3g}: expected at most {limit:g} (beyond it, "
                         "squared distances, precisions and their products overflow float64; rescale the data)")


def _build(w, means, eig, basis, structure, name, labels=None) -> GaussianMixture:
    if eig.min() < MIN_VARIANCE:
        raise InputError(f"variance {eig.min():.3g} is too small: expected variances >= {MIN_VARIANCE:g}")
    if eig.max() > MAX_VARIANCE:
        raise InputError(f"variance {eig.max():.3g} is too large: expected variances <= {MAX_VARIANCE:g} (larger "
                         "values overflow float64 in products of the covariances; rescale the data)")
    return GaussianMixture(
        weights=np.ascontiguousarray(w),
        means=np.ascontiguousarray(means),
        eigvals=np.ascontiguousarray(eig),
        basis=np.ascontiguousarray(basis),
        structure=structure,
        name=name,
        labels=labels,
    )


# ----------------------------------------------------------------------------- random mixtures
RANDOM_FAMILIES = ("isotropic", "shared-full", "per-component")


def random_spec(rng: np.random.Generator, d: int, K: int, family: str, *, var_lo: float = 0.01, var_hi: float = 1.0,
                spread: float = 2.0) -> dict:
    """A random mixture spec: weights Dirichlet(2) (floored at 1e-3), means N(0, spread^2 I), variances
    log-uniform in [var_lo, var_hi]; ``family`` is ``isotropic`` (one variance shared by every component and
    direction), ``shared-full`` (one full covariance, random rotation) or ``per-component`` (a full covariance
    per component)."""
    w = np.maximum(rng.dirichlet(np.full(K, 2.0)), 1e-3)
    spec = {"weights": (w / w.sum()).tolist(), "means": rng.normal(scale=spread, size=(K, d)).tolist()}
    logv = lambda size: np.exp(rng.uniform(np.log(var_lo), np.log(var_hi), size=size))  # noqa: E731
    if family == "isotropic":
        spec["variance"] = float(logv(None))
        return spec
    if family not in RANDOM_FAMILIES:
        raise InputError(f"`family` = {family!r}: expected one of {', '.join(RANDOM_FAMILIES)}")
    covs = []
    for _ in range(1 if family == "shared-full" else K):
        Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        covs.append((Q * logv(d)) @ Q.T)
    spec["cov"] = covs[0].tolist() if family == "shared-full" else [c.tolist() for c in covs]
    return spec


def random_mixtures(count: int, seed: int = 0, *, d_max: int = 8, K_min: int = 2, K_max: int = 8) -> list:
    """``count`` seeded random mixtures: family cycling through :data:`RANDOM_FAMILIES`, d uniform in
    1..d_max, K uniform in K_min..K_max (:func:`random_spec`); mixture i depends on (seed, i) only."""
    out = []
    for i in range(int(count)):
        rng = np.random.default_rng([int(seed), i])
        family = RANDOM_FAMILIES[i % len(RANDOM_FAMILIES)]
        d, K = int(rng.integers(1, d_max + 1)), int(rng.integers(K_min, K_max + 1))
        out.append(from_spec(random_spec(rng, d, K, family), name=f"random{seed}-{i}-{family}-d{d}-K{K}"))
    return out


# ----------------------------------------------------------------------------- built-ins


def _ring8():
    ang = 2 * np.pi * np.arange(8) / 8
    return {"means": (2.0 * np.stack([np.cos(ang), np.sin(ang)], 1)).tolist(), "variance": 0.01}


def _square4():
    return {"means": [[1.5, 1.5], [1.5, -1.5], [-1.5, 1.5], [-1.5, -1.5]], "variance": 0.01}


def _line2():
    return {"means": [[-2.0], [2.0]], "variance": 0.05}


def _modes8d():
    rng = np.random.default_rng(20260602)
    u = rng.standard_normal((8, 8))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return {"means": (2.0 * u).tolist(), "variance": 0.04}


def _aniso3():
    return {
        "weights": [0.5, 0.3, 0.2],
        "means": [[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0]],
        "cov": [[0.05, 0.03], [0.03, 0.03]],
    }


def _hetero3():
    return {
        "weights": [0.4, 0.35, 0.25],
        "means": [[-1.5, -0.5], [1.5, -0.5], [0.0, 1.8]],
        "cov": [
            [[0.02, 0.0], [0.0, 0.02]],
            [[0.08, 0.03], [0.03, 0.02]],
            [[0.01, -0.004], [-0.004, 0.05]],
        ],
    }


BUILTINS = {
    "ring8": ("8 equal modes on a circle of radius 2 in R^2, variance 0.01", _ring8),
    "square4": ("4 modes at (+-1.5, +-1.5) in R^2, variance 0.01", _square4),
    "line2": ("2 modes at +-2 in R^1, variance 0.05", _line2),
    "modes8d": ("8 modes at distance 2 from the origin in R^8 (fixed-seed directions), variance 0.04", _modes8d),
    "aniso3": ("3 unequal modes in R^2 sharing one anisotropic full covariance", _aniso3),
    "hetero3": ("3 unequal modes in R^2, each with its own full covariance", _hetero3),
}


def builtin(name: str) -> GaussianMixture:
    """A built-in mixture by name (see :data:`BUILTINS`)."""
    return from_spec(BUILTINS[name][1](), name=name)


# ----------------------------------------------------------------------------- files


def _read_file(path: str):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".yaml", ".yml", ".toml"):
        raise InputError(f"mixture file {path!r} has extension {ext or '(none)'!r}: expected .json, .yaml, .yml "
                         "or .toml")
    from .io import read_document

    # NaN and Infinity parse as numbers here: the spec checks refuse them by field (`means contains nan`)
    return read_document(path, "mixture file", {".yml": "yaml"}.get(ext, ext[1:]), limit=MAX_FILE_BYTES,
                         constants=True)


def load(spec: str) -> GaussianMixture:
    """A mixture from a built-in name or a spec file path."""
    if spec in BUILTINS:
        return builtin(spec)
    if not os.path.exists(spec):
        raise InputError(
            f"mixture {spec!r} is neither a file nor a built-in: expected a path or one of {', '.join(BUILTINS)}"
        )
    data = _read_file(spec)
    base = printable(os.path.splitext(os.path.basename(spec))[0])
    try:
        return from_spec(data, name=base)
    except InputError as exc:
        raise InputError(f"mixture file {spec!r}: {exc}") from None
