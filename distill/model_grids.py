"""Lipschitz tables, grids and the solver study for a trained model (any :class:`~distill.model.TorchModel`).

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

DEFAULT_SAMPLES = 256
DEFAULT_POINTS = 40
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
    from .model_jacobian import load_data

    return load_data(data, model.d)


def lipschitz(model, *, points: int = DEFAULT_POINTS, samples: int = DEFAULT_SAMPLES, data=None,
              delta: float, T: float, seed: int = 0, iters: int | None = None, tol: float | None = None,
              teacher_steps: int = 64, progress=no_progress) -> dict:
    """E||J(x, t)||_op (with its Monte-Carlo interval), the sampled sup, and the power-iteration record on
    ``points`` log-spaced times of [delta, T]; the JSON of ``flowcert lipschitz --model``."""
    from .model_jacobian import DEFAULT_ITERS, DEFAULT_TOL, table

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


def grid(model, steps: int = 8, *, kind: str = "balanced", bound: str = "empirical", delta: float, T: float,
         units=("t",), beta_schedule: str = "linear", clip: bool = False, samples: int = DEFAULT_SAMPLES,
         data=None, seed: int = 0, points: int = DEFAULT_POINTS, progress=no_progress) -> dict:
    """A grid of N = ``steps`` segments for the model (the JSON of ``flowcert grid --model``).

    ``balanced`` is balanced on the model's E||J||_op (``bound`` must be ``empirical``); the other
    kinds need no rate (``lambda`` is then None).

    Raises:
        InputError: a bound other than empirical, a bad kind, steps, units or window.
    """
    from ..bounds.timegrid import from_stability
    from ..numcore import units as un

    steps = integer("steps", steps, low=1, high=100000)
    if kind not in grids.KINDS:
        raise InputError(f"`kind` = {kind!r}: expected one of {', '.join(grids.KINDS)}")
    if bound != "empirical":
        raise InputError(f"`bound` = {bound!r}: a trained model has no analytic bound: expected empirical "
                         "(the model's p_t-average of ||J||_op)")
    for u in units:
        if u not in un.UNITS:
            raise InputError(f"`units` = {u!r}: expected one of {', '.join(un.UNITS)}")
    t0 = time.time()
    st, tab = None, None
    if kind == "balanced":
        tab = lipschitz(model, points=points, samples=samples, data=data, delta=delta, T=T, seed=seed,
                        progress=progress)
        st = rate(tab, delta, T)
    out = from_stability(st, steps, kind=kind, delta=delta, T=T, units=units, beta_schedule=beta_schedule, clip=clip)
    out = {"model": model.describe(), "mixture": model.name, **out}
    out["cost"] = {"seconds": time.time() - t0,
                   "what": "wall time of the grid including its rate (the Jacobian table)" if tab else "closed form"}
    if tab is not None:
        out["cost"]["model_passes_per_sample"] = int(tab["passes"])
    return out


# ----------------------------------------------------------------------------- the solver study
MODEL_GRIDS = ("balanced-empirical", "uniform", "edm", "logsnr", "kl-optimal", "gits")


def kl_optimal(N: int, delta: float, T: float) -> np.ndarray:
    """Align Your Steps' KL-optimal schedule for Gaussian data (Sabour et al., ICML 2024, Theorem 3.1):
    sigma_i = tan((1 - i/N) atan(sigma_max) + (i/N) atan(sigma_min)), as OU times (descending)."""
    from ..numcore.units import sigma_from_t, t_from_sigma

    f = np.arange(N + 1) / N
    t = t_from_sigma(np.tan((1 - f) * np.arctan(sigma_from_t(T)) + f * np.arctan(sigma_from_t(delta))))
    t[0], t[-1] = T, delta
    return t


def _build(label: str, N: int, delta: float, T: float, st) -> np.ndarray:
    kind = "balanced" if label.startswith("balanced") else label
    if kind in grids.KINDS:
        return grids.build(kind, N, delta, T, st.integral if kind == "balanced" else None)
    return kl_optimal(N, delta, T)
SOLVERS = ("euler", "heun", "dpmpp_2m")
SW_DIRECTIONS = 256


def _push(data: np.ndarray, t: float, rng) -> np.ndarray:
    """Data x_0 pushed to p_t: alpha x_0 + sigma_vp z."""
    return math.exp(-t) * data + math.sqrt(-math.expm1(-2 * t)) * rng.standard_normal(data.shape)


def solvers(model, steps, *, delta: float, T: float, samples: int = 512, reference=None, data=None, seed: int = 0,
            teacher_steps: int = 64, rate_samples: int = DEFAULT_SAMPLES, points: int = DEFAULT_POINTS,
            gits_samples: int = 128, progress=no_progress) -> dict:
    """Which grid makes Euler, Heun and DPM-Solver++(2M) most accurate for a trained model.

    From ``samples`` x_T ~ N(0, I) (seeded), every grid of :data:`MODEL_GRIDS` and N in ``steps``:
    relative MSE to the model's own many-step teacher endpoint from the same x_T (95% interval), and with
    ``reference`` (held-out data x_0) the sliced W2 of the endpoints to the reference pushed to p_delta
    (bootstrap 95% interval), beside the teacher's own distance (its floor).  The balanced grid's rate is
    the model's E||J|| from ``data`` (or from the model's ODE); the ``gits`` grid comes from
    :func:`gits_search` on its own batch of ``gits_samples`` trajectories.

    Returns:
        dict: ``rows`` (grid, solver, steps, nfe, rel_mse, rel_mse_ci, sw, sw_ci), ``teacher`` (steps,
        NFE, self-convergence, seconds), ``sw_floor``, ``summary`` (winner per solver and N), ``grids``
        ({label: {N: t}}), ``cost`` (seconds and network passes of the empirical rate), ``model``.
    """
    from ..numcore.distances import directions, relative_mse, sliced_wasserstein_ci
    from .model_flow import prior, solve, teacher
    from .solver_study import Row, summarise

    samples = integer("samples", samples, low=16, high=10**6)
    t_start = time.time()
    xT = prior(model, samples, seed)
    with progress(2, "teacher") as bar:
        teach = teacher(model, xT, T, delta, teacher_steps)
        bar.update(2)
    rate_tab = lipschitz(model, points=points, samples=rate_samples, data=data, delta=delta, T=T, seed=seed,
                         teacher_steps=teacher_steps)
    st = rate(rate_tab, delta, T)
    gits = gits_search(model, prior(model, gits_samples, seed + 7), list(steps), delta=delta, T=T,
                       teacher_steps=teacher_steps)
    grid_sets = {label: {N: (gits["t"][N] if label == "gits" else _build(label, N, delta, T, st)) for N in steps}
                 for label in MODEL_GRIDS}
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
    rows, sws = [], {}
    with progress(len(MODEL_GRIDS) * len(steps) * len(SOLVERS), "solvers") as bar:
        for label, per_n in grid_sets.items():
            for N, t in per_n.items():
                for solver in SOLVERS:
                    x = solve(model, xT, t, solver)
                    e = relative_mse(x, teach["x"])
                    sw = sliced_wasserstein_ci(x, ref, theta, rng) if ref is not None else None
                    r = Row(label, solver, N, N * (2 if solver == "heun" else 1), "flowcert", e.value,
                            (e.ci_low, e.ci_high), sw.value if sw else float("nan"))
                    rows.append(r)
                    sws[(label, solver, N)] = None if sw is None else [sw.ci_low, sw.ci_high]
                    bar.update(1)
    out_rows = []
    for r in rows:
        d = {"grid": r.grid, "solver": r.solver, "steps": r.steps, "nfe": r.nfe, "rel_mse": r.rel_mse,
             "rel_mse_ci": list(r.rel_mse_ci), "sw": r.sw if ref is not None else None,
             "sw_ci": sws[(r.grid, r.solver, r.steps)]}
        out_rows.append(d)
    return {
        "model": model.describe(), "mixture": model.name, "delta": delta, "T": T, "samples": samples, "seed": seed,
        "steps": list(steps), "grids": list(MODEL_GRIDS), "solvers": list(SOLVERS),
        "grid_nodes": {label: {str(N): t for N, t in per_n.items()} for label, per_n in grid_sets.items()},
        "teacher": {k: v for k, v in teach.items() if k != "x"},
        "lambda_T": {"balanced-empirical": st.integral.total}, "lambda_T_mc_interval": st.meta["lambda_T_mc_interval"],
        "rate": {"samples": rate_samples, "points": points, "samples_from": rate_tab["samples_from"],
                 "seconds": rate_tab["seconds"], "passes": rate_tab["passes"]},
        "gits": {k: v for k, v in gits.items() if k not in ("t", "cost_matrix")},
        "sw_directions": SW_DIRECTIONS, "sw_floor": floor,
        "reference": None if reference is None else {"n": int(reference.shape[0]),
                                                     "what": "held-out data x_0 pushed to p_delta"},
        "rows": out_rows, "summary": summarise(rows), "seconds": time.time() - t_start,
    }


def gits_search(model, x_T, steps, *, delta: float, T: float, teacher_steps: int = 64) -> dict:
    """A GITS-style teacher search (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
    Sampling"): teacher trajectories on ``teacher_steps`` + 1 nodes uniform in log sigma (one RK4 step
    between nodes, the denoiser at each node kept from its first stage), the cost of one Euler step from
    every node i to every later node j (mean squared OU-scale distance to the teacher's state at j), and
    a dynamic programme for the path from T to delta with exactly N steps and the least summed cost.

    Args:
        x_T: (n, d) starting states (a search batch, not the test batch).
        steps: N, or a list of N (one dynamic programme each, on the same cost matrix).

    Returns:
        dict: ``t`` ({N: grid} OU times, descending), ``nfe_per_sample`` (4 teacher_steps),
        ``nfe_total``, ``seconds``, ``candidates``, ``samples``, ``method``.
    """
    t0 = time.time()
    ns = [steps] if isinstance(steps, int) else list(steps)
    rho = np.linspace(0.5 * math.log(math.expm1(2 * T)), 0.5 * math.log(math.expm1(2 * delta)), teacher_steps + 1)
    sig = np.exp(rho)
    alpha = 1.0 / np.sqrt(1.0 + sig**2)
    import torch

    x = torch.as_tensor(x_T, dtype=torch.float64)
    y = x / float(alpha[0])
    ys, Ds = [], []
    with torch.no_grad():
        for i in range(teacher_steps + 1):
            D = model.denoise(y, float(sig[i])).double()
            ys.append(y.numpy())
            Ds.append(D.numpy())
            if i == teacher_steps:
                break
            h = rho[i + 1] - rho[i]

            def f(yy, rr):
                return yy - model.denoise(yy, math.exp(rr)).double()

            k1 = y - D
            k2 = f(y + 0.5 * h * k1, rho[i] + 0.5 * h)
            k3 = f(y + 0.5 * h * k2, rho[i] + 0.5 * h)
            k4 = f(y + h * k3, rho[i] + h)
            y = y + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    Y, Dn = np.stack(ys), np.stack(Ds)  # (M, n, d)
    M = Y.shape[0]
    cost = np.full((M, M), np.inf)
    for i in range(M - 1):
        j = np.arange(i + 1, M)
        step = Y[i][None] + ((sig[j] - sig[i]) / sig[i])[:, None, None] * (Y[i] - Dn[i])[None]
        cost[i, j] = np.mean(np.sum((alpha[j, None, None] * (step - Y[j])) ** 2, axis=2), axis=1)
    grids_out = {}
    from ..numcore.units import t_from_sigma

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
        nodes = np.array(path[::-1])
        t = t_from_sigma(sig[nodes])
        t[0], t[-1] = T, delta
        grids_out[N] = t
    n = int(x.shape[0])
    return {"t": grids_out, "nfe_per_sample": 4 * teacher_steps, "nfe_total": 4 * teacher_steps * n,
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
