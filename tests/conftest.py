"""Shared fixtures and strategies: random mixtures of every covariance structure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from flowcert.numcore.mixture import from_spec


def random_spec(rng: np.random.Generator, d: int, K: int, structure: str, var_lo=0.05, var_hi=1.5, spread=2.0):
    """A spec with random weights and means; structure iso | iso_k | shared | diag_k | full_k."""
    w = rng.dirichlet(np.full(K, 2.0))
    w = np.maximum(w, 1e-3)
    w /= w.sum()
    means = rng.normal(scale=spread, size=(K, d))
    spec = {"weights": w.tolist(), "means": means.tolist()}
    logv = lambda size: np.exp(rng.uniform(np.log(var_lo), np.log(var_hi), size=size))  # noqa: E731
    if structure == "iso":
        spec["variance"] = float(logv(None))
    elif structure == "iso_k":
        spec["variance"] = logv(K).tolist()
    elif structure in ("shared", "full_k", "diag_k"):
        n = 1 if structure == "shared" else K
        covs = []
        for _ in range(n):
            Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
            if structure == "diag_k":
                Q = np.eye(d)
            covs.append((Q * logv(d)) @ Q.T)
        spec["cov"] = covs[0].tolist() if n == 1 else [c.tolist() for c in covs]
    else:
        raise ValueError(structure)
    return spec


STRUCTURES = ("iso", "iso_k", "shared", "diag_k", "full_k")


@st.composite
def mixtures(draw, structures=STRUCTURES, d_max=6, K_min=1, K_max=6, var_lo=0.05, var_hi=1.5):
    seed = draw(st.integers(0, 2**31 - 1))
    d = draw(st.integers(1, d_max))
    K = draw(st.integers(K_min, K_max))
    structure = draw(st.sampled_from(structures))
    rng = np.random.default_rng(seed)
    return from_spec(random_spec(rng, d, K, structure, var_lo, var_hi), name=f"random-{structure}-{seed}")


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


def _devices() -> list:
    """cpu, and cuda when torch sees a GPU (the GPU machine's run adds it; CI has none)."""
    out = ["cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            out.append("cuda")
    except ImportError:  # pragma: no cover - the base install
        pass
    return out


@pytest.fixture(params=_devices())
def device(request):
    """Every torch device present: each test that takes it runs on cpu, and on cuda where a GPU is visible."""
    if request.param == "cuda":
        request.applymarker(pytest.mark.gpu)
    return request.param


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped where torch sees no GPU."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
