"""The grid a solver integrates most accurately: a search over the N - 1 interior nodes of a time grid.

The search knows nothing about mixtures or solvers: it minimises any function ``error(t)`` of a grid
(OU times, descending, t[0] = T, t[N] = delta), for instance the end-to-end relative MSE of a sampler
against exact flow-map end points on a training batch (:func:`endpoint_error`).  Grids are parametrised so
that every point of the search space is a valid grid: in rho = log sigma_VE the N gaps are

    rho_{i-1} - rho_i = (rho(T) - rho(delta)) softmax(z_1, ..., z_{N-1}, 0)_i,

so the nodes are strictly decreasing and the ends fixed for every z in R^{N-1}.  The objective is
log error(t).  When ``error`` provides exact gradients (``error.value_and_grad``), L-BFGS-B with them
searches all N - 1 coordinates at every N (a budget per run and a stop when progress stalls): up to
``FULL_SIMPLEX`` steps one run from every start, the best kept (runs from different starts can end in different
basins); above, one run from the best start after the coarse stage below.  Without gradients, up to ``FULL_SIMPLEX`` steps a
Nelder-Mead simplex searches all N - 1 coordinates; above, the search first solves the problem with ceil(N/2)
steps, inserts a node in the middle of each of its gaps (in rho) and refines that grid with L-BFGS-B (coarse to
fine) with forward differences.  With a ``screen`` (a cheaper
estimate of the same error, e.g. on part of the batch) all of that runs on the screen (with exact gradients
up to FULL_SIMPLEX steps too), the end of every run and every start are measured on ``error``, and L-BFGS-B
on ``error`` finishes from the best of them (up to FULL_SIMPLEX steps from each of the FINAL_RUNS best).  The
split search (``split=True``, a trained model's, where every evaluation is a batch of
network passes) spends one budget of gradient evaluations on all its runs instead: L-BFGS-B from the best
``SPLIT_RUNS`` starts, the best run continued, each stopped by a stall rule that does not scale with effort.
Every run starts at the best of the given starting grids, and the result is never worse on the objective than
that start.  Nothing is random: the result depends only on ``error``, the
starting grids and the options.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .blas import one_thread
from .units import rho_from_t, t_from_rho

MAX_STEPS = 64  # the largest N the search accepts
FULL_SIMPLEX = 8  # up to this N, Nelder-Mead over every interior node (without gradients); above, coarse to fine
MIN_GAP = 1e-9  # smallest gap in rho, relative to the whole range: closer nodes are rejected
SIMPLEX_EVALS = 300  # Nelder-Mead budget per free node
REFINE_EVALS = 40  # L-BFGS-B budget per free node (coarse to fine, finite-difference gradients)
GRADIENT_EVALS = 200  # L-BFGS-B budget per run with exact gradients
STALL_ITERATIONS, STALL_GAIN = 10, 0.005  # ... which stops once 10 iterations gain less than 0.5% together
FINAL_RUNS = 2  # a screened search refines this many of its best candidates on the whole batch, up to FULL_SIMPLEX
# steps (their basins can swap between the screen and the whole batch: square4 UniPC N = 8 needs the second).  A
# looser stall rule (2% per 10 iterations), a smaller final budget (30) or 100 evaluations per screened run lost up
# to 1.6x on the test batch for the higher-order solvers at errors of 1e-6 to 1e-8, where the valleys are long.
SPLIT_EVALS = 400  # the split search's budget per N (all runs and the starts together, times effort): search(split=True)
SPLIT_RUNS = 2  # ... which runs L-BFGS-B from this many of the best starts
SPLIT_STALL = 3, 0.01  # its stall rule (not scaled by effort): 3 iterations that gain less than 1% together


def to_params(t) -> np.ndarray:
    """z in R^{N-1} of a grid t (descending, N + 1 nodes): z_i = log(gap_i / gap_N) in rho."""
    gaps = -np.diff(rho_from_t(np.asarray(t, float)))
    return np.log(gaps[:-1] / gaps[-1])


def from_params(z, delta: float, T: float) -> np.ndarray:
    """The grid t (N + 1,) of parameters z (N - 1,): gaps in rho = range x softmax(z, 0)."""
    r0, r1 = (float(r) for r in rho_from_t(np.array([T, delta])))
    logits = np.append(np.asarray(z, float), 0.0)
    w = np.exp(logits - logits.max())
    w /= w.sum()
    rho = r0 - (r0 - r1) * np.concatenate([[0.0], np.cumsum(w)])
    t = t_from_rho(rho)
    t[0], t[-1] = T, delta
    return t


MID_DENSE = ((-0.3, 0.5), (-0.3, 1.0), (0.0, 0.5), (0.0, 1.0))  # (a, c) of mid_dense_grids


def mid_dense_grids(steps: int, delta: float, T: float) -> dict:
    """{name: t}: grids denser in the middle of the log-sigma range than log-SNR (extra starts of a trained
    model's search): gaps in rho proportional to exp(a u + c u^2), u = -1..1 over the N gaps, for each (a, c)
    of ``MID_DENSE``.  Few-step optima of the digits model have this shape (coarse at both ends, dense near
    sigma ~ 1), where log-SNR, KL-optimal and EDM are monotone; c = 0, a = 0 is log-SNR."""
    if steps < 2:
        return {}
    u = np.linspace(-1.0, 1.0, steps)
    out = {}
    for a, c in MID_DENSE:
        g = a * u + c * u * u
        out[f"mid-dense({a:g}, {c:g})"] = from_params(g[:-1] - g[-1], delta, T)
    return out


def resample(t, steps: int) -> np.ndarray:
    """A grid of ``steps`` segments that follows t: rho interpolated linearly in i/N (doubling N inserts the
    midpoint of every gap in rho)."""
    rho = rho_from_t(np.asarray(t, float))
    u = np.linspace(0.0, 1.0, rho.size)
    out = t_from_rho(np.interp(np.linspace(0.0, 1.0, steps + 1), u, rho))
    out[0], out[-1] = t[0], t[-1]
    return out


@dataclass
class SearchResult:
    """The outcome of :func:`search`.

    t : (N + 1,) the best grid found (OU time, descending).
    value : error(t), the objective (the training error).
    start : name of the starting grid of the final run; start_values : error of every starting grid.
    evaluations : calls of ``error`` (all stages); iterations : optimiser iterations (all stages).
    stop : the final stage's stopping reason, in words.
    method : the stages that ran; seconds : wall time.
    ladder : {N': (grid, value)} for every N' the coarse-to-fine stages optimised on the way (N included).
    ends : {start name: grid} the end of the run from each start, where one ran from every start.
    """

    t: np.ndarray
    value: float
    start: str
    start_values: dict
    evaluations: int
    iterations: int
    stop: str
    method: str
    seconds: float
    history: list = field(default_factory=list, repr=False)
    ladder: dict = field(default_factory=dict, repr=False)
    ends: dict = field(default_factory=dict, repr=False)


class _Counted:
    """The objective log error(t) of the parameters z, counting evaluations and rejecting degenerate grids."""

    def __init__(self, error, delta, T):
        self.error, self.delta, self.T = error, delta, T
        self.calls, self.history = 0, []
        self.memo = {}  # z.tobytes() -> value_and_grad(z): a point evaluated before is not evaluated again

    def grid_error(self, t) -> float:
        self.calls += 1
        e = float(self.error(t))
        self.history.append(e)
        return e

    def _valid(self, t) -> bool:
        gaps = -np.diff(rho_from_t(t))
        return bool(np.all(np.isfinite(t)) and gaps.min() >= MIN_GAP * gaps.sum())

    def __call__(self, z) -> float:
        t = from_params(z, self.delta, self.T)
        if not self._valid(t):
            return 1e300
        e = self.grid_error(t)
        return math.log(e) if e > 0 else -1e300

    def value_and_grad(self, z):
        """(log error, its gradient in z) from ``error.value_and_grad(t)`` = (error, d error / d rho_k); a point
        evaluated before is not evaluated again."""
        z = np.asarray(z, float)
        key = z.tobytes()
        if key not in self.memo:
            self.memo[key] = self._value_and_grad(z)
        return self.memo[key]

    def _value_and_grad(self, z):
        t = from_params(z, self.delta, self.T)
        if not self._valid(t):
            return 1e300, np.zeros_like(z)
        self.calls += 1
        e, g_rho = self.error.value_and_grad(t)
        self.history.append(float(e))
        if not e > 0:
            return -1e300, np.zeros_like(z)
        # rho_i = rho_0 - sum_{j <= i} w_j, w = R softmax(z, 0): chain rule through the gaps
        r = rho_from_t(np.array([self.T, self.delta]))
        R = float(r[0] - r[1])
        logits = np.append(z, 0.0)
        w = np.exp(logits - logits.max())
        w *= R / w.sum()
        G = -np.cumsum(np.asarray(g_rho, float)[1:-1][::-1])[::-1]  # d e / d w_j = -sum_{i >= j} d e / d rho_i
        G = np.append(G, 0.0)
        dzeta = w * (G - np.dot(w, G) / R)
        return math.log(e), dzeta[:-1] / e


class _Stall:
    """An L-BFGS-B callback that stops the run once ``window`` iterations lowered log error by less than
    ``gain`` (relative) together."""

    def __init__(self, window: int, gain: float):
        self.window, self.gain, self.values, self.stopped = max(window, 2), gain, [], False

    def __call__(self, intermediate_result):
        self.values.append(float(intermediate_result.fun))
        if len(self.values) > self.window and self.values[-self.window - 1] - self.values[-1] < self.gain:
            self.stopped = True
            raise StopIteration


def search(error: Callable[[np.ndarray], float], steps: int, delta: float, T: float, starts: dict, *,
           effort: float = 1.0, xtol: float = 1e-3, ftol: float = 1e-5, screen=None, coarse=None,
           split: bool | int = False) -> SearchResult:
    """Minimise ``error(t)`` over grids of ``steps`` segments on [delta, T], from the best of ``starts``.

    Args:
        error: maps a grid t (N + 1,) (OU time, descending, t[0] = T, t[N] = delta) to a positive float
            (e.g. :func:`endpoint_error`), for any N; never called with an invalid grid.
        steps: N, 1..MAX_STEPS (N = 1 has no free node: the grid is [T, delta]).
        delta, T: the fixed ends (OU time).
        starts: {name: grid (N + 1,)}: candidate starting grids (closed forms, a previous optimum); the
            search starts at the one with the smallest error.
        effort: multiplies every evaluation budget (a longer search: 4 or 10).
        xtol, ftol: Nelder-Mead tolerances in z and in log error (scaled down by ``effort``).
        screen: a cheaper estimate of the same error (e.g. on a subset of the batch): the whole search runs on
            it first; L-BFGS-B on ``error`` (with exact gradients when ``error`` has ``value_and_grad``) refines
            the best of its optimum and the starts.
        coarse: an optimal grid with fewer steps (any number), known already: above FULL_SIMPLEX steps it
            replaces the coarse stage (resampled to N, it joins the starts); with ``screen``, at or below
            FULL_SIMPLEX steps it joins the starts of the runs on the screen.
        split: with exact gradients, one budget for the whole search (``SPLIT_EVALS`` x effort evaluations of
            ``error``, the starts' included; a trained model's search, where every evaluation is a batch of
            network passes): every start is evaluated with its gradient, L-BFGS-B runs from each start for an
            equal share of half of the budget, and the best run continues with what is left; every run stops
            by ``SPLIT_STALL`` (not scaled by effort).  Above FULL_SIMPLEX steps the coarse stage splits its
            own budget and the final run takes at most the same again.

    Returns:
        SearchResult; its ``value`` is never above the best start's error.

    Raises:
        ValueError: ``steps`` outside 1..MAX_STEPS, a start grid with another number of nodes.
    """
    minimize = _minimize
    N = int(steps)
    if not 1 <= N <= MAX_STEPS:
        raise ValueError(f"steps = {N}: expected 1..{MAX_STEPS}")
    if screen is not None:
        return _screened(error, screen, N, delta, T, starts, effort, xtol, ftol, coarse)
    clock = time.perf_counter()
    f = _Counted(error, delta, T)
    starts = {name: np.asarray(g, float) for name, g in starts.items()}
    for name, g in starts.items():
        if g.shape != (N + 1,):
            raise ValueError(f"start {name!r} has {g.size} nodes: expected {N + 1}")
    iterations, stages, ladder = 0, [], {}
    gradient = hasattr(error, "value_and_grad")
    split = split if gradient and N > 1 else False
    if N > FULL_SIMPLEX and coarse is not None:
        starts = {**starts, f"optimal N={len(coarse) - 1} resampled": resample(coarse, N)}
    elif N > FULL_SIMPLEX:  # coarse to fine: the optimum with half the steps, every gap halved in rho
        coarse = search(error, -(-N // 2), delta, T,
                        {k: resample(g, -(-N // 2)) for k, g in starts.items()}, effort=effort, xtol=xtol, ftol=ftol,
                        split=split)
        f.calls, f.history = coarse.evaluations, list(coarse.history)
        iterations, stages, ladder = coarse.iterations, [coarse.method], dict(coarse.ladder)
        starts = {**starts, f"optimal N={-(-N // 2)} resampled": resample(coarse.t, N)}
    limit = f.calls + int(effort * SPLIT_EVALS) // (1 if N <= FULL_SIMPLEX else 2) if split else None
    if split:  # every start with its gradient: the first L-BFGS-B call from it costs nothing more
        values = {name: math.exp(min(f.value_and_grad(to_params(g))[0], 700.0)) for name, g in starts.items()}
    else:
        values = {name: f.grid_error(g) for name, g in starts.items()}
    best = min(values, key=values.get)
    if N == 1:
        return SearchResult(starts[best], values[best], best, values, f.calls, 0, "N = 1: no interior node",
                            "none", time.perf_counter() - clock, f.history, {1: (starts[best], values[best])})
    z0 = to_params(starts[best])
    ends = {}
    if split and N <= FULL_SIMPLEX:
        res, n_runs = _split(f, starts, values, N, effort, limit, SPLIT_RUNS if split is True else int(split))
        stages.append(f"l-bfgs-b({N - 1}, exact gradients) from the best {n_runs} starts, the best run continued")
    elif split:
        res, stop = _lbfgsb(f, z0, N, effort, True, stall=SPLIT_STALL, limit=limit)
        res.message = stop
        stages.append(f"l-bfgs-b({N - 1}, exact gradients)")
    elif gradient and N <= FULL_SIMPLEX:  # a run from every start: they can end in different basins
        runs = []
        for name in sorted(values, key=values.get):
            r, stop = _lbfgsb(f, to_params(starts[name]), N, effort, True)
            r.message = stop
            runs.append(r)
            ends[name] = from_params(r.x, delta, T)
            iterations += int(getattr(r, "nit", 0))
        res = min(runs, key=lambda r: r.fun)
        res.nit = 0  # counted above
        stages.append(f"l-bfgs-b({N - 1}, exact gradients) from each of {len(runs)} starts")
    elif gradient:  # exact gradients: a budget per run, not per node, and a stop when progress stalls
        res, stop = _lbfgsb(f, z0, N, effort, True)
        res.message = stop
        stages.append(f"l-bfgs-b({N - 1}, exact gradients)")
    elif N <= FULL_SIMPLEX:
        res = minimize(f, z0, method="Nelder-Mead",
                       options=dict(maxfev=int(effort * SIMPLEX_EVALS * (N - 1)), xatol=xtol / effort,
                                    fatol=ftol / effort, adaptive=N > 5,
                                    initial_simplex=np.vstack([z0, z0 + 0.5 * np.eye(N - 1)])))
        stages.append(f"nelder-mead({N - 1})")
    else:
        res = minimize(f, z0, method="L-BFGS-B",
                       options=dict(maxfun=int(effort * REFINE_EVALS * (N - 1)), ftol=1e-9 / effort, gtol=1e-8,
                                    eps=1e-6))
        stages.append(f"l-bfgs-b({N - 1}, finite differences)")
    iterations += int(getattr(res, "nit", 0))
    stop = " ".join(str(res.message).split())
    if not res.fun < math.log(values[best]):
        t, value, stop = starts[best], values[best], stop + "; no improvement on the start grid: kept it"
    else:
        t, value = from_params(res.x, delta, T), float(math.exp(res.fun))
    ladder[N] = (t, value)
    return SearchResult(t, value, best, values, f.calls, iterations, stop, " then ".join(stages),
                        time.perf_counter() - clock, f.history, ladder, ends)


def _minimize(fun, z0, **kw):
    """scipy's minimize with numpy's and scipy's BLAS on one thread (:func:`numcore.blas.one_thread`: L-BFGS-B's
    tiny matrix products on a multithreaded OpenBLAS cost milliseconds each on a busy machine)."""
    from scipy.optimize import minimize

    with one_thread():
        return minimize(fun, z0, **kw)


class _Spent(Exception):
    """Raised inside an L-BFGS-B run when the split search's budget is spent."""


def _split(f: _Counted, starts: dict, values: dict, N: int, effort: float, limit: int, runs: int = SPLIT_RUNS):
    """The split search (see :func:`search`): runs from the best ``SPLIT_RUNS`` starts with an equal share of half
    the budget left after the starts, then the best run continued up to ``limit`` evaluations of ``f`` in all;
    returns (the best result, number of runs)."""
    order = sorted(values, key=values.get)[:runs]
    share = max(2, (limit - f.calls) // (2 * len(order))) if len(order) > 1 else limit
    runs = []
    for name in order:
        r, stop = _lbfgsb(f, to_params(starts[name]), N, effort, True, stall=SPLIT_STALL,
                          limit=min(limit, f.calls + share))
        r.message = stop
        runs.append(r)
    res = min(runs, key=lambda r: r.fun)
    nit = sum(int(getattr(r, "nit", 0)) for r in runs)
    if f.calls < limit:
        more, stop = _lbfgsb(f, res.x, N, effort, True, stall=SPLIT_STALL, limit=limit)
        nit += int(getattr(more, "nit", 0))
        if more.fun < res.fun:
            more.message = stop
            res = more
    res.nit = nit
    return res, len(runs)


def _lbfgsb(f: _Counted, z0, N: int, effort: float, gradient: bool, stall=None, limit: int | None = None):
    """One L-BFGS-B run from z0 with the budgets and the stall rule; returns (result, stop reason).  ``stall`` =
    (iterations, gain) replaces the effort-scaled stall rule, and ``limit`` (exact gradients only) the
    effort-scaled budget: the run ends, at the best point it evaluated, once ``f`` has counted ``limit`` calls."""
    from scipy.optimize import OptimizeResult

    minimize = _minimize
    stall = _Stall(*stall) if stall is not None else _Stall(int(round(STALL_ITERATIONS * effort)), STALL_GAIN / effort)
    if gradient and limit is not None:
        seen = [math.inf, np.asarray(z0, float)]

        def fun(z):
            if f.calls >= limit and np.asarray(z, float).tobytes() not in f.memo:
                raise _Spent
            v, g = f.value_and_grad(z)
            if v < seen[0]:
                seen[:] = [v, np.array(z, float)]
            return v, g

        try:
            res = minimize(fun, z0, jac=True, method="L-BFGS-B", callback=stall,
                           options=dict(maxfun=10 * limit, ftol=1e-10 / effort, gtol=1e-9))
        except _Spent:
            return OptimizeResult(x=seen[1], fun=seen[0], nit=len(stall.values)), "the search's budget is spent"
        if stall.stopped:  # the run's best point, which the stall rule's last iterate is
            res.x, res.fun = seen[1], seen[0]
    elif gradient:
        res = minimize(f.value_and_grad, z0, jac=True, method="L-BFGS-B", callback=stall,
                       options=dict(maxfun=int(effort * GRADIENT_EVALS), ftol=1e-10 / effort, gtol=1e-9))
    else:
        res = minimize(f, z0, method="L-BFGS-B", callback=stall,
                       options=dict(maxfun=int(effort * REFINE_EVALS * (N - 1)), ftol=1e-9 / effort, gtol=1e-8,
                                    eps=1e-6))
    stop = (f"stalled: the error fell by less than {100 * stall.gain:.2g}% over the last {stall.window} "
            "iterations") if stall.stopped else " ".join(str(res.message).split())
    return res, stop


def _screened(error, screen, N, delta, T, starts, effort, xtol, ftol, coarse) -> SearchResult:
    """The search on ``screen``, then L-BFGS-B on ``error`` from the best (on ``error``) of its optimum, the end of
    each of its runs and the starts (up to FULL_SIMPLEX steps from each of the FINAL_RUNS best)."""
    clock = time.perf_counter()
    if coarse is not None and N <= FULL_SIMPLEX and N > 1:  # one more start (the runs on the screen are cheap)
        starts = {**starts, f"optimal N={len(coarse) - 1} resampled": resample(coarse, N)}
    first = search(screen, N, delta, T, starts, effort=effort, xtol=xtol, ftol=ftol, coarse=coarse)
    f = _Counted(error, delta, T)
    cand = {"screened optimum": first.t, **{f"screened run from {k}": g for k, g in first.ends.items()
                                            if not np.array_equal(g, first.t)},
            **{k: np.asarray(g, float) for k, g in starts.items()}}
    values = {k: f.grid_error(v) for k, v in cand.items()}
    best = min(values, key=values.get)
    t, value, stop, stage, iterations = cand[best], values[best], first.stop, "", first.iterations
    if N > 1:
        ranked = sorted(values, key=values.get)[:FINAL_RUNS if N <= FULL_SIMPLEX else 1]
        for name in ranked:
            res, stop_ = _lbfgsb(f, to_params(cand[name]), N, effort, hasattr(error, "value_and_grad"))
            iterations += int(getattr(res, "nit", 0))
            if res.fun < math.log(value):
                t, value, stop, best = from_params(res.x, delta, T), float(math.exp(res.fun)), stop_, name
        if value == values[best] and np.array_equal(t, cand[best]):
            stop = stop_ + "; no improvement on the whole batch: kept the start"
        stage = f" then l-bfgs-b({N - 1}) on the whole batch" + (f" from each of {len(ranked)} best"
                                                                    if len(ranked) > 1 else "")
    ladder = {**first.ladder, N: (t, value)}
    return SearchResult(t, value, best, values, first.evaluations + f.calls, iterations, stop,
                        f"[{first.method}] on the screening batch{stage}", time.perf_counter() - clock,
                        first.history + f.history, ladder)


def endpoint_error(sample: Callable[[np.ndarray], np.ndarray], target, squared_error_and_grad=None):
    """error(t) = sum_i |sample(t)_i - target_i|^2 / sum_i |target_i|^2: a solver's end-to-end relative MSE.

    Args:
        sample: runs the solver along the grid t (OU time, descending) on a fixed batch of start points
            x_T and returns its end points (n, d) at t[-1].
        target: (n, d) the exact flow-map end points Phi_{T->delta}(x_T) of the same batch (a teacher's).
        squared_error_and_grad: optional t -> (sum_i |sample(t)_i - target_i|^2, its gradient with respect to
            rho_k = log sigma_VE(t_k), shape (N + 1,)); with it the search refines with exact gradients.

    Returns:
        the function t -> relative MSE (a float >= 0) that :func:`search` minimises (with a
        ``value_and_grad`` method when ``squared_error_and_grad`` is given).
    """
    target = np.asarray(target, float)
    norm = float(np.sum(target**2))

    class Error:
        def __call__(self, t):
            return float(np.sum((sample(t) - target) ** 2)) / norm

    if squared_error_and_grad is not None:
        def value_and_grad(t):
            v, g = squared_error_and_grad(t)
            return v / norm, np.asarray(g, float) / norm

        Error.value_and_grad = staticmethod(value_and_grad)
    return Error()
