"""Which grid makes which few-step solver most accurate, on a mixture whose flow map is known exactly.

For every grid (balanced from the tri, sharp and empirical rates; uniform in t;
EDM rho = 7; uniform log-SNR), every N and every solver (Euler, Heun,
DPM-Solver++(2M)), start from exact samples x_T ~ p_T and integrate with the
exact denoiser, then compare with

* the exact teacher endpoint Phi_{T->delta}(x_T) (relative MSE, paired, with a 95% CI), and
* p_delta itself: sliced W2 to an independent sample of p_delta of the same size.
  Its Monte-Carlo noise floor is SW2(teacher endpoints, reference): both are exact
  samples of p_delta, so values at the floor are indistinguishable from exact.

Euler runs in diffusers' own EulerDiscreteScheduler (it takes the grid as
``sigmas``) when diffusers is installed; Heun and DPM-Solver++(2M) in diffusers
take only integer timesteps, which cannot carry these grids, so they run in
:mod:`numcore.samplers`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..numcore import grids
from ..numcore.distances import directions, relative_mse, sliced_wasserstein
from ..numcore.marginal import sample
from ..numcore.samplers import EVALS_PER_STEP, sample_grid

# (label, grid kind, rate that defines Lambda for the balanced grid)
GRIDS = (
    ("balanced-tri", "balanced", "tri"),
    ("balanced-sharp", "balanced", "sharp"),
    ("balanced-empirical", "balanced", "empirical"),
    ("uniform", "uniform", None),
    ("edm", "edm", None),
    ("logsnr", "logsnr", None),
)
SOLVERS = ("euler", "heun", "dpmpp_2m")
SW_DIRECTIONS = 256
FLOOR_REPEATS = 8


def memory_bytes(mix, samples: int) -> float:
    """Peak memory of :func:`run` for ``samples`` points (an estimate, in bytes): per point, the exact
    teacher path (17 states and the RK4 stages), x_T and the 8 reference samples of p_delta, the
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


def teacher_endpoint(mix, x, T: float, delta: float, bar=None, segments: int = 16) -> np.ndarray:
    """Phi_{T->delta}(x): the exact flow map (distill.teacher, RK4 in log sigma_VE, float64).

    Integrated through ``segments`` intermediate times equally spaced in log sigma_VE
    (only to report progress on ``bar``; each segment keeps the teacher's step bound).
    """
    from .teacher import Teacher
    from ..numcore.units import sigma_from_t, t_from_sigma

    rho = np.linspace(np.log(sigma_from_t(T)), np.log(sigma_from_t(delta)), segments + 1)
    times = t_from_sigma(np.exp(rho))
    times[0], times[-1] = T, delta
    return Teacher(mix).trajectory(x, times, progress=bar)[:, -1].cpu().numpy()


def have_diffusers() -> bool:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


def build_grids(mix, steps, delta, T, empirical_samples=4096, seed=0):
    """{label: {N: t grid}} for every grid of :data:`GRIDS`; Lambda(T) per balanced rate in the second value."""
    from ..bounds.stability import stability

    out, lam = {}, {}
    for label, kind, rate in GRIDS:
        st = stability(mix, rate, delta, T, samples=empirical_samples, seed=seed) if rate else None
        if st is not None:
            lam[label] = st.integral.total
        out[label] = {N: grids.build(kind, N, delta, T, st.integral if st else None) for N in steps}
    return out, lam


def run(mix, steps, delta: float, T: float, samples: int = 10000, seed: int = 0, empirical_samples: int = 4096,
        use_diffusers: bool | None = None, bar=None, teacher_bar=None) -> dict:
    """The whole study; returns a JSON-ready dict (rows, noise floor, summary).

    ``bar`` advances once per (grid, N, solver) run, ``teacher_bar`` once per
    teacher segment (16 in all).
    """
    rng = np.random.default_rng(seed)
    x_T = sample(mix, T, samples, rng)
    exact = teacher_endpoint(mix, x_T, T, delta, teacher_bar)
    theta = directions(mix.d, SW_DIRECTIONS, rng)
    refs = [sample(mix, delta, samples, rng) for _ in range(FLOOR_REPEATS)]
    floor = np.array([sliced_wasserstein(exact, r, theta) for r in refs])
    grid_sets, lam = build_grids(mix, steps, delta, T, empirical_samples, seed)
    if use_diffusers is None:
        use_diffusers = have_diffusers()
    rows = []
    for label, per_n in grid_sets.items():
        for N, t in per_n.items():
            for solver in SOLVERS:
                if solver == "euler" and use_diffusers:
                    from .diffusers_sampling import euler_discrete

                    x, _ = euler_discrete(mix, x_T, t, check_range=False)
                    engine = "diffusers.EulerDiscreteScheduler"
                else:
                    x = sample_grid(mix, x_T, t, solver)
                    engine = "flowcert"
                e = relative_mse(x, exact)
                rows.append(Row(label, solver, N, N * EVALS_PER_STEP[solver], engine, e.value,
                                (e.ci_low, e.ci_high), sliced_wasserstein(x, refs[0], theta)))
                if bar is not None:
                    bar.update(1)
    return {
        "mixture": mix.name, "delta": delta, "T": T, "samples": samples, "seed": seed, "steps": list(steps),
        "grids": [g[0] for g in GRIDS], "solvers": list(SOLVERS), "lambda_T": lam,
        "empirical_samples": empirical_samples,
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

    ``factor`` is the runner-up's error over the winner's; ``vs`` gives every
    grid's error over the winner's (geometric mean over N).
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
            style = "-" if g.startswith("balanced") else "--"
            line, = axes[0, j].plot(n, e, style, marker="o", ms=3, label=g)
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
