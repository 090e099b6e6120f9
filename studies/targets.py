"""What a study runs on: an exact Gaussian mixture or a trained model, behind one interface.

Every study (a grid of any kind, a solver's optimal grid, the export that wins for a sampler, the solver study)
takes a :class:`Target` and never asks which kind it is:

* :class:`MixtureTarget`: the exact flow map (:mod:`numcore.flowmap`, RK4 in log sigma_VE) is the teacher,
  x_T ~ p_T, the solvers run in numcore's compiled kernels with exact gradients, and every rate of
  :mod:`bounds.stability` (the analytic bounds and the empirical p_t-average of ||J||_op) can be balanced;
* :class:`ModelTarget`: the model's own many-step ODE (:mod:`models.flow`, RK4 in log sigma) is the teacher,
  x_T ~ N(0, I), the solvers run on the model's denoiser, the only rate is the empirical E||J||_op by power
  iteration (:mod:`models.jacobian`), and the teacher's nodes give a GITS-style starting grid for free.

Both give their start points and teacher end points as :class:`Batches` (a ``typing.Protocol``: the training
batch the searches fit on, the fresh test batch errors are reported on) and their teachers as :class:`Teacher`.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Protocol

import numpy as np

from ..numcore.checks import InputError, finite, option, time_window
from ..numcore.io import no_progress

# the exact teacher of the studies: RK4 step in log sigma_VE (relative RMS error ~3e-7 on ring8, estimated in
# every run)
TEACHER_STEP = 0.05
OBJECTIVE = ("relative MSE sum |x - Phi_{T->delta}(x_T)|^2 / sum |Phi_{T->delta}(x_T)|^2 of the solver's end "
             "points x at delta against the exact flow map, x_T ~ p_T, exact denoiser")
NO_BOUNDS = ("analytic bounds (tri, sharp, onesided) need an exact Gaussian mixture: for a trained model only "
             "the sampled statistics of ||J||_op are reported")


# ----------------------------------------------------------------------------- the protocols
class Teacher(Protocol):
    """A many-step teacher of a target's flow map Phi_{T->delta}."""

    def endpoints(self, x_T: np.ndarray, T: float, delta: float) -> tuple[np.ndarray, dict]:
        """(end points (n, d) at delta in OU scale, a record of how they were computed and how accurate they are)."""


class Batches(Protocol):
    """Start points x_T and their teacher end points: a training batch (``x_train``, ``y_train``) the searches fit
    on and a fresh test batch (``x_test``, ``y_test``) errors are reported on, both (n, d) float64, OU scale."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    delta: float
    T: float
    objective: str

    @property
    def sizes(self) -> dict:
        """Batch sizes, seed and the teacher's record (JSON fields of every record built on these batches)."""

    def solve(self, x: np.ndarray, t: np.ndarray, solver: str) -> np.ndarray:
        """``solver`` on the grid t (OU times, descending) from x (OU scale) with the target's denoiser."""

    def training_error(self, solver: str, first: int | None = None) -> Callable[[np.ndarray], float]:
        """error(t): the solver's relative MSE on the training batch (or its ``first`` trajectories)."""

    def test_error(self, t: np.ndarray, solver: str) -> dict:
        """The solver's relative MSE on the test batch with its 95% interval: {rel_mse, rel_mse_ci}."""


class Target(Protocol):
    """A mixture or a model as the studies see it (module doc)."""

    kind: str  # "mixture" or "model"
    name: str
    d: int
    rates: tuple[str, ...]  # the rates a balanced grid can be uniform in

    def header(self) -> dict:
        """The JSON fields that say what was studied."""

    def window(self, delta, T, *, teacher: bool = False) -> tuple[float, float]:
        """The checked window; ``teacher``: a teacher integrates down to delta."""

    def stability(self, rate: str, delta: float, T: float, *, samples: int, seed: int, progress=no_progress):
        """The :class:`~bounds.stability.Stability` of ``rate`` on [delta, T] (``progress``: a bar factory)."""

    def batches(self, delta: float, T: float, *, train: int, test: int, seed: int, progress=no_progress) -> Batches:
        """Training and test batches with their teacher end points."""

    def starts(self, batches: Batches, steps: int) -> dict:
        """Grids the search may start from beyond the closed forms ({name: t})."""

    def finish_optimal(self, record: dict, batches: Batches, steps: int, solver: str, clock: float, e0: int) -> None:
        """Add what the target reports beside an optimal grid's record (in place)."""

    def finish_export(self, record: dict, batches: Batches, clock: float, e0: int) -> None:
        """Add what the target reports beside a winning export's record (in place)."""


# ----------------------------------------------------------------------------- mixtures
class ExactTeacher:
    """The exact flow map of a mixture (:func:`numcore.flowmap.endpoints`, RK4 in log sigma_VE with ``step``)."""

    def __init__(self, mix, step: float = TEACHER_STEP, progress=no_progress):
        self.mix, self.step, self.progress = mix, step, progress

    def endpoints(self, x_T, T: float, delta: float) -> tuple[np.ndarray, dict]:
        from ..numcore import flowmap

        y, err = flowmap.endpoints(self.mix, x_T, T, delta, step=self.step, progress=self.progress)
        return y, {"teacher_step": self.step, "teacher_error": err}


class MixtureBatches:
    """Training and test start points x_T ~ p_T with their exact end points Phi_{T->delta}(x_T).

    ``x_train`` (train, d), ``y_train``; ``x_test`` (test, d), ``y_test``; ``teacher_error``: the estimated
    relative RMS integration error of the end points (:func:`numcore.flowmap.endpoints`)."""

    objective = OBJECTIVE

    def __init__(self, mix, delta: float, T: float, train: int = 4096, test: int = 4096, seed: int = 0,
                 progress=no_progress, points=None):
        """``points``: (x_train, x_test) start points to use instead of drawing them from p_T (e.g. the
        x_T ~ N(0, I) of a model's batches, to compare both paths on the same trajectories)."""
        from ..numcore.marginal import sample

        if points is None:
            rng = np.random.default_rng(seed)
            points = sample(mix, T, train, rng), sample(mix, T, test, rng)
        self.x_train, self.x_test = (np.asarray(p, float) for p in points)
        test = len(self.x_test)
        y, rec = ExactTeacher(mix, TEACHER_STEP, progress).endpoints(np.vstack([self.x_test, self.x_train]), T, delta)
        self.teacher_error = rec["teacher_error"]
        self.y_test, self.y_train = y[:test], y[test:]
        self.mix, self.delta, self.T, self.seed = mix, delta, T, seed

    @property
    def sizes(self) -> dict:
        return {"train_samples": len(self.x_train), "test_samples": len(self.x_test), "seed": self.seed,
                "teacher_step": TEACHER_STEP, "teacher_error": self.teacher_error}

    def solve(self, x, t, solver: str) -> np.ndarray:
        from ..numcore.samplers import sample_grid

        return sample_grid(self.mix, x, t, solver)

    def training_error(self, solver: str, first: int | None = None):
        from ..numcore.samplers import squared_error_and_grad

        from ..numcore.gridsearch import endpoint_error

        x, y = self.x_train[:first], self.y_train[:first]
        return endpoint_error(lambda t: self.solve(x, t, solver), y,
                              lambda t: squared_error_and_grad(self.mix, x, y, t, solver))

    def test_error(self, t, solver: str) -> dict:
        from ..numcore.distances import relative_mse

        e = relative_mse(self.solve(self.x_test, t, solver), self.y_test)
        return {"rel_mse": e.value, "rel_mse_ci": [e.ci_low, e.ci_high]}


class _Reference:
    """A sample of p_delta the solver study measures sliced W2 against: ``distance(x)`` gives (SW2, its interval or
    None); ``floor`` says what the teacher's own end points reach."""

    def __init__(self, distance, floor):
        self.distance, self.floor = distance, floor


class MixtureTarget:
    """A Gaussian mixture: exact teacher, exact denoiser, analytic and empirical rates."""

    kind = "mixture"
    threaded_searches = True  # the solvers' searches share no state: a study runs them in threads
    rates = ("tri", "sharp", "empirical")
    rate_is_cheap = True  # every grid reports Lambda at its nodes
    samples_option = "samples"

    def __init__(self, mix):
        self.mix, self.name, self.d = mix, mix.name, mix.d

    def header(self) -> dict:
        return {"mixture": self.name}

    def window(self, delta, T, *, teacher: bool = False) -> tuple[float, float]:
        from ..numcore.checks import TEACHER_DELTA_MIN

        return time_window(delta, T, delta_min=TEACHER_DELTA_MIN if teacher else None)

    def stability(self, rate: str, delta: float, T: float, *, samples: int, seed: int, progress=no_progress):
        from ..bounds.stability import stability

        with progress(40, "empirical rate") if rate == "empirical" else no_progress() as bar:
            return stability(self.mix, rate, delta, T, samples=samples, seed=seed, progress=bar)

    def batches(self, delta: float, T: float, *, train: int, test: int, seed: int, progress=no_progress):
        return MixtureBatches(self.mix, delta, T, option("train_samples", train), option("test_samples", test), seed,
                              progress)

    def starts(self, batches, steps: int) -> dict:
        return {}

    def finish_optimal(self, record, batches, steps, solver, clock, e0) -> None:
        return None

    def finish_export(self, record, batches, clock, e0) -> None:
        return None

    def scheduler_config(self) -> dict | None:
        return None

    # a mixture's study weighs the flow pipelines' defaults (flow-shift, flux-mu) with their default parameters
    flow_grids = True

    def flow_params(self) -> dict:
        """The parameters of the flow grid kinds in this target's studies: the kinds' defaults (SD3's shift 3,
        Flux's mu at 1024 x 1024)."""
        return {}

    def check_rate(self, bound: str) -> str:
        if bound not in self.rates:
            raise InputError(f"`bound` = {bound!r}: expected one of {', '.join(self.rates)}")
        return bound

    def winner_bound(self, bound: str):
        return bound

    def finish_grid(self, out: dict, kind: str, st, clock: float) -> None:
        return None

    # the solver study (:mod:`studies.solver_study`)
    teacher_kinds = ()
    sw_directions = 64
    floor_repeats = 8

    def teacher_grids(self, kind: str, batches, steps) -> dict:
        raise ValueError(f"a mixture's study has no {kind} grid")

    def study_memory(self, samples: int) -> float:
        """Peak memory of the solver study for ``samples`` points, test and training batches together (an
        estimate, in bytes): per point, the exact teacher path (17 states and the RK4 stages), x_T and the 8
        reference samples of p_delta, the per-component terms of the score (K x d, unless the covariance is
        isotropic) and the sliced-Wasserstein projections."""
        mix = self.mix
        per_point = 37 * mix.d + (0 if mix.structure == "isotropic" else 5 * mix.K * mix.d) + 2 * self.sw_directions + 64
        return 8.0 * samples * per_point

    def study_optimal(self, batches, solver: str, steps, effort: float) -> dict:
        """{N: (t, search record)} of the solver's optimal grids (:func:`studies.solver_study.optimal_grids`)."""
        from .solver_study import optimal_grids

        return optimal_grids(batches, solver, steps, effort)

    def reference(self, batches, delta: float, seed: int, data=None):
        """Exact samples of p_delta, the same size as the test batch: SW2 against the first, and the floor
        SW2(exact end points, reference) over :attr:`floor_repeats` independent ones."""
        from ..numcore.distances import directions, sliced_wasserstein, sorted_projections
        from ..numcore.marginal import sample

        n = len(batches.x_test)
        rng = np.random.default_rng([seed, 1])
        theta = directions(self.d, self.sw_directions, rng)
        refs = [sample(self.mix, delta, n, rng) for _ in range(self.floor_repeats)]
        floor = np.array([sliced_wasserstein(batches.y_test, r, theta) for r in refs])
        ref_sorted = sorted_projections(refs[0], theta)
        return _Reference(lambda x: (sliced_wasserstein(x, refs[0], theta, ref_sorted), None), {
            "value": float(floor[0]), "mean": float(floor.mean()), "sd": float(floor.std(ddof=1)),
            "repeats": self.floor_repeats,
            "what": "SW2(exact teacher endpoints, independent p_delta sample): `value` against the same reference "
                    "sample as the rows (a row at this value is indistinguishable from exact), `mean` and `sd` over "
                    "independent reference samples (the Monte-Carlo noise of SW2 at this sample size)"})

    def study_record(self, *, batches, steps, delta, T, samples, seed, labels, solvers, grid_sets, lam, rates,
                     optimal, rows, summary, reference, rate_samples, train_samples, effort, seconds) -> dict:
        from .solver_study import row_dicts

        mix = self.mix
        return {
            "mixture": mix.name, "d": mix.d, "K": mix.K, "structure": mix.structure, "delta": delta, "T": T,
            "samples": samples, "seed": seed, "steps": steps, "grids": labels, "solvers": solvers,
            "lambda_T": lam, "empirical_samples": rate_samples,
            "teacher": {"step": TEACHER_STEP, "relative_rms_error": batches.teacher_error,
                        "what": "the exact flow map by RK4 in log sigma_VE (numcore.flowmap); its error estimated by "
                                "re-integrating 256 points with half the step"},
            "optimal": {"train_samples": train_samples, "effort": effort,
                        "objective": "relative MSE against the exact flow map on the training batch (seed-derived, "
                                     "independent of the study's samples, which are the test batch)",
                        "grids": {s: {N: {"t": t, **rec} for N, (t, rec) in per.items()} for s, per in optimal.items()}},
            "sw_directions": self.sw_directions,
            "sw_floor": reference.floor,
            "rows": row_dicts(rows),
            "summary": summary,
        }


# ----------------------------------------------------------------------------- trained models
class ModelTeacher:
    """A model's own many-step ODE (:mod:`models.flow`: RK4 in log sigma, ``steps`` steps, 4 evaluations each),
    with its self-convergence against twice the steps on the first ``check`` samples."""

    def __init__(self, model, steps: int = 64, check: int = 64):
        self.model, self.steps, self.check = model, int(steps), int(check)

    def endpoints(self, x_T, T: float, delta: float) -> tuple[np.ndarray, dict]:
        from ..models.flow import teacher

        out = teacher(self.model, x_T, T, delta, self.steps, check=self.check)
        return out.pop("x"), out

    def nodes(self, x_T, T: float, delta: float, counter=None) -> dict:
        """Every node of the teacher (for the GITS-style search): :func:`models.flow.nodes`."""
        from ..models.flow import nodes

        return nodes(self.model, x_T, T, delta, self.steps, counter=counter)


CHECK_SAMPLES = 32  # trajectories of a model teacher's self-convergence check (ModelBatches, plan_teacher)


class ModelBatches:
    """A trained model's start points x_T ~ N(0, I) and its own many-step teacher end points Phi_{T->delta}(x_T)
    (:class:`ModelTeacher`).

    The test batch is ``prior(model, test, seed)`` (the x_T of the solver study with the same seed and size);
    the training batch is drawn with seed + 1.  The training teacher keeps its nodes (``trajectory``), so a
    GITS-style search on the same batch costs no further model evaluation.  ``counter`` counts every model
    evaluation (in samples) made through these batches.

    ``gradients`` (on by default): give the search exact grid gradients through the network
    (:meth:`training_error`) when the model is differentiable in sigma, and make it the split search
    (``split``: :func:`numcore.gridsearch.search` with one budget for all its runs, L-BFGS-B from the best two
    of the closed forms, the GITS-style grid and four mid-dense grids, the best run continued).  On the digits
    model it reaches the derivative-free search's error (Euler, DPM-Solver++(2M), UniPC; N = 4, 8, 16) with a
    sixth to a tenth of its network passes (docs/results.md, "The model search with gradients through the
    network"); ``gradients=False`` is that derivative-free search (Nelder-Mead from the best start).
    ``check``: trajectories of the teacher's self-convergence check (against twice its steps).
    """

    #: the default of ``gradients`` (see the class doc)
    GRADIENTS = True

    def __init__(self, model, delta: float, T: float, train: int = 128, test: int = 128, seed: int = 0,
                 teacher_steps: int = 32, check: int = CHECK_SAMPLES, progress=no_progress,
                 gradients: bool | None = None):
        from ..models.flow import Counter, prior

        self.gradients = self.GRADIENTS if gradients is None else bool(gradients)
        self.split = self.gradients and bool(getattr(model, "sigma_differentiable", False))
        self.model, self.delta, self.T, self.seed, self.teacher_steps = model, delta, T, seed, int(teacher_steps)
        self.counter = Counter(model)
        self.measured = 0  # model evaluations of the test-batch measurements (test_error) so far
        teacher = ModelTeacher(model, teacher_steps, check)
        with progress(2, "teacher") as bar:
            clock = time.perf_counter()
            self.x_test = prior(model, test, seed)
            self.y_test, teach = teacher.endpoints(self.x_test, T, delta)
            self.counter.samples += int(teach["nfe"]) * test + (8 * teacher_steps * min(check, test) if check else 0)
            bar.update(1)
            self.x_train = prior(model, train, seed + 1)
            c0, t0 = self.counter.samples, time.perf_counter()
            self.trajectory = teacher.nodes(self.x_train, T, delta, counter=self.counter)
            self.trajectory.update(evaluations=self.counter.samples - c0, seconds=time.perf_counter() - t0)
            self.y_train = self.trajectory["y"][-1] * math.exp(-delta)
            bar.update(1)
        name = getattr(model, "name", "model")
        finite(f"`model` {name!r}: the end point of its own teacher (RK4, {teacher_steps} steps) at OU time "
               f"{delta:g}", [self.y_test, self.y_train])
        self.teacher = dict(teach)
        self.teacher.update(model_evaluations=self.counter.samples, seconds=time.perf_counter() - clock)
        self.objective = (f"relative MSE sum |x - teacher(x_T)|^2 / sum |teacher(x_T)|^2 of the solver's end points x "
                          f"at delta against the model's own teacher ({teach['method']}, {teacher_steps} steps), "
                          "x_T ~ N(0, I), the model's denoiser")

    @property
    def sizes(self) -> dict:
        return {"train_samples": len(self.x_train), "test_samples": len(self.x_test), "seed": self.seed,
                "teacher_steps": self.teacher_steps, "teacher": self.teacher, "against": "teacher"}

    def solve(self, x, t, solver: str) -> np.ndarray:
        from ..models.flow import solve

        return solve(self.model, x, t, solver, counter=self.counter)

    def training_error(self, solver: str, first: int | None = None):
        """error(t) on the training batch; with ``gradients`` (see the class doc) and a model differentiable in
        sigma, with exact gradients through the network (:func:`models.flow.squared_error_and_grad`; forward
        passes counted as evaluations, reverse passes on ``counter.backward``)."""
        from ..numcore.gridsearch import endpoint_error

        x, y = self.x_train[:first], self.y_train[:first]
        grad = None
        if getattr(self, "gradients", False) and getattr(self.model, "sigma_differentiable", False):
            from ..models.flow import squared_error_and_grad

            def grad(t):
                return squared_error_and_grad(self.model, x, y, t, solver, counter=self.counter)
        return endpoint_error(lambda t: self.solve(x, t, solver), y, grad)

    def test_error(self, t, solver: str) -> dict:
        """The relative MSE on the test batch with its 95% interval; its model evaluations also on ``measured``."""
        from ..numcore.distances import relative_mse

        e0 = self.counter.samples
        e = relative_mse(self.solve(self.x_test, t, solver), self.y_test)
        self.measured += self.counter.samples - e0
        finite(f"`model` {getattr(self.model, 'name', 'model')!r}: the relative MSE of {solver} with {len(t) - 1} "
               "steps against its teacher", [v for v in (e.value, e.ci_low, e.ci_high) if v is not None])
        return {"rel_mse": e.value, "rel_mse_ci": [e.ci_low, e.ci_high]}


class ModelTarget:
    """A trained model (any :class:`~models.denoiser.Denoiser`): its own teacher, its empirical rate.

    ``data`` (x_0, (n, d)) samples p_t for the rate (else the model's own ODE does); ``points`` is the number
    of times of the rate's table, ``teacher_steps`` the teacher's RK4 steps."""

    kind = "model"
    rates = ("empirical",)
    rate_is_cheap = False  # the Jacobian table costs network passes: only the balanced grid computes it
    samples_option = "jacobian_samples"

    def __init__(self, model, *, data=None, points: int = 40, teacher_steps: int = 64):
        self.model, self.name, self.d = model, model.name, model.d
        self.data, self.points = data, points
        self.teacher_steps = option("teacher_steps", teacher_steps)

    def header(self) -> dict:
        return {"model": self.model.describe(), "mixture": self.name}

    def window(self, delta, T, *, teacher: bool = False) -> tuple[float, float]:
        """The given window, or [1e-3, 5] clipped to the model's trained sigma range.

        Raises:
            InputError: a window outside the trained range, or delta >= T.
        """
        from ..numcore.checks import T_LIMIT, real

        rng = self.model.t_range()
        lo, hi = (0.0, math.inf) if rng is None else rng
        d = max(1e-3, lo) if delta is None else real("delta", delta, low=0.0, low_open=True)
        T_ = min(5.0, hi) if T is None else real("T", T, low=0.0, low_open=True, high=T_LIMIT)
        if d < lo * (1 - 1e-9):
            raise InputError(f"`delta` = {d:g}: below the model's trained range (OU time {lo:.4g}, sigma "
                             f"{self.model.sigma_range[0]:.4g}): expected >= {lo:.4g}")
        if T_ > hi * (1 + 1e-9):
            raise InputError(f"`T` = {T_:g}: above the model's trained range (OU time {hi:.4g}, sigma "
                             f"{self.model.sigma_range[1]:.4g}): expected <= {hi:.4g}")
        return time_window(d, T_)

    PROBE_POINTS = 8  # noise levels of the probe, log-spaced in OU time over the window (its ends included)
    PROBE_BATCH = 1024  # the largest batch a study passes to the model (the teacher's and the solvers' batches)

    def probe(self, delta: float, T: float, batch: int = 2) -> None:
        """Evaluate the model before any work: ``batch`` samples (at most PROBE_BATCH: the batch size the run will
        use, so a network that fails only on large batches fails here) of N(0, (1 + sigma^2) I) at PROBE_POINTS
        noise levels spanning [delta, T] (its own generator: no random stream of the study is touched).  The
        boundary checks of :mod:`models.denoiser` refuse a network that raises or returns the wrong shape, dtype,
        NaN or inf there, before a long run and its start line.  Costs at most 8 x 1024 model evaluations."""
        import torch

        n = max(2, min(int(batch), self.PROBE_BATCH))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for t in np.geomspace(delta, T, self.PROBE_POINTS):
                sigma = math.sqrt(math.expm1(2.0 * float(t)))
                y = torch.randn(n, self.d, generator=g, dtype=torch.float64) * math.sqrt(1.0 + sigma * sigma)
                self.model(y, sigma)

    # the planned work, for the start line of a long command: (model evaluations, what), an evaluation being one
    # network pass on one sample (the unit of the reported costs)
    def plan_rate(self, samples, iters=None) -> tuple[int, str]:
        """The Jacobian table: up to 1 + 2 iters passes per sample and time, and the model's ODE without data."""
        from ..models.jacobian import DEFAULT_ITERS

        samples = option("jacobian_samples", samples, "empirical")
        iters = option("iters", DEFAULT_ITERS if iters is None else iters)
        points = option("points", self.points)
        ode = 0 if self.data is not None else 4 * self.teacher_steps
        source = "--data" if self.data is not None else f"its own ODE ({self.teacher_steps} RK4 steps)"
        return (points * samples * (1 + 2 * iters) + samples * ode,
                f"E||J|| at {points} times x {samples} samples of p_t from {source}, Lanczos <= {iters} iterations")

    def plan_teacher(self, train, test, check: int = CHECK_SAMPLES) -> tuple[int, str]:
        """The teacher's end points (test batch, its self-convergence check, the training batch with its nodes)."""
        train, test = option("train_samples", train), option("test_samples", test)
        steps = self.teacher_steps
        return (test * 4 * steps + min(check, test) * 8 * steps + train * (4 * steps + 1),
                f"its teacher ({steps} RK4 steps) on {test} test and {train} training trajectories, then the grid "
                "search")

    def plan_grid(self, kind: str, *, samples, train, test) -> tuple[int, str] | None:
        """The grid of ``kind``: its rate (balanced), its teacher and search (optimal; a preset's winner), or None
        (a closed form evaluates nothing)."""
        if kind == "balanced":
            return self.plan_rate(samples)
        if kind == "optimal":
            return self.plan_teacher(train, test)
        return None

    def plan_study(self, steps, *, samples, train, rate_samples) -> tuple[int, str]:
        """The solver study: the teacher, the balanced grid's rate, then the searches and the rows."""
        n1, t1 = self.plan_teacher(train, samples)
        n2, t2 = self.plan_rate(rate_samples)
        return n1 + n2, f"{t1.replace(', then the grid search', '')}; {t2}; then the solvers' grid searches at N = " \
                        f"{', '.join(map(str, steps))} and every grid's rows"

    def lipschitz(self, *, delta: float, T: float, samples: int, seed: int = 0, iters: int | None = None,
                  tol: float | None = None, progress=no_progress) -> dict:
        """E||J(x, t)||_op (with its Monte-Carlo interval), the sampled sup, and the power-iteration record on
        ``points`` log-spaced times of [delta, T]; the JSON of ``flowcert lipschitz --model``."""
        from ..models.jacobian import DEFAULT_ITERS, DEFAULT_TOL, table

        points = option("points", self.points)
        samples = option("jacobian_samples", samples, "empirical")
        iters = option("iters", DEFAULT_ITERS if iters is None else iters)
        tol = option("tol", DEFAULT_TOL if tol is None else tol)
        ts = np.geomspace(delta, T, points)
        with progress(points, "||J|| (power iteration)") as bar:
            tab = table(self.model, ts, samples, data=self.data, seed=seed, iters=iters, tol=tol,
                        teacher_steps=self.teacher_steps, progress=bar)
        from ..models.denoiser import where

        for j, t in enumerate(tab["t"]):
            finite(f"`model` {self.name!r}: E||J||_op (with its interval and the sampled sup) at "
                   f"{where(math.sqrt(math.expm1(2.0 * float(t))))}",
                   [tab["empirical_mean"][j], tab["empirical_mean_ci"][j], tab["empirical_sup"][j]])
        return {**self.header(), "delta": delta, "T": T, **tab,
                "scope": "sampled", "where": "sampled points of p_t; a trained model has no analytic bound",
                "no_bounds": NO_BOUNDS,
                "bounds": [], "what": {"empirical_mean": "p_t-average of ||J(x,t)||_op (Monte Carlo, with its interval)",
                                       "empirical_sup": "largest ||J||_op among the sampled points (not a bound)"}}

    @staticmethod
    def rate(tab: dict, delta: float, T: float):
        """The Stability of a :meth:`lipschitz` table (Lambda of the interpolated E||J||, +-2 se interval)."""
        from ..bounds.stability import EmpiricalRate, empirical_stability

        r = EmpiricalRate(np.asarray(tab["t"]), np.asarray(tab["empirical_mean"]),
                          np.asarray(tab["empirical_mean_se"]), np.asarray(tab["empirical_sup"]),
                          tab["empirical_samples"], tab["empirical_seed"])
        st = empirical_stability(r, delta, T, what="p_t-average of ||J(x,t)||_op of the model (power iteration, "
                                                   "Monte Carlo; a typical rate, not a bound)")
        st.meta["samples_from"] = tab["samples_from"]
        st.meta["seconds"] = tab["seconds"]
        st.table = tab  # the Jacobian table itself (its cost in network passes), outside the reported metadata
        return st

    def stability(self, rate: str, delta: float, T: float, *, samples: int, seed: int, progress=no_progress):
        if rate not in self.rates:
            raise InputError(f"`bound` = {rate!r}: a trained model has no analytic bound: expected empirical "
                             "(the model's p_t-average of ||J||_op)")
        tab = self.lipschitz(delta=delta, T=T, samples=samples, seed=seed, progress=progress)
        return self.rate(tab, delta, T)

    def batches(self, delta: float, T: float, *, train: int, test: int, seed: int, progress=no_progress):
        return ModelBatches(self.model, delta, T, option("train_samples", train), option("test_samples", test),
                            seed, self.teacher_steps, progress=progress)

    def starts(self, batches, steps: int) -> dict:
        from ..numcore.gridsearch import mid_dense_grids
        from .gits import gits_search

        self._gits = gits_search(self.model, None, steps, delta=batches.delta, T=batches.T,
                                 trajectory=batches.trajectory)
        extra = mid_dense_grids(steps, batches.delta, batches.T) if getattr(batches, "split", False) else {}
        # the test-batch measurements and reverse passes so far (finish_optimal counts this grid's)
        self._measured0, self._backward0 = batches.measured, batches.counter.backward
        return {"gits": self._gits["t"][steps], **extra}

    def finish_optimal(self, record, batches, steps, solver, clock, e0) -> None:
        """The GITS-style grid's test error, and the cost (model evaluations, seconds) of the teacher, the search,
        the test-batch measurements and the GITS-style search; the training side (the training teacher and the
        search: what finding the grid costs) and the test side (the test teacher, its self-convergence check and
        the measurements) apart."""
        gits = self._gits
        record["gits"] = {**batches.test_error(gits["t"][steps], solver), "t": gits["t"][steps],
                          "method": gits["method"], "candidates": gits["candidates"], "samples": gits["samples"]}
        measured = batches.measured - self._measured0
        search_evals = batches.counter.samples - e0 - measured
        te, train_teacher = batches.teacher, int(batches.trajectory["evaluations"])
        record["cost"] = {
            "teacher": {"model_evaluations": te["model_evaluations"], "seconds": te["seconds"],
                        "what": "teacher end points of the test and training batches (RK4) and the self-convergence "
                                "check"},
            "search": {"model_evaluations": search_evals, "seconds": time.perf_counter() - clock,
                       "reverse_passes": int(batches.counter.backward - self._backward0),
                       "what": "the grid search on the training batch (forward passes; the reverse passes of its "
                               "gradients apart)"},
            "measurements": {"model_evaluations": measured,
                             "what": "the test-batch errors of the optimal grid, the closed forms and the GITS-style "
                                     "grid"},
            "training_side": {"model_evaluations": train_teacher + search_evals,
                              "what": "to find the grid: the training batch's teacher and the search"},
            "test_side": {"model_evaluations": int(te["model_evaluations"]) - train_teacher + measured,
                          "what": "to measure it: the test batch's teacher, its self-convergence check and the "
                                  "test-batch errors"},
            "gits": {"model_evaluations": batches.trajectory["evaluations"],
                     "seconds": batches.trajectory["seconds"] + gits["seconds"],
                     "what": "GITS-style search: the teacher's nodes on the training batch (shared here) and its "
                             "dynamic programme"},
            "unit": "model evaluations counted per sample (one network pass on one x)"}

    def scheduler_config(self) -> dict | None:
        """The model's own scheduler config (a diffusers model: its scheduler_config.json), or None."""
        path = self.model.describe().get("scheduler_config")
        if isinstance(path, str):
            from ..exports.presets import read_scheduler_config

            return read_scheduler_config(path, "`model` scheduler config")
        return None

    @property
    def flow_grids(self) -> bool:
        """Whether the study weighs the flow pipelines' defaults: the model's scheduler is a flow-matching one."""
        from ..exports.presets import flow_pipeline

        cfg = self.scheduler_config()
        return cfg is not None and flow_pipeline(cfg) is not None

    def flow_params(self) -> dict:
        """The flow grid kinds' parameters from the model's own scheduler config (its static shift; its dynamic
        line at 1024 x 1024), else the kinds' defaults."""
        from .timegrid import flow_options

        cfg = self.scheduler_config()
        return flow_options(None, None, cfg)[0] if cfg is not None else {}

    def check_rate(self, bound: str) -> str:
        if bound not in self.rates:
            raise InputError(f"`bound` = {bound!r}: a trained model has no analytic bound: expected empirical "
                             "(the model's p_t-average of ||J||_op)")
        return bound

    def winner_bound(self, bound: str):
        return None

    def finish_grid(self, out: dict, kind: str, st, clock: float) -> None:
        t = np.asarray(out["t"], float)
        finite(f"`model` {self.name!r}: the {kind} grid's nodes", t)
        if out.get("lambda") is not None:
            finite(f"`model` {self.name!r}: Lambda at the {kind} grid's nodes", out["lambda"])
        if np.any(np.diff(t) >= 0):
            raise InputError(f"`model` {self.name!r}: the {kind} grid's nodes are not strictly decreasing (its rate "
                             "vanishes on a segment): expected fewer `steps`")
        out["cost"] = {"seconds": time.time() - clock,
                       "what": {"balanced": "wall time of the grid including its rate (the Jacobian table)",
                                "optimal": "wall time of the teacher and the search (model evaluations in "
                                           "optimal.cost)"}.get(kind, "closed form")}
        if st is not None:
            out["cost"]["model_passes_per_sample"] = int(st.table["passes"])

    # the solver study (:mod:`studies.solver_study`)
    teacher_kinds = ("gits",)
    sw_directions = 256

    def teacher_grids(self, kind: str, batches, steps) -> dict:
        """{N: t} of the GITS-style search on the training batch's teacher nodes (no further evaluation)."""
        from .gits import gits_search

        self._study_gits = gits_search(self.model, None, list(steps), delta=batches.delta, T=batches.T,
                                       trajectory=batches.trajectory)
        return self._study_gits["t"]

    def study_optimal(self, batches, solver: str, steps, effort: float) -> dict:
        """{N: (t, record)}: :func:`studies.optimal.optimal_grid` for every N, smallest first, each started also
        from the next smaller N's optimum resampled."""
        from ..numcore.gridsearch import resample
        from .optimal import optimal_grid

        out, coarse = {}, None
        for N in sorted(steps):
            starts = {} if coarse is None else {f"optimal N={len(coarse) - 1} resampled": resample(coarse, N)}
            rec = optimal_grid(self, N, solver, delta=batches.delta, T=batches.T, effort=effort, batches=batches,
                               starts=starts)
            out[N] = (rec["t"], rec)
            coarse = rec["t"]
        return out

    def reference(self, batches, delta: float, seed: int, data=None):
        """Held-out data x_0 pushed to p_delta (bootstrap intervals of SW2); its floor is the teacher's own
        distance to it (and the training data's, with ``data``)."""
        from ..numcore.distances import directions, sliced_wasserstein_ci

        rng = np.random.default_rng(seed + 1)
        theta = directions(self.d, self.sw_directions, rng)
        if data is None:
            return _Reference(lambda x: (None, None), None)
        ref = push(data, delta, rng)
        e = sliced_wasserstein_ci(batches.y_test, ref, theta, rng)
        floor = {"value": e.value, "ci": [e.ci_low, e.ci_high],
                 "what": "SW2 of the teacher's endpoints to the reference at p_delta: the model's own distance, "
                         "which few-step solvers approach from above"}
        if self.data is not None:
            e2 = sliced_wasserstein_ci(push(self.data, delta, rng), ref, theta, rng)
            floor["data"] = {"value": e2.value, "ci": [e2.ci_low, e2.ci_high],
                             "what": "SW2 of the training data to the reference, both at p_delta (two real samples)"}
        self._reference_n = int(data.shape[0])

        def distance(x):
            sw = sliced_wasserstein_ci(x, ref, theta, rng)
            return sw.value, [sw.ci_low, sw.ci_high]

        return _Reference(distance, floor)

    def study_record(self, *, batches, steps, delta, T, samples, seed, labels, solvers, grid_sets, lam, rates,
                     optimal, rows, summary, reference, rate_samples, train_samples, effort, seconds) -> dict:
        from .solver_study import OPTIMAL, row_dicts

        st = rates["empirical"]
        nodes = {}
        for r in rows:
            label = r.grid if r.grid != OPTIMAL else f"optimal-{r.solver}"
            t = optimal[r.solver][r.steps][0] if r.grid == OPTIMAL else grid_sets[r.grid][r.steps]
            nodes.setdefault(label, {})[str(r.steps)] = t
        gits = self._study_gits
        return {
            "model": self.model.describe(), "mixture": self.name, "delta": delta, "T": T, "samples": samples,
            "seed": seed, "steps": steps, "grids": labels, "solvers": solvers, "grid_nodes": nodes,
            "teacher": dict(batches.teacher),
            "lambda_T": {"balanced-empirical": st.integral.total},
            "lambda_T_mc_interval": st.meta["lambda_T_mc_interval"],
            "rate": {"samples": rate_samples, "points": self.points, "samples_from": st.table["samples_from"],
                     "seconds": st.table["seconds"], "passes": st.table["passes"]},
            "gits": {k: v for k, v in gits.items() if k not in ("t", "cost_matrix")},
            "optimal": {solver: {str(N): {k: v for k, v in rec.items() if k not in ("baselines",)}
                                 for N, (_, rec) in per.items()} for solver, per in optimal.items()},
            "train_samples": len(batches.x_train),
            "sw_directions": self.sw_directions, "sw_floor": reference.floor,
            "reference": None if reference.floor is None else {"n": self._reference_n,
                                                                "what": "held-out data x_0 pushed to p_delta"},
            "rows": row_dicts(rows, engine=False), "summary": summary, "seconds": seconds,
        }

    def finish_export(self, record, batches, clock, e0) -> None:
        """The cost (model evaluations, seconds) of the teacher, the search and the GITS-style search."""
        record["cost"] = {
            "teacher": {"model_evaluations": batches.teacher["model_evaluations"],
                        "seconds": batches.teacher["seconds"]},
            "search": {"model_evaluations": batches.counter.samples - e0, "seconds": time.perf_counter() - clock},
            "gits": {"model_evaluations": batches.trajectory["evaluations"],
                     "seconds": batches.trajectory["seconds"] + self._gits["seconds"]}}


def as_target(source) -> Target:
    """A target as is; a :class:`~numcore.mixture.GaussianMixture` as its :class:`MixtureTarget`; a model
    (:class:`~models.denoiser.Denoiser`) as its :class:`ModelTarget` with the defaults."""
    from ..numcore.mixture import GaussianMixture

    if isinstance(source, GaussianMixture):
        return MixtureTarget(source)
    if isinstance(source, (MixtureTarget, ModelTarget)):
        return source
    return ModelTarget(source)


def push(data: np.ndarray, t: float, rng) -> np.ndarray:
    """Data x_0 pushed to p_t: alpha x_0 + sigma_vp z."""
    return math.exp(-t) * data + math.sqrt(-math.expm1(-2 * t)) * rng.standard_normal(data.shape)


def data_for(model, data):
    """Data x_0 (n, d) float64 for a model, or None."""
    if data is None:
        return None
    from ..models.jacobian import load_data

    return load_data(data, model.d)
