"""The grid that makes one few-step solver most accurate on a mixture, and the export that wins for a sampler.

On a Gaussian mixture the flow map is known exactly (:mod:`numcore.flowmap`), so a solver's end-to-end
error on a grid can be measured and minimised directly:

    objective(t) = sum_i |S_t(x_i) - Phi_{T->delta}(x_i)|^2 / sum_i |Phi_{T->delta}(x_i)|^2,   x_i ~ p_T,

S_t the solver (any of the registry, :mod:`numcore.solvers`) with the exact denoiser on the
grid t, over a training batch; :func:`numcore.gridsearch.search` minimises it from the best closed-form grid
(log-SNR, KL-optimal, EDM).  The reported error is measured on a separate fresh batch, with a 95% interval,
next to the closed forms' errors on the same batch.
"""

from __future__ import annotations

import time

import numpy as np

from ..numcore import grids, gridsearch
from ..numcore.checks import InputError, option
from ..numcore.io import no_progress
from ..numcore.mixture import GaussianMixture
from .targets import OBJECTIVE, Batches, Target, as_target
from ..numcore.solvers import NAMES, check

SOLVERS = NAMES  # the registry's solvers (numcore.solvers)
BASELINES = ("logsnr", "kl-optimal", "edm")
TRAIN_SAMPLES = 4096
SCREEN_SAMPLES = 1024  # the search runs on these first training trajectories, then refines on all of them
TEST_SAMPLES = 4096
MAX_STEPS = gridsearch.MAX_STEPS
def check_optimal(solver, steps: int) -> str:
    """The solver of an ``optimal`` grid (required) and its step count (at most MAX_STEPS); returns the solver."""
    if solver is None:
        raise InputError("`solver` missing: `kind` optimal is the grid of one solver: expected one of "
                         + ", ".join(SOLVERS))
    solver = check(solver).name
    if steps > MAX_STEPS:
        raise InputError(f"`steps` = {steps}: expected an integer <= {MAX_STEPS} for `kind` optimal "
                         "(the grid search's limit)")
    return solver


def check_steps(steps) -> int:
    return option("optimal.steps", steps)


def baseline_grids(steps: int, delta: float, T: float) -> dict:
    """{name: t} for the closed-form grids the search starts from and is compared with."""
    return {name: grids.build(name, steps, delta, T) for name in BASELINES}


def beaten_by(e: dict, others: dict) -> dict | None:
    """The grid among ``others`` ({name: {rel_mse, rel_mse_ci}}, measured on the same fresh batch as ``e``) whose
    whole 95% interval lies below ``e``'s relative MSE, the smallest such; None when there is none.  Returns
    {grid, rel_mse, rel_mse_ci, factor} with factor = e's error over that grid's.  A grid fitted on its training
    trajectories can fail on others (above N = 16 an optimal grid can blow up on a rare trajectory): this is the
    held-out check of the fresh batch."""
    below = {k: v for k, v in others.items() if v["rel_mse_ci"][1] < e["rel_mse"]}
    if not below:
        return None
    k = min(below, key=lambda n: below[n]["rel_mse"])
    return {"grid": k, "rel_mse": below[k]["rel_mse"], "rel_mse_ci": list(below[k]["rel_mse_ci"]),
            "factor": e["rel_mse"] / below[k]["rel_mse"]}


def evaluations(batches) -> int:
    """Model evaluations counted on a trained model's batches so far (0 for a mixture, where none are counted)."""
    counter = getattr(batches, "counter", None)
    return counter.samples if counter is not None else 0


def optimal_grid(target: Target | GaussianMixture, steps: int, solver: str, *, delta: float, T: float, train: int = TRAIN_SAMPLES,
                 test: int = TEST_SAMPLES, seed: int = 0, effort: float = 1.0, screen: int = SCREEN_SAMPLES,
                 batches: Batches | None = None, starts: dict | None = None, progress=no_progress) -> dict:
    """The grid of ``steps`` segments that minimises ``solver``'s end-to-end error against ``target``'s teacher.

    ``batches``: the training and test batches when built already (:meth:`Target.batches`).  The search starts
    from the best of log-SNR, KL-optimal, EDM, the target's own starts (a trained model's GITS-style grid of the
    same training batch) and ``starts``.

    Returns a JSON-ready dict: ``t`` (N + 1,), ``solver``, ``objective``, ``train_rel_mse`` (the objective
    at the optimum), ``rel_mse`` and ``rel_mse_ci`` (fresh test batch, 95%), ``baselines`` ({name: the
    same on the same test batch} for log-SNR, KL-optimal and EDM), ``beaten_by`` (:func:`beaten_by`: a closed
    form whose test interval lies wholly below the optimal grid's error, or null), ``search`` (method, stopping reason,
    evaluations, iterations, seconds, starting grid and every start's training error), the batch sizes,
    seed and the teacher's record; for a trained model also ``gits`` and ``cost`` (model evaluations and
    seconds of the teacher, the search and the GITS-style search).

    Raises:
        InputError: an unknown solver, ``steps`` outside 1..MAX_STEPS, bad batch sizes or effort.
    """
    target = as_target(target)
    solver = check(solver).name
    steps = check_steps(steps)
    effort = option("effort", effort)
    if batches is None:
        delta, T = target.window(delta, T, teacher=True)
        batches = target.batches(delta, T, train=train, test=test, seed=seed, progress=progress)
    clock, e0 = time.perf_counter(), evaluations(batches)
    out = _optimal(batches, steps, solver, {**target.starts(batches, steps), **(starts or {})}, effort, screen)
    target.finish_optimal(out, batches, steps, solver, clock, e0)
    return out


def _optimal(batches: Batches, steps: int, solver: str, starts: dict, effort: float, screen: int) -> dict:
    """The search from the closed forms and ``starts``, its grid measured on the test batch beside them."""
    base = baseline_grids(steps, batches.delta, batches.T)
    clock = time.perf_counter()
    res = search(batches, solver, steps, {**base, **starts}, effort, screen)
    out = {"t": res.t, "solver": solver, "steps": steps, "objective": getattr(batches, "objective", OBJECTIVE),
           "train_rel_mse": res.value, **batches.test_error(res.t, solver),
           "baselines": {name: batches.test_error(t, solver) for name, t in base.items()},
           "search": {"method": res.method, "stop": res.stop, "evaluations": res.evaluations,
                      "iterations": res.iterations, "seconds": time.perf_counter() - clock, "effort": effort,
                      "start": res.start, "start_train_rel_mse": res.start_values},
           **batches.sizes}
    best = min(out["baselines"], key=lambda k: out["baselines"][k]["rel_mse"])
    out["best_baseline"] = best
    out["gain_over_best_baseline"] = out["baselines"][best]["rel_mse"] / out["rel_mse"]
    out["beaten_by"] = beaten_by(out, out["baselines"])
    return out


def search(batches: Batches, solver: str, steps: int, starts: dict, effort: float = 1.0,
           screen: int = SCREEN_SAMPLES, coarse=None) -> gridsearch.SearchResult:
    """:func:`numcore.gridsearch.search` on the training batch.  Up to 8 steps every run goes over the whole batch
    (few-step errors are heavy-tailed: runs on its ``screen`` first trajectories chose another basin than the whole
    batch for 4 of 48 searches on the built-ins, DPM-Solver++(3M) on aniso3 at N = 8 1.7x worse on the test batch,
    even with their two best ends refined on all of it); above, the runs go over the screen and the whole batch weighs
    their ends and finishes.  Batches with ``split`` set (a trained model's, with gradients:
    :class:`studies.targets.ModelBatches`) get the split search of :func:`numcore.gridsearch.search`."""
    error = batches.training_error(solver)
    cheap = None
    if len(batches.x_train) > screen and steps > gridsearch.FULL_SIMPLEX:
        cheap = batches.training_error(solver, screen)
    return gridsearch.search(error, steps, batches.delta, batches.T, starts, effort=effort, screen=cheap,
                             coarse=coarse, split=bool(getattr(batches, "split", False)))


def implied_solver(preset: str, solver: str | None) -> str:
    """The solver a preset runs unless ``solver`` names another (the preset table's,
    :data:`exports.presets.PRESETS`, which reads the registry)."""
    from ..exports.presets import PRESETS, check as check_preset

    return check(solver).name if solver is not None else PRESETS[check_preset(preset)].solver


def candidate_grids(steps: int, delta: float, T: float, preset: str, scheduler_config: dict | None = None,
                    flow_params: dict | None = None) -> dict:
    """{name: t} of the closed forms a winning export weighs against the optimal grid: log-SNR, KL-optimal, EDM,
    and for a flow preset (diffusers-flowmatch; comfyui for a flow model) the flow pipelines' own defaults
    flow-shift and flux-mu with ``flow_params`` (``shift``, ``mu``; :func:`studies.timegrid.flow_options`)."""
    from ..exports.presets import is_flow

    out = baseline_grids(steps, delta, T)
    if is_flow(preset, scheduler_config):
        for name in grids.FLOW_KINDS:
            out[name] = grids.build(name, steps, delta, T, **(flow_params or {}))
    return out


def winning_export(target: Target | GaussianMixture, steps: int, preset: str, *, solver: str | None = None, delta: float,
                   T: float, beta_schedule: str | None = None, clip: bool = False, shift: float | None = None,
                   mu: float | None = None, resolution=None, scheduler_config: dict | None = None,
                   flow_params: dict | None = None, train: int = TRAIN_SAMPLES, test: int = TEST_SAMPLES,
                   seed: int = 0, effort: float = 1.0, batches=None, progress=no_progress):
    """The grid that wins for the solver a sampler preset runs, exported for that preset.

    Candidates: the solver's optimal grid (:func:`optimal_grid`) and the closed forms log-SNR, KL-optimal
    and EDM (and for a flow preset flow-shift and flux-mu with ``flow_params``: :func:`candidate_grids`), each
    exported for ``preset`` (rounded or clipped as the preset does); the one with the smallest
    error on the training batch is exported, and every candidate's error on the fresh test batch, measured on
    the nodes actually exported, is reported.  ``shift``, ``mu`` and ``resolution`` are the export's (the flow
    scheduler's shift it pre-inverts).

    Returns:
        (Export, record): the export and a JSON-ready dict: ``kind`` (the chosen grid), ``solver``,
        ``rel_mse``, ``rel_mse_ci`` (test batch, 95%), ``baselines`` ({name: {rel_mse, rel_mse_ci}} on the
        same batch), ``train_rel_mse`` ({candidate: training error}), ``objective``, ``measured_on``,
        ``search``, the batch sizes and ``beaten_by`` (:func:`beaten_by`: another candidate whose test interval lies
        wholly below the chosen one's error, or null); for a trained model ``cost`` (model evaluations and seconds
        of the teacher, the search and the GITS-style search).

    Raises:
        InputError: an unknown preset or solver, ``steps`` beyond MAX_STEPS, a grid the preset cannot take.
    """
    from ..exports.presets import check, export

    target = as_target(target)
    check(preset)
    given = solver is not None
    solver = implied_solver(preset, solver)
    steps = check_steps(steps)
    effort = option("effort", effort)
    options = dict(beta_schedule=beta_schedule, clip=clip, shift=shift, mu=mu, resolution=resolution,
                   scheduler_config=scheduler_config)
    export(preset, baseline_grids(steps, delta, T)["logsnr"], **options)  # the preset's own checks, before the work
    closed = candidate_grids(steps, delta, T, preset, scheduler_config, flow_params)
    if batches is None:
        delta, T = target.window(delta, T, teacher=True)
        batches = target.batches(delta, T, train=train, test=test, seed=seed, progress=progress)
    starts = target.starts(batches, steps)
    clock, e0 = time.perf_counter(), evaluations(batches)
    opt = _optimal(batches, steps, solver, starts, effort, SCREEN_SAMPLES)
    exports = {"optimal": export(preset, opt["t"], **options)}
    skipped = {}
    for name, t in closed.items():
        try:
            exports[name] = export(preset, t, **options)
        except InputError as exc:  # e.g. nodes that round onto one timestep: not a candidate
            skipped[name] = str(exc)
    train_err = {name: batches.training_error(solver)(ex.t) for name, ex in exports.items()}
    kind = min(train_err, key=train_err.get)
    test_err = {name: batches.test_error(ex.t, solver) for name, ex in exports.items()}
    record = {"kind": kind, "solver": solver, "solver_from": "given" if given else f"implied by {preset}",
              **test_err[kind], "baselines": {k: v for k, v in test_err.items() if k != "optimal"},
              "optimal": test_err["optimal"], "train_rel_mse": train_err, "objective": opt["objective"],
              "measured_on": "the exported nodes (after the preset's rounding or clipping), the solver's N steps "
                             "from the first to the last node; a consumer that appends sigma = 0 runs one more "
                             "step (the denoiser at the last node), not included",
              "search": opt["search"], "skipped": skipped, **batches.sizes,
              "beaten_by": beaten_by(test_err[kind], {k: v for k, v in test_err.items() if k != kind})}
    target.finish_export(record, batches, clock, e0)
    return exports[kind], record
