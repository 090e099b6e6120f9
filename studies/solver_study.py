"""Which grid makes which few-step solver most accurate, on a mixture whose flow map is known exactly or on a
trained model against its own many-step teacher.

For every grid (balanced on each rate the target has: the tri, sharp and empirical rates of a mixture, the
empirical E||J||_op of a model; uniform in t; EDM rho = 7; uniform log-SNR; Align Your Steps' KL-optimal closed
form; a model's GITS-style grid; and each solver's own optimal grid, :mod:`studies.optimal`), every N and every
solver (:mod:`numcore.samplers`), start from x_T (exact samples of p_T, or N(0, I) for a model) and compare the
solver's end points with

* the teacher's end points Phi_{T->delta}(x_T) (relative MSE, paired, with a 95% CI), and
* a reference sample of p_delta (sliced W2): exact samples of a mixture's p_delta, whose Monte-Carlo floor is
  SW2(exact endpoints, reference); or a model's held-out data pushed to p_delta (bootstrap interval), whose
  floor is the teacher's own distance.

The optimal (and GITS-style) grids are fitted on a separate training batch; the study's samples are their fresh
test batch.  One loop (:func:`run`) serves both targets (:mod:`studies.targets`); over many mixtures
(:func:`league`), every grid's error is divided by the optimal grid's on the same mixture, solver and N, and
summarised by a geometric mean with a 95% interval.  A mixture's study runs without torch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..numcore import grids
from ..numcore.blas import one_thread
from ..numcore.checks import finite
from ..numcore.distances import relative_mse
from ..numcore.io import no_progress
from ..numcore.solvers import NAMES, SOLVERS as REGISTRY, check_list

OPTIMAL = "optimal"  # the solver's own optimal grid (one per solver)
SOLVERS = NAMES  # the registry's solvers (numcore.solvers): the study's default
WITHIN = 1.1  # the league counts how often a grid is within this factor of the optimum


def labels(target) -> tuple[str, ...]:
    """The study's grids for a target, in the registry's order: ``balanced-RATE`` per rate, the closed forms (the
    flow pipelines' defaults flow-shift and flux-mu where the target is a mixture or a flow model), the
    teacher-node grids the target has (a model's ``gits``) and ``optimal``."""
    out = []
    for name, kind in grids.KINDS.items():
        if kind.params and not target.flow_grids:
            continue
        if kind.needs == grids.RATE:
            out += [f"{name}-{rate}" for rate in target.rates]
        elif kind.needs == grids.TEACHER:
            out += [name] if name in target.teacher_kinds else []
        else:
            out.append(name)
    return tuple(out)


@dataclass
class Row:
    grid: str
    solver: str
    steps: int
    nfe: int
    engine: str
    rel_mse: float
    rel_mse_ci: tuple
    sw: float
    sw_ci: tuple | None = None


SEARCH_THREADS = 2  # the solvers' optimal searches of a mixture study run in this many threads


def _threads_safe(target) -> bool:
    """Whether a study of ``target`` may run its work in SEARCH_THREADS threads: a target whose runs share no state
    (``threaded_searches``: a mixture's, in numba kernels that release the GIL) and a numba threading layer that
    takes parallel kernels from several threads at once (omp, tbb; not workqueue)."""
    if not getattr(target, "threaded_searches", False) or SEARCH_THREADS < 2:
        return False
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        layer = None
    return layer in ("omp", "tbb")


def side_by_side(fns, items) -> list:
    """[fn(item) for fn, item in zip(fns, items)] (``fns`` one function or one per item) in SEARCH_THREADS threads,
    taken in order, each running its numba kernels on one thread: the study's searches first, then the rows of
    its fixed grids, which fill the threads as the searches end (two searches whose parallel kernels each took both
    cores made the ring8 study 43 s instead of 37 s in one thread; side by side on one each, 27 s).  The results are
    the same as in one thread: each task is deterministic and its own, and no kernel's result depends on its thread
    count.  Call it only where threads are safe (:func:`_threads_safe`)."""
    from concurrent.futures import ThreadPoolExecutor

    import numba

    fns = list(fns) if isinstance(fns, (list, tuple)) else [fns] * len(items)

    def alone(fn, item):  # numba's thread count is per thread
        numba.set_num_threads(1)
        return fn(item)

    with ThreadPoolExecutor(SEARCH_THREADS) as pool:
        return [f.result() for f in [pool.submit(alone, fn, item) for fn, item in zip(fns, items)]]


def build_grids(target, batches, steps, delta: float, T: float, rate_samples: int, seed: int = 0):
    """({label: {N: t grid}} for every grid of the study but the optimal ones, {label: Lambda(T)} per balanced
    rate, {rate: Stability})."""
    out, lam, rates = {}, {}, {}
    for label in labels(target):
        if label == OPTIMAL:
            continue
        kind, _, rate = label.partition("-") if label.startswith("balanced-") else (label, "", "")
        if rate:
            st = target.stability(rate, delta, T, samples=rate_samples, seed=seed)
            lam[label], rates[rate] = st.integral.total, st
            out[label] = {N: grids.build("balanced", N, delta, T, st.integral) for N in steps}
        elif grids.KINDS[kind].needs == grids.TEACHER:
            out[label] = target.teacher_grids(kind, batches, steps)
        else:
            params = target.flow_params()
            out[label] = {N: grids.build(kind, N, delta, T, **params) for N in steps}
    return out, lam, rates


def flow_parameters(target, study_labels) -> dict:
    """{kind: its parameters} for the flow kinds among a study's grids (``{"flow-shift": {"shift": 3.0}}``)."""
    params = target.flow_params()
    return {k: grids.KINDS[k].parameters(**params) for k in study_labels if k in grids.FLOW_KINDS}


def run(target, steps, delta: float, T: float, *, samples: int, seed: int = 0, rate_samples: int = 4096,
        train_samples: int = 4096, effort: float = 1.0, solvers=None, reference=None, bar=None,
        teacher_progress=no_progress, progress=no_progress) -> dict:
    """The whole study on one target; returns a JSON-ready dict (rows, floor, summary, optimal grids).

    ``solvers``: the registry's names to study (default: every registered solver; the record's ``solvers`` says
    which).  ``reference``: a model's held-out data x_0 for the sliced W2 (a mixture's reference is exact samples
    of p_delta).  ``bar`` advances once per (grid, N, solver) run and once per optimal search; ``teacher_progress``
    is a progress factory for the teacher."""
    clock = time.time()
    chosen = check_list(solvers)
    batches = target.batches(delta, T, train=train_samples, test=samples, seed=seed, progress=teacher_progress)
    ref = target.reference(batches, delta, seed, reference)
    grid_sets, lam, rates = build_grids(target, batches, steps, delta, T, rate_samples, seed)
    study = labels(target)
    cells = [(label, N, solver) for label in study for N in steps for solver in chosen]
    optimal, results = {}, {}

    def solve(cell):
        label, N, solver = cell
        t = optimal[solver][N][0] if label == OPTIMAL else grid_sets[label][N]
        return batches.solve(batches.x_test, t, solver)

    def measure(x):
        e = relative_mse(x, batches.y_test)
        return (e, *ref.distance(x))

    with progress(len(chosen) * len(steps), "optimal grids") as obar, progress(len(cells), "solvers") as pbar, \
            one_thread():  # BLAS on one thread: L-BFGS-B's and SW2's tiny products
        def one(solver):
            res = target.study_optimal(batches, solver, steps, effort)
            obar.update(len(steps))
            if bar is not None:
                bar.update(len(steps))
            return res

        def row(cell):
            out = measure(solve(cell))
            pbar.update(1)
            if bar is not None:
                bar.update(1)
            return out

        if _threads_safe(target):  # the fixed grids' rows queue behind the searches in the same threads
            tasks = list(chosen) + [c for c in cells if c[0] != OPTIMAL]
            done = dict(zip(tasks, side_by_side([one] * len(chosen) + [row] * (len(tasks) - len(chosen)), tasks)))
            optimal = {solver: done.pop(solver) for solver in chosen}
            results = {**done, **dict(zip((c for c in cells if c[0] == OPTIMAL),
                                          side_by_side(row, [c for c in cells if c[0] == OPTIMAL])))}
        else:
            optimal = {solver: one(solver) for solver in chosen}
            results = {cell: row(cell) for cell in cells}
    rows = []
    for cell in cells:
        label, N, solver = cell
        e, sw, sw_ci = results[cell]
        finite(f"{target.kind} {target.name!r}: the relative MSE (or sliced W2) of {solver} on the "
               f"{label} grid with N = {N}",
               [v for v in (e.value, e.ci_low, e.ci_high, sw, *(sw_ci or ())) if v is not None])
        rows.append(Row(label, solver, N, REGISTRY[solver].evaluations(N), "flowcert", e.value,
                        (e.ci_low, e.ci_high), sw, sw_ci))
    record = target.study_record(batches=batches, steps=list(steps), delta=delta, T=T, samples=samples, seed=seed,
                                 labels=list(study), solvers=list(chosen), grid_sets=grid_sets, lam=lam,
                                 rates=rates, optimal=optimal, rows=rows, summary=summarise(rows), reference=ref,
                                 rate_samples=rate_samples, train_samples=train_samples, effort=effort,
                                 seconds=time.time() - clock)
    flow = flow_parameters(target, study)
    if flow:
        record["flow_params"] = flow
    return record


def optimal_grids(batches, solver: str, steps, effort: float = 1.0, starts=None) -> dict:
    """{N: (t, search record)}: the solver's optimal grid for every N, smallest N first; above 8 steps each
    search starts from the closed forms and the next smaller N's optimum (which replaces its coarse stage).
    ``starts(N)``: further starting grids for N."""
    from .optimal import baseline_grids, search

    out, previous = {}, None
    for N in sorted(steps):
        res = search(batches, solver, N, {**baseline_grids(N, batches.delta, batches.T), **(starts(N) if starts else {})},
                     effort, coarse=previous)
        out[N] = (res.t, {"train_rel_mse": res.value, "method": res.method, "stop": res.stop,
                          "evaluations": res.evaluations, "seconds": res.seconds, "start": res.start})
        previous = res.t
    return out


def row_dicts(rows, engine: bool = True) -> list[dict]:
    """The rows as JSON: every field (``engine`` and ``sw_ci`` only where they say something)."""
    out = []
    for r in rows:
        d = asdict(r)
        if not engine:
            d.pop("engine")
        if d["sw_ci"] is None and engine:
            d.pop("sw_ci")
        out.append(d)
    return out


def summarise(rows) -> dict:
    """Per solver: the grid with the smallest relative MSE at each N, and over all N (geometric mean).

    ``factor`` is the runner-up's error over the winner's; ``vs`` gives every grid's error over the
    winner's (geometric mean over N); ``vs_optimal`` every grid's error over the optimal grid's at each N.
    """
    out = {}
    for solver in dict.fromkeys(r.solver for r in rows):
        mine = [r for r in rows if r.solver == solver]
        labels = list(dict.fromkeys(r.grid for r in mine))
        steps = sorted({r.steps for r in mine})
        err = {(r.grid, r.steps): r for r in mine}
        per_n = {}
        for N in steps:
            ranked = sorted(labels, key=lambda g: err[g, N].rel_mse)
            w, r2 = err[ranked[0], N], err[ranked[1], N]
            per_n[N] = {"winner": ranked[0], "runner_up": ranked[1], "factor": r2.rel_mse / w.rel_mse,
                        "separated": bool(w.rel_mse_ci[1] < r2.rel_mse_ci[0])}
        geo = {g: float(np.exp(np.mean([np.log(err[g, N].rel_mse) for N in steps]))) for g in labels}
        ranked = sorted(labels, key=geo.get)
        out[solver] = {
            "per_steps": per_n,
            "overall_winner": ranked[0],
            "overall_factor": geo[ranked[1]] / geo[ranked[0]],
            "geo_mean_rel_mse": geo,
            "vs": {g: geo[g] / geo[ranked[0]] for g in labels},
        }
        if OPTIMAL in labels:
            out[solver]["vs_optimal"] = {N: {g: err[g, N].rel_mse / err[OPTIMAL, N].rel_mse for g in labels}
                                         for N in steps}
    return out


def league(studies: list) -> dict:
    """Every grid against the optimum over many mixtures, per solver and N.

    For each (solver, N, grid): ratios r_m = rel_mse(grid) / rel_mse(optimal) on mixture m (same test batch),
    ``geo_mean`` = exp(mean log r_m) with a 95% Student-t interval of the mean log ratio (``ci``; null for one
    mixture), ``within`` = the fraction of mixtures with r_m <= 1.1, ``best_baseline`` the grid with the
    smallest geometric mean other than the optimum, and ``mixtures`` = M; ``budget`` (:func:`budget`): at each
    number of model evaluations, every solver's optimal grid and best closed form against each other.
    """
    out = {"mixtures": [s["mixture"] for s in studies], "within_factor": WITHIN, "table": {}}
    names = studies[0]["grids"]
    for solver in studies[0]["solvers"]:
        out["table"][solver] = {}
        steps = studies[0]["steps"]
        for N in steps:
            cell = {}
            for g in names:
                logs = []
                for s in studies:
                    err = {(r["grid"], r["solver"], r["steps"]): r["rel_mse"] for r in s["rows"]}
                    logs.append(np.log(err[g, solver, N] / err[OPTIMAL, solver, N]))
                logs = np.array(logs)
                gm, ci = _geo(logs)
                cell[g] = {"geo_mean": gm, "ci": ci,
                           "within": float(np.mean(logs <= np.log(WITHIN))), "max": float(np.exp(logs.max()))}
            base = [g for g in names if g != OPTIMAL]
            out["table"][solver][N] = {"grids": cell, "best_baseline": min(base, key=lambda g: cell[g]["geo_mean"])}
    out["budget"] = budget(studies)
    return out


def _geo(logs) -> tuple[float, list | None]:
    """exp(mean) of logs and the 95% Student-t interval of the mean, exponentiated (None for one value)."""
    from scipy.special import stdtrit  # the Student t quantile, without importing scipy.stats

    logs = np.asarray(logs, float)
    m = float(logs.mean())
    if logs.size < 2:
        return float(np.exp(m)), None
    h = float(stdtrit(logs.size - 1, 0.975) * logs.std(ddof=1) / np.sqrt(logs.size))
    return float(np.exp(m)), [float(np.exp(m - h)), float(np.exp(m + h))]


def budget(studies: list) -> dict:
    """At a budget of K model evaluations (the rows' ``nfe``: Heun spends two per step, the others one), which
    solver with which grid is most accurate over the mixtures.

    For each K and each solver that has a run with K evaluations: its optimal grid and its best closed form at
    that N (the smallest geometric mean over the mixtures), each with ``geo_mean`` (geometric mean of the relative
    MSE over the mixtures, 95% interval ``ci``) and ``vs_best`` (its relative MSE over the best candidate's on the
    same mixture, geometric mean and interval: a paired comparison).  ``best`` is the candidate with the smallest
    geometric mean; ``order`` ranks them."""
    out = {}
    rows = [{(r["solver"], r["grid"], r["nfe"]): r for r in s["rows"]} for s in studies]
    keys = rows[0].keys()
    for K in sorted({k[2] for k in keys}):
        cand = {}
        for solver in dict.fromkeys(k[0] for k in keys if k[2] == K):
            grids_ = [k[1] for k in keys if k[0] == solver and k[2] == K]
            geo = {g: _geo([np.log(r[solver, g, K]["rel_mse"]) for r in rows])[0] for g in grids_}
            closed = min((g for g in grids_ if g != OPTIMAL), key=geo.get)
            for g in ([OPTIMAL] if OPTIMAL in grids_ else []) + [closed]:
                logs = [np.log(r[solver, g, K]["rel_mse"]) for r in rows]
                gm, ci = _geo(logs)
                cand[f"{solver}/{g}"] = {"solver": solver, "grid": g, "steps": rows[0][solver, g, K]["steps"],
                                         "geo_mean": gm, "ci": ci, "logs": logs}
        best = min(cand, key=lambda c: cand[c]["geo_mean"])
        for c in cand.values():
            gm, ci = _geo(np.array(c.pop("logs")) - np.log([r[cand[best]["solver"], cand[best]["grid"], K]["rel_mse"]
                                                            for r in rows]))
            c["vs_best"] = {"geo_mean": gm, "ci": ci}
        order = sorted(cand, key=lambda c: cand[c]["geo_mean"])
        out[K] = {"best": {"solver": cand[best]["solver"], "grid": cand[best]["grid"]}, "order": order,
                  "candidates": cand}
    return out


def plot(result: dict, path) -> str:
    """Relative MSE to the teacher (top) and, where measured, sliced W2 (bottom) against N, one panel per solver,
    one line per grid, 95% intervals shaded."""
    from ..numcore.io import pyplot, save_figure

    plt = pyplot()
    solvers = result["solvers"]
    model = "model" in result
    has_sw = result["sw_floor"] is not None
    nrows = 2 if has_sw else 1
    fig, axes = plt.subplots(nrows, len(solvers), figsize=(4.2 * len(solvers), 3.6 * nrows), squeeze=False,
                             sharex=True)
    for j, solver in enumerate(solvers):
        for g in result["grids"]:
            rs = sorted((r for r in result["rows"] if r["solver"] == solver and r["grid"] == g),
                        key=lambda r: r["steps"])
            n = np.array([r["steps"] for r in rs])
            e = np.array([r["rel_mse"] for r in rs])
            lo = np.array([r["rel_mse_ci"][0] for r in rs])
            hi = np.array([r["rel_mse_ci"][1] for r in rs])
            style = "-" if g.startswith("balanced") else ("-." if g == OPTIMAL else "--")
            line, = axes[0, j].plot(n, e, style, marker="o", ms=3, label=g, lw=2 if g == OPTIMAL else 1)
            axes[0, j].fill_between(n, np.maximum(lo, 1e-300), hi, color=line.get_color(), alpha=0.15)
            if has_sw:
                axes[1, j].plot(n, [r["sw"] for r in rs], style, marker="o", ms=3, color=line.get_color())
                if rs and rs[0].get("sw_ci") is not None:
                    axes[1, j].fill_between(n, [r["sw_ci"][0] for r in rs], [r["sw_ci"][1] for r in rs],
                                            color=line.get_color(), alpha=0.15)
        if has_sw:
            axes[1, j].axhline(result["sw_floor"]["value"], color="k", lw=0.8, ls=":",
                               label="teacher" if model else "SW2 of exact samples (noise floor)")
            axes[1, j].set_yscale("log")
            axes[1, j].set_xlabel("steps N")
        axes[0, j].set_title(solver)
        axes[0, j].set_yscale("log")
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
    axes[0, 0].set_ylabel("relative MSE vs the model's teacher" if model else "relative MSE vs exact flow map")
    axes[0, 0].legend(fontsize=7)
    if has_sw:
        axes[1, 0].set_ylabel("sliced W2 to held-out data" if model else "sliced W2 to p_delta")
        axes[1, 0].legend(fontsize=7)
    fig.suptitle(f"{result['mixture']}: x_T ~ {'N(0, I)' if model else 'p_T'}, T = {result['T']:g} -> delta = "
                 f"{result['delta']:g}, {result['samples']} samples", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_league(lg: dict, path) -> str:
    """Each grid's relative MSE over the optimum's (geometric mean over mixtures, 95% band) against N."""
    from ..numcore.io import pyplot, save_figure

    plt = pyplot()
    solvers = list(lg["table"])
    fig, axes = plt.subplots(1, len(solvers), figsize=(4.4 * len(solvers), 3.8), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, solver in zip(axes, solvers):
        steps = sorted(lg["table"][solver], key=int)
        for g in lg["table"][solver][steps[0]]["grids"]:
            gm = np.array([lg["table"][solver][N]["grids"][g]["geo_mean"] for N in steps])
            line, = ax.plot([int(N) for N in steps], gm, "-." if g == OPTIMAL else "-", marker="o", ms=3, label=g)
            ci = [lg["table"][solver][N]["grids"][g]["ci"] for N in steps]
            if all(c is not None for c in ci):
                ax.fill_between([int(N) for N in steps], [c[0] for c in ci], [c[1] for c in ci],
                                color=line.get_color(), alpha=0.12)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(solver)
        ax.set_xlabel("steps N")
    axes[0].set_ylabel("relative MSE / optimal grid's (geometric mean)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"league over {len(lg['mixtures'])} mixtures (95% intervals of the geometric mean)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
