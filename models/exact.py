"""The exact Gaussian mixture in torch: the score of p_t, Hessian-vector products (any device and dtype), and the
exact denoiser behind the model interface (:class:`ExactMixture`).

Score of p_t = sum_k pi_k N(alpha mu_k, S_k(t)), S_k = U diag(s_k) U^T, s_k = alpha^2 lam_k + 1 - alpha^2:

    z_k = U^T (x - alpha mu_k),   l_k = log pi_k - 1/2 sum log s_k - 1/2 |z_k|^2_{1/s_k},
    g_k = -U (z_k / s_k),          w = softmax(l),   s(x, t) = sum_k w_k g_k.

Hessian-vector products (for Jacobians of the flow):  H V = -sum_k w_k P_k V + sum_k w_k (g_k - s)(g_k - s)^T V,
in the centred form (no cancellation far from the means).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..numcore.checks import InputError
from .denoiser import Denoiser, Needs


def _functions(t):
    """(exp, expm1) for a float t (math's) or a tensor t (torch's, differentiable)."""
    return (torch.exp, torch.expm1) if torch.is_tensor(t) else (math.exp, math.expm1)


class TorchMixture:
    """The mixture's arrays as tensors, with the score and Hessian-vector products of p_t."""

    def __init__(self, mix, device="cpu", dtype=torch.float64):
        self.mix, self.device, self.dtype = mix, torch.device(device), dtype
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)  # noqa: E731
        self.log_w = as_t(np.log(mix.weights))
        self.means = as_t(mix.means)
        self.eigvals = as_t(mix.eigvals)
        self.U = None if mix.identity_basis else as_t(mix.basis[mix.group])  # (K, d, d), columns eigvecs
        # one shared variance sigma^2 for every component and direction: s(t) is a scalar
        self.iso_var = float(mix.eigvals[0, 0]) if mix.structure == "isotropic" else None
        self.half_sq_means = 0.5 * (self.means**2).sum(1)

    @property
    def d(self) -> int:
        return self.mix.d

    def _terms(self, x, t):
        """(w (n,K), z/s (n,K,d) in the eigenbasis, 1/s (K,d), score (n,d), g (n,K,d)); t a float or a 0-d tensor
        (then differentiable in it)."""
        exp, expm1 = _functions(t)
        alpha = exp(-t)
        s = alpha * alpha * self.eigvals + (-expm1(-2.0 * t))
        diff = x[:, None, :] - alpha * self.means[None]
        z = diff if self.U is None else torch.einsum("nkd,kde->nke", diff, self.U)
        zs = z / s
        logits = self.log_w - 0.5 * torch.log(s).sum(1) - 0.5 * (z * zs).sum(2)
        w = torch.softmax(logits, dim=1)
        g = -zs if self.U is None else -torch.einsum("nke,kde->nkd", zs, self.U)
        score = (w[:, :, None] * g).sum(1)
        return w, s, score, g

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """s(x, t) = grad log p_t(x) for x of shape (n, d).

        Shared isotropic variance: s(t) is a scalar and the softmax logits reduce to
        log pi_k + (alpha x.mu_k - alpha^2 |mu_k|^2 / 2) / s (the |x|^2 term cancels), so
        s(x, t) = -(x - alpha sum_k w_k mu_k) / s.
        """
        if self.iso_var is None:
            return self._terms(x, t)[2]
        exp, expm1 = _functions(t)
        alpha = exp(-t)
        s = alpha * alpha * self.iso_var + (-expm1(-2.0 * t))
        logits = self.log_w + (alpha * (x @ self.means.T) - (alpha * alpha) * self.half_sq_means) / s
        w = torch.softmax(logits, dim=1)
        return (alpha * (w @ self.means) - x) / s

    def score_and_hvp(self, x: torch.Tensor, t: float, V: torch.Tensor):
        """(s(x, t), H(x, t) V) with V of shape (n, d, m)."""
        w, s, score, g = self._terms(x, t)
        c = g - score[:, None, :]  # (n,K,d)
        cov_v = torch.einsum("nk,nkd,nkm->ndm", w, c, torch.einsum("nke,nem->nkm", c, V))
        if self.U is None:
            prec_v = (w @ (1.0 / s))[:, :, None] * V
        else:
            Vr = torch.einsum("kde,ndm->nkem", self.U, V)  # U^T V per component
            prec_v = torch.einsum("nk,kde,ke,nkem->ndm", w, self.U, 1.0 / s, Vr)
        return score, cov_v - prec_v

    def hessian(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """H(x, t) of shape (n, d, d)."""
        eye = torch.eye(self.d, dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)
        return self.score_and_hvp(x, t, eye)[1]


NULL_LABEL = -1  # class_labels = -1: the unconditional mixture (every component), as a null class does for a network


@dataclass
class ExactMixture(Denoiser):
    """The exact denoiser of a flowcert mixture behind the model interface (:class:`~.denoiser.Denoiser`): the
    oracle every model path is tested against.

    D(y, sigma) = (x + sigma_vp^2 s(x, t)) / alpha at x = alpha y, t = 1/2 log(1 + sigma^2), with the exact score
    of :class:`TorchMixture`; differentiable in y by autograd, so Jacobians of the model path can be checked
    against numcore's closed-form Hessians.

    A mixture with ``labels`` is also the exact class-conditional model: ``cond = {"class_labels": c}`` (one
    label, or one per sample) gives the denoiser of p_0(x | c), the components labelled c renormalised
    (:meth:`GaussianMixture.restrict`), and ``c = -1`` (:data:`NULL_LABEL`) the unconditional mixture, as a null
    class does for a network; so classifier-free guidance on it runs the same code as on a network.  Without
    labels a mixture takes no conditioning.
    """

    mix: object = None

    def __post_init__(self):
        super().__post_init__()
        self.tm = TorchMixture(self.mix, self.device, self.dtype)
        self._by_label = {NULL_LABEL: self.tm}
        if self.needs is None:
            self.needs = _needs(self.mix)

    def describe(self) -> dict:
        out = super().describe()
        label = self.cond.get("class_labels") if self.cond else None
        extra = {} if label is None else {"class_label": int(torch.as_tensor(label).reshape(-1)[0])}
        return {**{k: out[k] for k in ("name", "source", "shape", "d")}, "prediction": "score", "scaling": "vp",
                "noise": "t", **extra, **{k: v for k, v in out.items() if k not in ("name", "source", "shape", "d")}}

    def _mixture(self, label: int) -> TorchMixture:
        if label not in self._by_label:
            self._by_label[label] = TorchMixture(self.mix.restrict(label), self.device, self.dtype)
        return self._by_label[label]

    sigma_differentiable = True

    @staticmethod
    def _at(tm: TorchMixture, y: torch.Tensor, sigma) -> torch.Tensor:
        """D at one sigma: a float, or a 0-d tensor (then differentiable in it)."""
        if torch.is_tensor(sigma):
            sigma = sigma.to(device=y.device, dtype=y.dtype)
            alpha = 1.0 / torch.sqrt(1.0 + sigma * sigma)
            t = 0.5 * torch.log1p(sigma * sigma)
        else:
            alpha = 1.0 / math.sqrt(1.0 + sigma * sigma)
            t = 0.5 * math.log1p(sigma * sigma)
        sig_vp = sigma * alpha
        x = alpha * y
        return (x + sig_vp * sig_vp * tm.score(x, t)) / alpha

    def _labels(self, cond: dict, n: int) -> torch.Tensor | None:
        """The class label of each sample (n,), or None for the unconditional mixture."""
        if not cond:
            return None
        check_cond(self, cond)
        lab = torch.as_tensor(cond["class_labels"]).reshape(-1).cpu()
        if lab.numel() not in (1, n):
            raise InputError(f"`cond` class_labels has {lab.numel()} labels: expected 1 or one per sample ({n})")
        return lab.expand(n) if lab.numel() == 1 else lab

    def __call__(self, y: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        from .denoiser import per_sample

        n = y.shape[0]
        labels = self._labels(self.cond if cond is None else cond, n)
        yd = y.to(device=self.device, dtype=self.dtype)
        if torch.is_tensor(sigma) and sigma.requires_grad:  # differentiable in sigma (one sigma for all samples)
            if sigma.ndim != 0:
                raise InputError(f"`sigma` has shape {tuple(sigma.shape)}: a sigma that requires grad must be one "
                                 "number (0-d)")
            if labels is None:
                return self._at(self.tm, yd, sigma).to(device=y.device, dtype=y.dtype)
            out = yd.new_zeros(yd.shape)
            for c in torch.unique(labels).tolist():
                idx = torch.nonzero(labels == c).reshape(-1).to(yd.device)
                out = out.index_put((idx,), self._at(self._mixture(int(c)), yd[idx], sigma))  # out of place
            return out.to(device=y.device, dtype=y.dtype)
        s = per_sample(sigma, n)
        keys = s if labels is None else torch.stack([s, labels.double()], 1)
        groups = torch.unique(keys, dim=0) if keys.ndim == 2 else torch.unique(keys)
        if groups.shape[0] == 1:
            g = groups[0]
            tm = self.tm if labels is None else self._mixture(int(g[1]))
            out = self._at(tm, yd, float(g if labels is None else g[0]))
        else:
            out = torch.empty_like(yd)
            for g in groups:
                rows = (s == g) if labels is None else (s == g[0]) & (labels == int(g[1]))
                tm = self.tm if labels is None else self._mixture(int(g[1]))
                out[rows.to(yd.device)] = self._at(tm, yd[rows.to(yd.device)], float(g if labels is None else g[0]))
        return out.to(device=y.device, dtype=y.dtype)


def _needs(mix) -> Needs:
    """What the exact mixture takes: class_labels (its classes, or -1 for every component) when it has labels."""
    if mix.labels is None:
        return Needs(what=f"the mixture {mix.name!r}", accepted=())
    classes = mix.classes

    def check(cond):
        if "class_labels" not in cond:
            return
        lab = torch.as_tensor(cond["class_labels"])
        if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
            raise InputError(f"`cond` class_labels has dtype {str(lab.dtype).replace('torch.', '')}: expected "
                             "integer class labels")
        bad = [int(v) for v in lab.reshape(-1).tolist() if int(v) not in classes and int(v) != NULL_LABEL]
        if bad:
            raise InputError(f"`class_label` = {bad[0]}: expected one of the mixture's classes "
                             f"{', '.join(str(c) for c in classes)} (or {NULL_LABEL}: every component)")

    return Needs(what=f"the mixture {mix.name!r}", accepted=("class_labels",), null={"class_labels": torch.tensor(
        [NULL_LABEL])}, check=check)


def check_cond(model: Denoiser, cond: dict) -> None:
    """Conditioning against what the model takes (:class:`~.denoiser.Needs`): keys it does not take, required keys
    missing, and the model's own check of shapes and ranges, each refused in one line."""
    needs = model.needs
    if needs is None:
        return
    if needs.accepted is not None:
        unknown = [k for k in cond if k not in needs.accepted]
        if unknown:
            takes = (f"it takes {', '.join(needs.accepted)}" if needs.accepted else "it takes no conditioning")
            raise InputError(f"`cond` holds {', '.join(map(str, unknown))}, which {needs.what} does not take: "
                             f"expected only the forward's arguments ({takes})")
    missing = [k for k in needs.required if k not in cond]
    if missing:
        raise InputError(f"`cond` lacks {', '.join(missing)}: {needs.what} needs {', '.join(needs.required)}")
    if needs.check is not None:
        needs.check(cond)


def exact_model(mix, dtype=torch.float64, device: str = "cpu", cond: dict | None = None) -> ExactMixture:
    """The exact denoiser of a flowcert mixture as a model (:class:`ExactMixture`); ``cond`` = ``{"class_labels":
    c}`` makes it the exact class-conditional model of class c (a mixture with labels)."""
    model = ExactMixture(shape=(mix.d,), dtype=dtype, device=device, name=mix.name,
                         source="flowcert mixture (exact score)", mix=mix)
    if cond:
        check_cond(model, cond)
        model.cond = dict(cond)
    return model
