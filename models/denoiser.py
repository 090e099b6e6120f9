"""The denoiser interface that every model shares, and the parametrisations of trained networks.

Every model flowcert studies is a :class:`Denoiser`: in VE coordinates (y = x / alpha, sigma = sqrt(e^{2t} - 1))

    D(y, sigma, cond=None) = E[x_0 | x_0 + sigma z = y]      y: (n, d) tensor, sigma: float or (n,) tensor,

returned in y's dtype and on y's device.  ``cond`` is the conditioning channel: keyword arguments of the
network's forward (a prompt embedding, a class label, ...) that the denoiser passes through untouched; ``None``
means the model's own (``Denoiser.cond``).  Solvers, teachers and Jacobian code only ever call ``D(y, sigma)``
and never read ``cond`` (guidance and conditioning are applied to the denoiser before a solver sees it).  The
exact mixture (:class:`~flowcert.models.exact.ExactMixture`) and trained networks (:class:`TorchModel`)
implement the same interface, so every study runs on both.

A network is a torch callable ``fn(x, noise_level, **cond)`` with a declared parametrisation, in the form of
Karras et al. 2022 (Table 1; k-diffusion's ``external.py``; Salimans & Ho 2022 for v), as three orthogonal
pieces looked up in registries:

    D(y, sigma) = c_skip(sigma) y + c_out(sigma) F(c_in(sigma) y, c_noise(sigma), **cond)

    scaling (c_in: what the network sees)       ``ve``: y;  ``vp``: x = alpha y = alpha x_0 + sigma_vp z
                                                 (alpha = 1 / sqrt(1 + sigma^2), sigma_vp = sigma alpha);
                                                 ``flow``: x_s = (1 - s) x_0 + s eps = y / (1 + sigma)
                                                 (flow matching / rectified flow, s = sigma / (1 + sigma))
    prediction (c_skip, c_out: what F is)        ``sample``: D;  ``epsilon``: eps (y = D + sigma eps);
                                                 ``v_prediction``: v = alpha eps - sigma_vp x_0 (D = alpha x - sigma_vp v);
                                                 ``score``: grad log p of the input variable (D = y + sigma^2 c_in s);
                                                 ``flow``: the flow-matching velocity v = eps - x_0
                                                 (D = x_s - s v = (y - sigma v) / (1 + sigma))
    noise map (c_noise: the noise-level input)   ``sigma``, ``t`` (OU time), ``logsnr`` (-2 log sigma), ``ddpm``
                                                 (the fractional training timestep n of a VP schedule: log alphabar_n
                                                 interpolated linearly between integer steps, exact at integer n),
                                                 ``flow`` (the flow time s) or ``flow1000`` (1000 s, the ``timestep``
                                                 diffusers' FlowMatch schedulers and SD3 pipelines pass)

These conversions are exact: a VP-trained model (DDPM, epsilon or v) evaluated at the timestep whose alphabar
equals alpha(sigma)^2 is the same function as its VE-sigma denoiser.  In OU time (alpha = e^{-t}, x = alpha y)
the score, the probability-flow velocity and its Jacobian are

    s(x, t) = (alpha D(x / alpha, sigma) - x) / sigma_vp^2,    v(x, t) = -x - s(x, t),
    J(x, t) = dv/dx = -I - (alpha^2 dD/dy - I) / sigma_vp^2       (dD/dy at y = x / alpha).

At the boundary the inputs move to the network's device and compute dtype (conditioning tensors too, a leading
batch dimension of 1 broadcast over the samples: :func:`batch_cond`); the output comes back in the state's
dtype and device.  What a network needs beside (x, noise level) is declared by :class:`Needs`.  Every
evaluation of every denoiser is checked there (:func:`checked`): a network that raises, returns something other
than a real floating tensor of d numbers per sample, or returns NaN or inf is refused with one line
(:class:`~numcore.checks.InputError`) naming the model and the noise level (VE sigma and OU time) where it failed,
instead of letting the failure surface as an internal error or as NaN in a report.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..numcore.checks import InputError


# ----------------------------------------------------------------------------- the parametrisation registries
def _alpha(sigma: float) -> float:
    return 1.0 / math.sqrt(1.0 + sigma * sigma)


@dataclass(frozen=True)
class Scaling:
    """What the network sees: its input is c_in(sigma) y."""

    name: str
    c_in: Callable[[float], float]
    what: str


@dataclass(frozen=True)
class Prediction:
    """What the network predicts: D = c_skip(sigma, c_in) y + c_out(sigma, c_in) F."""

    name: str
    c_skip: Callable[[float, float], float]
    c_out: Callable[[float, float], float]
    what: str


@dataclass(frozen=True)
class NoiseMap:
    """The noise-level input c_noise(sigma); ``table`` maps need the model's schedule (log alphabar)."""

    name: str
    c_noise: Callable[[float, np.ndarray | None], float]
    what: str
    table: bool = False


def _ddpm_step(sigma: float, log_alphabar: np.ndarray) -> float:
    la = -math.log1p(sigma * sigma)  # log alpha^2
    return float(np.interp(-la, -log_alphabar, np.arange(log_alphabar.size, dtype=float)))


def _flow_time(sigma: float) -> float:
    """The flow-matching time s = sigma / (1 + sigma) of VE sigma (x_s = (1 - s) x_0 + s eps = y / (1 + sigma))."""
    return sigma / (1.0 + sigma)


SCALINGS: dict[str, Scaling] = {s.name: s for s in (
    Scaling("ve", lambda sigma: 1.0, "the VE point y = x_0 + sigma z"),
    Scaling("vp", _alpha, "the VP point x = alpha y = alpha x_0 + sigma_vp z"),
    Scaling("flow", lambda sigma: 1.0 / (1.0 + sigma), "the flow point x_s = (1 - s) x_0 + s eps = y / (1 + sigma)"),
)}
PREDICTIONS: dict[str, Prediction] = {p.name: p for p in (
    Prediction("sample", lambda sigma, c_in: 0.0, lambda sigma, c_in: 1.0, "the denoised sample D"),
    Prediction("epsilon", lambda sigma, c_in: 1.0, lambda sigma, c_in: -sigma, "the noise eps, y = D + sigma eps"),
    Prediction("v_prediction", lambda sigma, c_in: _alpha(sigma) ** 2, lambda sigma, c_in: -sigma * _alpha(sigma),
               "v = alpha eps - sigma_vp x_0"),
    Prediction("score", lambda sigma, c_in: 1.0, lambda sigma, c_in: sigma * sigma * c_in,
               "the score of the input variable"),
    # y = x_0 + sigma eps and v = eps - x_0 give x_0 = (y - sigma v) / (1 + sigma) = x_s - s v, whatever the input
    Prediction("flow", lambda sigma, c_in: 1.0 / (1.0 + sigma), lambda sigma, c_in: -sigma / (1.0 + sigma),
               "the flow-matching velocity v = eps - x_0"),
)}
NOISE_MAPS: dict[str, NoiseMap] = {m.name: m for m in (
    NoiseMap("sigma", lambda sigma, tab: sigma, "the VE sigma"),
    NoiseMap("t", lambda sigma, tab: 0.5 * math.log1p(sigma * sigma), "the OU time t"),
    NoiseMap("logsnr", lambda sigma, tab: -2.0 * math.log(sigma), "the log-SNR -2 log sigma"),
    NoiseMap("ddpm", _ddpm_step, "the fractional DDPM training timestep", table=True),
    NoiseMap("flow", lambda sigma, tab: _flow_time(sigma), "the flow time s = sigma / (1 + sigma)"),
    NoiseMap("flow1000", lambda sigma, tab: 1000.0 * _flow_time(sigma),
             "1000 s, the timestep of diffusers' FlowMatch schedulers"),
)}


def per_sample(sigma, n: int) -> torch.Tensor:
    """sigma as a float64 tensor of shape (n,) on the CPU (a float is broadcast)."""
    s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
    if s.ndim == 0:
        return s.expand(n)
    if s.shape != (n,):
        raise InputError(f"`sigma` has shape {tuple(s.shape)}: expected a float or one sigma per sample ({n},)")
    return s


# ----------------------------------------------------------------------------- the boundary checks
def where(sigma) -> str:
    """A noise level in words, for messages: ``sigma = 0.1 (OU time t = 0.004975)``."""
    s = float(sigma)
    return f"sigma = {s:.4g} (OU time t = {0.5 * math.log1p(s * s):.4g})"


def _first_bad(bad: torch.Tensor, sigma: torch.Tensor) -> str:
    """The noise level of the first sample flagged in ``bad`` (n,), and how many are flagged."""
    rows = bad.nonzero()
    i = int(rows[0, 0]) if rows.numel() else 0
    k = int(rows.shape[0])
    return f"{where(sigma[i])}" + (f" ({k} of {bad.shape[0]} samples)" if bad.shape[0] > 1 else "")


def check_values(model, out: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor, what: str = "returned") -> None:
    """InputError unless ``out`` (n, ...) is a real floating tensor of finite numbers; the message names the model
    and the noise level of the first bad sample.  A non-finite input state is named as such (the trajectory
    diverged before this evaluation), not blamed on this evaluation."""
    n = y.shape[0]
    if not isinstance(out, torch.Tensor):
        raise InputError(f"`model` {model.name!r} {what} {type(out).__name__} at {where(sigma[0])}: expected a "
                         "tensor (or an output with .sample)")
    if not out.is_floating_point():
        raise InputError(f"`model` {model.name!r} {what} a tensor of dtype {str(out.dtype).replace('torch.', '')} "
                         f"at {where(sigma[0])}: expected real floating-point numbers")
    if out.ndim == 0 or out.shape[0] != n or out.numel() != n * model.d:
        raise InputError(f"`model` {model.name!r} {what} shape {tuple(out.shape)} for {n} input(s) of shape "
                         f"{model.shape} at {where(sigma[0])}: expected ({n}, ...) with {model.d} numbers per sample "
                         f"(shape ({n}, {', '.join(map(str, model.shape))}))")
    finite = torch.isfinite(out.detach().reshape(n, -1)).all(1)
    if bool(finite.all()):
        return
    state = torch.isfinite(y.detach().reshape(n, -1)).all(1)
    if not bool(state.all()):
        raise InputError(f"`model` {model.name!r}: its probability-flow state became NaN or inf before "
                         f"{_first_bad(~state, sigma)}: expected a model whose outputs stay finite and bounded (the "
                         "ODE diverged)")
    values = out.detach().reshape(n, -1)[~finite]
    kind = "NaN" if bool(torch.isnan(values).any()) else "inf"
    raise InputError(f"`model` {model.name!r} {what} {kind} at {_first_bad(~finite, sigma)}: expected finite numbers")


def checked(call):
    """Wrap a denoiser's ``__call__`` with the boundary checks: the model's exceptions become one line naming the
    model and the noise level (InputError passes through), and the output is checked by :func:`check_values`
    against the input's shape.  Applied to every subclass of :class:`Denoiser` that defines ``__call__``."""
    if getattr(call, "boundary_checked", False):
        return call

    @functools.wraps(call)
    def run(self, y, sigma, cond=None):
        try:
            out = call(self, y, sigma, cond)
        except InputError:
            raise
        except Exception as exc:  # the network's own failure, not flowcert's input checks
            s = per_sample(sigma, y.shape[0]) if isinstance(y, torch.Tensor) and y.ndim else torch.ones(1)
            text = " ".join(str(exc).split())[:160]
            raise InputError(f"`model` {self.name!r} raised {type(exc).__name__} at {where(s[0])}"
                             + (f": {text}" if text else "") + ": expected a network that evaluates (batch "
                             f"{y.shape[0] if isinstance(y, torch.Tensor) and y.ndim else '?'})") from None
        s = per_sample(sigma, y.shape[0])
        check_values(self, out, y, s)
        if tuple(out.shape) != tuple(y.shape):
            raise InputError(f"`model` {self.name!r} returned shape {tuple(out.shape)} for inputs {tuple(y.shape)} at "
                             f"{where(s[0])}: expected the input's shape")
        return out

    run.boundary_checked = True
    return run


def batch_cond(cond: dict, n: int, device, dtype) -> dict:
    """Conditioning as the network receives it: every tensor on the network's device (floating tensors in its
    dtype), a leading batch dimension of 1 broadcast over the n samples (a view); other values, and tensors
    whose leading dimension is not 1, are passed as they are.  A tensor already in place is passed itself."""
    out = {}
    for key, value in cond.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device=device)
            if value.ndim >= 1 and value.shape[0] == 1 and n != 1:
                value = value.expand(n, *value.shape[1:])
        out[key] = value
    return out


@dataclass(frozen=True)
class Needs:
    """What a network's forward needs beside (x, noise level): the conditioning it requires and accepts.

    Attributes:
        what: the network's name for messages (a diffusers class name).
        required: forward keyword arguments it cannot run without.
        accepted: every conditioning key it takes (None: anything).
        text: conditioned on text (classifier-free guidance then needs an unconditional input).
        classes: number of classes of ``class_labels`` (labels 0..classes-1), or None.
        null: the family's own unconditional conditioning (DiT's null class), or None.
        shared: keys without a batch dimension in the network call (the same for every sample, e.g. Flux's
            txt_ids): two guidance branches share one network call only when these are equal.
        check: ``check(cond)`` raises InputError (one line) on a value of the wrong shape or range, or None.
    """

    what: str
    required: tuple = ()
    accepted: tuple | None = None
    text: bool = False
    classes: int | None = None
    null: dict | None = None
    shared: tuple = ()
    check: Callable | None = None


# ----------------------------------------------------------------------------- the interface
@dataclass
class Denoiser:
    """The interface every model implements: ``D(y, sigma, cond=None)`` (module doc), with its OU-time score,
    velocity and Jacobian derived from it.

    Attributes:
        shape: the shape of one sample (d = prod(shape) numbers).
        dtype, device: the compute dtype and device of the denoiser (inputs are moved there; outputs come back
            in the state's dtype and device).
        sigma_range: (sigma_min, sigma_max) the model was trained on (VE), or None (unbounded).
        name, source, info: labels for reports.
        cond: the model's own conditioning (forward keyword arguments), used when a call passes none.
        needs: what the network's forward needs beside (x, noise level) (:class:`Needs`), or None (unknown).
    """

    shape: tuple
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    sigma_range: tuple | None = None
    name: str = "model"
    source: str = ""
    info: dict = field(default_factory=dict)
    cond: dict = field(default_factory=dict)
    needs: Needs | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:  # every implementation of D(y, sigma) gets the boundary checks
            cls.__call__ = checked(cls.__dict__["__call__"])

    def __post_init__(self):
        try:
            self.shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError):
            raise InputError(f"`shape` = {self.shape!r}: expected a tuple of positive integers") from None
        if not self.shape or min(self.shape) < 1:
            raise InputError(f"`shape` = {self.shape!r}: expected a tuple of positive integers")
        self.info, self.cond = dict(self.info), dict(self.cond or {})

    # ------------------------------------------------------------------ sizes
    @property
    def work_dtype(self) -> torch.dtype:
        """The dtype of the state around the network: its own, or float32 for a half-precision network (the score
        (alpha D - x) / sigma_vp^2 cancels at small sigma: the state never drops below float32)."""
        return self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float32

    @property
    def d(self) -> int:
        """Numbers per sample."""
        return int(np.prod(self.shape))

    def t_range(self) -> tuple[float, float] | None:
        """(t_min, t_max) in OU time of the trained sigma range, or None."""
        if self.sigma_range is None:
            return None
        lo, hi = self.sigma_range
        return 0.5 * math.log1p(lo * lo), 0.5 * math.log1p(hi * hi)

    def describe(self) -> dict:
        """What the model is, for reports (JSON-ready)."""
        return {"name": self.name, "source": self.source, "shape": list(self.shape), "d": self.d,
                "dtype": str(self.dtype).replace("torch.", ""),
                "sigma_range": list(self.sigma_range) if self.sigma_range else None, **self.info}

    # ------------------------------------------------------------------ the denoiser
    #: True when ``D(y, sigma)`` takes sigma as a 0-d float64 tensor that requires grad and is differentiable in
    #: it (the grid search's gradients need dD/dsigma); a model without it is searched without gradients
    sigma_differentiable = False

    def __call__(self, y: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        """D(y, sigma) for y of shape (n, d) in VE coordinates; sigma a float or (n,); shape (n, d), y's dtype."""
        raise NotImplementedError

    def denoise(self, y: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        """The same as calling the model: D(y, sigma) (kept for readability at call sites)."""
        return self(y, sigma, cond)

    # ------------------------------------------------------------------ OU time
    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """s(x, t) = grad log p_t(x) in OU coordinates, x of shape (n, d)."""
        alpha, var = math.exp(-t), -math.expm1(-2.0 * t)
        sigma = math.sqrt(math.expm1(2.0 * t))
        return (alpha * self(x.to(self.work_dtype) / alpha, sigma) - x) / var

    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """v(x, t) = -x - s(x, t), the forward-time probability-flow velocity."""
        return -x - self.score(x, t)

    def dense_jacobian(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """J(x, t) = dv/dx for each point, shape (n, d, d), by d reverse passes (for small d and checks)."""
        x = x.to(self.work_dtype).detach().requires_grad_(True)
        with torch.enable_grad():
            v = self.velocity(x, t)
            rows = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=i + 1 < v.shape[1])[0]
                    for i in range(v.shape[1])]
        return torch.stack(rows, 1).detach()


@dataclass
class TorchModel(Denoiser):
    """A torch network ``fn(x, noise_level, **cond)`` with a declared parametrisation, as a :class:`Denoiser`.

    Attributes (beside :class:`Denoiser`'s):
        fn: the network; x of shape (n, *shape) and noise_level of shape (n,), both on ``device`` in ``dtype``;
            returns a tensor (or an output with ``.sample``, or a tuple whose first item is the tensor) with
            d numbers per sample.
        prediction, scaling, noise: names in :data:`PREDICTIONS`, :data:`SCALINGS`, :data:`NOISE_MAPS`.
        log_alphabar: for ``ddpm``: log alphabar_n of the integer training steps n = 0..N-1.
        module: the torch module ``fn`` calls, where flowcert built it (a diffusers network: its config), or None.
    """

    fn: Callable = None
    prediction: str = "sample"
    scaling: str = "ve"
    noise: str = "sigma"
    log_alphabar: np.ndarray | None = None
    module: object = field(default=None, repr=False)

    def __post_init__(self):
        super().__post_init__()
        if not callable(self.fn):
            raise InputError(f"`fn` = {self.fn!r}: expected a torch callable fn(x, noise_level, **cond)")
        for name, value, registry in (("prediction", self.prediction, PREDICTIONS), ("scaling", self.scaling, SCALINGS),
                                      ("noise", self.noise, NOISE_MAPS)):
            if value not in registry:
                raise InputError(f"`{name}` = {value!r}: expected one of {', '.join(registry)}")
        if NOISE_MAPS[self.noise].table:
            if self.log_alphabar is None:
                raise InputError(f"`noise` = {self.noise!r}: expected `log_alphabar` (the schedule's log alphas_cumprod)")
            la = np.asarray(self.log_alphabar, float)
            finite = np.isfinite(la)
            # a zero-terminal-SNR schedule ends at alphabar = 0: keep its finite part
            la = la[finite] if not finite.all() else la
            if la.ndim != 1 or la.size < 2 or np.any(np.diff(la) >= 0) or la[0] > 0:
                raise InputError("`log_alphabar`: expected a strictly decreasing sequence of log alphabar <= 0")
            self.log_alphabar = la
            if self.sigma_range is None:
                self.sigma_range = (float(np.sqrt(np.expm1(-la[0]))), float(np.sqrt(np.expm1(-la[-1]))))

    def describe(self) -> dict:
        out = super().describe()
        return {**{k: out[k] for k in ("name", "source", "shape", "d")}, "prediction": self.prediction,
                "scaling": self.scaling, "noise": self.noise, **{k: v for k, v in out.items()
                                                                  if k not in ("name", "source", "shape", "d")}}

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(c_in, c_skip, c_out, c_noise), each (n, 1) float64 except c_noise (n,), for per-sample sigma (n,)."""
        sc, pr, nm = SCALINGS[self.scaling], PREDICTIONS[self.prediction], NOISE_MAPS[self.noise]
        values, where = torch.unique(sigma, return_inverse=True)
        rows = []
        for s in values.tolist():  # each distinct sigma in float64 scalars (one, in a solver's step)
            c_in = sc.c_in(s)
            rows.append((c_in, pr.c_skip(s, c_in), pr.c_out(s, c_in), nm.c_noise(s, self.log_alphabar)))
        tab = torch.tensor(rows, dtype=torch.float64)[where]
        return tab[:, 0:1], tab[:, 1:2], tab[:, 2:3], tab[:, 3]

    sigma_differentiable = True

    def linear_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(c_in, c_skip, c_out, c_noise) at one sigma given as a 0-d float64 tensor that may require grad: each a
        0-d tensor whose value is the registry's (as :meth:`scalings` gives it) and whose derivative in sigma is
        the registry function's, by central differences (relative step :data:`SCALING_STEP`; the functions are
        scalar, so any registered parametrisation is differentiated without a torch twin)."""
        sc, pr, nm = SCALINGS[self.scaling], PREDICTIONS[self.prediction], NOISE_MAPS[self.noise]

        def values(s):
            c_in = sc.c_in(s)
            return np.array([c_in, pr.c_skip(s, c_in), pr.c_out(s, c_in), nm.c_noise(s, self.log_alphabar)])

        s0 = float(sigma.detach())
        h = SCALING_STEP * s0
        v, dv = values(s0), (values(s0 + h) - values(s0 - h)) / (2.0 * h)
        ds = sigma - s0  # value 0, derivative 1
        return tuple(float(a) + float(b) * ds for a, b in zip(v, dv))

    def __call__(self, y: torch.Tensor, sigma, cond: dict | None = None) -> torch.Tensor:
        n = y.shape[0]
        s = per_sample(sigma.detach() if torch.is_tensor(sigma) else sigma, n)  # the noise levels for messages
        if torch.is_tensor(sigma) and sigma.requires_grad:  # differentiable in sigma (one sigma for all samples)
            if sigma.ndim != 0:
                raise InputError(f"`sigma` has shape {tuple(sigma.shape)}: a sigma that requires grad must be one "
                                 "number (0-d)")
            c_in, c_skip, c_out, c_noise = (c.to(device=self.device, dtype=self.dtype)
                                            for c in self.linear_scalings(sigma))
            c_noise = c_noise.expand(n)
        else:
            c_in, c_skip, c_out, c_noise = (c.to(device=self.device, dtype=self.dtype) for c in self.scalings(s))
        yd = y.to(device=self.device, dtype=self.dtype)
        kwargs = batch_cond(self.cond if cond is None else cond, n, self.device, self.dtype)
        out = self.fn((c_in * yd).reshape(n, *self.shape), c_noise, **kwargs)
        F = output_tensor(out)
        check_values(self, F, y, s)  # the network's own output, before the parametrisation mixes it with y
        return (c_skip * yd + c_out * F.reshape(n, -1).to(yd.dtype)).to(device=y.device, dtype=y.dtype)


SCALING_STEP = 1e-5  # relative step of the central differences of the scalings in sigma (error ~1e-10)


def output_tensor(out):
    """The tensor in a model's output: itself, ``.sample``, or the first item of a tuple (anything else is returned
    as is, and refused by :func:`check_values`)."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


def torch_model(fn: Callable, *, shape, prediction: str = "sample", scaling: str | None = None, noise: str = "sigma",
                log_alphabar=None, sigma_range=None, dtype=torch.float32, device: str = "cpu",
                name: str | None = None, cond: dict | None = None, needs: Needs | None = None) -> TorchModel:
    """Declare the parametrisation of a torch callable ``fn(x, noise_level, **cond)`` (see :class:`TorchModel`);
    ``scaling`` defaults to ``flow`` for a flow-matching network (``prediction="flow"``), else ``ve``."""
    if scaling is None:
        scaling = "flow" if prediction == "flow" else "ve"
    return TorchModel(shape=tuple(shape) if not isinstance(shape, int) else (shape,), dtype=dtype, device=device,
                      sigma_range=sigma_range, name=name or getattr(fn, "__name__", "model"), source="torch callable",
                      cond=cond or {}, needs=needs, fn=fn, prediction=prediction, scaling=scaling, noise=noise,
                      log_alphabar=log_alphabar)
