"""flowcert's public Python API: every command of the CLI as one function.

Times are Ornstein-Uhlenbeck times t (dX = -X dt + sqrt(2) dW, alpha_t = e^{-t}); sampling
runs from t = T down to t = delta.  Every function checks its input and raises
:class:`InputError` with one line naming the parameter, the value and what was expected.
Heavy modules are imported inside the functions, so ``import flowcert`` stays cheap and
torch is needed only by :func:`solvers` and :func:`validate` (``pip install "flowcert[torch]"``).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Callable, Iterable

from .numcore.checks import InputError, require
from .numcore.io import no_progress

if TYPE_CHECKING:  # pragma: no cover
    import os
    from typing import Callable

    import numpy as np
    import torch

    from .models.denoiser import Denoiser, Needs, TorchModel

    from .exports.presets import Export
    from .bounds.stability import Stability
    from .numcore.gridsearch import SearchResult
    from .numcore.mixture import GaussianMixture

DELTA = 1e-3  # smallest OU time: VE sigma 0.045, below the built-in mixtures' mode widths
T_MAX = 5.0  # largest OU time: alpha_T = 0.0067, p_T within KL <= e^{-10} KL(p_0 || N(0, I)) of the prior

__all__ = ["load_mixture", "describe", "amplification", "lipschitz", "lipschitz_report", "stability", "grid",
           "export", "export_grid", "optimise_grid", "certify", "solvers", "validate", "load_model", "torch_model",
           "model_lipschitz", "model_grid", "model_export_grid", "model_solvers", "fit", "train_example", "InputError"]


def _inputs(mixture) -> list:
    """The files a request reads (a spec path): outputs must not overwrite them."""
    import os

    return [mixture] if isinstance(mixture, (str, os.PathLike)) and os.path.isfile(mixture) else []


def _budget() -> float:
    from .numcore.checks import memory_budget

    return memory_budget()


def load_mixture(spec: str | dict | GaussianMixture) -> GaussianMixture:
    """A Gaussian mixture p_0 = sum_k pi_k N(mu_k, Sigma_k) in R^d.

    Args:
        spec: a built-in name (ring8, square4, line2, modes8d, aniso3, hetero3), a path to a
            .json/.yaml/.toml spec, a mapping with ``means`` (K x d), optional ``weights`` (K,)
            and one of ``variance`` (a number or K numbers) or ``cov`` (d x d, or K x d x d),
            or a :class:`GaussianMixture` (returned as is).

    Returns:
        GaussianMixture with ``K``, ``d``, ``weights`` (K,), ``means`` (K, d) and the spectral
        form of the covariances.

    Raises:
        InputError: an unknown name, an unreadable file (not a regular file, larger than 64 MiB,
            YAML aliases expanding beyond a spec's size), or a spec that is not a valid mixture
            (fields hold numbers only; mean entries at most 1e12 in magnitude, variances in
            [1e-8, 1e12]); the message names the file and the field, never the file's content.
    """
    from .numcore.mixture import GaussianMixture, from_spec, load

    if isinstance(spec, GaussianMixture):
        return spec
    if isinstance(spec, dict):
        return from_spec(spec, name="mixture")
    return load(str(spec))


def describe(mixture, *, delta: float = DELTA, T: float = T_MAX, amp_samples: int = 0,
             seed: int = 0, step: float = 0.02) -> dict:
    """Sizes and geometry of a mixture, and per bound (tri, sharp) L(delta), Lambda(T) and exp(Lambda(T)).

    Args:
        amp_samples: with n > 0, n exact trajectories from x_T ~ p_T (``seed``) down to delta
            give the per-trajectory amplification (see :func:`amplification`).
        step: RK4 step in log sigma_VE for those trajectories.

    Returns the dict of ``flowcert mixture --format json`` (without ``means`` and ``eigvals``):
    ``K``, ``d``, ``structure``, ``diameter``, ``bounds`` (per bound: ``L_at_delta``, ``lambda_T``,
    ``lambda_T_error``, ``amplification``, ``t_peak_tL``, ``t_half_lambda``), ``scope``, ``where``,
    and with ``amp_samples`` the field ``amplification``.

    Raises:
        InputError: a bad mixture or window (0 < delta < T <= 50), a bad sample count or step.
    """
    from .bounds.stability import describe as describe_
    from .numcore.checks import options

    n, seed, step = options(amp_samples=amp_samples, seed=seed, step=step)
    mix = load_mixture(mixture)
    info = describe_(mix, delta, T)
    if n:
        from .bounds.amplification import summary

        info["amplification"] = summary(mix, info["delta"], info["T"], samples=n, seed=seed, step=step)
    return info


def amplification(mixture, *, samples: int = 128, seed: int = 0, delta: float = DELTA, T: float = T_MAX,
                  step: float = 0.02) -> dict:
    """How much the sampler's flow map Phi_{T->delta} stretches errors: worst case against per trajectory.

    From ``samples`` exact x_T ~ p_T (``seed``) and exact trajectories (numpy RK4 in y = e^t x over
    rho = log sigma_VE with step ``step``): ``worst_case`` exp(Lambda(T)) per bound (tri, sharp,
    onesided); ``certified`` per-trajectory upper bounds exp(int lambda_max(-J(x_u, u)) du) with the
    discretisation error term added (docs: theory, per-trajectory certificate); ``measured``
    ||D Phi_{T->delta}(x_T)||_op from the propagated Jacobian; ``predicted`` the same integral without
    the error term (an estimate).  Each of the last three has ``mean``, ``mean_ci``, ``p99``, ``p99_ci``
    (95% intervals), ``max`` and ``n``.

    Returns:
        dict as described, plus ``certificate_holds`` (trajectories where certified >= measured),
        ``max_log_error``, ``what``, ``seconds``.

    Raises:
        InputError: a bad mixture, window, sample count or step.
    """
    from .bounds.amplification import summary
    from .numcore.checks import option, options, time_window

    delta, T = time_window(delta, T)
    samples = option("amplification.samples", samples)
    seed, step = options(seed=seed, step=step)
    return summary(load_mixture(mixture), delta, T, samples=samples, seed=seed, step=step)


def lipschitz(mixture, t: float | np.ndarray, bound: str = "sharp", *, ball_mass: float = 1 - 1e-6) -> np.ndarray:
    """Upper bounds L(t) of sup_x ||J(x, t)||_op, J the Jacobian of the probability-flow velocity.

    v(x, t) = -x - grad log p_t(x).  ``tri`` = |a| + b and ``sharp`` = max(|a|, b - a) bound the
    operator norm; ``onesided`` bounds lambda_max(-J), the growth rate of backward integration
    (it may be negative).  For shared covariances the bounds hold for every x; for
    per-component covariances on a ball of p_t-mass ``ball_mass`` (docs: theory, Lipschitz bounds).

    Args:
        t: OU times, any shape, > 0.
        bound: ``tri``, ``sharp`` or ``onesided``.

    Returns:
        float64 array of the shape of ``t``.

    Raises:
        InputError: an unknown bound, ``ball_mass`` outside (0, 1).
    """
    import numpy as np

    from .bounds.lipschitz import BOUNDS, LipschitzBound

    if bound not in BOUNDS:
        raise InputError(f"`bound` = {bound!r}: expected one of {', '.join(BOUNDS)}")
    t = np.asarray(t, dtype=float)
    return np.reshape(LipschitzBound(load_mixture(mixture), ball_mass)(t.ravel(), bound), t.shape)


def lipschitz_report(mixture, *, bounds: Iterable[str] = ("tri", "sharp", "onesided"), points: int = 50,
                     delta: float = DELTA, T: float = T_MAX, empirical: int = 0, seed: int = 0,
                     ball_mass: float = 1 - 1e-6, class_label: int | None = None, guidance: float | None = None,
                     progress=no_progress) -> dict:
    """L(t) on ``points`` log-spaced times of [delta, T], Lambda(T) per bound, and with ``empirical``
    the brute-force sup and p_t-mean of ||J||_op from that many samples of p_t per time.

    With ``class_label`` (a mixture whose spec has ``labels``): the bounds of that class's mixture, and with
    ``guidance`` W >= 0 the bounds of the classifier-free-guided velocity (1 - W) v_u + W v_c over the
    unconditional and the class's mixture (``tri``: |1 - W| L_u + W L_c; ``sharp``, ``onesided``: both spectrum
    ends carried through; docs/theory.md, "Guided fields"), where both mixtures' bounds hold.

    Returns the dict of ``flowcert lipschitz --format json`` (arrays of shape (points,)).

    Raises:
        InputError: a bad bound name, ``points``, ``empirical``, ``ball_mass`` or window; a class the mixture does
            not have, a mixture without labels, guidance without a class, guidance NaN, negative or above 1000.
    """
    from .bounds.lipschitz import report

    return report(load_mixture(mixture), bounds=tuple(bounds), points=points, delta=delta, T=T,
                  empirical=empirical, seed=seed, ball_mass=ball_mass, progress=progress,
                  class_label=class_label, guidance=guidance)


def stability(mixture, bound: str = "tri", *, delta: float = DELTA, T: float = T_MAX, samples: int = 4096,
              seed: int = 0, ball_mass: float = 1 - 1e-6) -> Stability:
    """The stability integral Lambda(t) = int_delta^t L(u) du of a rate L on [delta, T].

    ``bound`` is ``tri``, ``sharp``, ``onesided`` (see :func:`lipschitz`) or ``empirical``: the
    p_t-average of ||J||_op by Monte Carlo (``samples`` per time, ``seed``), a typical rate and
    not a bound.  Lambda is integrated by adaptive Gauss-Kronrod in log t.

    Returns:
        Stability: ``integral(t)`` = Lambda(t) for an array of times, ``integral.total`` =
        Lambda(T), ``integral.error`` (quadrature error estimate), ``integral.invert(levels)``,
        ``amplification`` = exp(Lambda(T)) (an upper bound of ||D Phi_{T->delta}||_op for the
        norm bounds), ``meta``.

    Raises:
        InputError: a bad rate name or window.
    """
    from .bounds.stability import RATES
    from .bounds.stability import stability as stability_
    from .numcore.checks import options, time_window

    if bound not in RATES:
        raise InputError(f"`bound` = {bound!r}: expected one of {', '.join(RATES)}")
    delta, T = time_window(delta, T)
    samples, seed, ball_mass = options(samples=samples, seed=seed, ball_mass=ball_mass)
    return stability_(load_mixture(mixture), bound, delta, T, samples=samples, seed=seed, ball_mass=ball_mass)


def grid(mixture, steps: int = 8, *, kind: str = "balanced", bound: str = "tri", delta: float = DELTA,
         T: float = T_MAX, units: Iterable[str] = ("t",), beta_schedule: str = "linear", clip: bool = False,
         samples: int = 4096, seed: int = 0, solver: str | None = None, train_samples: int = 4096,
         test_samples: int = 4096, effort: float = 1.0, shift: float | None = None, mu: float | None = None,
         resolution: str | tuple[int, int] | None = None, scheduler_config: dict | str | None = None, progress=no_progress) -> dict:
    """A descending time grid of N = ``steps`` segments, t[0] = T, t[N] = delta.

    Kinds: ``balanced`` (Lambda(t_i) = (N - i)/N Lambda(T) for the rate ``bound``: equal
    stability budget per segment), ``uniform`` in t, ``edm`` (Karras et al. 2022, rho = 7, in VE
    sigma), ``logsnr`` (uniform in log-SNR), ``kl-optimal`` (Align Your Steps' closed form
    sigma_i = tan((1 - i/N) atan(sigma_max) + (i/N) atan(sigma_min)), Sabour et al. 2024, Theorem 3.1)
    and ``optimal``: the grid that minimises ``solver``'s end-to-end relative MSE against the exact
    flow map on ``train_samples`` trajectories (seed ``seed``), its error reported on
    ``test_samples`` fresh ones (:func:`optimise_grid` is the search); and what flow-matching pipelines do by
    default, moved onto [delta, T]: ``flow-shift`` (uniform in the flow time s = sigma/(1 + sigma), then the static
    shift s' = shift s / (1 + (shift - 1) s); SD3's 3.0 by default) and ``flux-mu`` (the same, then the dynamic shift
    e^mu / (e^mu + 1/s - 1) with ``mu`` or diffusers' ``calculate_shift`` mu of ``resolution`` (H, W); Flux's 1.15 at
    1024 x 1024 by default).  ``units`` adds the nodes in sigma (VE), alpha, sigma_vp, logsnr, rf (rectified flow,
    the flow time s) or ddpm (fractional timesteps of ``beta_schedule``).

    Args:
        solver: ``euler``, ``heun`` or ``dpmpp_2m``; needed by kind ``optimal``.
        effort: multiplies the search's evaluation budgets (kind ``optimal``).
        shift: flow-shift's static shift (default: ``scheduler_config``'s, else 3, SD3's).
        mu: flux-mu's dynamic shift (default: the mu of 1024 x 1024, 1.15).
        resolution: instead of ``mu``, "H,W" or (H, W) (multiples of 16): diffusers' calculate_shift mu of the
            image's (H/16)(W/16) tokens.
        scheduler_config: a flow-matching scheduler configuration (dict or path) whose static shift, or dynamic
            line (base/max shift, sequence lengths), the flow kinds default to.

    Returns:
        dict with ``t`` (N + 1,), ``lambda`` (N + 1,), ``lambda_T``, ``amplification``, one
        array (N + 1,) per unit, and the request (the JSON of ``flowcert grid``); kind ``optimal``
        adds ``solver`` and ``optimal`` (objective, training and test errors with a 95% interval,
        log-SNR, KL-optimal and EDM on the same test batch, the search's stopping reason), the
        other kinds ``sampling`` (one line pointing to the grid that wins for sampling).

    Raises:
        InputError: a bad kind, bound, unit, ``steps`` or window; a ddpm node outside the
            schedule's range without ``clip``; kind ``optimal`` without a solver or with more than
            64 steps.
    """
    from .studies.targets import MixtureTarget
    from .studies.timegrid import build

    return build(MixtureTarget(load_mixture(mixture)), steps, kind=kind, bound=bound, delta=delta, T=T,
                 units=tuple(units), beta_schedule=beta_schedule, clip=clip, samples=samples, seed=seed, solver=solver,
                 train_samples=train_samples, test_samples=test_samples, effort=effort, shift=shift, mu=mu,
                 resolution=resolution, scheduler_config=_config(scheduler_config), progress=progress)


def export(t: np.ndarray, preset: str, *, beta_schedule: str | None = None, clip: bool = False,
           shift: float | None = None, scheduler_config: dict | str | None = None, mu: float | None = None,
           resolution: str | tuple[int, int] | None = None) -> Export:
    """A grid of OU times (descending, shape (N + 1,)) as one sampler takes it, checked the way it runs there.

    Presets: ``diffusers-euler`` (EulerDiscreteScheduler ``sigmas``), ``diffusers-edm``
    (EDMEulerScheduler ramp), ``diffusers-flowmatch`` (FlowMatchEulerDiscreteScheduler
    ``sigmas``, pre-shifted to compensate ``shift``), ``diffusers-timesteps``
    (DPMSolverMultistepScheduler integer ``timesteps`` of ``beta_schedule``), ``k-diffusion``
    and ``comfyui`` (VE sigmas with a trailing 0).  Every export is checked after the
    consumer's own conversion (float32 storage, its formulas, integer rounding, ComfyUI's
    number parser): values that overflow or underflow there, or nodes that stop being strictly
    decreasing there, are refused.  See docs: samplers.

    Args:
        t: OU times, strictly decreasing, shape (N + 1,).
        preset: the consumer (see above).
        beta_schedule: ``linear`` (default) or ``scaled_linear``, for diffusers-euler and
            diffusers-timesteps without ``scheduler_config``.
        clip: clip nodes outside the scheduler's range to its ends (with warnings) instead of failing.
        shift: diffusers-flowmatch's static shift (default 1, or the config's).
        scheduler_config: a diffusers scheduler configuration (a dict, or the path of a pipeline's
            ``scheduler_config.json``): the export is built for and checked against that scheduler
            (beta schedule, zero terminal SNR, sigma range, shift, dynamic shift, shift_terminal,
            invert_sigmas, training steps, prediction type), and its ``config`` pins every key that changes
            the schedule; for ``comfyui`` a flow-matching config makes the list flow times.
        mu: diffusers-flowmatch for a dynamically shifting scheduler (a Flux-style config, or without a config
            diffusers' defaults): the pipeline's mu; the export pre-inverts it and carries it as ``mu``.
        resolution: instead of ``mu``, the image size (H, W) the pipeline computes mu from.

    Returns:
        Export with ``argument`` (the keyword to pass), ``values`` (what to pass), ``schedule``
        (the noise levels the sampler will step through, as it stores them: float32 values),
        ``t``, ``config`` (scheduler settings the values assume), ``conventions`` and ``warnings``.

    Raises:
        InputError: an unknown preset, a grid that is not strictly decreasing, nodes outside
            the sampler's range (without ``clip``), nodes that round or collapse together in the
            sampler's precision, values that overflow or underflow there, a compensation float32
            cannot represent, a scheduler config of another family or that disagrees with
            ``beta_schedule`` / ``shift``.
    """
    from .exports.presets import export as export_

    return export_(preset, t, beta_schedule=beta_schedule, clip=clip, shift=shift,
                   scheduler_config=_config(scheduler_config), mu=mu, resolution=resolution)


def export_grid(mixture, steps: int, preset: str, *, kind: str | None = None, solver: str | None = None,
                bound: str = "tri", delta: float = DELTA, T: float = T_MAX, beta_schedule: str | None = None,
                clip: bool = False, shift: float | None = None, scheduler_config: dict | str | None = None,
                samples: int = 4096, seed: int = 0, train_samples: int = 4096, test_samples: int = 4096,
                effort: float = 1.0, mu: float | None = None, resolution: str | tuple[int, int] | None = None, progress=no_progress) -> dict:
    """A grid of N = ``steps`` segments exported for one sampler (``flowcert grid --for PRESET``).

    Without ``kind``: the grid that wins for the solver the preset runs (Euler for diffusers-euler,
    diffusers-edm, diffusers-flowmatch, k-diffusion and comfyui; DPM-Solver++(2M) for
    diffusers-timesteps; ``solver`` overrides it): the solver's optimal grid or a closed form (log-SNR,
    KL-optimal, EDM), whichever has the smallest training error once exported, with every candidate's
    error on a fresh test batch (for diffusers-flowmatch, and comfyui for a flow model, the flow pipelines' defaults
    flow-shift and flux-mu are candidates too).  With ``kind``: that grid (:func:`grid`), exported.
    ``beta_schedule``, ``clip``, ``shift``, ``mu``, ``resolution`` and ``scheduler_config`` are those of
    :func:`export`; ``shift``, ``mu`` and ``resolution`` are also the flow kinds' parameters (with a scheduler
    config of its own, one that the asked-for kind takes is the grid's alone).

    Returns:
        dict: ``export`` (:class:`Export`), ``grid`` (the dict of :func:`grid` for the exported kind;
        for the winner ``kind`` and ``t`` only) and ``selection`` (``kind``, ``solver``, ``rel_mse``,
        ``rel_mse_ci``, ``baselines``, ``train_rel_mse``, ``objective``, ``measured_on``, ``search``,
        batch sizes) or None when ``kind`` was given.

    Raises:
        InputError: an unknown preset, kind or solver; bad steps or window; a grid the preset cannot take.
    """
    from .studies.targets import MixtureTarget
    from .studies.timegrid import export as export_

    return export_(MixtureTarget(load_mixture(mixture)), steps, preset, kind=kind, solver=solver, bound=bound,
                   delta=delta, T=T, beta_schedule=beta_schedule, clip=clip, shift=shift, mu=mu,
                   resolution=resolution, scheduler_config=_config(scheduler_config), samples=samples, seed=seed,
                   train_samples=train_samples, test_samples=test_samples, effort=effort, progress=progress)


def _config(scheduler_config):
    """A scheduler config given as a dict or as the path of a scheduler_config.json."""
    if scheduler_config is not None and not isinstance(scheduler_config, dict):
        from .exports.presets import read_scheduler_config

        return read_scheduler_config(scheduler_config)
    return scheduler_config


def optimise_grid(error: Callable[[np.ndarray], float], steps: int, *, delta: float = DELTA, T: float = T_MAX,
                  starts: dict | None = None, effort: float = 1.0) -> SearchResult:
    """The grid of N = ``steps`` segments on [delta, T] that minimises ``error`` (any solver, any model).

    The search of ``flowcert grid --kind optimal``, for a model of your own: ``error`` maps a grid
    (OU times, shape (N + 1,), descending, t[0] = T, t[N] = delta) to a positive number, typically the
    relative MSE of your sampler's end points against a teacher's on a fixed batch, built with
    ``flowcert.numcore.gridsearch.endpoint_error(sample, target)``.  Nelder-Mead over the N - 1 interior
    log-sigmas up to N = 8 (L-BFGS-B when ``error`` has ``value_and_grad``, see ``endpoint_error``), coarse to fine (the optimum at ceil(N/2), refined with L-BFGS-B) above;
    deterministic; the nodes stay strictly decreasing.

    Args:
        starts: {name: grid (N + 1,)}; default the closed forms log-SNR, KL-optimal and EDM. The search
            starts at the one with the smallest error and never returns a worse grid.
        effort: multiplies the evaluation budgets.

    Returns:
        the search's result (``flowcert.numcore.gridsearch.SearchResult``) with ``t``, ``value``, ``start``,
        ``start_values``, ``evaluations``, ``iterations``, ``stop`` (the optimiser's stopping reason),
        ``method`` and ``seconds``.

    Raises:
        InputError: ``steps`` outside 1..64, a bad window or effort.
    """
    from .studies.optimal import baseline_grids, check_steps
    from .numcore.checks import option, time_window
    from .numcore.gridsearch import search

    delta, T = time_window(delta, T)
    steps = check_steps(steps)
    effort = option("effort", effort)
    return search(error, steps, delta, T, starts if starts is not None else baseline_grids(steps, delta, T),
                  effort=effort)


def certify(mixture, eps: float, *, t: float | None = None, p: float = 2.0, delta: float = DELTA,
            T: float = T_MAX, certificate: str = "tight", verify: int = 0, times: int = 6, seed: int = 0,
            export: str | None = None, sweep: Iterable[str] = (), plot: str | None = None, latex: bool = False,
            progress=no_progress) -> dict:
    """Certified sizes of a ReLU-ReQU network N with ||N - s(., t)||_{L^p(p_t)} <= eps.

    With ``t`` the network approximates the score at that time (fixed-t construction); without
    it, t is a second input and the guarantee covers every t in [delta, T].  ``certificate`` is
    ``tight`` (smallest choices satisfying the exact budget) or ``closed`` (closed forms).
    ``verify`` > 0 builds the network and measures its error on that many samples of p_t (95%
    CLT interval); ``export`` writes it as .npz; ``sweep`` ("eps=1e-1:1e-8", "delta=...")
    tabulates sizes; ``plot`` draws them (docs: certify).

    Returns:
        the dict of ``flowcert certify --format json``: ``depth``, ``width``, ``params``,
        ``choices``, ``budget``, ``formulas``, and ``mc_error``, ``ci_low``, ``ci_high``,
        ``verification`` with ``verify``.

    Raises:
        InputError: eps outside (0, score scale) or below the float64 floor measured for this
            mixture, p < 1, K = 1, a bad window, ``verify`` = 1, an unwritable ``export``/``plot``
            (or one that is the spec file), a network too large to build within the memory budget
            (``FLOWCERT_MEMORY_GB``) for ``verify``/``export``.
    """
    from .bounds.certify import run

    return run(load_mixture(mixture), eps, t=t, p=p, delta=delta, T=T, certificate_kind=certificate,
               verify=verify, times=times, seed=seed, export=export, sweep=tuple(sweep), plot=plot, latex=latex,
               progress=progress, inputs=_inputs(mixture))


def solvers(mixture: str | dict | GaussianMixture | list | None = None, steps: Iterable[int] = (4, 8, 16, 32), *, random: int = 0, delta: float = DELTA,
            T: float = T_MAX, samples: int = 10000, seed: int = 0, train_samples: int = 4096, effort: float = 1.0,
            solvers: str | Iterable[str] | None = None, plot: str | None = None, progress=no_progress) -> dict:
    """Which grid makes which solver most accurate against the exact flow map.

    From ``samples`` exact x_T ~ p_T and the exact denoiser, every grid kind (balanced on the tri,
    sharp and empirical rates, uniform, EDM, log-SNR, KL-optimal, and each solver's optimal grid,
    fitted on ``train_samples`` other trajectories) and every N in ``steps``; relative MSE to the
    exact endpoint Phi_{T->delta}(x_T) with a 95% CI, and sliced W2 to an independent sample of
    p_delta.  ``random`` adds that many seeded random mixtures (families isotropic, shared-full and
    per-component; d in 1..8, K in 2..8; seed ``seed``) and a league table over all mixtures.  Runs on
    the base install (numba kernels, no torch).

    Args:
        mixture: a spec, a list of specs, or None (then ``random`` must be >= 1).
        solvers: the solvers to study (names of the registry, :data:`flowcert.numcore.solvers.NAMES`, as a list
            or comma-separated; default all), each with its own optimal grid.

    Returns:
        one mixture: the dict of ``flowcert solvers --format json``: ``solvers`` (the ones studied), ``rows``
        (grid, solver, steps, nfe,
        engine, rel_mse, rel_mse_ci, sw), ``sw_floor``, ``summary``, ``optimal`` (the optimal grids and
        their searches), ``teacher``, ``league``.  Several: ``studies`` (one such dict each, without
        ``league``) and ``league`` (per solver and N, each grid's relative MSE over the optimal grid's:
        geometric mean over mixtures with a 95% interval, the fraction within 1.1x, the best closed form).

    Raises:
        InputError: bad steps, samples, seed, random or window; no mixture; an unwritable ``plot``; a study
            whose estimated memory exceeds the budget (``FLOWCERT_MEMORY_GB``, default 4 GiB).
    """
    from .numcore.checks import OPTIONS, TEACHER_DELTA_MIN, fits_memory, options, steps_list, time_window
    from .numcore.io import check_outputs
    from .numcore.mixture import random_mixtures

    from .numcore.solvers import check_list

    delta, T = time_window(delta, T, delta_min=TEACHER_DELTA_MIN)
    ns = steps_list("steps", steps, OPTIONS["solvers.steps"].high)
    chosen = check_list(solvers)
    samples, seed, train_samples, random, effort = options(samples=samples, seed=seed, train_samples=train_samples,
                                                           random=random, effort=effort)
    from .numcore.mixture import GaussianMixture

    single = isinstance(mixture, (str, dict, GaussianMixture, os.PathLike))
    specs = [] if mixture is None else ([mixture] if single else list(mixture))
    check_outputs({"plot": plot}, [f for m in specs for f in _inputs(m)])
    mixes = [load_mixture(m) for m in specs] + random_mixtures(random, seed)
    if not mixes:
        raise InputError("`mixture` missing: expected a mixture SPEC or `random` >= 1")
    from .studies import solver_study
    from .studies.targets import MixtureTarget

    targets = [MixtureTarget(mix) for mix in mixes]
    for target in targets:
        need = target.study_memory(samples + train_samples)
        fits_memory("samples", samples, need, f"the study of {target.name} at d = {target.d}",
                    largest=int(samples * _budget() / need))
    studies = []
    per = (len(solver_study.labels(targets[0])) + 1) * len(ns) * len(chosen)  # runs and searches
    with progress(len(mixes) * per, "solvers") as bar:
        for target in targets:
            studies.append(solver_study.run(target, ns, delta, T, samples=samples, seed=seed, bar=bar,
                                            rate_samples=min(samples, 4096), train_samples=train_samples,
                                            effort=effort, solvers=chosen,
                                            teacher_progress=progress if len(mixes) == 1
                                            else no_progress))
    league = solver_study.league(studies)
    if len(mixes) == 1 and not random:
        res = {**studies[0], "league": league}
        if plot is not None:
            solver_study.plot(res, plot)
        return res
    if plot is not None:
        solver_study.plot_league(league, plot)
    return {"studies": studies, "league": league, "random": random, "seed": seed, "steps": ns, "samples": samples,
            "train_samples": train_samples, "delta": delta, "T": T, "solvers": list(chosen)}


def validate(specs=(), *, model=None, data=None, reference=None, out: str | None = None,
             resume: str | None = None, preset: str | None = None, executor: str = "local",
             workers: int | None = None, ray_address: str | None = None, progress: bool = True, plots: bool = True,
             **options) -> dict:
    """Train residual students on exact teacher flows and compare grids, with intervals.

    For each mixture in ``specs``, grid, N and seed: exact PF-ODE trajectories, a residual
    student of N blocks trained segment-wise, its chained relative MSE on fresh x_T ~ p_T, local
    errors, the fan bound, measured amplification and block Lipschitz constants.  ``options``
    are the fields of ``flowcert.distill.config.ValidateConfig`` (steps, grids, bound, seeds,
    iters, width, block, ...); ``preset`` is ``quick`` or ``full``.  The run folder ``out`` is
    checkpointed, so ``validate(resume=out)`` continues a killed run with identical results.
    Needs ``flowcert[torch]``.

    With ``model`` (a source of :func:`load_model`: a diffusers folder, ``FILE.py:NAME``,
    ``mixture:SPEC``, ``digits``) instead of ``specs``, the students distil a trained network: its own
    many-step teacher (RK4 in log sigma, ``teacher_steps``), x_T ~ N(0, I), grids balanced on its
    E||J||_op, its amplification measured by autograd through the teacher; ``data`` and ``reference``
    are its training and held-out data (.npy; the shipped model's own by default) for its rate, the
    ``surrogate`` grid and the sliced W2 of the students' samples; ``model_options`` (a dict among
    ``prediction``, ``class_label``, ``guidance``) loads, conditions and guides it once, as :func:`load_model`.

    Returns:
        the results document written to ``out/results.json`` (``summary`` holds one row per
        mixture, grid and N with intervals).

    Raises:
        InputError: bad options, a foreign, missing or unwritable run folder, a damaged file in the
            folder on resume (named, with the way back), a folder in use by another process, a run
            whose estimated memory exceeds the budget, torch (or Ray) not installed.
    """
    require("torch", "torch", "validate")
    from .distill.validation import start

    specs = [specs] if isinstance(specs, (str, dict)) else list(specs)
    specs = [load_mixture(s) if isinstance(s, dict) else s for s in specs]
    return start(specs, model=model, data=data, reference=reference, out=out, resume=resume, preset=preset,
                 executor=executor, workers=workers, address=ray_address, progress=progress, plots=plots, **options)


# ----------------------------------------------------------------------------- trained models


def load_model(source: str | os.PathLike | GaussianMixture | Denoiser, *, prediction: str | None = None,
               device: str = "cpu", dtype: str | torch.dtype | None = None,
               shape: tuple[int, ...] | str | None = None, cond: str | os.PathLike | dict | None = None,
               uncond: str | os.PathLike | dict | Denoiser | None = None,
               guidance: float | None = None, class_label: int | None = None, prompt: str | None = None,
               negative_prompt: str | None = None) -> Denoiser:
    """A trained network (or a mixture) as a denoiser D(x, sigma) in VE sigma, with its score and velocity in OU time,
    conditioned and guided as asked.

    Args:
        source: a diffusers folder on disk (a pipeline folder with ``model_index.json``, or a model
            folder with ``config.json`` + safetensors weights and a scheduler config beside it or in
            ``scheduler/``): ``UNet2DModel`` (class-conditional too), ``UNet2DConditionModel`` (SD 1.x/2.x,
            SDXL), ``DiTTransformer2DModel``, ``SD3Transformer2DModel``, ``FluxTransformer2DModel`` or another
            unconditional diffusers denoiser, with a DDPM-family or FlowMatch scheduler; ``FILE.py:NAME`` naming a
            :class:`~flowcert.models.denoiser.TorchModel` (see :func:`torch_model`) or a function of no arguments
            returning one; ``mixture:SPEC`` or a :class:`GaussianMixture` (its exact score as a torch module; a
            spec with ``labels`` is also the exact class-conditional model); ``digits`` (the model shipped with
            flowcert, unless a folder of that name exists); or a model (returned as is, conditioned and guided).
        prediction: override a diffusers scheduler's ``prediction_type`` (epsilon, sample, v_prediction).
        device: torch device of the network (``cpu``, ``cuda``, ``mps``); inputs are moved there at the boundary.
        dtype: the network's dtype (``float32``, ``bfloat16``, ``float16``); the solver state stays float64.
        shape: the latent shape (C, H, W) or ``"C,H,W"`` where the config has none (Flux) or another is wanted.
        cond: the conditional branch's forward arguments: a ``.safetensors``/``.npz`` file or a mapping (arrays
            with a leading batch dimension of 1: ``encoder_hidden_states``, ``pooled_projections``,
            ``class_labels``, ``text_embeds``, ``time_ids``, ``txt_ids``, ``guidance`` ...).
        uncond: the unconditional branch: a file, a mapping, or another model.
        guidance: classifier-free guidance W >= 0 (diffusers' D_u + W (D_c - D_u); 1: the conditional model alone).
        class_label: shorthand for ``class_labels = [N]``.
        prompt: text encoded by the pipeline folder's own text encoders (``flowcert[models]``).
        negative_prompt: the unconditional branch's text, encoded the same way (``""``: the empty prompt).

    Returns:
        the model, a :class:`~flowcert.models.denoiser.Denoiser`: called as ``model(y, sigma)`` (y of shape
        (n, d) in VE coordinates, sigma > 0 a float or one per sample, shape (n,); the result in y's dtype and
        on y's device), with ``score(x, t)``, ``velocity(x, t)`` and ``dense_jacobian(x, t)`` (x of shape
        (n, d), OU time t), ``d``, ``shape``, ``sigma_range`` (the trained VE range) and ``describe()``; with
        guidance W != 1 a :class:`~flowcert.models.guidance.GuidedDenoiser`.

    A diffusers folder is checked before diffusers reads it (its configuration files against one schema,
    safetensors weights only, checked against the config: :func:`flowcert.models.loaders.load_diffusers`);
    ``FILE.py:NAME`` runs the file as Python code, first in a child process (a file that exits, raises or
    runs past ``$FLOWCERT_IMPORT_TIMEOUT`` seconds is refused), then here: it runs twice
    (:func:`flowcert.models.loaders.load_callable`).

    Raises:
        InputError: no such folder or file, a folder without a model, an unsupported model class, a
            configuration field outside its domain, a duplicate or unknown key, a special or oversized file,
            pickled weights or conditioning, weights that do not fit the config or are not finite, a scheduler
            that is neither DDPM-family nor FlowMatch, an unsupported prediction type; a model file that fails,
            exits or runs too long; a conditional model without conditioning, a cond missing an argument or of the
            wrong shape, an unknown class, guidance NaN or negative, a text model with W != 1 and no unconditional
            input, prompts without text encoders or without the ``models`` extra, a device torch does not see;
            torch or diffusers missing.
    """
    require("torch", "torch", "a trained model")
    from .models.conditioning import condition
    from .models.loaders import load

    given = any(v is not None for v in (cond, class_label, prompt))
    model = load(source, prediction=prediction, device=device, dtype=dtype, shape=shape, conditioned=given)
    if any(v is not None for v in (cond, uncond, guidance, class_label, prompt, negative_prompt)):
        model = condition(model, cond=cond, uncond=uncond, guidance=guidance, class_label=class_label,
                          prompt=prompt, negative_prompt=negative_prompt)
    elif model.needs is not None and model.needs.required and not model.cond:
        condition(model)  # refuses a conditional model without conditioning, in one line
    return model


def model_files(source) -> list[str]:
    """The files a model source reads (:func:`flowcert.models.loaders.input_files`): a command refuses any output
    onto one of them.  Empty for None or a model object."""
    if source is None or not isinstance(source, (str, os.PathLike)):
        return []
    require("torch", "torch", "a trained model")
    from .models.loaders import input_files

    return input_files(source)


def torch_model(fn: Callable, *, shape: tuple[int, ...] | int, prediction: str = "sample", scaling: str | None = None,
                noise: str = "sigma", log_alphabar: np.ndarray | None = None,
                sigma_range: tuple[float, float] | None = None, dtype: torch.dtype | None = None,
                device: str = "cpu", name: str | None = None, cond: dict | None = None,
                needs: Needs | None = None) -> TorchModel:
    """Declare how a torch callable ``fn(x, noise_level, **cond)`` is parametrised, so flowcert can use it as a
    denoiser (D = c_skip y + c_out fn(c_in y, c_noise, **cond); :mod:`flowcert.models.denoiser`).

    Args:
        fn: ``fn(x, noise_level, **cond) -> output``; ``x`` of shape (n, *shape) and ``noise_level`` of shape
            (n,), both on ``device`` in ``dtype``; the output has prod(shape) numbers per sample.
        shape: the shape of one sample, e.g. ``(64,)`` or ``(1, 8, 8)``.
        prediction: what ``fn`` returns: ``sample`` (the denoiser D = E[x_0 | x]), ``epsilon``,
            ``v_prediction``, ``score`` (grad log p of its input variable) or ``flow`` (the flow-matching
            velocity v = eps - x_0).
        scaling: what ``fn`` sees: ``ve`` (y = x_0 + sigma z), ``vp`` (x = alpha x_0 + sigma_vp z) or ``flow``
            (x_s = (1 - s) x_0 + s eps = y / (1 + sigma)); default ``flow`` for ``prediction="flow"``, else ``ve``.
        noise: what ``noise_level`` holds: ``sigma`` (VE), ``t`` (OU time), ``logsnr``, ``ddpm`` (fractional
            timestep of ``log_alphabar``), ``flow`` (the flow time s = sigma / (1 + sigma)) or ``flow1000``
            (1000 s).
        log_alphabar: log alphas_cumprod of the training steps (``noise="ddpm"``).
        sigma_range: (sigma_min, sigma_max), the VE range it was trained on (grids stay inside it).
        dtype: torch dtype of its inputs (default float32); ``device``: where it runs (inputs are moved there).
        cond: keyword arguments passed to every call of ``fn`` (conditioning: tensors moved to ``device``, a
            leading batch dimension of 1 broadcast over the samples).
        needs: what ``fn`` needs beside (x, noise_level) (:class:`flowcert.models.denoiser.Needs`: required and
            accepted keywords, a null class for guidance), checked when the model is conditioned.

    Returns:
        the model (as :func:`load_model` returns it).

    Raises:
        InputError: an unknown prediction, scaling or noise, a bad shape, a ``name`` with a control character.
    """
    require("torch", "torch", "a trained model")
    import torch

    from .models.denoiser import torch_model as make
    from .numcore.checks import name as check_name

    if name is not None:
        name = check_name("name", name)  # echoed in every report: no control characters

    return make(fn, shape=shape, prediction=prediction, scaling=scaling, noise=noise, log_alphabar=log_alphabar,
                sigma_range=sigma_range, dtype=dtype or torch.float32, device=device, name=name, cond=cond,
                needs=needs)


@contextlib.contextmanager
def _threads(threads: int | None):
    """torch's CPU threads while a model function runs (None: the option table's default, ``OPTIONS["threads"]``,
    chosen from measurements: docs/results.md, thread default); the caller's setting is restored afterwards."""
    from .numcore.checks import OPTIONS, option

    n = option("threads", OPTIONS["threads"].default if threads is None else threads)
    require("torch", "torch", "a trained model")
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def _model_target(model, *, data=None, points: int = 40, teacher_steps: int = 64, load: dict | None = None):
    """(the loaded model's :class:`~flowcert.studies.targets.ModelTarget`, the model); ``load``: :func:`load_model`'s
    keywords (conditioning, guidance, device, dtype, shape)."""
    from .studies.targets import ModelTarget, data_for

    m = load_model(model, **(load or {}))
    return ModelTarget(m, data=data_for(m, data), points=points, teacher_steps=teacher_steps), m


def _probe_batch(kind: str, *, samples=2, train=2, test=2) -> int:
    """The batch of the model probe: the largest the run will pass to the network (the Jacobian table's, at most
    512; the teacher's and the solvers', at most 1024), 2 for a closed-form grid (nothing is evaluated).  Values
    not checked yet count as 2 (their own check follows)."""
    def size(v) -> int:
        try:
            return max(2, int(v))
        except (TypeError, ValueError, OverflowError):
            return 2

    if kind == "balanced":
        return min(size(samples), 512)
    if kind == "optimal":
        return max(size(train), size(test))
    if kind == "study":
        return max(size(samples), size(train), size(test))
    return 2


def _announce(announce, plan, threads: int) -> None:
    """Tell ``announce(evaluations, text)`` (the command line's start line) the planned work: ``plan`` is
    (model evaluations, what) from :class:`~flowcert.studies.targets.ModelTarget`'s ``plan_*``, or None."""
    if announce is not None and plan is not None:
        evaluations, text = plan
        announce(evaluations, f"{text}; {threads} torch thread{'s' if threads != 1 else ''}")


def model_lipschitz(model: str | Denoiser, *, points: int = 40, samples: int = 256,
                    data: np.ndarray | str | None = None, delta: float | None = None,
                    T: float | None = None, seed: int = 0, iters: int | None = None, tol: float | None = None,
                    teacher_steps: int = 64, threads: int | None = None, load: dict | None = None, progress=no_progress,
                    announce: Callable[[int, str], None] | None = None) -> dict:
    """E||J(x, t)||_op and the sampled sup of a trained model's velocity Jacobian on log-spaced times (the model's
    rate, :meth:`flowcert.studies.targets.ModelTarget.lipschitz`).

    ||J||_op by batched power iteration (Lanczos on J^T J with torch.func vector-Jacobian products),
    at ``samples`` points of p_t per time: from ``data`` (x_t = alpha x_0 + sigma_vp z) or, without it,
    from the model's own ODE pushed forward from N(0, I).  No analytic bound exists for a network.

    Args:
        model: anything :func:`load_model` takes.
        points: times, log-spaced on [delta, T] (default window: [1e-3, 5] inside the trained range).
        samples: points of p_t per time.
        data: (n, d) array or .npy file of data x_0 (images are flattened).
        iters: Lanczos iterations at most per point (default 20).
        tol: relative tolerance on the Ritz residual or the Ritz value's growth (default 1e-3).
        teacher_steps: RK4 steps of the model ODE (without ``data``).
        threads: torch CPU threads while it runs (default: ``OPTIONS["threads"]``, 1: measured faster than 2 on a
            busy 2-core machine and no slower on an idle one, docs/results.md); the caller's setting is restored.
        announce: ``announce(evaluations, text)`` is called once with the planned work before it starts (the
            command line prints it as the start line).
        load: keywords of :func:`load_model` (``cond``, ``uncond``, ``guidance``, ``class_label``, ``prompt``,
            ``negative_prompt``, ``device``, ``dtype``, ``shape``): the rate of the conditioned, guided model.

    Returns:
        the dict of ``flowcert lipschitz --model --format json``: ``t`` (points,), ``empirical_mean``,
        ``empirical_mean_se``, ``empirical_mean_ci`` (points, 2), ``empirical_sup``, ``iterations_mean``,
        ``iterations_max``, ``converged_fraction``, ``samples_from``, ``power_iteration``, ``seconds``,
        ``passes``, ``model``.

    Raises:
        InputError: bad options, a window outside the trained range, data of the wrong shape or with NaN.
    """
    from .numcore.checks import option

    with _threads(threads) as n_threads:
        target, _ = _model_target(model, data=data, points=points, teacher_steps=teacher_steps, load=load)
        delta, T = target.window(delta, T)
        seed = option("seed", seed)
        target.probe(delta, T, batch=_probe_batch("balanced", samples=samples))
        _announce(announce, target.plan_rate(samples, iters), n_threads)
        return target.lipschitz(delta=delta, T=T, samples=samples, seed=seed, iters=iters, tol=tol,
                                progress=progress)


def model_grid(model: str | Denoiser, steps: int = 8, *, kind: str = "balanced", bound: str = "empirical",
               delta: float | None = None, T: float | None = None, units: Iterable[str] = ("t",),
               beta_schedule: str = "linear", clip: bool = False, samples: int = 256,
               data: np.ndarray | str | None = None, seed: int = 0, points: int = 40, solver: str | None = None,
               train_samples: int = 128, test_samples: int = 128, teacher_steps: int = 32, effort: float = 0.1,
               threads: int | None = None, shift: float | None = None, mu: float | None = None,
               resolution: str | tuple[int, int] | None = None, scheduler_config: dict | str | None = None,
               load: dict | None = None, progress=no_progress,
               announce: Callable[[int, str], None] | None = None) -> dict:
    """A descending time grid of N = ``steps`` segments for a trained model: :func:`grid`'s code
    (:func:`flowcert.studies.timegrid.build`) on the model, with a model's defaults.

    ``balanced`` is balanced on the model's p_t-average of ||J||_op (see :func:`model_lipschitz`);
    ``optimal`` minimises ``solver``'s relative MSE against the model's own many-step teacher (RK4 in log
    sigma, ``teacher_steps`` steps, its self-convergence against twice the steps reported on 32 trajectories) on
    ``train_samples`` trajectories from x_T ~ N(0, I); a model differentiable in sigma gets exact gradients
    through the network and the split search (:class:`flowcert.studies.targets.ModelBatches`: L-BFGS-B from
    the best two of log-SNR, KL-optimal, EDM, the GITS-style grid of the same trajectories and four mid-dense
    grids, one budget of ``effort`` x 400 error evaluations), any other the derivative-free search of
    :func:`optimise_grid` from the best of the closed forms and the GITS-style grid; its error and the closed
    forms' are measured on ``test_samples`` fresh ones.  ``uniform``, ``edm``, ``logsnr``, ``kl-optimal``, ``flow-shift`` and
    ``flux-mu`` are closed forms (the flow kinds' ``shift``/``mu`` default to the model's own flow-matching
    scheduler config, or ``scheduler_config``'s).
    The window defaults to [1e-3, 5] inside the model's trained sigma range.

    Args:
        solver: ``euler``, ``heun`` or ``dpmpp_2m`` (kind ``optimal``).
        effort: multiplies the search's evaluation budgets (0.1: a tenth of a mixture's).
        threads: torch CPU threads while it runs (default: ``OPTIONS["threads"]``, 1: measured faster than 2 on a
            busy 2-core machine and no slower on an idle one, docs/results.md); the caller's setting is restored.
        announce: ``announce(evaluations, text)`` is called once with the planned work before it starts (the
            command line prints it as the start line).
        load: keywords of :func:`load_model` (conditioning, guidance, device, dtype, shape): the grid of the
            conditioned, guided model against its own guided teacher.

    Returns:
        the dict of :func:`grid` (``t``, ``lambda``, ``lambda_T``, units, ...) plus ``model`` and
        ``cost`` (seconds, network passes per sample); kind ``optimal`` adds ``solver`` and ``optimal``
        (the search's record, the teacher, ``gits`` and ``cost``: model evaluations and seconds of the
        teacher, the search and the GITS-style search, the test-batch measurements, and the training side
        (training teacher + search) and test side (test teacher, self-convergence check, measurements) apart).

    Raises:
        InputError: a bound other than ``empirical``, a bad kind, unit, steps, window or batch size, bad
            data; kind ``optimal`` without a solver.
    """
    from .studies.timegrid import build

    with _threads(threads) as n_threads:
        target, _ = _model_target(model, data=data, points=points, teacher_steps=teacher_steps, load=load)
        delta, T = target.window(delta, T)
        target.probe(delta, T, batch=_probe_batch(kind, samples=samples, train=train_samples, test=test_samples))
        _announce(announce, target.plan_grid(kind, samples=samples, train=train_samples, test=test_samples),
                  n_threads)
        return build(target, steps, kind=kind, bound=bound, delta=delta, T=T, units=tuple(units),
                     beta_schedule=beta_schedule, clip=clip, samples=samples, seed=seed, solver=solver,
                     train_samples=train_samples, test_samples=test_samples, effort=effort, shift=shift, mu=mu,
                     resolution=resolution, scheduler_config=_config(scheduler_config), progress=progress)


def model_export_grid(model: str | Denoiser, steps: int, preset: str, *, kind: str | None = None,
                      solver: str | None = None, bound: str = "empirical", delta: float | None = None,
                      T: float | None = None, beta_schedule: str | None = None, clip: bool = False,
                      shift: float | None = None, scheduler_config: dict | str | None = None, samples: int = 256,
                      data: np.ndarray | str | None = None, seed: int = 0, train_samples: int = 128,
                      test_samples: int = 128, teacher_steps: int = 32, effort: float = 0.1,
                      threads: int | None = None, mu: float | None = None,
                      resolution: str | tuple[int, int] | None = None, load: dict | None = None,
                      progress=no_progress, announce: Callable[[int, str], None] | None = None) -> dict:
    """A trained model's grid exported for one sampler (``flowcert grid --model M --for PRESET``): :func:`export_grid`'s
    code (:func:`flowcert.studies.timegrid.export`) on the model, with a model's defaults.

    As :func:`export_grid`, against the model's own teacher: without ``kind`` the grid that wins for the
    solver the preset runs (its optimal grid or a closed form, smallest training error once exported);
    with ``kind`` that grid (:func:`model_grid`).  A diffusers model's exports follow its own scheduler
    config unless ``scheduler_config`` is given.

    Args:
        threads: torch CPU threads while it runs (default: ``OPTIONS["threads"]``, 1: measured faster than 2 on a
            busy 2-core machine and no slower on an idle one, docs/results.md); the caller's setting is restored.
        announce: ``announce(evaluations, text)`` is called once with the planned work before it starts (the
            command line prints it as the start line).
        load: keywords of :func:`load_model` (conditioning, guidance, device, dtype, shape).

    Returns:
        dict: ``export`` (:class:`Export`), ``grid`` and ``selection`` (None when ``kind`` was given; else
        as :func:`export_grid`'s, plus ``cost``: model evaluations and seconds of the teacher, the search
        and the GITS-style search).

    Raises:
        InputError: an unknown preset, kind or solver; bad steps, window or batch sizes; a grid the preset
            cannot take.
    """
    from .studies.timegrid import export as export_

    scheduler_config = _config(scheduler_config)
    with _threads(threads) as n_threads:
        target, _ = _model_target(model, data=data, teacher_steps=teacher_steps, load=load)
        delta, T = target.window(delta, T)
        target.probe(delta, T, batch=_probe_batch(kind or "optimal", samples=samples, train=train_samples,
                                                  test=test_samples))
        _announce(announce, target.plan_grid(kind or "optimal", samples=samples, train=train_samples,
                                             test=test_samples), n_threads)
        return export_(target, steps, preset, kind=kind, solver=solver, bound=bound, delta=delta, T=T,
                       beta_schedule=beta_schedule, clip=clip, shift=shift, mu=mu, resolution=resolution,
                       scheduler_config=scheduler_config,
                       samples=samples, seed=seed, train_samples=train_samples, test_samples=test_samples,
                       effort=effort, progress=progress)


def model_solvers(model: str | Denoiser, steps: Iterable[int] | str = (4, 8, 16), *, samples: int = 512,
                  data: np.ndarray | str | None = None, reference: np.ndarray | str | None = None,
                  teacher_steps: int = 64, delta: float | None = None, T: float | None = None, seed: int = 0,
                  rate_samples: int = 256, train_samples: int = 128, effort: float = 0.1,
                  solvers: str | Iterable[str] | None = None, plot: str | None = None, threads: int | None = None,
                  load: dict | None = None, progress=no_progress,
                  announce: Callable[[int, str], None] | None = None) -> dict:
    """Which grid makes which solver most accurate for a trained model: :func:`solvers`'s study
    (:func:`flowcert.studies.solver_study.run`) on the model, with a model's defaults.

    From ``samples`` x_T ~ N(0, I): every grid (balanced on the model's E||J||, uniform, EDM, log-SNR,
    KL-optimal, the GITS-style grid and each solver's optimal grid, both fitted on ``train_samples`` other
    teacher trajectories) and N in ``steps``; relative MSE to the model's own many-step teacher endpoint from the same x_T
    (RK4, ``teacher_steps`` steps; its self-convergence against twice the steps is reported) with a 95%
    interval, and with ``reference`` (held-out data) the sliced W2 to it at p_delta with a bootstrap
    interval.

    Args:
        solvers: the solvers to study (as in :func:`solvers`; default all).
        threads: torch CPU threads while it runs (default: ``OPTIONS["threads"]``, 1: measured faster than 2 on a
            busy 2-core machine and no slower on an idle one, docs/results.md); the caller's setting is restored.
        announce: ``announce(evaluations, text)`` is called once with the planned work before it starts (the
            command line prints it as the start line).
        load: keywords of :func:`load_model` (conditioning, guidance, device, dtype, shape).

    Returns:
        the dict of ``flowcert solvers --model --format json``: ``solvers``, ``rows`` (grid, solver, steps, nfe,
        rel_mse, rel_mse_ci, sw, sw_ci), ``teacher``, ``sw_floor``, ``summary``, ``grid_nodes``, ``rate``.

    Raises:
        InputError: bad steps, samples, window or data; an unwritable ``plot``.
    """
    from .numcore.checks import OPTIONS, options, steps_list
    from .numcore.io import check_destination
    from .numcore.solvers import check_list
    from .studies import solver_study
    from .studies.targets import data_for

    chosen = check_list(solvers)
    if plot is not None:
        check_destination(plot, "plot", [*model_files(model), *(x for x in (data, reference) if isinstance(x, str))])
    with _threads(threads) as n_threads:
        target, m = _model_target(model, data=data, teacher_steps=teacher_steps, load=load)
        delta, T = target.window(delta, T)
        ns = steps_list("steps", steps, OPTIONS["solvers.steps"].high)
        samples, seed, train_samples, effort = options(samples=samples, seed=seed, train_samples=train_samples,
                                                       effort=effort)
        ref = data_for(m, reference)
        target.probe(delta, T, batch=_probe_batch("study", samples=samples, train=train_samples, test=rate_samples))
        _announce(announce, target.plan_study(ns, samples=samples, train=train_samples, rate_samples=rate_samples),
                  n_threads)
        res = solver_study.run(target, ns, delta, T, samples=samples, seed=seed, rate_samples=rate_samples,
                               train_samples=train_samples, effort=effort, solvers=chosen, progress=progress,
                               reference=ref)
    if plot is not None:
        solver_study.plot(res, plot)
    return res


def fit(data: np.ndarray | str, *, max_components: int = 32, covariance_type: str = "full", reg_covar: float = 1e-6, seed: int = 0,
        name: str = "fitted", progress=no_progress) -> dict:
    """A Gaussian-mixture surrogate of data (scikit-learn ``GaussianMixture``, K by BIC) as a flowcert spec.

    Args:
        data: (n, d) array or .npy file (images are flattened).
        max_components: K = 1..max_components are fitted.
        covariance_type: ``full``, ``tied``, ``diag``, ``spherical`` or ``auto`` (all four).
        reg_covar: added to every covariance's diagonal (the surrogate's smallest variance).

    Returns:
        dict with ``spec`` (pass it to :func:`load_mixture`), ``K``, ``covariance_type``, ``bic`` (one
        row per fit), ``n``, ``d``, ``seconds``.

    Raises:
        InputError: data with NaN or of the wrong shape, bad options.
    """
    from .numcore.fit import COVARIANCE_TYPES, fit as fit_

    n_types = len(COVARIANCE_TYPES) if covariance_type == "auto" else 1
    with progress(n_types * int(max_components) if str(max_components).isdigit() else 0, "fit") as bar:
        return fit_(data, max_components=max_components, covariance_type=covariance_type, reg_covar=reg_covar,
                    seed=seed, name=name, progress=bar)


def train_example(example: str = "digits", out: str = "flowcert-digits", *, threads: int | None = None,
                  progress=no_progress, **options: float) -> dict:
    """Train an example diffusers model on scikit-learn's 8 x 8 digits: ``digits`` (a DDPM ``UNet2DModel``) or
    ``digits-flow`` (a class-conditional flow-matching ``UNet2DModel`` with a null class for guidance).

    Resumes from ``out/checkpoint.pt``; saves the EMA model with ``save_pretrained`` as a pipeline folder
    (``DDPMPipeline``; ``DigitsFlowPipeline`` with a FlowMatch scheduler and ``classifier.npz``) plus
    ``data/train.npy`` and ``data/test.npy`` (held-out digits; ``digits-flow`` also their labels).

    Args:
        example: ``digits`` or ``digits-flow``.
        out: the folder.
        threads: torch threads.
        options: ``steps``, ``batch``, ``lr``, ``warmup``, ``ema``, ``seed``, ``held_out``, ``checkpoint_every``;
            ``label_dropout`` for ``digits-flow``.

    Returns:
        dict with ``out``, ``files``, ``config``, ``parameters``, ``steps_done``, ``resumed_from``,
        ``final_loss``, ``seconds``.

    Raises:
        InputError: an unknown example, bad options, a checkpoint of another configuration; torch,
            diffusers or scikit-learn missing.
    """
    require("torch", "torch", "train-example")
    require("diffusers", "torch", "train-example")
    require("sklearn", None, "train-example", "scikit-learn")
    from .examples.trainer import train

    return train(example, out, progress=progress, threads=threads, **options)


def train_options(example: str = "digits", **options: float) -> dict:
    """The training options :func:`train_example` would use for ``example``: its defaults updated with ``options``
    (None: the default), each checked, before any folder is made or library imported.

    Raises:
        InputError: an unknown example or a bad option, in one line naming it.
    """
    from .examples.trainer import check_options, example as example_

    return check_options(example_(example), options)
