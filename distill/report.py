"""Reports of a validation sweep: results.json, a summary table and PNG plots.

Summary statistics over seeds s = 1..S for each (mixture, grid, N):

* relative MSE: mean over seeds with a Student-t 95% interval (seed-to-seed spread; with one seed
  the Monte-Carlo interval of that seed is reported instead), cut at 0 from below;
* change against the uniform grid at the same N, paired by seed (same teacher data):
  r_s = relMSE_s(grid) / relMSE_s(uniform), change = exp(mean_s log r_s) - 1 with the t-interval
  of mean_s log r_s mapped through exp(.) - 1 (negative = lower error than uniform).
"""

from __future__ import annotations

import math
import platform
from pathlib import Path

import numpy as np

from .runfiles import write_atomic, write_json


def t_interval(values, level=0.95):
    """(mean, low, high) of a Student-t interval; low = high = None with one value."""
    v = np.asarray(values, float)
    m = float(v.mean())
    if v.size < 2:
        return m, None, None
    from scipy.stats import t as student_t

    h = float(student_t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - h, m + h


def _flowcert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowcert")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def versions() -> dict:
    import numba
    import scipy
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch.__version__, "numba": numba.__version__, "flowcert": _flowcert_version()}


def summarise(results) -> list[dict]:
    """One row per (mixture, grid, N): mean relative MSE over seeds and the change vs uniform."""
    by = {}
    for r in results:
        by.setdefault((r["mkey"], r["grid"], r["N"]), {})[r["seed"]] = r
    rows = []
    for (mk, grid, N), seeds in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        vals = [seeds[s]["rel_mse"]["value"] for s in sorted(seeds)]
        m, lo, hi = t_interval(vals)
        if lo is None:
            only = seeds[sorted(seeds)[0]]["rel_mse"]
            lo, hi = only["ci_low"], only["ci_high"]
        lo = max(lo, 0.0) if lo is not None else None  # a relative MSE is >= 0: cut at its support
        row = {"mixture": seeds[sorted(seeds)[0]]["mixture"], "mkey": mk, "grid": grid, "N": N,
               "seeds": sorted(seeds), "rel_mse": m, "rel_mse_ci": [lo, hi], "rel_mse_per_seed": vals,
               "params_total": seeds[sorted(seeds)[0]]["params_total"]}
        dists = [seeds[s]["distance"]["sw2"]["value"] for s in sorted(seeds) if seeds[s].get("distance")]
        if dists:
            dm, dlo, dhi = t_interval(dists)
            if dlo is None:
                only = seeds[sorted(seeds)[0]]["distance"]["sw2"]
                dlo, dhi = only["ci_low"], only["ci_high"]
            row["sw2"], row["sw2_ci"], row["sw2_per_seed"] = dm, [dlo, dhi], dists
            floor = [seeds[s]["distance"]["teacher_sw2"]["value"] for s in sorted(seeds)]
            row["teacher_sw2"] = float(np.mean(floor))
        base = by.get((mk, "uniform", N))
        if base is not None:
            common = sorted(set(base) & set(seeds))
            logs = [math.log(seeds[s]["rel_mse"]["value"] / base[s]["rel_mse"]["value"]) for s in common]
            lm, llo, lhi = t_interval(logs)
            row["change_vs_uniform"] = math.expm1(lm)
            row["change_vs_uniform_ci"] = [math.expm1(llo), math.expm1(lhi)] if llo is not None else None
            row["change_vs_uniform_per_seed"] = [math.expm1(v) for v in logs]
        rows.append(row)
    return rows


def teacher_records(cfg, info, out) -> dict:
    """{target: {seed: record}} of a model run's teacher files (evaluations, self-convergence, seconds)."""
    from . import runcheck
    from .validation import teacher_path

    if not cfg.model or out is None:
        return {}
    recs = {}
    for mk in info:
        for s in cfg.seed_list:
            data = runcheck.load_teacher(Path(out), teacher_path(Path(out), mk, s), cfg, info[mk]["union_nodes"],
                                         cfg.d)
            recs.setdefault(mk, {})[str(s)] = data["record"]
    return recs


def costs(cfg, info, results, trajectory, teachers) -> dict:
    """A model run's cost in model evaluations (network passes per sample, forward), phase by phase."""
    out = {}
    for mk, entry in info.items():
        if entry.get("kind") != "model":
            continue
        recs = teachers.get(mk, {})
        c = {"teacher": {"model_evaluations": int(sum(r["model_evaluations"] for r in recs.values())),
                         "seconds": float(sum(r["seconds"] for r in recs.values())),
                         "what": f"the cached teacher trajectories ({cfg.n_train} + {cfg.n_test} per seed, "
                                 f"{len(recs)} seed(s), RK4 with {cfg.teacher_steps} steps over the window, through the "
                                 f"{len(entry['union_nodes'])} union nodes) and its self-convergence check"},
             "self_convergence": {"model_evaluations": int(sum(r.get("self_convergence_evaluations", 0)
                                                               for r in recs.values()))}}
        c["teacher"]["model_evaluations"] += c["self_convergence"]["model_evaluations"]
        if "rate" in entry.get("cost", {}):
            c["rate"] = entry["cost"]["rate"]
        if "optimal" in entry.get("cost", {}):
            c["optimal"] = entry["cost"]["optimal"]
        if trajectory and mk in trajectory and "cost" in trajectory[mk]:
            c["jacobian"] = trajectory[mk]["cost"]
        jobs = [j for j in results if j["mkey"] == mk and j.get("cost") and not j.get("same_student_as")]
        c["jobs"] = {"model_evaluations": int(sum(j["cost"]["model_evaluations"] for j in jobs)),
                     "what": "the teacher's maps of the students' chain states (local errors), over every job"}
        c["unit"] = "model evaluations: forward network passes, one per sample"
        c["total_model_evaluations"] = int(c["teacher"]["model_evaluations"] + c["jobs"]["model_evaluations"]
                                           + c.get("jacobian", {}).get("model_evaluations", 0)
                                           + c.get("optimal", {}).get("model_evaluations", 0))
        out[mk] = c
    return out


def assemble(cfg, info, amp, results, *, device, executor, wall_s, trajectory=None, out=None) -> dict:
    rates = [r for r in ("tri", "sharp", "onesided") if results and all(r in j["fan"] for j in results)]
    fan_holds = {r: all(j["fan"][r]["holds"] for j in results) for r in rates}
    teachers = teacher_records(cfg, info, out)
    extra = {"teacher": teachers, "cost": costs(cfg, info, results, trajectory, teachers)} if cfg.model else {}
    return {
        "config": cfg.to_dict(),
        "seeds": cfg.seed_list,
        "versions": versions(),
        "device": device,
        "mixtures": info,
        "amplification": amp,
        "trajectory": trajectory or {},
        "jobs": results,
        "summary": summarise(results),
        "fan_bound_holds_everywhere": fan_holds,
        "timing": {"wall_s": wall_s, "executor": executor},
        **extra,
    }


def _g(x) -> str:
    """A number for a table; an interval end that this sample size cannot give is 'undefined'."""
    return "undefined" if x is None or x != x else f"{x:.3g}"


def _fmt_ci(v, ci, pct=False):
    if v is None:
        return "-"
    f = (lambda x: f"{100 * x:+.1f}%") if pct else (lambda x: f"{x:.3e}")
    if not ci or (ci[0] is None and ci[1] is None):
        return f(v)
    end = lambda x: "undefined" if x is None or x != x else f(x)  # noqa: E731
    return f"{f(v)} [{end(ci[0])}, {end(ci[1])}]"


def summary_markdown(doc) -> str:
    cfg = doc["config"]
    model = bool(cfg.get("model"))
    what = (f"the model {cfg['model']}'s own teacher (RK4 in log sigma, {cfg.get('teacher_steps')} steps), x_T ~ N(0, I)"
            if model else "the exact teacher")
    lines = [
        f"Relative MSE of the chained student against {what}, mean over {cfg['seeds']} seed(s) with 95% t-interval; "
        "change vs uniform paired by seed (geometric mean ratio - 1, 95% interval).",
        f"Blocks: {cfg.get('block', 'mlp')}, depth {cfg['depth']}, budget {cfg['budget']}, {cfg['iters']} Adam steps "
        f"per block, {cfg['n_train']} train / {cfg['n_test']} test trajectories, delta = {cfg['delta']:g}, "
        f"T = {cfg['T']:g}; " + ("empirical = balanced on the model's E||J||_op" if model else
                                  f"balanced grid on the '{cfg['bound']}' rate, empirical = balanced on the p_t-average "
                                  "rate") + ".",
    ]
    for mk, recs in doc.get("teacher", {}).items():
        sc = [f"{r['self_convergence']['rel_mse']:.2g} [{_g(r['self_convergence']['ci_low'])}, "
              f"{_g(r['self_convergence']['ci_high'])}]" for r in recs.values()]
        lines.append(f"Teacher self-convergence (relative MSE against {2 * cfg['teacher_steps']} steps) per seed: "
                     + ", ".join(sc) + ".")
    for mk, c in doc.get("cost", {}).items():
        lines.append(f"Cost in model evaluations (forward passes per sample): teacher {c['teacher']['model_evaluations']:,}"
                     + (f", Jacobian phase {c['jacobian']['model_evaluations']:,} (+ {c['jacobian']['reverse_passes']:,} "
                        "reverse passes)" if "jacobian" in c else "")
                     + (f", optimal grids {c['optimal']['model_evaluations']:,}" if "optimal" in c else "")
                     + f", jobs {c['jobs']['model_evaluations']:,}; total {c['total_model_evaluations']:,}"
                     + (f" (rate table: {c['rate']['network_passes']:,} network passes)" if "rate" in c else "") + ".")
    dist = any("sw2" in r for r in doc["summary"])
    lines += ["", "| target | N | grid | params | rel. MSE [95% CI] | change vs uniform [95% CI] |"
              + (" sliced W2 [95% CI] |" if dist else ""),
              "| --- | --- | --- | --- | --- | --- |" + (" --- |" if dist else "")]
    for r in doc["summary"]:
        lines.append(f"| {r['mixture']} | {r['N']} | {r['grid']} | {r['params_total']} | "
                     f"{_fmt_ci(r['rel_mse'], r['rel_mse_ci'])} | "
                     f"{_fmt_ci(r.get('change_vs_uniform'), r.get('change_vs_uniform_ci'), pct=True) if r['grid'] != 'uniform' else '-'} |"
                     + (f" {_fmt_ci(r.get('sw2'), r.get('sw2_ci'))} |" if dist else ""))
    if dist:
        floors = sorted({round(r["teacher_sw2"], 12) for r in doc["summary"] if "teacher_sw2" in r})
        lines.append(f"\nSliced W2 of the teacher's own end points to the same reference (its floor): "
                     f"{min(floors):.3e} .. {max(floors):.3e}.")
    holds = doc["fan_bound_holds_everywhere"]
    if holds:
        tol = doc["jobs"][0]["fan"]["tri"].get("holds_rtol") if doc["jobs"] else None
        lines += ["", "Fan bound sum_i eps_i exp(max(Lambda(t_{i-1}), Lambda(t_i))) >= measured RMS error in every job"
                  + (f" (relative tolerance {tol:g})" if tol else "") + ": " +
                  ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in holds.items())]
        slack = {r: [j["fan"][r]["slack"] for j in doc["jobs"] if j["fan"][r]["measured_rms"] > 0] for r in holds}
        lines.append("Fan bound slack (bound / measured), min .. max over jobs: " +
                     ", ".join(f"{r} {min(v):.2g} .. {max(v):.2g}" for r, v in slack.items() if v))
    else:
        lines.append("")

    trajs = [j["fan_trajectory"] for j in doc["jobs"] if j.get("fan_trajectory") and j["fan_trajectory"]["measured_rms"] > 0]
    if trajs:
        ratio = [f["estimate_end"] / f["measured_rms"] for f in trajs]
        factor = ("RMS certified factor from t_i to delta" if trajs[0].get("factor", "certified") == "certified" else
                  "RMS of the measured ||D Phi_{t_i->delta}||_op of the model's flow")
        lines.append(f"Fan estimate sum_i eps_i q_i (q_i: {factor}; an estimate, not a bound) / measured, min .. max "
                     f"over jobs: {min(ratio):.2g} .. {max(ratio):.2g}")

    lines += ["", "Amplification ||D Phi_{t->delta}(x)||_op over x ~ p_t: measured, certified per trajectory "
              "(an upper bound for each trajectory) and the worst case exp(Lambda(t)):" if not model else
              "Amplification ||D Phi_{t->delta}(x)||_op of the model's flow at the union nodes, over the teacher's "
              "states there (measured by autograd through the RK4 teacher; a network has no bound to hold against):",
              ""]
    if model:
        lines += ["| target | t | mean [95% CI] | p99 [95% CI] | max |", "| --- | --- | --- | --- | --- |"]
    else:
        lines += ["| mixture | t | mean [95% CI] | p99 [95% CI] | max | certified p99 / max (holds) | "
                  "exp(Lambda) tri | sharp | onesided |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mk, rows in doc["amplification"].items():
        name = doc["mixtures"][mk]["describe"]["name"]
        for r in rows:
            m, q = r["mean"], r["p99"]
            head = (f"| {name} | {r['t']:.3g} | {m['value']:.3g} [{_g(m['ci_low'])}, {_g(m['ci_high'])}] | "
                    f"{q['value']:.3g} [{_g(q['ci_low'])}, {_g(q['ci_high'])}] | {r['max']:.3g} |")
            if not r["predicted"]:
                lines.append(head)
                continue
            c = (f"{r['certified']['p99']['value']:.3g} / {r['certified']['max']:.3g} "
                 f"({r['certificate_holds']}/{r['certificate_checked']})" if "certified" in r else "-")
            lines.append(f"{head} {c} | {r['predicted']['tri']:.3g} | {r['predicted']['sharp']:.3g} | "
                         f"{r['predicted']['onesided']:.3g} |")

    if doc.get("trajectory"):
        if model:
            lines += ["", "Lipschitz mismatch, measured on teacher trajectories from x_T ~ N(0, I): the Lipschitz "
                      "constant a one-step student needs (||D Phi_{T->delta}||_op: max, p99) against what each block of "
                      "an N-step student needs (max over segments and points of ||D Phi_{t_{i-1}->t_i}||_op):", "",
                      "| target | one-step max | one-step p99 | grid | N | block max | ratio one-step / block (max) |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
        else:
            lines += ["", "Lipschitz mismatch, from per-trajectory factors on exact trajectories x_T ~ p_T: the Lipschitz "
                      "constant a one-step student needs (max over x_T of ||D Phi_{T->delta}||: measured, certified) "
                      "against what each block of an N-step student needs (max over segments and x of "
                      "||D Phi_{t_{i-1}->t_i}||):", "",
                      "| mixture | one-step measured | one-step certified | grid | N | block measured | block certified | "
                      "ratio one-step / block (certified) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for mk, tr in doc["trajectory"].items():
            name = doc["mixtures"][mk]["describe"]["name"]
            one = tr["one_step"]
            for key, g in tr["grids"].items():
                kind, N = key.split("/")
                bm = max(s["measured_max"] for s in g["segments"])
                if model:
                    lines.append(f"| {name} | {one['measured_max']:.3g} | {one['measured_p99']:.3g} | {kind} | {N} | "
                                 f"{bm:.3g} | {one['measured_max'] / bm:.3g} |")
                    continue
                bc = max(s["certified_max"] for s in g["segments"])
                lines.append(f"| {name} | {one['measured_max']:.3g} | {one['certified_max']:.3g} | {kind} | {N} | "
                             f"{bm:.3g} | {bc:.3g} | {one['certified_max'] / bc:.3g} |")

    lines += ["", "Lipschitz constants at the largest N (first seed): max over segments of max_x ||D psi_i||_op "
              "(trained block) and of max_x ||D Phi_{t_{i-1}->t_i}||_op (teacher), same points:", "",
              "| target | grid | N | block | teacher |", "| --- | --- | --- | --- | --- |"]
    Nmax, s0 = max(cfg["steps"]), doc["seeds"][0]
    for j in doc["jobs"]:
        if j["N"] == Nmax and j["seed"] == s0:
            lines.append(f"| {j['mixture']} | {j['grid']} | {Nmax} | {max(x['block_max'] for x in j['lipschitz']):.3g} | "
                         f"{max(x['teacher_max'] for x in j['lipschitz']):.3g} |")
    return "\n".join(lines) + "\n"


def write(out, doc, *, plots=True, progress=True) -> None:
    out = Path(out)
    write_json(out / "results.json", doc)
    write_atomic(out / "summary.md", summary_markdown(doc))
    if plots:
        plot_all(out, doc)


# ----------------------------------------------------------------------------- plots
def plot_all(out: Path, doc) -> list[Path]:
    from ..numcore.io import pyplot, save_figure

    plt = pyplot()

    def save(fig, name):
        save_figure(fig, out / name, "out", dpi=110)
        return out / name

    mkeys = list(doc["mixtures"])
    rows = doc["summary"]
    paths = []
    n = len(mkeys)

    # relative MSE against N per grid
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, mk in zip(axes[0], mkeys):
        for grid in doc["config"]["grids"]:
            rr = sorted([r for r in rows if r["mkey"] == mk and r["grid"] == grid], key=lambda r: r["N"])
            if not rr:
                continue
            N = [r["N"] for r in rr]
            m = np.array([r["rel_mse"] for r in rr])
            lo = np.array([max(r["rel_mse_ci"][0], 1e-300) for r in rr])
            hi = np.array([r["rel_mse_ci"][1] for r in rr])
            ax.errorbar(N, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=grid)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("segments N")
        ax.set_ylabel("relative MSE")
        ax.set_title(doc["mixtures"][mk]["describe"]["name"])
        ax.legend()
    paths.append(save(fig, "rel_mse_vs_N.png"))

    # measured vs predicted amplification across t
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, mk in zip(axes[0], mkeys):
        a = doc["amplification"][mk]
        t = [r["t"] for r in a]
        ax.plot(t, [r["mean"]["value"] for r in a], "o-", label="measured mean")
        ax.plot(t, [r["p99"]["value"] for r in a], "s-", label="measured p99")
        ax.plot(t, [r["max"] for r in a], "^-", label="measured max")
        for rate in ("tri", "sharp", "onesided"):
            if all(rate in r["predicted"] for r in a):
                ax.plot(t, [r["predicted"][rate] for r in a], "--", label=f"exp(Lambda) {rate}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_ylabel("||D Phi_{t->delta}||_op")
        ax.set_title(doc["mixtures"][mk]["describe"]["name"])
        ax.legend(fontsize=7)
    paths.append(save(fig, "amplification.png"))

    # local error per segment at the largest N (first seed)
    Nmax = max(doc["config"]["steps"])
    seed0 = doc["seeds"][0]
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, mk in zip(axes[0], mkeys):
        for j in doc["jobs"]:
            if j["mkey"] == mk and j["N"] == Nmax and j["seed"] == seed0:
                e = [x["value"] for x in j["local_error_chain"]]
                ax.semilogy(range(1, len(e) + 1), e, "o-", label=j["grid"])
        ax.set_xlabel(f"segment i (N = {Nmax})")
        ax.set_ylabel("local RMS error eps_i")
        ax.set_title(doc["mixtures"][mk]["describe"]["name"])
        ax.legend()
    paths.append(save(fig, "local_error.png"))

    # one-step against multi-step at the configured budget
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    budget = doc["config"]["budget"]
    for ax, mk in zip(axes[0], mkeys):
        for grid in doc["config"]["grids"]:
            rr = sorted([r for r in rows if r["mkey"] == mk and r["grid"] == grid], key=lambda r: r["N"])
            if rr:
                ax.plot([r["params_total"] for r in rr], [r["rel_mse"] for r in rr], "o-", label=grid)
                for r in rr:
                    ax.annotate(f"N={r['N']}", (r["params_total"], r["rel_mse"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("total parameters")
        ax.set_ylabel("relative MSE")
        ax.set_title(f"{doc['mixtures'][mk]['describe']['name']}: one vs multi-step ({budget} budget)")
        ax.legend()
    paths.append(save(fig, "one_vs_multi_step.png"))
    return paths
