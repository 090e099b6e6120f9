"""Distilling the digits UNet: residual students on every grid kind, and the answers of the README (issue 21).

    nice python benchmarks/digits_distill.py                       # the CPU study (hours on 2 busy cores), resumable
    nice python benchmarks/digits_distill.py --report              # tables and answers from the finished runs
    python benchmarks/digits_distill.py --scale gpu --device cuda  # the full sweep on a GPU (larger everything)

Three ``flowcert validate --model digits`` runs share one teacher (the first run's grids, teacher trajectories and
Jacobian phase are linked into the others before they start, and each run checks them against its own
configuration as a resumed run would):

* ``mlp``: MLP blocks of equal width per block (--budget per-block) on the seven grids: uniform, empirical
  (balanced on the UNet's E||J||), log-SNR, KL-optimal, EDM, Euler's optimal grid against the UNet's teacher and
  the surrogate (balanced on the empirical (data-aware) rate of a diagonal Gaussian mixture fitted to the training digits);
* ``mlp_total``: the same with equal total parameters (--budget total: N blocks share 8 x one 64-wide block), the
  fair one-step against many-steps comparison;
* ``conv``: conv blocks (3x3, per segment) with as many parameters per block as the 64-wide MLP.

Every run folder is resumable: kill this script at any point and start it again.  ``--report`` writes
``benchmarks/<model>_distill.json`` (every answer with its 95% interval) and prints the README/results tables;
the small files of each run (config.json, results.json gzipped, summary.md, plots) are copied to
``benchmarks/validate_runs/digits_<run>/``.

The guided flow model ``digits-flow`` runs at one class and guidance scale (``MODELS``: class 3, guidance 2; the
run conditions and guides it once, as ``flowcert.load_model`` does, records both in its configuration and keeps
the class's samples of the shipped training and held-out digits): ``--model digits-flow``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

GRIDS = ["uniform", "empirical", "logsnr", "kl-optimal", "edm", "optimal", "surrogate"]
# the guided flow model at one class and guidance scale (its data: that class's shipped samples)
MODELS = {"digits": {}, "digits-flow": {"class_label": 3, "guidance": 2.0}}
SCALES = {
    # what 2 busy CPU cores finish in hours
    "cpu": dict(steps="1,2,4,8", seeds=3, n_train=2048, n_test=512, teacher_steps=48, iters=1500, batch=256,
                depth=2, amp_samples=16, lip_samples=16, local_samples=128, empirical_samples=128, rate_points=20,
                threads=1),
    # what 2 cores shared by six engineers (load 10-14) finish in about an hour: the table in README
    "cpu-small": dict(steps="1,2,4,8", seeds=3, n_train=256, n_test=128, teacher_steps=16, iters=300, batch=128,
                      depth=2, amp_samples=4, lip_samples=4, local_samples=32, empirical_samples=32, rate_points=8,
                      threads=1),
    # the full sweep for a GPU session
    "gpu": dict(steps="1,2,4,8,16", seeds=3, n_train=16384, n_test=4096, teacher_steps=64, iters=4000, batch=1024,
                depth=2, amp_samples=128, lip_samples=128, local_samples=1024, empirical_samples=512, rate_points=40,
                threads=4),
}
WIDTH = 64  # the MLP's width per block; the conv block gets as many parameters (CONV_WIDTH channels)
RUNS = {
    "mlp": dict(block="mlp", budget="per-block", width=WIDTH, grids=GRIDS),
    "mlp_total": dict(block="mlp", budget="total", width=WIDTH, grids=GRIDS),
    "conv": dict(block="conv", budget="per-block", width=None, grids=GRIDS),
    # the conv block on three grids only (its own teacher cache: the union of fewer grid nodes)
    "conv3": dict(block="conv", budget="per-block", width=None, grids=["uniform", "empirical", "logsnr"]),
}
SHARED = ("grids.json", "amplification.json", "trajectory.json", "teacher", "jacobian")


def conv_width(shape, depth: int) -> int:
    """Channels of the conv block with at most (and closest to) the parameters of one WIDTH-wide MLP block."""
    from flowcert.distill.students import conv_param_count, param_count

    target = param_count(int(np.prod(shape)), WIDTH, depth)
    w = 1
    while conv_param_count(shape, w + 1, depth) <= target:
        w += 1
    return w


def share(src: Path, dst: Path) -> None:
    """Link the first run's phase files into another run folder (a run checks them as on resume)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        a, b = src / name, dst / name
        if not a.exists() or b.exists():
            continue
        if a.is_dir():
            b.mkdir()
            for f in a.iterdir():
                os.link(f, b / f.name)
        else:
            os.link(a, b)


def run_all(args) -> None:
    import flowcert

    scale = dict(SCALES[args.scale])
    first = {}  # grids -> the first run folder on them
    for name in args.runs:
        spec = dict(RUNS[name])
        width = spec.pop("width") or conv_width((1, 8, 8), scale["depth"])
        out = Path(args.root) / name
        key = ",".join(spec["grids"])
        if key in first:
            share(first[key], out)
        print(f"== {name}: {spec['block']} blocks of width {width}, budget {spec['budget']} -> {out}", flush=True)
        opts = {**scale, **spec, "width": width}
        if spec["budget"] == "total":
            from flowcert.distill.students import param_count

            opts["total_params"] = 8 * param_count(64, WIDTH, scale["depth"])
        flowcert.validate(model=args.model, model_options=MODELS[args.model] or None, out=str(out), device=args.device,
                          **opts)
        first.setdefault(key, out)


# ----------------------------------------------------------------------------- the answers
def t_interval(values):
    from flowcert.distill.report import t_interval as ti

    return ti(values)


def geo(ratios) -> dict:
    """Geometric mean of ratios with the t-interval of the mean log (paired by seed)."""
    logs = [math.log(r) for r in ratios]
    m, lo, hi = t_interval(logs)
    return {"value": math.exp(m), "ci": [math.exp(lo), math.exp(hi)] if lo is not None else None, "n": len(logs)}


def load(root: Path, name: str):
    path = root / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def per_seed(doc, grid, N) -> dict:
    return {j["seed"]: j for j in doc["jobs"] if j["grid"] == grid and j["N"] == N}


def answers(root: Path) -> dict:
    out = {"runs": {}}
    mlp, total, conv = load(root, "mlp"), load(root, "mlp_total"), (load(root, "conv") or load(root, "conv3"))
    for name, doc in (("mlp", mlp), ("mlp_total", total), ("conv", conv)):
        if doc is None:
            continue
        cfg = doc["config"]
        out["runs"][name] = {"rows": doc["summary"], "block": cfg["block"], "budget": cfg["budget"],
                             "width": doc["jobs"][0]["width"], "params_per_block": doc["jobs"][0]["params_per_block"]}
    if mlp is None:
        return out
    cfg = mlp["config"]
    steps = cfg["steps"]
    (mk, info), = mlp["mixtures"].items()
    out["teacher"] = {"steps": cfg["teacher_steps"], "union_nodes": len(info["union_nodes"]),
                      "self_convergence": {s: r["self_convergence"] for s, r in mlp["teacher"][mk].items()},
                      "cost": mlp["cost"][mk]}
    out["surrogate"] = {k: v for k, v in info.get("surrogate", {}).items() if k != "spec"}
    out["Lambda_T"] = info["Lambda_T"]
    # 1. balanced (on E||J||) against uniform, paired by seed, at each N
    out["balanced_vs_uniform"] = {}
    for N in steps:
        r = next(r for r in mlp["summary"] if r["grid"] == "empirical" and r["N"] == N)
        out["balanced_vs_uniform"][N] = {"change": r.get("change_vs_uniform"), "ci": r.get("change_vs_uniform_ci")}
    # 2. the best grid per N, each grid's error over the best's (paired by seed)
    out["best_grid"] = {}
    for name, doc in (("mlp", mlp), ("conv", conv), ("mlp_total", total)):
        if doc is None:
            continue
        best = {}
        for N in steps:
            rows = [r for r in doc["summary"] if r["N"] == N]
            win = min(rows, key=lambda r: r["rel_mse"])
            w = per_seed(doc, win["grid"], N)
            ratios = {}
            for r in rows:
                other = per_seed(doc, r["grid"], N)
                ratios[r["grid"]] = geo([other[s]["rel_mse"]["value"] / w[s]["rel_mse"]["value"] for s in w])
            best[N] = {"grid": win["grid"], "rel_mse": win["rel_mse"], "rel_mse_ci": win["rel_mse_ci"],
                       "ratio_to_best": ratios}
        out["best_grid"][name] = best
    # 3. one step against N steps at equal total parameters, and the Lipschitz mismatch
    if total is not None:
        tr = total["trajectory"][mk]
        one = tr["one_step"]
        rows = {}
        for grid in cfg["grids"]:
            base = per_seed(total, grid, 1)
            for N in steps:
                if N == 1:
                    continue
                many = per_seed(total, grid, N)
                ratio = geo([base[s]["rel_mse"]["value"] / many[s]["rel_mse"]["value"] for s in base])
                segs = tr["grids"][f"{grid}/{N}"]["segments"]
                seg_max = max(s["measured_max"] for s in segs)
                seg_mean = max(s["measured_mean"]["value"] for s in segs)
                blocks1 = [max(x["block_max"] for x in base[s]["lipschitz"]) for s in base]
                blocksN = [max(x["block_max"] for x in many[s]["lipschitz"]) for s in many]
                rows[f"{grid}/{N}"] = {"error_ratio_one_over_many": ratio,
                                       "mismatch_max": one["measured_max"] / seg_max,
                                       "mismatch_mean": one["measured_mean"]["value"] / seg_mean,
                                       "block_lipschitz_one": float(np.mean(blocks1)),
                                       "block_lipschitz_many": float(np.mean(blocksN)),
                                       "params_total": [base[min(base)]["params_total"], many[min(many)]["params_total"]]}
        xs = [math.log(r["mismatch_max"]) for r in rows.values()]
        ys = [math.log(r["error_ratio_one_over_many"]["value"]) for r in rows.values()]
        fit = np.polyfit(xs, ys, 1) if len(set(xs)) > 1 else [float("nan"), float("nan")]
        corr = float(np.corrcoef(xs, ys)[0, 1]) if len(set(xs)) > 1 else float("nan")
        out["one_vs_many"] = {"one_step_teacher": one, "rows": rows,
                              "log_fit": {"slope": float(fit[0]), "intercept": float(fit[1]), "corr": corr,
                                          "what": "log(error ratio) = slope log(mismatch_max) + intercept over "
                                                  "every grid and N > 1"}}
    # 4. predicted (fan estimate from the measured amplification) against measured
    pred = {}
    for N in steps:
        if N == 1:
            continue
        ratios = [j["fan_trajectory"]["estimate_end"] / j["fan_trajectory"]["measured_rms"]
                  for j in mlp["jobs"] if j["N"] == N]
        pred[N] = geo(ratios)
    allr = [j["fan_trajectory"]["estimate_end"] / j["fan_trajectory"]["measured_rms"] for j in mlp["jobs"] if j["N"] > 1]
    pred["all"] = geo(allr)
    pred["range"] = [min(allr), max(allr)]
    out["predicted_over_measured"] = pred
    # 5. conv against MLP at equal parameters per block (paired by seed)
    if conv is not None:
        cmp = {}
        for grid in conv["config"]["grids"]:
            for N in steps:
                a, b = per_seed(conv, grid, N), per_seed(mlp, grid, N)
                if a and b:
                    cmp[f"{grid}/{N}"] = geo([a[s]["rel_mse"]["value"] / b[s]["rel_mse"]["value"] for s in a])
        out["conv_over_mlp"] = cmp
    return out


def fmt(v, ci=None, pct=False, digits=3):
    f = (lambda x: f"{100 * x:+.1f}%") if pct else (lambda x: f"{x:.{digits}g}")
    if ci is None or ci[0] is None:
        return f(v)
    return f"{f(v)} [{f(ci[0])}, {f(ci[1])}]"


def grid_table(ans: dict, run: str, title: str) -> list[str]:
    """One run's relative MSE per grid and N (the best grid per N in bold)."""
    doc = ans["runs"].get(run)
    if not doc:
        return []
    steps = sorted({r["N"] for r in doc["rows"]})
    best = ans.get("best_grid", {}).get(run, {})
    lines = [f"{title} ({doc['block']} blocks, width {doc['width']}, {doc['params_per_block']} parameters per block, "
             f"budget {doc['budget']}): relative MSE [95% CI over the seeds]", "",
             "| grid | " + " | ".join(f"N = {N}" for N in steps) + " |", "| --- |" + " --- |" * len(steps)]
    for grid in GRIDS:
        cells = []
        for N in steps:
            r = next((r for r in doc["rows"] if r["grid"] == grid and r["N"] == N), None)
            if r is None:
                cells.append("-")
                continue
            text = fmt(r["rel_mse"], r["rel_mse_ci"])
            cells.append(f"**{text}**" if N > 1 and best.get(N, {}).get("grid") == grid else text)
        lines.append(f"| {grid} | " + " | ".join(cells) + " |")
    return lines + [""]


def tables(ans: dict) -> str:
    """Markdown of every table and answer (docs/validate.md's digits section)."""
    lines = grid_table(ans, "mlp", "Equal width per block") + grid_table(ans, "mlp_total", "Equal total parameters") \
        + grid_table(ans, "conv", "Conv blocks")
    if "balanced_vs_uniform" in ans:
        lines += ["Balanced on E||J|| against uniform (paired by seed): " + "; ".join(
            f"N = {N}: {fmt(v['change'], v['ci'], pct=True)}" for N, v in ans["balanced_vs_uniform"].items()
            if int(N) > 1), ""]
    for run, per_n in ans.get("best_grid", {}).items():
        lines += [f"Each grid's error over the best grid's ({run}, paired geometric mean [95% CI]):", "",
                  "| N | best | " + " | ".join(GRIDS) + " |", "| --- | --- |" + " --- |" * len(GRIDS)]
        for N, b in per_n.items():
            if int(N) == 1:
                continue
            lines.append(f"| {N} | {b['grid']} | " + " | ".join(
                fmt(b["ratio_to_best"][g]["value"], b["ratio_to_best"][g]["ci"]) if g in b["ratio_to_best"] else "-"
                for g in GRIDS) + " |")
        lines.append("")
    one = ans.get("one_vs_many")
    if one:
        lines += [f"One step against N steps at equal total parameters (error of one step over N steps, paired; "
                  f"Lipschitz mismatch = ||D Phi_(T->delta)||_op max {one['one_step_teacher']['measured_max']:.3g} "
                  "over the largest segment map's):", "",
                  "| grid/N | error one / error N | mismatch (max) | block Lipschitz one / N |", "| --- | --- | --- | --- |"]
        for k, r in one["rows"].items():
            e = r["error_ratio_one_over_many"]
            lines.append(f"| {k} | {fmt(e['value'], e['ci'])} | {r['mismatch_max']:.3g} | "
                         f"{r['block_lipschitz_one']:.3g} / {r['block_lipschitz_many']:.3g} |")
        f = one["log_fit"]
        lines += ["", f"log(error ratio) against log(mismatch): slope {f['slope']:.3g}, correlation {f['corr']:.3g}.", ""]
    pred = ans.get("predicted_over_measured")
    if pred:
        lines += ["Fan estimate over measured error (geometric mean [95% CI]): " + "; ".join(
            f"N = {N}: {fmt(v['value'], v['ci'])}" for N, v in pred.items() if N not in ("all", "range"))
            + f"; all {fmt(pred['all']['value'], pred['all']['ci'])}, range {pred['range'][0]:.3g}-{pred['range'][1]:.3g}", ""]
    cmp = ans.get("conv_over_mlp")
    if cmp:
        vals = [v["value"] for v in cmp.values()]
        lines += ["Conv over MLP error at equal parameters per block (paired by seed): " + "; ".join(
            f"{k}: {fmt(v['value'], v['ci'])}" for k, v in cmp.items() if not k.endswith("/1"))
            + f" (range {min(vals):.3g}-{max(vals):.3g})", ""]
    return "\n".join(lines)


def report(root: Path, model: str = "digits") -> None:
    """The answers into benchmarks/<model>_distill.json, each run's small files into
    benchmarks/validate_runs/<model>_<run>/ (digits: the names README links), the tables printed."""
    ans = answers(root)
    ans["model"], ans["model_options"] = model, MODELS[model]
    stem = model.replace("-", "_")
    path = ROOT / "benchmarks" / f"{stem}_distill.json"
    from flowcert.numcore.io import to_json

    path.write_text(to_json(ans, indent=1) + "\n")
    for name in ("mlp", "mlp_total", "conv", "conv3"):
        src = root / name
        if not (src / "results.json").exists():
            continue
        dst = ROOT / "benchmarks" / "validate_runs" / f"{stem}_{name}"
        dst.mkdir(parents=True, exist_ok=True)
        for f in ["config.json", "summary.md", *[p.name for p in src.glob("*.png")]]:
            shutil.copy2(src / f, dst / f)
        with open(src / "results.json", "rb") as a, gzip.open(dst / "results.json.gz", "wb") as b:  # MBs as JSON
            shutil.copyfileobj(a, b)
    text = tables(ans)
    (ROOT / "benchmarks" / f"{stem}_distill.md").write_text(text + "\n")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="digits", choices=tuple(MODELS))
    ap.add_argument("--root", default=None, help="run folders [default: runs/<model>_distill]")
    ap.add_argument("--runs", default="mlp,mlp_total,conv")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    args.runs = [r for r in args.runs.split(",") if r]
    args.root = args.root or str(ROOT / "runs" / f"{args.model.replace('-', '_')}_distill")
    if args.report:
        report(Path(args.root), args.model)
        return
    run_all(args)
    report(Path(args.root), args.model)


if __name__ == "__main__":
    main()
