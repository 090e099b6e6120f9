"""Speed of the exact path (issue 20, item 6): where `flowcert solvers ring8` spends its time, every optimal search
at N <= 16, and the whole command with three solvers and with a stand-in for seven.

    python benchmarks/exact_speed.py OUT.json [--only profile,searches,kernels,command] [--compare BEFORE.json]
        [--mixtures ring8,...] [--steps 4,8,16] [--kernel-steps 8,16] [--solvers euler,...] [--standin 7]

profile   `flowcert solvers ring8`'s study (10^4 test and 4096 training trajectories, N in {4, 8, 16, 32}, every
          grid, every solver) in this process, with the wall and CPU seconds of each phase: the exact teacher,
          the rates of the balanced grids, the reference sample and its floor, the optimal searches (per solver
          and N), the solver runs of the rows and the sliced W2 of the rows.
searches  On every built-in (or --mixtures), each registered solver, N = 4, 8, 16: the optimal search alone as
          `grid --kind optimal` runs it (studies.optimal.search on 4096 training trajectories, warm, batch ready),
          its wall and CPU seconds and objective evaluations, and the found grid's relative MSE on the 4096
          trajectories of the fresh test batch with its 95% interval; with --compare (an earlier run's JSON) the
          paired ratio of this grid's error to that run's grid's on the same trajectories (95% interval).  Then
          per solver: the largest search CPU seconds and, with --compare, the geometric mean of the ratios (95%
          interval from the rows' own) and the worst.
command   The whole process `flowcert solvers ring8 --format json` (warm numba cache): wall seconds and the CPU
          seconds of the child, with the registry's solvers, and with --standin solvers (the registry's solvers
          and copies of them under other names, second-order first, until there are that many: the cost of a
          study over that many solvers while the new solvers are not in the registry).

kernels   The compiled solver kernels alone on one numba thread: for every built-in (or --mixtures) and solver at N = 8
          and 16 (--kernel-steps) on 4096 points from p_T (log-SNR grid), nanoseconds per point and model
          evaluation of the forward program (`_run_program_serial`) and of the end-point error with its reverse
          pass (`_program_vjp_serial`), the fastest of 15 runs; with --compare (an earlier run's JSON: run this script
          against an older flowcert on PYTHONPATH) the ratios before / after and their geometric mean per kernel.

CPU seconds count both cores' work (numba kernels run in parallel); every figure is printed with the load average
of the shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

DELTA, T = 1e-3, 5.0


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def clock():
    return time.perf_counter(), time.process_time()


def since(c):
    return time.perf_counter() - c[0], time.process_time() - c[1]


def standin_names(n: int) -> list[str]:
    """The registry's solvers, then copies named COPY_k of its solvers (second-order ones first, the costlier
    searches), until there are n."""
    from flowcert.numcore.solvers import SOLVERS

    names = list(SOLVERS)
    order = sorted(SOLVERS, key=lambda s: (-SOLVERS[s].order, -SOLVERS[s].evaluations(8)))
    k = 0
    while len(names) < n:
        names.append(f"{order[k % len(order)]}_copy{k // len(order) + 1}")
        k += 1
    return names


def install_standins(n: int) -> list[str]:
    """Register the stand-in copies (same scheme, another name) and make the study run all of them."""
    import dataclasses

    from flowcert.numcore import solvers
    from flowcert.studies import optimal, solver_study

    names = standin_names(n)
    for name in names:
        if name not in solvers.SOLVERS:
            base = solvers.SOLVERS[name.split("_copy")[0]]
            solvers.SOLVERS[name] = dataclasses.replace(base, name=name, label=f"{base.label} (copy)")
    solvers.NAMES = tuple(names)
    solver_study.SOLVERS = optimal.SOLVERS = tuple(names)
    return names


def profile() -> dict:
    """Phases of `flowcert solvers ring8`'s study, wall and CPU seconds."""
    from flowcert.numcore import distances
    from flowcert.numcore.mixture import builtin
    from flowcert.studies import solver_study, targets

    acc: dict = {}

    def wrap(obj, name, key, per=None):
        f = getattr(obj, name)

        def g(*a, **k):
            c = clock()
            try:
                return f(*a, **k)
            finally:
                w, cp = since(c)
                slot = acc.setdefault(key if per is None else f"{key} {per(a, k)}", [0.0, 0.0, 0])
                slot[0] += w
                slot[1] += cp
                slot[2] += 1

        setattr(obj, name, g)
        return f

    wrap(targets.MixtureTarget, "batches", "exact teacher (test and training batches)")
    wrap(solver_study, "build_grids", "fixed grids (the balanced grids' rates)")
    wrap(targets.MixtureTarget, "reference", "reference sample and SW2 floor")
    wrap(targets.MixtureTarget, "study_optimal", "optimal searches", lambda a, k: a[2])
    plain_run = solver_study.run

    # the rows' solver runs: MixtureBatches.solve on the test batch (the searches call it on training points)
    f_solve = targets.MixtureBatches.solve

    def solve(self, x, t, solver):
        c = clock()
        try:
            return f_solve(self, x, t, solver)
        finally:
            if x is self.x_test:
                w, cp = since(c)
                slot = acc.setdefault("rows: solver runs on the test batch", [0.0, 0.0, 0])
                slot[0] += w
                slot[1] += cp
                slot[2] += 1

    targets.MixtureBatches.solve = solve
    wrap(distances, "sliced_wasserstein", "rows: sliced W2")
    c = clock()
    res = plain_run(targets.MixtureTarget(builtin("ring8")), [4, 8, 16, 32], DELTA, T, samples=10000, seed=0,
                    rate_samples=4096, train_samples=4096)
    wall, cpu = since(c)
    targets.MixtureBatches.solve = f_solve
    print(f"\nprofile of the study of `flowcert solvers ring8` (10^4 test, 4096 training trajectories, N = 4, 8, 16, "
          f"32, {len(res['solvers'])} solvers, {len(res['grids'])} grids): {wall:.1f} s wall, {cpu:.1f} s CPU, "
          f"load {load()}\n\n| phase | wall s | CPU s | calls |\n|---|---|---|---|")
    for k, (w, cp, n) in acc.items():
        print(f"| {k} | {w:.2f} | {cp:.2f} | {n} |")
    per = {s: {N: {"evaluations": r["evaluations"], "seconds": r["seconds"], "method": r["method"],
                   "train_rel_mse": r["train_rel_mse"]} for N, r in g.items()}
           for s, g in res["optimal"]["grids"].items()}
    print("\n| solver | N | evaluations | wall s | training rel MSE | method |\n|---|---|---|---|---|---|")
    for s, g in per.items():
        for N, r in g.items():
            print(f"| {s} | {N} | {r['evaluations']} | {r['seconds']:.2f} | {r['train_rel_mse']:.4g} | "
                  f"{r['method'][:70]} |")
    return {"wall_s": wall, "cpu_s": cpu, "phases": {k: {"wall_s": w, "cpu_s": cp, "calls": n}
                                                      for k, (w, cp, n) in acc.items()},
            "searches": per, "load": os.getloadavg()[0]}


def searches(names, steps, before=None, solvers=None) -> list:
    from flowcert.numcore.mixture import builtin
    from flowcert.numcore.samplers import sample_grid
    from flowcert.studies import optimal
    from flowcert.studies.targets import MixtureBatches

    print(f"\nsearches (4096 training, 4096 test trajectories, warm; load {load()})\n\n"
          "| mixture | solver | N | search wall s | search CPU s | evaluations | test rel MSE [95%] | "
          "vs before [95%] |\n|---|---|---|---|---|---|---|---|", flush=True)
    old = {} if before is None else {(r["mixture"], r["solver"], r["N"]): r for r in before["searches"]}
    rows = []
    for name in names:
        mix = builtin(name)
        b = MixtureBatches(mix, DELTA, T, seed=0)
        for solver in solvers or optimal.SOLVERS:
            for N in steps:
                c = clock()
                res = optimal.search(b, solver, N, optimal.baseline_grids(N, DELTA, T))
                wall, cpu = since(c)
                e = b.test_error(res.t, solver)
                row = {"mixture": name, "solver": solver, "N": N, "wall_s": wall, "cpu_s": cpu,
                       "evaluations": res.evaluations, "method": res.method, "stop": res.stop,
                       "train_rel_mse": res.value, **e, "t": list(map(float, res.t)), "load": os.getloadavg()[0]}
                vs = ""
                rows.append(row)
                if (name, solver, N) in old:
                    ea = np.sum((sample_grid(mix, b.x_test, res.t, solver) - b.y_test) ** 2, 1)
                    eb = np.sum((sample_grid(mix, b.x_test, np.asarray(old[name, solver, N]["t"]), solver)
                                 - b.y_test) ** 2, 1)
                    r, ci = paired(ea, eb)
                    row["vs_before"], row["vs_before_ci"] = r, ci
                    vs = f"{r:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
                print(f"| {name} | {solver} | {N} | {wall:.2f} | {cpu:.2f} | {res.evaluations} | "
                      f"{e['rel_mse']:.4g} [{e['rel_mse_ci'][0]:.3g}, {e['rel_mse_ci'][1]:.3g}] | {vs} |", flush=True)
    return rows


def kernels(names, steps, before=None) -> dict:
    """ns per point and model evaluation of the forward and the reverse-mode solver kernels (see the module doc)."""
    import numba

    from flowcert.numcore import grids
    from flowcert.numcore import kernels as kn
    from flowcert.numcore.marginal import sample
    from flowcert.numcore.mixture import builtin
    from flowcert.numcore.samplers import evaluated_tables
    from flowcert.numcore.solvers import NAMES, check

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    n, repeats = 4096, 15
    old = {} if before is None else {(r["mixture"], r["solver"], r["N"]): r for r in before["kernels"]["rows"]}
    print(f"\nkernels ({n} points, one numba thread, fastest of {repeats}; load {load()})\n\n"
          "| mixture (K, d) | solver | N | forward ns | reverse-mode ns | before / after: forward, reverse |\n"
          "|---|---|---|---|---|---|", flush=True)
    rows = []
    try:
        for name in names:
            mix = builtin(name)
            x = sample(mix, T, n, np.random.default_rng(0))
            for solver in NAMES:
                for N in steps:
                    t = grids.build("logsnr", N, DELTA, T)
                    sig = np.sqrt(np.expm1(2.0 * t))
                    y = np.ascontiguousarray(x * np.exp(t[0]))
                    target = np.ascontiguousarray(0.5 * y)
                    ev, cx, cd = check(solver).program(sig, compiled=True)
                    tabs = evaluated_tables(mix, ev, sig, t)
                    size, nch = kn._chunks(n)
                    per = n * int(np.sum(ev > 0))

                    def forward():
                        kn._run_program_serial(y.copy(), ev, cx, cd, *tabs, size, nch)

                    def reverse():
                        kn._program_vjp_serial(y, target, ev, cx, cd, *tabs, size, nch, np.zeros(nch),
                                               np.zeros((nch, ev.size)), np.zeros((nch, *cx.shape)),
                                               np.zeros((nch, *cd.shape)))

                    ns = {}
                    for key, fn in (("forward", forward), ("reverse", reverse)):
                        fn()
                        best = math.inf
                        for _ in range(repeats):
                            c = time.perf_counter()
                            fn()
                            best = min(best, time.perf_counter() - c)
                        ns[key] = 1e9 * best / per
                    row = {"mixture": name, "K": mix.K, "d": mix.d, "solver": solver, "N": N,
                           "forward_ns": ns["forward"], "reverse_ns": ns["reverse"]}
                    vs = ""
                    if (name, solver, N) in old:
                        b = old[name, solver, N]
                        row["forward_ratio"] = b["forward_ns"] / ns["forward"]
                        row["reverse_ratio"] = b["reverse_ns"] / ns["reverse"]
                        vs = f"{row['forward_ratio']:.2f}x, {row['reverse_ratio']:.2f}x"
                    rows.append(row)
                    print(f"| {name} ({mix.K}, {mix.d}) | {solver} | {N} | {ns['forward']:.0f} | {ns['reverse']:.0f} "
                          f"| {vs} |", flush=True)
    finally:
        numba.set_num_threads(threads)
    out = {"points": n, "repeats": repeats, "rows": rows}
    if rows and "forward_ratio" in rows[0]:
        for key in ("forward", "reverse"):
            r = np.array([row[f"{key}_ratio"] for row in rows if f"{key}_ratio" in row])
            out[f"{key}_ratio"] = {"geo_mean": float(np.exp(np.mean(np.log(r)))), "min": float(r.min()),
                                   "max": float(r.max())}
            print(f"{key}: before / after geometric mean {out[f'{key}_ratio']['geo_mean']:.2f}x "
                  f"(range {r.min():.2f}-{r.max():.2f}x)")
    return out


def summary(rows) -> dict:
    """Per solver over the rows: the largest search CPU seconds (and where), and with --compare the geometric mean of
    the paired ratios (95% interval from the rows' intervals, the mixtures and N fixed) and the worst ratio."""
    from scipy.special import ndtri

    z = float(ndtri(0.975))
    out = {}
    print("\n| solver | searches | max search CPU s (mixture, N) | max evaluations | geometric mean of after / before "
          "[95%] | worst after / before [95%] (mixture, N) |\n|---|---|---|---|---|---|")
    for solver in dict.fromkeys(r["solver"] for r in rows):
        mine = [r for r in rows if r["solver"] == solver]
        top = max(mine, key=lambda r: r["cpu_s"])
        rec = {"searches": len(mine), "max_cpu_s": top["cpu_s"], "max_cpu_at": [top["mixture"], top["N"]],
               "max_evaluations": max(r["evaluations"] for r in mine)}
        cmp_ = [r for r in mine if "vs_before" in r]
        gm = worst = ""
        if cmp_:
            logs = np.log([r["vs_before"] for r in cmp_])
            se = np.array([np.log(r["vs_before_ci"][1] / r["vs_before_ci"][0]) / (2 * z) for r in cmp_])
            m, s = float(logs.mean()), float(np.sqrt(np.sum(se**2)) / len(cmp_))
            w = max(cmp_, key=lambda r: r["vs_before"])
            rec.update(geo_mean_vs_before=float(np.exp(m)), geo_mean_vs_before_ci=[float(np.exp(m - z * s)),
                                                                                    float(np.exp(m + z * s))],
                       worst_vs_before=w["vs_before"], worst_vs_before_ci=w["vs_before_ci"],
                       worst_at=[w["mixture"], w["N"]])
            gm = f"{np.exp(m):.3f} [{np.exp(m - z * s):.3f}, {np.exp(m + z * s):.3f}]"
            worst = (f"{w['vs_before']:.3f} [{w['vs_before_ci'][0]:.3f}, {w['vs_before_ci'][1]:.3f}] "
                     f"({w['mixture']}, {w['N']})")
        out[solver] = rec
        print(f"| {solver} | {len(mine)} | {top['cpu_s']:.2f} ({top['mixture']}, {top['N']}) | "
              f"{rec['max_evaluations']} | {gm} | {worst} |")
    return out


def paired(e_a, e_b) -> tuple[float, list]:
    """mean(e_a) / mean(e_b) on the same trajectories with a 95% delta-method interval."""
    from scipy.special import ndtri

    r = e_a.mean() / e_b.mean()
    se = np.std(e_a / e_a.mean() - e_b / e_b.mean(), ddof=1) / np.sqrt(e_a.size)
    z = float(ndtri(0.975))
    return float(r), [float(r * np.exp(-z * se)), float(r * np.exp(z * se))]


COMMAND = """
import sys
sys.argv = ["flowcert", "solvers", "ring8", "--format", "json"]
n = int({n})
if n:
    sys.path.insert(0, {here!r})
    from exact_speed import install_standins
    install_standins(n)
from flowcert.cli import main
main()
"""


def command(n: int = 0) -> dict:
    """Whole-process `flowcert solvers ring8` (with n stand-in solvers if n): wall and the child's CPU seconds."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = COMMAND.format(n=n, here=here)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    c = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - c
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res = json.loads(r.stdout)
    out = {"solvers": res["solvers"], "wall_s": wall, "cpu_s": cpu, "load": os.getloadavg()[0],
           "optimal_train_rel_mse": {s: {N: v["train_rel_mse"] for N, v in per.items()}
                                     for s, per in res["optimal"]["grids"].items()},
           "optimal_seconds": {s: {N: v["seconds"] for N, v in per.items()}
                               for s, per in res["optimal"]["grids"].items()}}
    print(f"\n`flowcert solvers ring8`, {len(res['solvers'])} solvers ({', '.join(res['solvers'])}): {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU, load {load()}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default="profile,searches,command")
    ap.add_argument("--mixtures", default=None, help="comma-separated built-ins for `searches` (default: all)")
    ap.add_argument("--steps", default="4,8,16")
    ap.add_argument("--kernel-steps", default="8,16", help="N of `kernels`")
    ap.add_argument("--solvers", default=None, help="comma-separated solvers for `searches` (default: all)")
    ap.add_argument("--standin", type=int, default=7, help="solvers in the stand-in study (0: none)")
    ap.add_argument("--compare", default=None)
    a = ap.parse_args()
    from flowcert.numcore.mixture import BUILTINS

    parts = a.only.split(",")
    before = None
    if a.compare:
        with open(a.compare) as fh:
            before = json.load(fh)
    out = {"load_start": load()}
    print(f"load {load()}; {os.cpu_count()} cores", flush=True)
    subprocess.run([sys.executable, "-m", "flowcert.cli", "solvers", "line2", "--steps", "16", "--samples", "5000",
                    "--solvers", "euler"],
                   check=True, capture_output=True)  # warm the numba cache, the parallel kernels' too
    if "profile" in parts:
        out["profile"] = profile()
    if "searches" in parts:
        names = a.mixtures.split(",") if a.mixtures else list(BUILTINS)
        out["searches"] = searches(names, [int(n) for n in a.steps.split(",")], before,
                                   a.solvers.split(",") if a.solvers else None)
        out["searches_summary"] = summary(out["searches"])
    if "kernels" in parts:
        names = a.mixtures.split(",") if a.mixtures else list(BUILTINS)
        out["kernels"] = kernels(names, [int(n) for n in a.kernel_steps.split(",")], before)
    if "command" in parts:
        out["command"] = command(0)
        if a.standin:
            out["command_standin"] = command(a.standin)
    out["load_end"] = load()
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
