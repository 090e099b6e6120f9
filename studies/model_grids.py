"""Lipschitz tables, grids and the solver study for a trained model (any :class:`~models.model.TorchModel`).

* :func:`lipschitz` -- E||J||_op and the sampled sup along t (power iteration), the table of
  ``flowcert lipschitz --empirical`` without the analytic bounds (they need an exact mixture).
* :func:`rate` -- the empirical rate as a :class:`~bounds.stability.Stability` (Lambda and its interval).
* :func:`grid` -- every grid kind for the model, ``balanced`` on its empirical rate; exports as for
  mixtures.
* :func:`solvers` -- Euler, Heun and DPM-Solver++(2M) on every grid from the same x_T ~ N(0, I):
  relative MSE to the model's own many-step teacher endpoint (95% interval), and sliced W2 to held-out
  data pushed to p_delta (bootstrap interval), with the teacher's own distance as the floor.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..numcore import grids
from ..numcore.checks import InputError, integer, real
from ..numcore.io import no_progress
from ..numcore.solvers import NAMES, SOLVERS as REGISTRY

DEFAULT_SAMPLES = 256
DEFAULT_POINTS = 40
# teacher trajectories the optimal grid of a model is fitted / measured on, and the search's budgets (1 = a
# mixture's, where one evaluation is cheap): sized so that N = 8 with its teacher takes about 2 minutes on 2 cores
MODEL_TRAIN_SAMPLES, MODEL_TEST_SAMPLES = 128, 256
MODEL_EFFORT = 0.1
NO_BOUNDS = ("analytic bounds (tri, sharp, onesided) need an exact Gaussian mixture: for a trained model only "
             "the sampled statistics of ||J||_op are reported")


def window(model, delta: float | None, T: float | None, default_delta: float, default_T: float):
    """(delta, T): the given window, or the defaults clipped to the model's trained sigma range.

    Raises:
        InputError: a window outside the trained range, or delta >= T.
    """
    from ..numcore.checks import time_window

    rng = model.t_range()
    lo, hi = (0.0, math.inf) if rng is None else rng
    d = max(default_delta, lo) if delta is None else real("delta", delta, low=0.0, low_open=True)
    T_ = min(default_T, hi) if T is None else real("T", T, low=0.0, low_open=True, high=50.0)
    if d < lo * (1 - 1e-9):
        raise InputError(f"`delta` = {d:g}: below the model's trained range (OU time {lo:.4g}, sigma "
                         f"{model.sigma_range[0]:.4g}): expected >= {lo:.4g}")
    if T_ > hi * (1 + 1e-9):
        raise InputError(f"`T` = {T_:g}: above the model's trained range (OU time {hi:.4g}, sigma "
                         f"{model.sigma_range[1]:.4g}): expected <= {hi:.4g}")
    return time_window(d, T_)


def data_for(model, data):
    """Data x_0 (n, d) float64 for a model, or None."""
    if data is None:
        return None
    from ..models.jacobian import load_data

    return load_data(data, model.d)


def lipschitz(model, *, points: int = DEFAULT_POINTS, samples: int = DEFAULT_SAMPLES, data=None,
              delta: float, T: float, seed: int = 0, iters: int | None = None, tol: float | None = None,
              teacher_steps: int = 64, progress=no_progress) -> dict:
    """E||J(x, t)||_op (with its Monte-Carlo interval), the sampled sup, and the power-iteration record on
    ``points`` log-spaced times of [delta, T]; the JSON of ``flowcert lipschitz --model``."""
    from ..models.jacobian import DEFAULT_ITERS, DEFAULT_TOL, table

    points = integer("points", points, low=2, high=10000)
    samples = integer("empirical", samples, low=2, high=10**7)
    iters = integer("iters", DEFAULT_ITERS if iters is None else iters, low=1, high=10000)
    tol = real("tol", DEFAULT_TOL if tol is None else tol, low=0.0, low_open=True, high=1.0)
    ts = np.geomspace(delta, T, points)
    with progress(points, "||J|| (power iteration)") as bar:
        tab = table(model, ts, samples, data=data, seed=seed, iters=iters, tol=tol, teacher_steps=teacher_steps,
                    progress=bar)
    return {"model": model.describe(), "mixture": model.name, "delta": delta, "T": T, **tab,
            "scope": "sampled", "where": "sampled points of p_t; a trained model has no analytic bound",
            "no_bounds": NO_BOUNDS,
            "bounds": [], "what": {"empirical_mean": "p_t-average of ||J(x,t)||_op (Monte Carlo, with its interval)",
                                   "empirical_sup": "largest ||J||_op among the sampled points (not a bound)"}}


def rate(tab: dict, delta: float, T: float):
    """The Stability of a :func:`lipschitz` table (Lambda of the interpolated E||J||, +-2 se interval)."""
    from ..bounds.stability import EmpiricalRate, empirical_stability

    r = EmpiricalRate(np.asarray(tab["t"]), np.asarray(tab["empirical_mean"]), np.asarray(tab["empirical_mean_se"]),
                      np.asarray(tab["empirical_sup"]), tab["empirical_samples"], tab["empirical_seed"])
    st = empirical_stability(r, delta, T, what="p_t-average of ||J(x,t)||_op of the model (power iteration, Monte "
                                               "Carlo; a typical rate, not a bound)")
    st.meta["samples_from"] = tab["samples_from"]
    st.meta["seconds"] = tab["seconds"]
    return st


KINDS = grids.KINDS + ("optimal",)


def check_grid(kind: str, bound: str, units, steps: int, solver: str | None) -> tuple[int, str | None]:
    """Checked (steps, solver) of a model grid request."""
    from .optimal import check_optimal
    from ..numcore import units as un

    steps = integer("steps", steps, low=1, high=100000)
    if kind not in KINDS:
        raise InputError(f"`kind` = {kind!r}: expected one of {', '.join(KINDS)}")
    if bound != "empirical":
        raise InputError(f"`bound` = {bound!r}: a trained model has no analytic bound: expected empirical "
                         "(the model's p_t-average of ||J||_op)")
    for u in units:
        if u not in un.UNITS:
            raise InputError(f"`units` = {u!r}: expected one of {', '.join(un.UNITS)}")
    if kind == "optimal":
        solver = check_optimal(solver, steps)
    return steps, solver


def batches_for(model, *, delta: float, T: float, train_samples: int, test_samples: int, seed: int,
                teacher_steps: int, progress=no_progress) -> ModelBatches:
    """:class:`ModelBatches` with checked sizes."""
    train = integer("train_samples", train_samples, low=2, high=10**6)
    test = integer("test_samples", test_samples, low=2, high=10**6)
    teacher_steps = integer("teacher_steps", teacher_steps, low=1, high=100000)
    return ModelBatches(model, delta, T, train, test, seed, teacher_steps, progress=progress)


def grid(model, steps: int = 8, *, kind: str = "balanced", bound: str = "empirical", delta: float, T: float,
         units=("t",), beta_schedule: str = "linear", clip: bool = False, samples: int = DEFAULT_SAMPLES,
         data=None, seed: int = 0, points: int = DEFAULT_POINTS, solver: str | None = None,
         train_samples: int = MODEL_TRAIN_SAMPLES, test_samples: int = MODEL_TEST_SAMPLES, teacher_steps: int = 64,
         effort: float = MODEL_EFFORT, progress=no_progress) -> dict:
    """A grid of N = ``steps`` segments for the model (the JSON of ``flowcert grid --model``).

    ``balanced`` is balanced on the model's E||J||_op (``bound`` must be ``empirical``); ``optimal`` is
    ``solver``'s optimal grid against the model's own teacher (:func:`optimal`); the other kinds are
    closed forms (``lambda`` is then None).

    Raises:
        InputError: a bound other than empirical, a bad kind, steps, units, window or batch size; kind
            ``optimal`` without a solver.
    """
    from .timegrid import SAMPLING_NOTE, from_stability
    from ..numcore.checks import option

    steps, solver = check_grid(kind, bound, units, steps, solver)
    t0 = time.time()
    st, tab, t, extra = None, None, None, {"sampling": SAMPLING_NOTE}
    if kind == "balanced":
        tab = lipschitz(model, points=points, samples=samples, data=data, delta=delta, T=T, seed=seed,
                        progress=progress)
        st = rate(tab, delta, T)
    elif kind == "optimal":
        effort = option("effort", effort)
        b = batches_for(model, delta=delta, T=T, train_samples=train_samples, test_samples=test_samples, seed=seed,
                        teacher_steps=teacher_steps, progress=progress)
        rec = optimal(model, steps, solver, batches=b, effort=effort)
        t = rec.pop("t")
        extra = {"solver": solver, "optimal": rec}
    out = from_stability(st, steps, kind=kind, delta=delta, T=T, units=units, beta_schedule=beta_schedule, clip=clip,
                         t=t, extra=extra)
    out = {"model": model.describe(), "mixture": model.name, **out}
    out["cost"] = {"seconds": time.time() - t0,
                   "what": {"balanced": "wall time of the grid including its rate (the Jacobian table)",
                            "optimal": "wall time of the teacher and the search (model evaluations in "
                                       "optimal.cost)"}.get(kind, "closed form")}
    if tab is not None:
        out["cost"]["model_passes_per_sample"] = int(tab["passes"])
    return out


def export(model, steps: int, preset: str, *, kind: str | None = None, solver: str | None = None,
           bound: str = "empirical", delta: float, T: float, beta_schedule: str | None = None, clip: bool = False,
           shift: float | None = None, scheduler_config: dict | None = None, samples: int = DEFAULT_SAMPLES,
           data=None, seed: int = 0, train_samples: int = MODEL_TRAIN_SAMPLES, test_samples: int = MODEL_TEST_SAMPLES,
           teacher_steps: int = 64, effort: float = MODEL_EFFORT, progress=no_progress) -> dict:
    """A model's grid exported for one sampler: with ``kind`` that grid (:func:`grid`), without it the grid that
    wins for the solver the preset runs (:func:`studies.optimal.winning_export` on the model's teacher
    batches, the GITS-style grid among the search's starts).  A diffusers model's exports follow its own
    scheduler config unless ``scheduler_config`` is given.

    Returns:
        dict: ``export``, ``grid`` and ``selection`` (None with ``kind``), as :func:`flowcert.export_grid`.
    """
    from .optimal import winning_export
    from ..exports.presets import check, export as export_
    from ..numcore.checks import option

    check(preset)
    if scheduler_config is None:  # the model's own scheduler: describe() gives the path of its config file
        scheduler_config = model.describe().get("scheduler_config")
        if isinstance(scheduler_config, str):
            from ..numcore.io import read_json

            scheduler_config = read_json(scheduler_config)
    if kind is not None:
        g = grid(model, steps, kind=kind, bound=bound, delta=delta, T=T, beta_schedule=beta_schedule or "linear",
                 clip=clip, samples=samples, data=data, seed=seed, solver=solver, train_samples=train_samples,
                 test_samples=test_samples, teacher_steps=teacher_steps, effort=effort, progress=progress)
        return {"export": export_(preset, g["t"], beta_schedule=beta_schedule, clip=clip, shift=shift,
                                  scheduler_config=scheduler_config), "grid": g, "selection": None}
    steps, _ = check_grid("optimal", bound, ("t",), steps, solver or "euler")
    effort = option("effort", effort)
    from .optimal import baseline_grids

    # the preset's own checks before the teacher runs (as winning_export does for a mixture)
    export_(preset, baseline_grids(steps, delta, T)["logsnr"], beta_schedule=beta_schedule, clip=clip, shift=shift,
            scheduler_config=scheduler_config)
    b = batches_for(model, delta=delta, T=T, train_samples=train_samples, test_samples=test_samples, seed=seed,
                    teacher_steps=teacher_steps, progress=progress)
    gits = gits_search(model, None, steps, delta=delta, T=T, trajectory=b.trajectory)
    e0, clock = b.counter.samples, time.perf_counter()
    ex, rec = winning_export(None, steps, preset, solver=solver, delta=delta, T=T, beta_schedule=beta_schedule,
                             clip=clip, shift=shift, scheduler_config=scheduler_config, effort=effort,
                             batches=b, starts={"gits": gits["t"][steps]}, progress=progress)
    rec["cost"] = {"teacher": {"model_evaluations": b.teacher["model_evaluations"], "seconds": b.teacher["seconds"]},
                   "search": {"model_evaluations": b.counter.samples - e0, "seconds": time.perf_counter() - clock},
                   "gits": {"model_evaluations": b.trajectory["evaluations"],
                            "seconds": b.trajectory["seconds"] + gits["seconds"]}}
    g = {"model": model.describe(), "mixture": model.name, "kind": rec["kind"], "bound": None, "steps": steps,
         "delta": delta, "T": T, "t": ex.t, "solver": rec["solver"]}
    return {"export": ex, "grid": g, "selection": rec}


# ----------------------------------------------------------------------------- the solver study
MODEL_GRIDS = ("balanced-empirical", "uniform", "edm", "logsnr", "kl-optimal", "gits", "optimal")
SOLVERS = NAMES  # the registry's solvers (numcore.solvers)
SW_DIRECTIONS = 256


def _push(data: np.ndarray, t: float, rng) -> np.ndarray:
    """Data x_0 pushed to p_t: alpha x_0 + sigma_vp z."""
    return math.exp(-t) * data + math.sqrt(-math.expm1(-2 * t)) * rng.standard_normal(data.shape)


def solvers(model, steps, *, delta: float, T: float, samples: int = 512, reference=None, data=None, seed: int = 0,
            teacher_steps: int = 64, rate_samples: int = DEFAULT_SAMPLES, points: int = DEFAULT_POINTS,
            train_samples: int = MODEL_TRAIN_SAMPLES, effort: float = MODEL_EFFORT, progress=no_progress) -> dict:
    """Which grid makes Euler, Heun and DPM-Solver++(2M) most accurate for a trained model.

    From ``samples`` x_T ~ N(0, I) (seeded), every grid of :data:`MODEL_GRIDS` and N in ``steps``:
    relative MSE to the model's own many-step teacher endpoint from the same x_T (95% interval), and with
    ``reference`` (held-out data x_0) the sliced W2 of the endpoints to the reference pushed to p_delta
    (bootstrap 95% interval), beside the teacher's own distance (its floor).  The balanced grid's rate is
    the model's E||J|| from ``data`` (or from the model's ODE); the ``gits`` grid comes from
    :func:`gits_search` and each solver's ``optimal`` grid from :func:`optimal`, both on a separate
    training batch of ``train_samples`` teacher trajectories (:class:`ModelBatches`).

    Returns:
        dict: ``rows`` (grid, solver, steps, nfe, rel_mse, rel_mse_ci, sw, sw_ci), ``teacher`` (steps,
        NFE, self-convergence, seconds), ``sw_floor``, ``summary`` (winner per solver and N), ``grids``
        ({label: {N: t}}), ``optimal`` (per solver and N the search's record), ``cost`` (seconds and
        network passes of the empirical rate), ``model``.
    """
    from ..numcore.distances import directions, relative_mse, sliced_wasserstein_ci
    from ..numcore.checks import option
    from ..models.flow import solve
    from .solver_study import Row, summarise

    samples = integer("samples", samples, low=16, high=10**6)
    effort = option("effort", effort)
    t_start = time.time()
    batches = batches_for(model, delta=delta, T=T, train_samples=train_samples, test_samples=samples, seed=seed,
                          teacher_steps=teacher_steps, progress=progress)
    xT, teach = batches.x_test, {**batches.teacher, "x": batches.y_test}
    rate_tab = lipschitz(model, points=points, samples=rate_samples, data=data, delta=delta, T=T, seed=seed,
                         teacher_steps=teacher_steps)
    st = rate(rate_tab, delta, T)
    gits = gits_search(model, None, list(steps), delta=delta, T=T, trajectory=batches.trajectory)
    opt, coarse = {}, {}
    with progress(len(SOLVERS) * len(steps), "optimal grids") as bar:
        for solver in SOLVERS:
            for N in sorted(steps):
                if N > 64:
                    continue
                rec = optimal(model, N, solver, batches=batches, effort=effort, coarse=coarse.get(solver))
                opt[solver, N] = rec
                coarse[solver] = rec["t"]
                bar.update(1)

    def nodes_of(label, N, solver):
        if label == "gits":
            return gits["t"][N]
        if label == "optimal":
            return opt[solver, N]["t"] if (solver, N) in opt else None
        kind = "balanced" if label.startswith("balanced") else label
        return grids.build(kind, N, delta, T, st.integral if kind == "balanced" else None)

    rng = np.random.default_rng(seed + 1)
    theta = directions(model.d, SW_DIRECTIONS, rng)
    ref = None if reference is None else _push(reference, delta, rng)
    floor = None
    if ref is not None:
        e = sliced_wasserstein_ci(teach["x"], ref, theta, rng)
        floor = {"value": e.value, "ci": [e.ci_low, e.ci_high],
                 "what": "SW2 of the teacher's endpoints to the reference at p_delta: the model's own distance, "
                         "which few-step solvers approach from above"}
        if data is not None:
            e2 = sliced_wasserstein_ci(_push(data, delta, rng), ref, theta, rng)
            floor["data"] = {"value": e2.value, "ci": [e2.ci_low, e2.ci_high],
                             "what": "SW2 of the training data to the reference, both at p_delta (two real samples)"}
    rows, sws, grid_nodes = [], {}, {}
    with progress(len(MODEL_GRIDS) * len(steps) * len(SOLVERS), "solvers") as bar:
        for label in MODEL_GRIDS:
            for N in steps:
                for solver in SOLVERS:
                    t = nodes_of(label, N, solver)
                    bar.update(1)
                    if t is None:
                        continue
                    grid_nodes.setdefault(label if label != "optimal" else f"optimal-{solver}", {})[str(N)] = t
                    x = solve(model, xT, t, solver)
                    e = relative_mse(x, teach["x"])
                    sw = sliced_wasserstein_ci(x, ref, theta, rng) if ref is not None else None
                    rows.append(Row(label, solver, N, REGISTRY[solver].evaluations(N), "flowcert", e.value,
                                    (e.ci_low, e.ci_high), sw.value if sw else float("nan")))
                    sws[(label, solver, N)] = None if sw is None else [sw.ci_low, sw.ci_high]
    out_rows = [{"grid": r.grid, "solver": r.solver, "steps": r.steps, "nfe": r.nfe, "rel_mse": r.rel_mse,
                 "rel_mse_ci": list(r.rel_mse_ci), "sw": r.sw if ref is not None else None,
                 "sw_ci": sws[(r.grid, r.solver, r.steps)]} for r in rows]
    return {
        "model": model.describe(), "mixture": model.name, "delta": delta, "T": T, "samples": samples, "seed": seed,
        "steps": list(steps), "grids": list(MODEL_GRIDS), "solvers": list(SOLVERS), "grid_nodes": grid_nodes,
        "teacher": {k: v for k, v in teach.items() if k != "x"},
        "lambda_T": {"balanced-empirical": st.integral.total}, "lambda_T_mc_interval": st.meta["lambda_T_mc_interval"],
        "rate": {"samples": rate_samples, "points": points, "samples_from": rate_tab["samples_from"],
                 "seconds": rate_tab["seconds"], "passes": rate_tab["passes"]},
        "gits": {k: v for k, v in gits.items() if k not in ("t", "cost_matrix")},
        "optimal": {solver: {str(N): {k: v for k, v in rec.items() if k not in ("baselines",)}
                             for (s_, N), rec in opt.items() if s_ == solver} for solver in SOLVERS},
        "train_samples": len(batches.x_train),
        "sw_directions": SW_DIRECTIONS, "sw_floor": floor,
        "reference": None if reference is None else {"n": int(reference.shape[0]),
                                                     "what": "held-out data x_0 pushed to p_delta"},
        "rows": out_rows, "summary": summarise(rows), "seconds": time.time() - t_start,
    }


# ----------------------------------------------------------------------------- the optimal grid of a model


class ModelBatches:
    """A trained model's counterpart of :class:`studies.optimal.Batches`: start points x_T ~ N(0, I) and the
    model's own many-step teacher end points Phi_{T->delta}(x_T) (:mod:`models.flow`: RK4 in log sigma).

    The test batch is ``prior(model, test, seed)`` (the x_T of :func:`solvers` with the same seed and size);
    the training batch is drawn with seed + 1.  The training teacher keeps its nodes (``trajectory``), so a
    GITS-style search on the same batch costs no further model evaluation.  ``counter`` counts every model
    evaluation (in samples) made through these batches.
    """

    def __init__(self, model, delta: float, T: float, train: int = MODEL_TRAIN_SAMPLES, test: int = MODEL_TEST_SAMPLES,
                 seed: int = 0, teacher_steps: int = 64, check: int = 64, progress=no_progress):
        from ..models.flow import Counter, nodes, prior, teacher

        self.model, self.delta, self.T, self.seed, self.teacher_steps = model, delta, T, seed, int(teacher_steps)
        self.counter = Counter(model)
        with progress(2, "teacher") as bar:
            clock = time.perf_counter()
            self.x_test = prior(model, test, seed)
            teach = teacher(model, self.x_test, T, delta, teacher_steps, check=check)
            self.y_test = teach["x"]
            self.counter.samples += int(teach["nfe"]) * test + (8 * teacher_steps * min(check, test) if check else 0)
            bar.update(1)
            self.x_train = prior(model, train, seed + 1)
            c0, t0 = self.counter.samples, time.perf_counter()
            self.trajectory = nodes(model, self.x_train, T, delta, teacher_steps, counter=self.counter)
            self.trajectory.update(evaluations=self.counter.samples - c0, seconds=time.perf_counter() - t0)
            self.y_train = self.trajectory["y"][-1] * math.exp(-delta)
            bar.update(1)
        self.teacher = {k: v for k, v in teach.items() if k != "x"}
        self.teacher.update(model_evaluations=self.counter.samples, seconds=time.perf_counter() - clock)
        self.objective = (f"relative MSE sum |x - teacher(x_T)|^2 / sum |teacher(x_T)|^2 of the solver's end points x "
                          f"at delta against the model's own teacher ({teach['method']}, {teacher_steps} steps), "
                          "x_T ~ N(0, I), the model's denoiser")

    @property
    def sizes(self) -> dict:
        return {"train_samples": len(self.x_train), "test_samples": len(self.x_test), "seed": self.seed,
                "teacher_steps": self.teacher_steps, "teacher": self.teacher, "against": "teacher"}

    def training_error(self, solver: str, first: int | None = None):
        """error(t): the solver's relative MSE against the teacher on the training batch (or its ``first``)."""
        from ..numcore.gridsearch import endpoint_error
        from ..models.flow import solve

        x, y = self.x_train[:first], self.y_train[:first]
        return endpoint_error(lambda t: solve(self.model, x, t, solver, counter=self.counter), y)

    def test_error(self, t, solver: str) -> dict:
        """The solver's relative MSE against the teacher on the test batch with its 95% interval."""
        from ..numcore.distances import relative_mse
        from ..models.flow import solve

        e = relative_mse(solve(self.model, self.x_test, t, solver, counter=self.counter), self.y_test)
        return {"rel_mse": e.value, "rel_mse_ci": [e.ci_low, e.ci_high]}


def optimal(model, steps: int, solver: str, *, batches: ModelBatches, effort: float = MODEL_EFFORT,
            coarse=None) -> dict:
    """The grid of ``steps`` segments that minimises ``solver``'s error against the model's own teacher.

    :func:`studies.optimal.optimal_grid` (the search of :mod:`numcore.gridsearch`) on ``batches``, started
    from the best of log-SNR, KL-optimal, EDM and the GITS-style grid of the same training batch (whose
    dynamic programme reuses the teacher's nodes); the record adds ``gits`` (its test error, cost and
    nodes) and ``cost`` (model evaluations and seconds of the teacher and of the search, beside the
    GITS-style search's).
    """
    from .optimal import optimal_grid

    clock, e0 = time.perf_counter(), batches.counter.samples
    gits = gits_search(model, None, steps, delta=batches.delta, T=batches.T, trajectory=batches.trajectory)
    g_t = gits["t"][steps]
    starts = {"gits": g_t}
    if coarse is not None:
        from ..numcore.gridsearch import resample

        starts[f"optimal N={len(coarse) - 1} resampled"] = resample(coarse, steps)
    rec = optimal_grid(None, steps, solver, delta=batches.delta, T=batches.T, effort=effort, batches=batches,
                       starts=starts)
    search_evals = batches.counter.samples - e0
    rec["gits"] = {**batches.test_error(g_t, solver), "t": g_t, "method": gits["method"],
                   "candidates": gits["candidates"], "samples": gits["samples"]}
    te = batches.teacher
    rec["cost"] = {
        "teacher": {"model_evaluations": te["model_evaluations"], "seconds": te["seconds"],
                    "what": "teacher end points of the test and training batches (RK4) and the self-convergence "
                            "check"},
        "search": {"model_evaluations": search_evals, "seconds": time.perf_counter() - clock,
                   "what": "the grid search on the training batch and every test-batch measurement"},
        "gits": {"model_evaluations": batches.trajectory["evaluations"],
                 "seconds": batches.trajectory["seconds"] + gits["seconds"],
                 "what": "GITS-style search: the teacher's nodes on the training batch (shared here) and its "
                         "dynamic programme"},
        "unit": "model evaluations counted per sample (one network pass on one x)"}
    return rec


def gits_search(model, x_T, steps, *, delta: float, T: float, teacher_steps: int = 64, trajectory: dict | None = None
                ) -> dict:
    """A GITS-style teacher search (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
    Sampling"): teacher trajectories on ``teacher_steps`` + 1 nodes uniform in log sigma (one RK4 step
    between nodes, the denoiser at each node kept from its first stage: :func:`~models.flow.nodes`),
    the cost of one Euler step from every node i to every later node j (mean squared OU-scale distance to
    the teacher's state at j), and a dynamic programme for the path from T to delta with exactly N steps and
    the least summed cost.

    Args:
        x_T: (n, d) starting states (a search batch, not the test batch).
        steps: N, or a list of N (one dynamic programme each, on the same cost matrix).
        trajectory: the teacher's :func:`~models.flow.nodes` of x_T when computed already (then no
            model evaluation happens here; ``nfe_per_sample`` still states what the teacher cost).

    Returns:
        dict: ``t`` ({N: grid} OU times, descending), ``nfe_per_sample`` (4 teacher_steps + 1),
        ``nfe_total``, ``seconds``, ``candidates``, ``samples``, ``method``.
    """
    from ..numcore.units import t_from_sigma
    from ..models.flow import nodes

    t0 = time.time()
    ns = [steps] if isinstance(steps, int) else list(steps)
    tr = trajectory if trajectory is not None else nodes(model, x_T, T, delta, teacher_steps)
    Y, Dn, sig = tr["y"], tr["denoised"], tr["sigma"]  # (M, n, d), (M, n, d), (M,)
    alpha = 1.0 / np.sqrt(1.0 + sig**2)
    M = Y.shape[0]
    cost = np.full((M, M), np.inf)
    for i in range(M - 1):
        j = np.arange(i + 1, M)
        step = Y[i][None] + ((sig[j] - sig[i]) / sig[i])[:, None, None] * (Y[i] - Dn[i])[None]
        cost[i, j] = np.mean(np.sum((alpha[j, None, None] * (step - Y[j])) ** 2, axis=2), axis=1)
    grids_out = {}
    for N in ns:
        best = np.full((N + 1, M), np.inf)
        arg = np.zeros((N + 1, M), dtype=int)
        best[0, 0] = 0.0
        for k in range(1, N + 1):
            tot = best[k - 1][:, None] + cost  # (i, j)
            arg[k] = np.argmin(tot, axis=0)
            best[k] = tot[arg[k], np.arange(M)]
        path, j = [M - 1], M - 1
        for k in range(N, 0, -1):
            j = arg[k, j]
            path.append(j)
        t = t_from_sigma(sig[np.array(path[::-1])])
        t[0], t[-1] = T, delta
        grids_out[N] = t
    n = int(Y.shape[1])
    return {"t": grids_out, "nfe_per_sample": int(tr["nfe"]), "nfe_total": int(tr["nfe"]) * n,
            "seconds": time.time() - t0, "candidates": M, "samples": n, "cost_matrix": cost,
            "method": "GITS-style: Euler local costs on the teacher's log-sigma nodes, dynamic programme"}


def plot(result: dict, path) -> str:
    """Relative MSE to the teacher (top) and, with a reference, sliced W2 (bottom) against N, one panel per
    solver, one line per grid, 95% intervals shaded."""
    from ..numcore.io import pyplot, save_figure

    plt = pyplot()
    solvers_ = result["solvers"]
    has_sw = result["sw_floor"] is not None
    rows_n = 2 if has_sw else 1
    fig, axes = plt.subplots(rows_n, len(solvers_), figsize=(4.2 * len(solvers_), 3.6 * rows_n), squeeze=False,
                             sharex=True)
    for j, solver in enumerate(solvers_):
        for g in result["grids"]:
            rs = sorted((r for r in result["rows"] if r["solver"] == solver and r["grid"] == g), key=lambda r: r["steps"])
            n = np.array([r["steps"] for r in rs])
            e = np.array([r["rel_mse"] for r in rs])
            lo = np.maximum([r["rel_mse_ci"][0] for r in rs], 1e-300)
            line, = axes[0, j].plot(n, e, "-" if g.startswith("balanced") else "--", marker="o", ms=3, label=g)
            axes[0, j].fill_between(n, lo, [r["rel_mse_ci"][1] for r in rs], color=line.get_color(), alpha=0.15)
            if has_sw:
                axes[1, j].plot(n, [r["sw"] for r in rs], "-" if g.startswith("balanced") else "--", marker="o", ms=3,
                                color=line.get_color())
                axes[1, j].fill_between(n, [r["sw_ci"][0] for r in rs], [r["sw_ci"][1] for r in rs],
                                        color=line.get_color(), alpha=0.15)
        if has_sw:
            axes[1, j].axhline(result["sw_floor"]["value"], color="k", lw=0.8, ls=":", label="teacher")
            axes[1, j].set_yscale("log")
            axes[1, j].set_xlabel("steps N")
        axes[0, j].set_title(solver)
        axes[0, j].set_yscale("log")
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
    axes[0, 0].set_ylabel("relative MSE vs the model's teacher")
    axes[0, 0].legend(fontsize=7)
    if has_sw:
        axes[1, 0].set_ylabel("sliced W2 to held-out data")
        axes[1, 0].legend(fontsize=7)
    fig.suptitle(f"{result['mixture']}: x_T ~ N(0, I), T = {result['T']:g} -> delta = {result['delta']:g}, "
                 f"{result['samples']} samples", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
