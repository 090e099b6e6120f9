"""Trained-model benchmarks on the shipped digits UNet (d = 64, 236k parameters), same process.

    python benchmarks/bench_models.py [--threads N] [--samples 256] [--points 40] [--quick]

* the E||J|| table (``flowcert lipschitz --model digits --data train.npy``): ``points`` times x ``samples``
  points of p_t, Lanczos on J^T J (torch.func vjp and vjp-of-vjp products), wall time and network passes;
* against a plain torch baseline: the dense Jacobian of every point (``torch.func.jacrev``, d reverse passes)
  and its SVD, timed on 32 points at one table time and scaled to the table;
* one forward pass of ``samples`` points (the unit the costs are counted in);
* the model's own teacher: RK4 in log sigma, 64 steps (256 evaluations) for 512 samples, and its
  self-convergence against 128 steps;
* a GITS-style teacher search for the same model (dynamic programming over the teacher's 65 log-sigma
  nodes for N = 8 Euler steps, Chen et al. 2024): its teacher trajectories and cost matrix;
* ``--optimal``: ``flowcert grid --model digits --steps 8 --kind optimal --solver euler`` with its defaults
  (128 training and 256 test teacher trajectories, 64 RK4 steps, effort 0.1), teacher included, and its cost
  in model evaluations beside the GITS-style search on the same trajectories.  ``--only-optimal`` skips the rest.

Prints the machine load (``os.getloadavg``) before and after: the machine these figures come from is
shared, so each is given with its load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="4 table times and 64 samples")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    ap.add_argument("--optimal", action="store_true", help="time the optimal grid for N = 8 with its teacher")
    ap.add_argument("--only-optimal", action="store_true", help="time only the optimal grid")
    args = ap.parse_args()
    if args.quick:
        args.points, args.samples = 4, 64
    torch.set_num_threads(args.threads)
    import flowcert
    from flowcert.models.flow import prior, teacher
    from flowcert.models.jacobian import table

    out = {"threads": args.threads, "samples": args.samples, "points": args.points,
           "load_before": os.getloadavg()}
    m = flowcert.load_model("digits")
    root = flowcert.models.loaders.builtin_folder("digits")
    data = np.load(os.path.join(root, "data", "train.npy")).astype(np.float64)
    print(f"digits UNet: d = {m.d}, {m.info['parameters']} parameters; torch threads {args.threads}; "
          f"load {out['load_before'][0]:.1f}")

    if args.optimal or args.only_optimal:
        out["optimal"] = optimal_figure(m)
    if args.only_optimal:
        return finish(out, args)
    x = torch.as_tensor(data[: args.samples])
    with torch.no_grad():
        m.denoise(x, 1.0)
        t0 = time.perf_counter()
        for _ in range(3):
            m.denoise(x, 1.0)
        fwd = (time.perf_counter() - t0) / 3
    out["forward_seconds"] = fwd
    print(f"one forward pass of {args.samples} points: {fwd * 1e3:.1f} ms")

    ts = np.geomspace(1e-3, 5.0, args.points)
    t0 = time.perf_counter()
    tab = table(m, ts, args.samples, data=data, seed=0)
    secs = time.perf_counter() - t0
    out.update(table_seconds=secs, table_passes=tab["passes"], iterations_mean=float(np.mean(tab["iterations_mean"])),
               converged_min=float(np.min(tab["converged_fraction"])))
    print(f"E||J|| table, {args.points} times x {args.samples} samples: {secs:.1f} s, {tab['passes']} network passes "
          f"per sample, {np.mean(tab['iterations_mean']):.1f} Lanczos iterations per point on average, "
          f"converged fraction >= {np.min(tab['converged_fraction']):.3f}")

    # baseline: dense Jacobians (jacrev: d reverse passes per point) and their SVD at one time, scaled to the table
    from torch.func import jacrev, vmap

    t = 0.1
    xt = math.exp(-t) * x + math.sqrt(-math.expm1(-2 * t)) * torch.randn(x.shape, dtype=torch.float64)
    xt = xt.float()[:32]  # 32 points, scaled to the table's sample count
    t0 = time.perf_counter()
    try:
        J = vmap(jacrev(lambda z: m.velocity(z[None], t)[0]))(xt)
        how = "vmap(jacrev)"
    except Exception:  # a model that vmap cannot batch: d reverse passes over the batch
        J = m.dense_jacobian(xt, t)
        how = "d batched reverse passes"
    dense = torch.linalg.matrix_norm(J.double(), ord=2)
    one = (time.perf_counter() - t0) * args.samples / 32
    out.update(dense_seconds_per_time=one, dense_table_seconds=one * args.points, dense_how=how)
    print(f"baseline, dense Jacobian ({how}) + SVD: {one:.1f} s per time, {one * args.points:.1f} s for the table "
          f"-> Lanczos is {one * args.points / secs:.2f}x faster")
    from flowcert.models.jacobian import opnorm

    r = opnorm(m, xt, t)
    err = float((r["norm"] / dense - 1).abs().max())
    out["lanczos_vs_dense_max_rel_err_cold_start"] = err
    print(f"   Lanczos (cold start, tol 1e-3) against the dense SVD at t = {t}: max relative error {err:.2e}")

    xT = prior(m, 512, 0)
    t0 = time.perf_counter()
    te = teacher(m, xT, 5.0, 1e-3, steps=64, check=64)
    out.update(teacher_seconds=te["seconds"], teacher_nfe=te["nfe"], teacher_self_convergence=te["self_convergence"])
    print(f"teacher: RK4 64 steps ({te['nfe']} evaluations per sample) for 512 samples: {te['seconds']:.1f} s; "
          f"self-convergence against 128 steps: relative MSE {te['self_convergence']['rel_mse']:.2e}")

    from flowcert.studies.gits import gits_search

    t0 = time.perf_counter()
    g = gits_search(m, prior(m, 256, 1), 8, delta=1e-3, T=5.0, teacher_steps=64)
    out["gits"] = {k: v for k, v in g.items() if k != "t"}
    print(f"GITS-style search (N = 8, Euler, 256 trajectories, 65 candidate nodes): {g['seconds']:.1f} s, "
          f"{g['nfe_per_sample']} evaluations per trajectory ({g['nfe_total']} in all)")
    finish(out, args)


def optimal_figure(m) -> dict:
    """The optimal grid for N = 8 (Euler) with the defaults of ``flowcert grid --model``, teacher included."""
    import flowcert

    load = os.getloadavg()
    t0 = time.perf_counter()
    g = flowcert.model_grid(m, 8, kind="optimal", solver="euler")
    secs = time.perf_counter() - t0
    o = g["optimal"]
    c = o["cost"]
    sc = o["teacher"]["self_convergence"]
    print(f"optimal grid N = 8 (Euler), {o['train_samples']} training and {o['test_samples']} test trajectories, "
          f"teacher {o['teacher_steps']} RK4 steps (self-convergence {sc['rel_mse']:.1e} on {sc['samples']}): "
          f"{secs:.1f} s in all (load {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after)")
    print(f"   teacher {c['teacher']['model_evaluations']:,} evaluations {c['teacher']['seconds']:.1f} s; search "
          f"{c['search']['model_evaluations']:,} evaluations {c['search']['seconds']:.1f} s "
          f"({o['search']['evaluations']} objective evaluations, {o['search']['stop']}); GITS-style on the same "
          f"trajectories {c['gits']['model_evaluations']:,} evaluations {c['gits']['seconds']:.1f} s")
    print(f"   test relative MSE: optimal {o['rel_mse']:.3g} [{o['rel_mse_ci'][0]:.2g}, {o['rel_mse_ci'][1]:.2g}], "
          f"GITS-style {o['gits']['rel_mse']:.3g}, " + ", ".join(f"{k} {v['rel_mse']:.3g}"
                                                               for k, v in o["baselines"].items()))
    return {"seconds": secs, "load_before": load, "load_after": os.getloadavg(), "cost": c,
            "train_samples": o["train_samples"], "test_samples": o["test_samples"], "teacher_steps": o["teacher_steps"],
            "self_convergence": sc, "search": o["search"], "rel_mse": o["rel_mse"], "rel_mse_ci": o["rel_mse_ci"],
            "gits": {k: o["gits"][k] for k in ("rel_mse", "rel_mse_ci")}, "baselines": o["baselines"]}


def finish(out: dict, args) -> None:
    out["load_after"] = os.getloadavg()
    print(f"load after: {out['load_after'][0]:.1f}")
    if args.json:
        from flowcert.numcore.io import write_json

        write_json(args.json, out)


if __name__ == "__main__":
    main()
