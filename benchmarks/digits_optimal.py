"""The `optimal` rows of the digits table: each solver's optimal grid against the model's own teacher.

    python benchmarks/digits_optimal.py OUT.json [--threads 1] [--train 128] [--effort 0.25]

The test batch is the one of ``flowcert solvers --model digits --samples 512`` (x_T = prior(model, 512, seed 0),
teacher: 64 RK4 steps in log sigma), so its rows are comparable with the kept study
(benchmarks/digits_runs/solvers_digits.json); the SW2 uses the same 256 directions and the same held-out
digits pushed to p_delta (rng seed + 1, drawn in the study's order).  Optimal grids are fitted on ``--train``
other teacher trajectories (seed + 1), N = 4, 8, 16 coarse to fine, for Euler and DPM-Solver++(2M).
Prints the sizes, the rows, and the cost of every search in model evaluations and seconds, with the load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", type=int, default=128)
    ap.add_argument("--test", type=int, default=512)
    ap.add_argument("--effort", type=float, default=0.25)
    ap.add_argument("--steps", default="4,8,16")
    ap.add_argument("--solvers", default="euler,dpmpp_2m")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from flowcert.models.loaders import builtin_folder, load
    from flowcert.models.flow import solve
    from flowcert.studies.optimal import optimal_grid
    from flowcert.studies.targets import ModelBatches, ModelTarget, push
    from flowcert.numcore.distances import directions, relative_mse, sliced_wasserstein_ci
    from flowcert.numcore.gridsearch import resample
    from flowcert.numcore.io import write_json

    print(f"load before: {os.getloadavg()}; torch threads {a.threads}; train {a.train}, test {a.test}, "
          f"effort {a.effort}", flush=True)
    m = load("digits")
    b = ModelBatches(m, 1e-3, 5.0, train=a.train, test=a.test, seed=0, teacher_steps=64, check=64)
    print(f"teacher: {b.teacher['model_evaluations']:,} evaluations, {b.teacher['seconds']:.1f} s, "
          f"self-convergence {b.teacher['self_convergence']}", flush=True)
    reference = np.load(os.path.join(builtin_folder("digits"), "data", "test.npy")).reshape(-1, 64)
    rng = np.random.default_rng(1)  # the study's: directions, then the reference pushed to p_delta
    theta = directions(m.d, ModelTarget.sw_directions, rng)
    ref = push(reference, 1e-3, rng)
    rows, records = [], {}
    for solver in a.solvers.split(","):
        coarse = None
        for N in (int(n) for n in a.steps.split(",")):
            e0, clock = b.counter.samples, time.perf_counter()
            starts = {} if coarse is None else {f"optimal N={len(coarse) - 1} resampled": resample(coarse, N)}
            rec = optimal_grid(ModelTarget(m), N, solver, delta=1e-3, T=5.0, batches=b, effort=a.effort, starts=starts)
            coarse = rec["t"]
            x = solve(m, b.x_test, rec["t"], solver)
            e = relative_mse(x, b.y_test)
            sw = sliced_wasserstein_ci(x, ref, theta, rng)
            xg = solve(m, b.x_test, rec["gits"]["t"], solver)
            swg = sliced_wasserstein_ci(xg, ref, theta, rng)
            row = {"grid": "optimal", "solver": solver, "steps": N, "rel_mse": e.value, "rel_mse_ci": [e.ci_low, e.ci_high],
                   "sw": sw.value, "sw_ci": [sw.ci_low, sw.ci_high], "gits_same_batch": {**{k: rec["gits"][k] for k in ("rel_mse", "rel_mse_ci")}, "sw": swg.value, "sw_ci": [swg.ci_low, swg.ci_high]},
                   "evaluations": b.counter.samples - e0, "seconds": time.perf_counter() - clock,
                   "search": rec["search"], "train_rel_mse": rec["train_rel_mse"], "baselines": rec["baselines"],
                   "t": rec["t"], "load": os.getloadavg()}
            rows.append(row)
            records[f"{solver}/{N}"] = rec
            print(f"{solver} N={N}: rel MSE {e.value:.3g} [{e.ci_low:.2g}, {e.ci_high:.2g}], SW2 {sw.value:.3f} "
                  f"[{sw.ci_low:.3f}, {sw.ci_high:.3f}]; GITS-style (same batch) {rec['gits']['rel_mse']:.3g}; "
                  f"search {rec['search']['evaluations']} objective evaluations, {rec['search']['stop']}; "
                  f"{row['evaluations']:,} model evaluations, {row['seconds']:.0f} s, load {os.getloadavg()[0]:.1f}",
                  flush=True)
            write_json(a.out, {"rows": rows, "teacher": b.teacher, "train_samples": a.train, "test_samples": a.test,
                               "effort": a.effort, "threads": a.threads, "gits_cost": {
                                   "model_evaluations": b.trajectory["evaluations"],
                                   "seconds": b.trajectory["seconds"]}})


if __name__ == "__main__":
    main()
