"""Classifier-free guidance as a denoiser: D_W = D_u + W (D_c - D_u) (diffusers' convention, Ho & Salimans 2022).

W = 1 is the conditional model alone, W = 0 the unconditional one.  :class:`GuidedDenoiser` is itself a
:class:`~.denoiser.Denoiser`, so guidance is applied before any solver, teacher or Jacobian sees the model, and
every study runs on the guided field as on any model.  The unconditional branch is either the same network with
other conditioning (a negative prompt, a null class: both branches then go through one network call of twice
the batch, as pipelines batch them) or another denoiser (the exact unconditional mixture).

By linearity the combination is the same on every parametrisation: guiding D, eps, the flow velocity v or the
score gives the same field (the coefficients 1 - W and W sum to 1), so D_W's score and velocity are

    s_W = (1 - W) s_u + W s_c,    v_W = (1 - W) v_u + W v_c,    J_W = (1 - W) J_u + W J_c.
"""

from __future__ import annotations

import torch

from ..numcore.checks import InputError, option
from .denoiser import Denoiser, per_sample


def _rows(value: torch.Tensor, n: int) -> torch.Tensor | None:
    """A conditioning tensor with n rows (a leading 1 broadcast), or None when its leading dimension is neither."""
    if value.ndim == 0 or value.shape[0] not in (1, n):
        return None
    return value.expand(n, *value.shape[1:]) if value.shape[0] == 1 else value


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and a.device == b.device and bool(torch.equal(a, b)))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that cannot be compared are not the same
        return False


def merge_branches(cond: dict, uncond: dict, n: int, shared=()) -> dict | None:
    """One conditioning for a batch of 2n samples: the conditional branch's n rows, then the unconditional
    branch's n rows (leading batches of 1 broadcast first); keys in ``shared`` and values that are not tensors
    must be the same in both and are passed once.  None when the two cannot share one call (other keys, other
    trailing shapes or dtypes, a tensor without rows)."""
    if set(cond) != set(uncond):
        return None
    out = {}
    for key, a in cond.items():
        b = uncond[key]
        if key in shared or not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            if not _same(a, b):
                return None
            out[key] = a
            continue
        ra, rb = _rows(a, n), _rows(b, n)
        if ra is None or rb is None or ra.shape[1:] != rb.shape[1:] or ra.dtype != rb.dtype or ra.device != rb.device:
            return None
        out[key] = torch.cat([ra, rb])
    return out


class GuidedDenoiser(Denoiser):
    """D_W(y, sigma) = D_u + W (D_c - D_u): classifier-free guidance of ``model`` (the conditional denoiser, with its
    own conditioning) by ``uncond`` (the unconditional branch: the same network's conditioning, a dict, or another
    :class:`~.denoiser.Denoiser`) at scale ``guidance`` (W >= 0; W = 1 the conditional model alone).

    ``GuidedDenoiser(model, uncond, W)``; shape, dtype, device and labels are the conditional model's, the trained
    range the intersection of both models'.  A call with ``cond`` replaces the conditional branch's conditioning;
    the unconditional branch stays."""

    def __init__(self, model: Denoiser, uncond, guidance: float = 1.0, *, name: str | None = None,
                 what: str | None = None):
        if not isinstance(model, Denoiser):
            raise InputError(f"`model` = {type(model).__name__}: expected a flowcert model (a Denoiser) to guide")
        W = option("guidance", guidance)
        if isinstance(uncond, Denoiser):
            if uncond.shape != model.shape:
                raise InputError(f"`uncond`: a model of shape {uncond.shape}: expected the conditional model's "
                                 f"shape {model.shape}")
        elif isinstance(uncond, dict):
            uncond = dict(uncond)
        else:
            raise InputError(f"`uncond` = {type(uncond).__name__}: expected the unconditional conditioning (a dict of "
                             "forward arguments) or an unconditional model")
        rng = model.sigma_range
        if isinstance(uncond, Denoiser) and uncond.sigma_range is not None:
            rng = uncond.sigma_range if rng is None else (max(rng[0], uncond.sigma_range[0]),
                                                          min(rng[1], uncond.sigma_range[1]))
        info = {**model.info, "guidance": W}
        if what:
            info["unconditional"] = what
        super().__init__(shape=model.shape, dtype=model.dtype, device=model.device, sigma_range=rng,
                         name=name or f"{model.name} (guidance {W:g})", source=model.source, info=info,
                         cond=model.cond, needs=None)
        self.model, self.uncond, self.guidance = model, uncond, W

    @property
    def passes(self) -> int:
        """Network passes per evaluation of D_W (per sample)."""
        return 1 if self.guidance in (0.0, 1.0) else 2

    def describe(self) -> dict:
        unc = self.uncond.describe() if isinstance(self.uncond, Denoiser) else {"cond": sorted(self.uncond)}
        return {**self.model.describe(), "name": self.name, "guidance": self.guidance, "unconditional": unc,
                "network_passes_per_evaluation": self.passes}

    def branches(self, y: torch.Tensor, sigma, cond: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(D_c, D_u) at (y, sigma): one network call of 2n samples where both branches are conditioning of the
        same network and can be batched, else two calls."""
        c = self.model.cond if cond is None else cond
        if isinstance(self.uncond, Denoiser):
            return self.model(y, sigma, c), self.uncond(y, sigma)
        n = y.shape[0]
        shared = self.model.needs.shared if self.model.needs is not None else ()
        both = merge_branches(c, self.uncond, n, shared)
        if both is None:
            return self.model(y, sigma, c), self.model(y, sigma, self.uncond)
        s = per_sample(sigma, n)
        out = self.model(torch.cat([y, y]), torch.cat([s, s]), both)
        return out[:n], out[n:]

    def __call__(self, y: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        W = self.guidance
        if W == 1.0:
            return self.model(y, sigma, self.model.cond if cond is None else cond)
        if W == 0.0:
            return self.uncond(y, sigma) if isinstance(self.uncond, Denoiser) else self.model(y, sigma, self.uncond)
        d_c, d_u = self.branches(y, sigma, cond)
        return d_u + W * (d_c - d_u)


def guided(model: Denoiser, uncond, guidance: float, *, what: str | None = None) -> GuidedDenoiser:
    """``model`` guided by ``uncond`` at scale ``guidance`` (:class:`GuidedDenoiser`), labelled for reports."""
    return GuidedDenoiser(model, uncond, guidance, what=what)
