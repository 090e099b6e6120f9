"""The winning export against the closed forms and a longer search, and the speed of the search and the study.

    python benchmarks/bench_optimal.py [--quick] [--json FILE] [--only exports,search,teacher,solvers]

exports   On every built-in, for Euler (preset diffusers-euler) and DPM-Solver++(2M) (preset
          diffusers-timesteps) at N = 4 and 8: the default `grid --for PRESET` export (4096 training
          trajectories, screened on the first 1024, seed 0) and a longer search (16384 training trajectories,
          screened on 4096, seed 1, effort 4: four times the evaluation budgets and patience), both exported, against log-SNR, EDM and
          KL-optimal exported the same way, all on one fresh batch of 16384 exact trajectories (seed 99).
          Ratios: best closed form / default (>= 1: the default wins) and default / longer (<= 1.1: within
          10% of what a longer search finds).
search    Wall and CPU seconds of the search alone (warm, training batch ready) for N = 4, 8, 16 and every
          solver on every built-in, and of the whole `optimal_grid` call (exact trajectories included).
teacher   Exact end points of 10^4 + 1024 ring8 points: the torch teacher (distill.teacher, step 0.01) against
          numcore.flowmap at the same step and at the solver study's step 0.05, in the same process.
solvers   Whole-process wall time of `flowcert solvers ring8` with its defaults.

Every figure is printed with the machine's load average; on the shared 2-core machine wall times vary with
the load, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from flowcert.studies import optimal
from flowcert.studies.targets import MixtureBatches
from flowcert.exports.presets import export
from flowcert.numcore.mixture import BUILTINS, builtin

DELTA, T = 1e-3, 5.0
PRESET = {"euler": "diffusers-euler", "dpmpp_2m": "diffusers-timesteps"}


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def clock():
    return time.perf_counter(), time.process_time()


def since(c):
    return time.perf_counter() - c[0], time.process_time() - c[1]


def paired_ratio(fresh, t_a, t_b, solver: str) -> tuple:
    """rel_mse(t_a) / rel_mse(t_b) on the same fresh batch with a 95% delta-method interval (paired: the same
    trajectories, so the heavy tail they share cancels)."""
    from scipy.special import ndtri

    from flowcert.numcore.samplers import sample_grid

    e = [np.sum((sample_grid(fresh.mix, fresh.x_test, t, solver) - fresh.y_test) ** 2, 1) for t in (t_a, t_b)]
    r = e[0].mean() / e[1].mean()
    se = np.std(e[0] / e[0].mean() - e[1] / e[1].mean(), ddof=1) / np.sqrt(e[0].size)
    z = float(ndtri(0.975))
    return float(r), [float(r * np.exp(-z * se)), float(r * np.exp(z * se))]


def exports(names, steps, test: int, long_train: int, long_effort: float) -> list:
    rows = []
    for name in names:
        mix = builtin(name)
        fresh = MixtureBatches(mix, DELTA, T, train=16, test=test, seed=99)
        for solver, preset in PRESET.items():
            for N in steps:
                c = clock()
                ex, rec = optimal.winning_export(mix, N, preset, delta=DELTA, T=T, seed=0)
                wall, cpu = since(c)
                longer = optimal.optimal_grid(mix, N, solver, delta=DELTA, T=T, train=long_train, test=16, seed=1,
                                              effort=long_effort, screen=long_train // 4)
                ex_long = export(preset, longer["t"])
                err = {"default": fresh.test_error(ex.t, solver), "longer": fresh.test_error(ex_long.t, solver)}
                for b, t in optimal.baseline_grids(N, DELTA, T).items():
                    err[b] = fresh.test_error(export(preset, t).t, solver)
                best = min(optimal.BASELINES, key=lambda b: err[b]["rel_mse"])
                gain = paired_ratio(fresh, export(preset, optimal.baseline_grids(N, DELTA, T)[best]).t, ex.t, solver)
                vs_long = paired_ratio(fresh, ex.t, ex_long.t, solver)
                row = {"mixture": name, "solver": solver, "preset": preset, "N": N, "kind": rec["kind"],
                       "errors": err, "best_baseline": best,
                       "gain_over_best_baseline": gain[0], "gain_ci": gain[1],
                       "default_over_longer": vs_long[0], "default_over_longer_ci": vs_long[1],
                       "export_wall_s": wall, "export_cpu_s": cpu, "load": os.getloadavg()[0]}
                rows.append(row)
                print(f"| {name} | {solver} | {N} | {row['kind']} | {err['default']['rel_mse']:.3g} | "
                      f"{best} {err[best]['rel_mse']:.3g} | {gain[0]:.3g} [{gain[1][0]:.3g}, {gain[1][1]:.3g}] | "
                      f"{err['longer']['rel_mse']:.3g} | {vs_long[0]:.3f} [{vs_long[1][0]:.3f}, {vs_long[1][1]:.3f}] | "
                      f"{wall:.1f} |", flush=True)
    return rows


def search_speed(names, steps) -> list:
    from flowcert.numcore import gridsearch

    rows = []
    for name in names:
        mix = builtin(name)
        c = clock()
        batches = MixtureBatches(mix, DELTA, T, seed=0)
        tw, tc = since(c)
        for solver in optimal.SOLVERS:
            err = batches.training_error(solver)
            for N in steps:
                c = clock()
                res = gridsearch.search(err, N, DELTA, T, optimal.baseline_grids(N, DELTA, T))
                wall, cpu = since(c)
                rows.append({"mixture": name, "solver": solver, "N": N, "wall_s": wall, "cpu_s": cpu,
                             "evaluations": res.evaluations, "teacher_wall_s": tw, "teacher_cpu_s": tc,
                             "load": os.getloadavg()[0]})
                print(f"| {name} | {solver} | {N} | {wall:.2f} | {cpu:.2f} | {res.evaluations} | "
                      f"{tw + wall:.2f} |", flush=True)
    return rows


def teacher_speed(n: int = 10000) -> dict:
    from flowcert.numcore import flowmap
    from flowcert.numcore.marginal import sample

    mix = builtin("ring8")
    x = sample(mix, T, n + 1024, np.random.default_rng(0))
    flowmap.flow(mix, x[:10], T, DELTA)  # compile
    out = {"points": len(x)}
    c = clock()
    y01 = flowmap.flow(mix, x, T, DELTA, step=0.01)
    out["flowmap_0.01"] = since(c)
    c = clock()
    y05 = flowmap.flow(mix, x, T, DELTA, step=0.05)
    out["flowmap_0.05"] = since(c)
    out["difference_0.05_vs_0.01"] = float(np.sqrt(np.sum((y05 - y01) ** 2) / np.sum(y01**2)))
    try:
        import torch

        from flowcert.distill.teacher import Teacher

        c = clock()
        yt = Teacher(mix).flow(x, T, DELTA).numpy()
        out["torch_0.01"] = since(c)
        out["torch_threads"] = torch.get_num_threads()
        out["difference_torch_vs_flowmap"] = float(np.sqrt(np.sum((yt - y01) ** 2) / np.sum(yt**2)))
    except ImportError:
        pass
    print(json.dumps(out, indent=1), flush=True)
    return out


def solvers_speed() -> dict:
    subprocess.run([sys.executable, "-m", "flowcert.cli", "solvers", "line2", "--steps", "4", "--samples", "64"],
                   check=True, capture_output=True)  # warm the numba cache
    c = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "flowcert.cli", "solvers", "ring8", "--format", "json"],
                       check=True, capture_output=True, text=True)
    wall = time.perf_counter() - c
    res = json.loads(r.stdout)
    opt = {s: {N: v["train_rel_mse"] for N, v in per.items()} for s, per in res["optimal"]["grids"].items()}
    out = {"wall_s": wall, "load": os.getloadavg()[0], "optimal_train_rel_mse": opt}
    print(json.dumps(out, indent=1), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="ring8 and square4 only, smaller batches")
    ap.add_argument("--json", default=None, help="write every figure to this file")
    ap.add_argument("--only", default="exports,search,teacher,solvers")
    ap.add_argument("--mixtures", default=None, help="comma-separated built-ins (default: all)")
    args = ap.parse_args()
    parts = args.only.split(",")
    names = ["ring8", "square4"] if args.quick else list(BUILTINS)
    if args.mixtures:
        names = args.mixtures.split(",")
    out = {"load_start": load()}
    print(load(), flush=True)
    if "exports" in parts:
        print("\n| mixture | solver | N | kind | default export | best closed form | gain | longer search | "
              "default / longer | export s |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
        out["exports"] = exports(names, (4, 8), 4096 if args.quick else 16384, 8192 if args.quick else 16384,
                                 2.0 if args.quick else 4.0)
    if "search" in parts:
        print(f"\n{load()}\n| mixture | solver | N | search wall s | search CPU s | evaluations | "
              "with exact trajectories, wall s |\n|---|---|---|---|---|---|---|", flush=True)
        out["search"] = search_speed(names, (4, 8, 16))
    if "teacher" in parts:
        out["teacher"] = teacher_speed()
    if "solvers" in parts:
        out["solvers"] = solvers_speed()
    out["load_end"] = load()
    print(load())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
