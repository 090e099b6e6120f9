"""How results look on a terminal or in a file: one renderer per format, one text layout per result.

Formats: ``table`` (aligned columns under ``#`` comment lines), ``json`` (strict JSON,
:func:`numcore.io.to_json`), ``csv`` (full float64 precision), ``txt`` (values alone) and ``npy``
(a structured float64 array).  The functions here only format; they never compute or write.
"""

from __future__ import annotations

import numpy as np

from .numcore.checks import printable
from .numcore.io import npy_bytes, to_json

__all__ = ["table", "csv_text", "to_json", "npy_record", "mixture_text", "lipschitz_text", "grid_output",
           "preset_output", "certify_text", "solvers_text", "league_text", "optimal_lines", "selection_lines",
           "amplification_lines", "model_lipschitz_output", "model_solvers_text", "spec_text", "spec_format", "toml_text",
           "fit_text", "train_text"]


# ----------------------------------------------------------------------------- formats
def table(columns: dict, fmt: str = "{:.6g}") -> str:
    """Aligned text columns from a mapping name -> sequence (strings are kept, numbers formatted)."""
    names = list(columns)
    rows = [[c if isinstance(c, str) else fmt.format(c) for c in col] for col in columns.values()]
    widths = [max(len(n), *(len(c) for c in col)) if len(col) else len(n) for n, col in zip(names, rows)]
    lines = ["  ".join(n.rjust(w) for n, w in zip(names, widths))]
    for i in range(len(rows[0]) if rows else 0):
        lines.append("  ".join(col[i].rjust(w) for col, w in zip(rows, widths)))
    return "\n".join(lines)


def csv_text(columns: dict) -> str:
    """CSV with a header row; every value as repr(float) (round-trips exactly)."""
    cols = [np.asarray(v) for v in columns.values()]
    lines = [",".join(columns)]
    for i in range(len(cols[0])):
        lines.append(",".join(repr(float(c[i])) for c in cols))
    return "\n".join(lines) + "\n"


def npy_record(columns: dict) -> bytes:
    """A .npy structured array with one float64 field per column."""
    n = len(next(iter(columns.values())))
    rec = np.zeros(n, dtype=[(k, "f8") for k in columns])
    for k, v in columns.items():
        rec[k] = v
    return npy_bytes(rec)


# ----------------------------------------------------------------------------- mixture
def mixture_text(info: dict, weights) -> str:
    """The summary of ``flowcert mixture`` from :func:`flowcert.describe`."""
    w = ", ".join(f"{x:.4g}" for x in weights[:8]) + (" ..." if len(weights) > 8 else "")
    lines = [
        f"mixture {info['name']}: K = {info['K']} components in d = {info['d']}, covariance {info['structure']}",
        f"  weights          {w}",
        f"  mean diameter D  {info['diameter']:.6g}   (min separation {info['min_separation']:.6g}, "
        f"max |mu| {info['max_mean_norm']:.6g})",
        f"  variances        {info['min_variance']:.6g} .. {info['max_variance']:.6g}",
        f"  bounds hold      {info['where']}",
        f"  window           delta = {info['delta']:g}, T = {info['T']:g}",
    ]
    for name, b in info["bounds"].items():
        lines.append(
            f"  L_{name:<5} L(delta) = {b['L_at_delta']:.4g}; Lambda(T) = {b['lambda_T']:.6g} "
            f"(+-{b['lambda_T_error']:.1g}), exp(Lambda) = {b['amplification']:.4g}; "
            f"t*L(t) peaks at t = {b['t_peak_tL']:.3g}; half of Lambda below t = {b['t_half_lambda']:.3g}"
        )
    if "amplification" in info:
        lines += amplification_lines(info["amplification"], info["delta"], info["T"])
    lines += [f"  note: {note}" for note in info["notes"]]
    return "\n".join(lines)


def amplification_lines(a: dict, delta: float, T: float) -> list[str]:
    """The amplification block of ``flowcert mixture`` from :func:`flowcert.amplification`."""
    def g(x):  # an interval end that no sample of this size can give is None
        return "undefined" if x is None else f"{x:.4g}"

    def row(name, s, tag):
        return (f"    {name:<10} mean {s['mean']:.4g} [{g(s['mean_ci'][0])}, {g(s['mean_ci'][1])}], "
                f"p99 {s['p99']:.4g} [{g(s['p99_ci'][0])}, {g(s['p99_ci'][1])}], max {s['max']:.4g}   ({tag})")

    worst = ", ".join(f"{k} 10^{v:.1f}" for k, v in a["worst_case_log10"].items())
    return [
        f"  amplification ||D Phi_(T->delta)(x_T)||_op over {a['trajectories']} exact trajectories from x_T ~ p_T "
        f"(T = {T:g} -> delta = {delta:g}, RK4 step {a['step']:g} in log sigma, seed {a['seed']}, "
        f"{a['seconds']:.1f} s):",
        row("measured", a["measured"], "propagated Jacobian"),
        row("certified", a["certified"], f"upper bound per trajectory; holds on {a['certificate_holds']}/"
                                          f"{a['trajectories']}"),
        row("predicted", a["predicted"], "estimate: Gronwall integral without its error term"),
        f"    worst case exp(Lambda(T)): {worst}   (worst-case bounds, where the Lipschitz bounds hold)",
    ]


# ----------------------------------------------------------------------------- lipschitz
def lipschitz_columns(out: dict, which) -> dict:
    cols = {"t": out["t"], **{w: out[w] for w in which}}
    if "empirical_sup" in out:
        cols.update(empirical_sup=out["empirical_sup"], empirical_mean=out["empirical_mean"])
    if "trajectory_rate_mean" in out:
        cols.update(trajectory_rate_mean=out["trajectory_rate_mean"], trajectory_rate_p99=out["trajectory_rate_p99"])
    if out["scope"] == "ball":
        cols["radius"] = out["radius"]
    return cols


def lipschitz_text(out: dict, which) -> str:
    """The table of ``flowcert lipschitz`` from :func:`flowcert.lipschitz_report`."""
    head = [f"# {out['mixture']}: bounds hold {out['where']}"]
    if "class_label" in out:
        head.append(f"# class {out['class_label']}, guidance W = {out['guidance']:g}: bounds of J_W = (1 - W) J_u + "
                    "W J_c (W = 1: the class's own mixture)")
    head += [f"# Lambda_{w}(T) = {out['lambda_T'][w]:.6g}" for w in which]
    if "empirical_points" in out:
        head.append(f"# empirical: {out['empirical_samples']} points per time (seed {out['empirical_seed']}), "
                    f"{out['empirical_points']}")
    elif "empirical_sup" in out:
        head.append(f"# empirical: {out['empirical_samples']} samples of p_t per time "
                    f"(seed {out['empirical_seed']}) + mean segments")
    if "trajectory_rate_mean" in out:
        head.append("# trajectory_rate: lambda_max(-J(x_t, t)) over the samples (states of exact trajectories "
                    "from x_T ~ p_T), mean and p99; its integral along a trajectory is that trajectory's certificate")
    return "\n".join(head) + "\n" + table(lipschitz_columns(out, which))


def model_lipschitz_columns(out: dict) -> dict:
    ci = np.asarray(out["empirical_mean_ci"])
    return {"t": out["t"], "mean": out["empirical_mean"], "ci_low": ci[:, 0], "ci_high": ci[:, 1],
            "sampled_sup": out["empirical_sup"], "iters_mean": out["iterations_mean"],
            "iters_max": out["iterations_max"], "converged": out["converged_fraction"]}


def model_lipschitz_output(out: dict, fmt: str) -> str:
    """``flowcert lipschitz --model`` in format ``fmt`` from :func:`flowcert.model_lipschitz`."""
    if fmt == "json":
        return to_json(out)
    cols = model_lipschitz_columns(out)
    if fmt == "csv":
        return csv_text(cols)
    m, pi = out["model"], out["power_iteration"]
    head = [f"# model {m['name']} ({m['source']}; {m.get('class', 'torch')}, d = {m['d']}, {m['prediction']} "
            "prediction)",
            "# no analytic bounds: they need an exact Gaussian mixture; below are sampled statistics of ||J(x,t)||_op",
            f"# mean: p_t-average over {out['empirical_samples']} samples per time (seed {out['empirical_seed']}) with "
            f"its {out['level']:.0%} Monte-Carlo interval; sampled_sup: the largest value sampled (not a bound)",
            f"# samples of p_t: {out['samples_from']}",
            f"# ||J||_op by Lanczos on J^T J (at most {pi['max_iterations']} iterations, relative residual "
            f"{pi['tol']:g}); {out['seconds']:.1f} s, {out['passes']} network passes per sample"]
    return "\n".join(head) + "\n" + table(cols)


# ----------------------------------------------------------------------------- grid
def flow_text(g: dict) -> str:
    """`` (shift 3)`` / `` (mu 1.15)`` for a flow kind's grid, else empty."""
    return "".join(f" ({k} {g[k]:.6g})" for k in ("shift", "mu") if g.get(k) is not None)


def grid_output(g: dict, units, fmt: str, samples: int, seed: int) -> str | bytes:
    """``flowcert grid`` in format ``fmt`` from :func:`flowcert.grid` (bytes for npy)."""
    t = g["t"]
    extra = {u: g[u] for u in units if u != "t"}
    if fmt == "json":
        return to_json(g)
    if fmt == "txt":
        return "\n".join(repr(float(v)) for v in t) + "\n"
    lam = {} if g["lambda"] is None else {"lambda": g["lambda"]}
    if fmt in ("csv", "npy"):
        cols = {"t": t, **lam, **extra}
        return csv_text(cols) if fmt == "csv" else npy_record(cols)
    what = g["kind"] + flow_text(g)
    if g["lambda"] is None:
        head = f"# {what} grid, {g['steps']} steps on [{g['delta']:g}, {g['T']:g}] (" + ("searched" if g["kind"] == "optimal" else "closed form") + ": no rate computed)"
    else:
        head = f"# {what} grid, {g['steps']} steps on [{g['delta']:g}, {g['T']:g}], Lambda from {g['bound']}: " \
               f"Lambda(T) = {g['lambda_T']:.6g}, exp(Lambda(T)) = {g['amplification']:.4g}"
    if "model" in g:
        head += f"\n# model {g['model']['name']} ({g['model']['source']})"
    if g["bound"] == "empirical":
        lo, hi = g["bound_info"]["lambda_T_mc_interval"]
        head += f"\n# empirical rate: {samples} samples per time, seed {seed}, Lambda(T) MC interval {lo:.4g}..{hi:.4g}"
    if "cost" in g and "model_passes_per_sample" in g["cost"]:
        head += (f"\n# cost: {g['cost']['seconds']:.1f} s, {g['cost']['model_passes_per_sample']} network passes per "
                 "sample")
    if "optimal" in g:
        head += "\n" + "\n".join(optimal_lines(g["optimal"]))
    if "sampling" in g:
        head += f"\n# {g['sampling']}"
    return head + "\n" + table({"i": [str(i) for i in range(t.size)], **lam, "t": t, **extra})


def _err(e: dict) -> str:
    lo, hi = e["rel_mse_ci"]
    return f"{e['rel_mse']:.3g} [{lo:.3g}, {hi:.3g}]"


def _trajectories(rec: dict) -> str:
    if rec.get("against") == "teacher":
        return f"teacher trajectories of the model ({rec['teacher_steps']} RK4 steps)"
    return "exact trajectories"


def cost_lines(rec: dict) -> list[str]:
    """Comment lines for the teacher and the cost of a model's optimal grid (empty for a mixture's)."""
    if rec.get("against") != "teacher":
        return []
    te, c = rec["teacher"], rec["cost"]
    sc = te.get("self_convergence")
    out = [f"# teacher: {te['method']}, {te['steps']} steps ({te['nfe']} evaluations per sample)"
           + (f"; self-convergence against {sc['against_steps']} steps: relative MSE {sc['rel_mse']:.2g} "
              f"[{sc['ci'][0]:.2g}, {sc['ci'][1]:.2g}] on {sc['samples']} samples" if sc else "")]
    parts = [f"teacher {c['teacher']['model_evaluations']:,} evaluations {c['teacher']['seconds']:.1f} s",
             f"search {c['search']['model_evaluations']:,} evaluations {c['search']['seconds']:.1f} s",
             f"GITS-style search {c['gits']['model_evaluations']:,} evaluations {c['gits']['seconds']:.1f} s"]
    out.append("# cost (model evaluations, one per sample and network pass): " + "; ".join(parts))
    if "training_side" in c:
        tr, ts = c["training_side"]["model_evaluations"], c["test_side"]["model_evaluations"]
        out.append(f"# training side (training teacher + search) {tr:,} evaluations; test side (test teacher, its "
                   f"self-convergence check, test-batch errors {c['measurements']['model_evaluations']:,}) {ts:,}; "
                   f"total {tr + ts:,}")
    if "gits" in rec:
        out.append(f"# GITS-style grid on the same test batch: relative MSE {_err(rec['gits'])}")
    return out


def beaten_lines(grid: str, rec: dict) -> list[str]:
    """The warning line of a record whose ``beaten_by`` is set (:func:`studies.optimal.beaten_by`); none otherwise."""
    b = rec.get("beaten_by")
    if not b:
        return []
    return [f"# warning: on the fresh batch {b['grid']} ({_err(b)}) is {b['factor']:.3g}x below the {grid} grid, "
            f"beyond its interval: the {grid} grid fits its training trajectories and fails on others; use "
            f"{b['grid']} or check the grid on your own trajectories"]


def optimal_lines(rec: dict) -> list[str]:
    """Comment lines for an optimal grid (:func:`flowcert.grid` kind ``optimal``, or a model's)."""
    s = rec["search"]
    base = ", ".join(f"{k} {_err(v)}" for k, v in rec["baselines"].items())
    gain, best = rec["gain_over_best_baseline"], rec["best_baseline"]
    versus = (f"{gain:.3g}x below the best ({best})" if gain >= 1 else
              f"the best of them ({best}) is {1 / gain:.3g}x below it")
    return [f"# optimal for {rec['solver']}: relative MSE {_err(rec)} (95%) on {rec['test_samples']} fresh "
            f"{_trajectories(rec)} (seed {rec['seed']}); on the same batch {base}; {versus}",
            *beaten_lines("optimal", rec),
            f"# objective: {rec['objective']}; fitted on {rec['train_samples']} trajectories (training value "
            f"{rec['train_rel_mse']:.3g}); search {s['method']} from {s['start']}, {s['evaluations']} evaluations, "
            f"{s['seconds']:.2f} s, stopped: {s['stop']}", *cost_lines(rec)]


def selection_lines(rec: dict) -> list[str]:
    """Comment lines for a winning export (:func:`flowcert.export_grid` without ``kind``)."""
    base = ", ".join(f"{k} {_err(v)}" for k, v in rec["baselines"].items())
    s = rec["search"]
    return [f"# grid: {rec['kind']} for {rec['solver']} ({rec['solver_from']}), the smallest training error among "
            f"optimal, {', '.join(rec['baselines'])}; relative MSE {_err(rec)} (95%) on {rec['test_samples']} fresh "
            f"{_trajectories(rec)} (seed {rec['seed']}); on the same batch {base}" +
            ("" if rec["kind"] == "optimal" else f"; optimal {_err(rec['optimal'])}"),
            *beaten_lines(rec["kind"], rec),
            f"# objective: {rec['objective']}; optimal fitted on {rec['train_samples']} trajectories, "
            f"{s['method']}, {s['evaluations']} evaluations, {s['seconds']:.2f} s, stopped: {s['stop']}",
            f"# measured on {rec['measured_on']}", *cost_lines(rec)]


def preset_output(ex, g: dict, fmt: str, selection: dict | None = None) -> str | bytes:
    """``flowcert grid --for PRESET`` in format ``fmt``: what one sampler takes (bytes for npy).

    ``selection``: the record of the winning export (kind, solver, measured errors), when no kind was given."""
    if fmt == "txt":
        return ex.text()
    if fmt == "npy":
        return npy_bytes(ex.values)
    if fmt == "json":
        doc = {"for": ex.preset, "argument": ex.argument, ex.argument: ex.values,
               "scheduler_config": ex.config, "schedule": ex.schedule, "t": ex.t,
               "conventions": ex.conventions, "warnings": list(ex.warnings), "mixture": g["mixture"],
               "kind": g["kind"], "bound": g["bound"], "steps": g["steps"], "delta": g["delta"],
               "T": g["T"], "solver": g.get("solver")}
        if ex.mu is not None:
            doc["mu"] = ex.mu
        for k in ("shift", "mu"):
            if g.get(k) is not None:
                doc.setdefault("grid_params", {})[k] = g[k]
        if selection is not None:
            doc["selection"] = selection
            doc.update(rel_mse=selection["rel_mse"], rel_mse_ci=selection["rel_mse_ci"],
                       baselines=selection["baselines"])
        elif "optimal" in g:
            doc.update(rel_mse=g["optimal"]["rel_mse"], rel_mse_ci=g["optimal"]["rel_mse_ci"],
                       baselines=g["optimal"]["baselines"], optimal=g["optimal"])
        return to_json(doc)
    n = ex.values.size
    if fmt == "csv":
        return csv_text({"i": np.arange(n), ex.argument: ex.values, "schedule": ex.schedule[:n]})
    integer = ex.values.dtype.kind in "iu"
    if integer:
        value_text = str
    elif ex.preset.startswith("comfyui"):  # ComfyUI's number parser reads no exponents: plain decimals
        from .exports.presets import plain_decimal as value_text
    else:
        value_text = "{:.9g}".format
    cols = {"i": [str(i) for i in range(n)],
            ex.argument: [value_text(v) for v in ex.values],
            "schedule": [f"{v:.9g}" for v in ex.schedule[:n]]}
    what = g["kind"] + (f" ({g['bound']})" if g["kind"] == "balanced" and g["bound"] else "") + flow_text(g)
    opt = optimal_lines(g["optimal"]) if "optimal" in g else []
    mu = f", mu={ex.mu!r}" if ex.mu is not None else ""
    head = [f"# {ex.preset}: {what} grid, {g['steps']} steps on [{g['delta']:g}, {g['T']:g}] for {g['mixture']}",
            *(selection_lines(selection) if selection is not None else []), *opt,
            f"# pass {ex.argument}=<column {ex.argument}>{mu}; scheduler config {to_json(ex.config, indent=None)}",
            f"# {ex.conventions}"]
    if ex.schedule.size > n:
        head.append(f"# the scheduler appends {ex.schedule[-1]:g}")
    return "\n".join(head) + "\n" + table(cols)


# ----------------------------------------------------------------------------- certify
def certify_text(d: dict) -> str:
    """The report of ``flowcert certify`` from :func:`flowcert.certify`."""
    ch, bu = d["choices"], d["budget"]
    part_b = d.get("part") == "B"
    where = f"t in [{d['delta']:g}, {d['T']:g}] (t is an input)" if part_b else f"t = {d['t']:g}"
    lines = [
        f"certified ReLU-ReQU score network for {d['mixture']} (K = {d['K']}, d = {d['d']}), {where}",
        f"  guarantee   ||N - s||_(L^{d['p']:g}(p_t)) <= eps = {d['eps']:g}"
        + (" at every t in the window (see notes)" if part_b else ""),
        f"  sizes       depth {d['depth']}, width {d['width']}, params {d['params']}   "
        f"({d['certificate']} certificate)",
    ]
    if "closed_form" in d:
        o = d["closed_form"]
        lines.append(f"  closed form depth {o['depth']}, width {o['width']}, params {o['params']}   "
                     f"(tight is {o['params'] / d['params']:.2f}x fewer params, {o['width'] / d['width']:.2f}x narrower)")
    keys = [k for k in ("R", "G", "C_s", "B", "m", "n", "L", "J", "D", "theta", "N_ch", "slices") if k in ch]
    lines.append("  choices     " + ", ".join(f"{k} = {ch[k]:.6g}" if isinstance(ch[k], float) else f"{k} = {ch[k]}"
                                         for k in keys))
    terms = [k for k in ("tail", "trunc", "exp", "recip", "coef") if k in bu]
    lines.append("  budget      " + " + ".join(f"{k} {bu[k]:.3g}" for k in terms) + f" = {bu['total']:.3g} <= eps")
    lines.append(f"  formulas    depth = {d['formulas']['depth']}   (width, params, choices: --latex or --format json)")
    f64 = d.get("float64")
    if f64 is not None:
        lines.append(f"  float64     round-off {f64['roundoff_max']:.2g} (max over {f64['samples']} samples) "
                     f"x{f64['safety']:g} <= slack eps - total = {f64['slack']:.2g}: the guarantee holds in float64 "
                     f"(floor about {f64['eps_floor']:.2g} here)" if f64.get("measured") else f"  float64     {f64['what']}")
    lines += [f"  note: {note}" for note in d.get("notes", [])]
    if "verification" in d:
        rows = d["verification"] if isinstance(d["verification"], list) else [d["verification"]]
        for r in rows:
            at = f" t = {r['t']:.4g}:" if "t" in r else ""
            lines.append(f"  verify {at} {r['verdict']}; mc_error {r['mc_error']:.4g} "
                         f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}] ({r['level']:.0%}, n = {r['n_samples']}), "
                         f"slack eps/ci_high = {r['slack']:.3g}")
        lines.append(f"  checked: {rows[0]['checked']}")
        lines.append(f"  {rows[0]['not_checked']}")
    text = "\n".join(lines)
    if "export" in d:
        text += (f"\n  wrote {printable(d['export'], None)} (.npz: W{{l}}, b{{l}}, act{{l}} for l = 0..{d['depth'] - 1}, "
                 "W_out, b_out)")
    for var, rows in d.get("sweep", {}).items():
        ok = [r for r in rows if "error" not in r]
        cols = {var: [f"{r[var]:.3g}" for r in ok], "log(1/eps)": [f"{r['log_1_over_eps']:.2f}" for r in ok]}
        for key in ("depth", "width", "params", "depth_closed", "width_closed", "params_closed", "n", "m", "J"):
            cols[key] = [str(r[key]) for r in ok]
        text += f"\n\n# sweep over {var} (tight certificate; *_closed: closed-form choices)\n" + table(cols)
        text += "".join(f"\n# {var} = {r[var]:.3g}: no certificate ({r['error']})" for r in rows if "error" in r)
    if "plot" in d:
        text += f"\nwrote {printable(d['plot'], None)}"
    return text


# ----------------------------------------------------------------------------- solvers
def solvers_text(res: dict) -> str:
    """The table, winners and league of ``flowcert solvers`` from :func:`flowcert.solvers`."""
    if "studies" in res:
        per = ["# per mixture: the winning grid per solver (geometric mean over N) and its factor over the runner-up"]
        for st in res["studies"]:
            per.append(f"#   {st['mixture']}: " + "; ".join(
                f"{s} {v['overall_winner']} x{v['overall_factor']:.2f}" for s, v in st["summary"].items()))
        return "\n".join(per) + "\n" + league_text(res["league"])
    rows = res["rows"]
    cols = {
        "grid": [r["grid"] for r in rows], "solver": [r["solver"] for r in rows],
        "N": [str(r["steps"]) for r in rows], "NFE": [str(r["nfe"]) for r in rows],
        "rel_MSE": [f"{r['rel_mse']:.3e}" for r in rows],
        "95% CI": [f"[{r['rel_mse_ci'][0]:.3e}, {r['rel_mse_ci'][1]:.3e}]" for r in rows],
        "SW2": [f"{r['sw']:.4f}" for r in rows],
    }
    fl = res["sw_floor"]
    engines = sorted({f"{r['solver']}: {r['engine']}" for r in rows})
    opt = res["optimal"]
    head = [f"# {res['mixture']}: {res['samples']} exact samples x_T ~ p_T, T = {res['T']:g} -> delta = "
            f"{res['delta']:g}, seed {res['seed']}; rel_MSE = sum|x - Phi(x_T)|^2 / sum|Phi(x_T)|^2",
            f"# SW2 to an independent p_delta sample ({res['sw_directions']} directions); noise floor "
            f"{fl['value']:.4f} (SW2 of the exact endpoints to the same sample; over {fl['repeats']} reference "
            f"samples {fl['mean']:.4f} +- {fl['sd']:.4f})",
            f"# exact endpoints: RK4 step {res['teacher']['step']:g} in log sigma, estimated relative RMS error "
            f"{res['teacher']['relative_rms_error']:.1e}; optimal grids fitted on {opt['train_samples']} other "
            "exact trajectories, measured here on the study's samples",
            "# engines: " + "; ".join(engines)]
    lines = ["", "winners (smallest relative MSE; factor = runner-up / winner):"]
    for solver, s in res["summary"].items():
        per = ", ".join(f"N={n}: {w['winner']} x{w['factor']:.2f}" for n, w in s["per_steps"].items())
        lines.append(f"  {solver:9s} {per}")
        lines.append(f"  {'':9s} over all N (geometric mean): {s['overall_winner']} x{s['overall_factor']:.2f} "
                     f"over the next; edm / winner = {s['vs']['edm']:.3g}, balanced-empirical / winner = "
                     f"{s['vs']['balanced-empirical']:.3g}, balanced-tri / winner = {s['vs']['balanced-tri']:.3g}")
    return "\n".join(head) + "\n" + table(cols) + "\n".join(lines) + "\n" + league_text(res["league"])


def league_text(lg: dict) -> str:
    """The league: per solver and N, each grid's relative MSE over the optimal grid's (geometric mean over the
    mixtures, 95% interval) and how often it is within 1.1x."""
    M = len(lg["mixtures"])
    lines = [f"\nleague over {M} mixture(s): relative MSE / optimal grid's (geometric mean"
             + (", 95% interval" if M > 1 else "") + f"; in parentheses the share of mixtures within "
             f"{lg['within_factor']:g}x of the optimum)"]
    for solver, per in lg["table"].items():
        steps = list(per)
        grids_ = list(per[steps[0]]["grids"])
        cols = {"grid": grids_}
        for N in steps:
            cell = per[N]["grids"]
            cols[f"N={N}"] = [f"{cell[g]['geo_mean']:.3g}" + (f" [{cell[g]['ci'][0]:.3g}, {cell[g]['ci'][1]:.3g}]"
                                                             if cell[g]["ci"] else "")
                              + f" ({cell[g]['within']:.0%})" for g in grids_]
        lines += [f"{solver}: best closed form per N: "
                  + ", ".join(f"N={N} {per[N]['best_baseline']}" for N in steps), table(cols)]
    if lg.get("budget"):
        lines.append("\nat a budget of K model evaluations: each solver's optimal grid and best closed form, "
                     "relative MSE (geometric mean over the mixtures) and its ratio to the best (paired"
                     + (", 95% intervals" if M > 1 else "") + ")")
        for K, b in lg["budget"].items():
            cells = []
            for name in b["order"]:
                c = b["candidates"][name]
                v = c["vs_best"]
                ci = f" [{v['ci'][0]:.3g}, {v['ci'][1]:.3g}]" if v["ci"] else ""
                cells.append(f"{name} {c['geo_mean']:.3g} (x{v['geo_mean']:.3g}{ci})")
            lines.append(f"  K={K}: " + "; ".join(cells))
    return "\n".join(lines)



def model_solvers_text(res: dict) -> str:
    """The table of ``flowcert solvers --model`` from :func:`flowcert.model_solvers`."""
    rows = res["rows"]
    has_sw = res["sw_floor"] is not None
    cols = {
        "grid": [r["grid"] for r in rows], "solver": [r["solver"] for r in rows],
        "N": [str(r["steps"]) for r in rows], "NFE": [str(r["nfe"]) for r in rows],
        "rel_MSE": [f"{r['rel_mse']:.3e}" for r in rows],
        "95% CI": [f"[{r['rel_mse_ci'][0]:.3e}, {r['rel_mse_ci'][1]:.3e}]" for r in rows],
    }
    if has_sw:
        cols["SW2"] = [f"{r['sw']:.4f}" for r in rows]
        cols["SW2 95% CI"] = [f"[{r['sw_ci'][0]:.4f}, {r['sw_ci'][1]:.4f}]" for r in rows]
    te = res["teacher"]
    sc = te.get("self_convergence")
    head = [f"# model {res['model']['name']} ({res['model']['source']}): {res['samples']} x_T ~ N(0, I), "
            f"T = {res['T']:g} -> delta = {res['delta']:g}, seed {res['seed']}",
            f"# teacher: the model's own ODE, {te['method']}, {te['steps']} steps ({te['nfe']} evaluations per sample, "
            f"{te['seconds']:.1f} s)" + (f"; self-convergence against {sc['against_steps']} steps: relative MSE "
                                          f"{sc['rel_mse']:.2e} on {sc['samples']} samples" if sc else ""),
            "# rel_MSE = sum|x - teacher(x_T)|^2 / sum|teacher(x_T)|^2 (95% CI)",
            f"# balanced-empirical: rate from {res['rate']['samples']} samples per time at {res['rate']['points']} "
            f"times ({res['rate']['seconds']:.1f} s, {res['rate']['passes']} network passes per sample)",
            f"# gits: {res['gits']['method']}; {res['gits']['samples']} teacher trajectories x "
            f"{res['gits']['nfe_per_sample']} evaluations (shared with the optimal grids' training batch)",
            f"# optimal: each solver's grid searched against the teacher on those {res['train_samples']} trajectories "
            f"(coarse to fine over N)"]
    if has_sw:
        fl = res["sw_floor"]
        line = (f"# SW2 to {res['reference']['n']} held-out samples at p_delta ({res['sw_directions']} directions, "
                f"bootstrap 95% CI); the teacher's own SW2: {fl['value']:.4f} [{fl['ci'][0]:.4f}, {fl['ci'][1]:.4f}]")
        if "data" in fl:
            line += f"; training data's: {fl['data']['value']:.4f}"
        head.append(line)
    lines = ["", "winners (smallest relative MSE; factor = runner-up / winner):"]
    for solver, s in res["summary"].items():
        per = ", ".join(f"N={n}: {w['winner']} x{w['factor']:.2f}" for n, w in s["per_steps"].items())
        lines.append(f"  {solver:9s} {per}")
    return "\n".join(head) + "\n" + table(cols) + "\n".join(lines)


SPEC_FORMATS = {".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".toml": "TOML"}  # what the spec loader reads


def spec_format(path: str) -> str:
    """The format a spec file's extension promises (JSON, YAML or TOML); InputError for any other extension."""
    import os

    from .numcore.checks import InputError

    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in SPEC_FORMATS:
        raise InputError(f"`output` = {os.fspath(path)!r} has extension {ext or '(none)'!r}: expected "
                         f"{', '.join(SPEC_FORMATS)} (the formats a mixture spec is read from)")
    return SPEC_FORMATS[ext]


def spec_text(spec: dict, path: str) -> str:
    """A mixture spec in the format its file's extension promises: YAML (.yaml, .yml), JSON (.json) or TOML
    (.toml); InputError for another extension."""
    fmt = spec_format(path)
    if fmt == "YAML":
        import yaml

        return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=120, allow_unicode=False)
    if fmt == "TOML":
        return toml_text(spec)
    return to_json(spec) + "\n"


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped (TOML 1.0, section String)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value) -> str:
    """A TOML value of a spec: a string, a finite number or (nested) arrays of numbers."""
    import math

    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"non-finite number {v} in a spec")
        return repr(v)
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_text(spec: dict) -> str:
    """A mixture spec as TOML: one ``key = value`` line per field (``tomllib`` reads it back to the same values);
    arrays of arrays put one row per line."""
    lines = []
    for key, value in spec.items():
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
            rows = ",\n".join("  " + _toml_value(v) for v in value)
            lines.append(f"{key} = [\n{rows},\n]")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def fit_text(res: dict, path: str | None) -> str:
    """The summary of ``flowcert fit`` from :func:`flowcert.fit`."""
    best = {}
    for r in res["bic"]:
        if r["covariance_type"] not in best or r["bic"] < best[r["covariance_type"]]["bic"]:
            best[r["covariance_type"]] = r
    lines = [f"# Gaussian mixture fitted to {res['n']} samples in d = {res['d']} (scikit-learn GaussianMixture, "
             f"reg_covar {res['reg_covar']:g}, seed {res['seed']}); {res['criterion']}",
             f"# chosen: K = {res['K']}, covariance {res['covariance_type']}, BIC {res['bic_best']:.6g} "
             f"({res['seconds']:.1f} s)"]
    cols = {"covariance": [r["covariance_type"] for r in res["bic"]], "K": [str(r["K"]) for r in res["bic"]],
            "BIC": [f"{r['bic']:.6g}" for r in res["bic"]],
            "loglik/sample": [f"{r['log_likelihood']:.5g}" for r in res["bic"]],
            "converged": ["yes" if r["converged"] else "no" for r in res["bic"]]}
    text = "\n".join(lines) + "\n" + table(cols)
    if path:
        text += f"\nwrote {printable(path, None)}"
    return text


def train_text(res: dict) -> str:
    """The summary of ``flowcert train-example``."""
    c = res["config"]
    resumed = f", resumed at step {res['resumed_from']}" if res.get("resumed_from") else ""
    about = f" ({res['about']})" if res.get("about") else ""
    return (f"trained {res['example']}: diffusers UNet2DModel{about}, {res['parameters']} parameters, {res['steps_done']} "
            f"steps of batch {c['batch']} ({res['seconds']:.0f} s{resumed}); final loss (EMA) {res['final_loss']:.4f}\n"
            f"data: {res['train_size']} training and {res['test_size']} held-out images ({res['data']})\n"
            f"wrote {', '.join(res['files'])} into {printable(res['out'], None)}/")
