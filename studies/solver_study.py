"""Which grid makes which few-step solver most accurate, on mixtures whose flow map is known exactly.

For every grid (balanced from the tri, sharp and empirical rates; uniform in t; EDM rho = 7; uniform
log-SNR; Align Your Steps' KL-optimal closed form; and each solver's own optimal grid,
:mod:`studies.optimal`), every N and every solver (Euler, Heun, DPM-Solver++(2M), :mod:`numcore.samplers`),
start from exact samples x_T ~ p_T and integrate with the exact denoiser, then compare with

* the exact endpoint Phi_{T->delta}(x_T) (:mod:`numcore.flowmap`; relative MSE, paired, with a 95% CI), and
* p_delta itself: sliced W2 to an independent sample of p_delta of the same size.
  Its Monte-Carlo noise floor is SW2(exact endpoints, reference): both are exact
  samples of p_delta, so values at the floor are indistinguishable from exact.

The optimal grids are fitted on a separate training batch; the study's samples are their fresh test batch.
Over many mixtures (:func:`league`), every grid's error is divided by the optimal grid's on the same
mixture, solver and N, and summarised by a geometric mean with a 95% interval.  Runs without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..numcore import grids
from ..numcore.distances import directions, relative_mse, sliced_wasserstein, sorted_projections
from ..numcore.io import no_progress
from ..numcore.marginal import sample
from ..numcore.samplers import sample_grid
from ..numcore.solvers import NAMES, SOLVERS as REGISTRY

# (label, grid kind, rate that defines Lambda for the balanced grid)
GRIDS = (
    ("balanced-tri", "balanced", "tri"),
    ("balanced-sharp", "balanced", "sharp"),
    ("balanced-empirical", "balanced", "empirical"),
    ("uniform", "uniform", None),
    ("edm", "edm", None),
    ("logsnr", "logsnr", None),
    ("kl-optimal", "kl-optimal", None),
)
OPTIMAL = "optimal"  # the solver's own optimal grid (one per solver)
LABELS = tuple(g[0] for g in GRIDS) + (OPTIMAL,)
SOLVERS = NAMES  # the registry's solvers (numcore.solvers)
SW_DIRECTIONS = 64
FLOOR_REPEATS = 8
WITHIN = 1.1  # the league counts how often a grid is within this factor of the optimum


def memory_bytes(mix, samples: int) -> float:
    """Peak memory of :func:`run` for ``samples`` points, test and training batches together (an estimate,
    in bytes): per point, the exact teacher path (17 states and the RK4 stages), x_T and the 8 reference samples of p_delta, the
    per-component terms of the score (K x d, unless the covariance is isotropic) and the
    sliced-Wasserstein projections."""
    per_point = 37 * mix.d + (0 if mix.structure == "isotropic" else 5 * mix.K * mix.d) + 2 * SW_DIRECTIONS + 64
    return 8.0 * samples * per_point


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


def build_grids(mix, steps, delta, T, empirical_samples=4096, seed=0):
    """{label: {N: t grid}} for every closed-form grid of :data:`GRIDS`; Lambda(T) per balanced rate."""
    from ..bounds.stability import stability

    out, lam = {}, {}
    for label, kind, rate in GRIDS:
        st = stability(mix, rate, delta, T, samples=empirical_samples, seed=seed) if rate else None
        if st is not None:
            lam[label] = st.integral.total
        out[label] = {N: grids.build(kind, N, delta, T, st.integral if st else None) for N in steps}
    return out, lam


def optimal_grids(batches, solver: str, steps, effort: float = 1.0) -> dict:
    """{N: (t, search record)}: the solver's optimal grid for every N, smallest N first; above 8 steps each
    search starts from the closed forms and the next smaller N's optimum (which replaces its coarse stage)."""
    from .optimal import baseline_grids, search

    out, previous = {}, None
    for N in sorted(steps):
        res = search(batches, solver, N, baseline_grids(N, batches.delta, batches.T), effort, coarse=previous)
        out[N] = (res.t, {"train_rel_mse": res.value, "method": res.method, "stop": res.stop,
                          "evaluations": res.evaluations, "seconds": res.seconds, "start": res.start})
        previous = res.t
    return out


def run(mix, steps, delta: float, T: float, samples: int = 10000, seed: int = 0, empirical_samples: int = 4096,
        train_samples: int = 4096, effort: float = 1.0, bar=None, teacher_progress=no_progress) -> dict:
    """The whole study on one mixture; returns a JSON-ready dict (rows, noise floor, summary, optimal grids).

    ``bar`` advances once per (grid, N, solver) run and once per optimal search; ``teacher_progress`` is a
    progress factory for the exact flow map."""
    from .optimal import TEACHER_STEP, Batches

    batches = Batches(mix, delta, T, train=train_samples, test=samples, seed=seed, progress=teacher_progress)
    x_T, exact = batches.x_test, batches.y_test
    rng = np.random.default_rng([seed, 1])
    theta = directions(mix.d, SW_DIRECTIONS, rng)
    refs = [sample(mix, delta, samples, rng) for _ in range(FLOOR_REPEATS)]
    floor = np.array([sliced_wasserstein(exact, r, theta) for r in refs])
    ref_sorted = sorted_projections(refs[0], theta)
    grid_sets, lam = build_grids(mix, steps, delta, T, empirical_samples, seed)
    optimal = {}
    for solver in SOLVERS:
        optimal[solver] = optimal_grids(batches, solver, steps, effort)
        if bar is not None:
            bar.update(len(steps))
    rows = []
    for label in LABELS:
        for N in steps:
            for solver in SOLVERS:
                t = optimal[solver][N][0] if label == OPTIMAL else grid_sets[label][N]
                x = sample_grid(mix, x_T, t, solver)
                e = relative_mse(x, exact)
                rows.append(Row(label, solver, N, REGISTRY[solver].evaluations(N), "flowcert", e.value,
                                (e.ci_low, e.ci_high), sliced_wasserstein(x, refs[0], theta, ref_sorted)))
                if bar is not None:
                    bar.update(1)
    return {
        "mixture": mix.name, "d": mix.d, "K": mix.K, "structure": mix.structure, "delta": delta, "T": T,
        "samples": samples, "seed": seed, "steps": list(steps), "grids": list(LABELS), "solvers": list(SOLVERS),
        "lambda_T": lam, "empirical_samples": empirical_samples,
        "teacher": {"step": TEACHER_STEP, "relative_rms_error": batches.teacher_error,
                    "what": "the exact flow map by RK4 in log sigma_VE (numcore.flowmap); its error estimated by "
                            "re-integrating 256 points with half the step"},
        "optimal": {"train_samples": train_samples, "effort": effort,
                    "objective": "relative MSE against the exact flow map on the training batch (seed-derived, "
                                 "independent of the study's samples, which are the test batch)",
                    "grids": {s: {N: {"t": t, **rec} for N, (t, rec) in per.items()} for s, per in optimal.items()}},
        "sw_directions": SW_DIRECTIONS,
        "sw_floor": {"value": float(floor[0]), "mean": float(floor.mean()), "sd": float(floor.std(ddof=1)),
                     "repeats": FLOOR_REPEATS,
                     "what": "SW2(exact teacher endpoints, independent p_delta sample): `value` against the same "
                             "reference sample as the rows (a row at this value is indistinguishable from exact), "
                             "`mean` and `sd` over independent reference samples (the Monte-Carlo noise of SW2 at "
                             "this sample size)"},
        "rows": [asdict(r) for r in rows],
        "summary": summarise(rows),
    }


def summarise(rows) -> dict:
    """Per solver: the grid with the smallest relative MSE at each N, and over all N (geometric mean).

    ``factor`` is the runner-up's error over the winner's; ``vs`` gives every grid's error over the
    winner's (geometric mean over N); ``vs_optimal`` every grid's error over the optimal grid's at each N.
    """
    out = {}
    for solver in SOLVERS:
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
    smallest geometric mean other than the optimum, and ``mixtures`` = M.
    """
    from scipy.stats import t as student

    out = {"mixtures": [s["mixture"] for s in studies], "within_factor": WITHIN, "table": {}}
    for solver in SOLVERS:
        out["table"][solver] = {}
        steps = studies[0]["steps"]
        for N in steps:
            cell = {}
            for g in LABELS:
                logs = []
                for s in studies:
                    err = {(r["grid"], r["solver"], r["steps"]): r["rel_mse"] for r in s["rows"]}
                    logs.append(np.log(err[g, solver, N] / err[OPTIMAL, solver, N]))
                logs = np.array(logs)
                m = float(logs.mean())
                if logs.size > 1:
                    h = float(student.ppf(0.975, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size))
                    ci = [float(np.exp(m - h)), float(np.exp(m + h))]
                else:
                    ci = None
                cell[g] = {"geo_mean": float(np.exp(m)), "ci": ci,
                           "within": float(np.mean(logs <= np.log(WITHIN))), "max": float(np.exp(logs.max()))}
            base = [g for g in LABELS if g != OPTIMAL]
            out["table"][solver][N] = {"grids": cell, "best_baseline": min(base, key=lambda g: cell[g]["geo_mean"])}
    return out


def plot(result: dict, path) -> str:
    """Relative MSE (top) and sliced W2 (bottom) against N, one panel per solver, one line per grid."""
    from ..numcore.io import pyplot, save_figure

    plt = pyplot()
    solvers = result["solvers"]
    fig, axes = plt.subplots(2, len(solvers), figsize=(4.2 * len(solvers), 7), sharex=True)
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
            axes[1, j].plot(n, [r["sw"] for r in rs], style, marker="o", ms=3, color=line.get_color())
        fl = result["sw_floor"]
        axes[1, j].axhline(fl["value"], color="k", lw=0.8, ls=":", label="SW2 of exact samples (noise floor)")
        axes[0, j].set_title(solver)
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
        axes[1, j].set_xlabel("steps N")
    axes[0, 0].set_ylabel("relative MSE vs exact flow map")
    axes[1, 0].set_ylabel("sliced W2 to p_delta")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(f"{result['mixture']}: x_T ~ p_T, T = {result['T']:g} -> delta = {result['delta']:g}, "
                 f"{result['samples']} samples", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_league(lg: dict, path) -> str:
    """Each grid's relative MSE over the optimum's (geometric mean over mixtures, 95% band) against N."""
    from ..numcore.io import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(SOLVERS), figsize=(4.4 * len(SOLVERS), 3.8), sharey=True)
    for ax, solver in zip(axes, SOLVERS):
        steps = sorted(lg["table"][solver], key=int)
        for g in LABELS:
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
