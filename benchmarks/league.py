"""The league of `flowcert solvers SPEC... --random M --seed S`, resumable and split into parts.

    python benchmarks/league.py OUT_DIR [--random 20] [--seed 0] [--part 1/2] [--builtins ring8,...] [--solvers NAMES]
        [--steps 4,8,16,32]
    python benchmarks/league.py OUT_DIR --combine [--with DIR ...]     # league.json (the command's JSON), league.png,
                                                                       # league.md (the tables)

Each mixture's study is written to OUT_DIR/<i>-<name>.json as soon as it is done (a killed run continues where
it stopped); `--part i/k` takes every k-th mixture, so k processes can share the work.  The study of each mixture
is exactly the one `flowcert solvers` runs (`flowcert.studies.solver_study.run` with the command's defaults and
the same seed), so `--combine` gives the command's result.

`--steps` studies those N only (default: the command's 4, 8, 16, 32; a shorter league when time is short).
`--solvers` studies only those solvers (default: every registered one).  Studies of other solvers on the same
mixtures, seed and window (the same test and training batches: the batches depend on the mixture and the seed
only) can be run apart and joined: `--combine --with DIR` adds, per mixture, DIR's solvers to OUT_DIR's (rows,
optimal grids and summaries side by side; a solver studied in both is taken from OUT_DIR).  The join is checked:
the two studies must share the window, the sample sizes, the grids and the exact teacher's end points (its error
estimate and the sliced-W2 floor, which are computed from them, must agree to 1e-9: a study run with another
number of threads sums in another order).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from flowcert.numcore.io import to_json, write_atomic
from flowcert.numcore.mixture import BUILTINS, builtin, random_mixtures
from flowcert.numcore.solvers import NAMES, check_list
from flowcert.studies import solver_study
from flowcert.studies.targets import MixtureTarget

STEPS = [4, 8, 16, 32]
DELTA, T = 1e-3, 5.0
SAMPLES, TRAIN_SAMPLES, RATE_SAMPLES = 10000, 4096, 4096  # flowcert solvers' defaults (rate: min(samples, 4096))


def mixtures(args) -> list:
    names = args.builtins.split(",") if args.builtins else list(BUILTINS)
    return [builtin(n) for n in names] + random_mixtures(args.random, args.seed)


def join(mine: dict, other: dict) -> dict:
    """One study with the solvers of both (``mine`` wins where both have a solver), in the registry's order."""
    for key in ("mixture", "delta", "T", "samples", "seed", "steps", "grids"):
        if mine[key] != other[key]:
            raise SystemExit(f"{mine['mixture']}: the studies differ in {key}: {mine[key]} and {other[key]}")
    for a, b in ((mine["teacher"]["relative_rms_error"], other["teacher"]["relative_rms_error"]),
                 (mine["sw_floor"]["value"], other["sw_floor"]["value"])):
        if abs(a - b) > 1e-9 * abs(b):  # equal up to the summation order of another thread count
            raise SystemExit(f"{mine['mixture']}: the studies' exact end points differ (teacher error or SW2 floor)")
    solvers = [s for s in NAMES if s in mine["solvers"] or s in other["solvers"]]
    take = {s: (mine if s in mine["solvers"] else other) for s in solvers}
    out = dict(mine)
    out["solvers"] = solvers
    out["rows"] = [r for s in solvers for r in take[s]["rows"] if r["solver"] == s]
    out["optimal"] = {**mine["optimal"], "grids": {s: take[s]["optimal"]["grids"][s] for s in solvers}}
    out["summary"] = {s: take[s]["summary"][s] for s in solvers}
    out["timing"] = {"parts": [mine.get("timing"), other.get("timing")]}
    return out


def fmt(v: float) -> str:
    return f"{v:.3g}" if v < 1e4 else f"{v:.2e}"


def markdown(doc: dict) -> str:
    """The league as markdown: per solver and N, the winning closed form (the smallest geometric mean of the
    ratio to the optimal grid) and every grid's ratio to the optimal grid (geometric mean over the mixtures,
    95% interval); then, at each budget of K model evaluations, every solver's optimal grid and best closed form
    against the most accurate candidate."""
    from flowcert.numcore.solvers import SOLVERS

    lg = doc["league"]
    grids = [g for g in doc["studies"][0]["grids"] if g != solver_study.OPTIMAL]
    out = [f"# The league: {len(lg['mixtures'])} mixtures ({', '.join(lg['mixtures'])}), N = "
           f"{', '.join(map(str, doc['steps']))}, {doc['samples']} test and {doc['train_samples']} training "
           "trajectories", "",
           "Each grid's relative MSE over the solver's optimal grid's on the same mixture and test batch: geometric "
           "mean over the mixtures [95% Student-t interval]; `winner`: the closed form with the smallest geometric "
           "mean.", "",
           "| solver | N | winner | " + " | ".join(grids) + " |", "|---|---|---|" + "---|" * len(grids)]
    for solver, per in lg["table"].items():
        for N, cell in per.items():
            c = cell["grids"]
            out.append(f"| {SOLVERS[solver].label} | {N} | {cell['best_baseline']} | " + " | ".join(
                f"{fmt(c[g]['geo_mean'])} [{fmt(c[g]['ci'][0])}, {fmt(c[g]['ci'][1])}]" for g in grids) + " |")
    out += ["", "At a budget of K model evaluations: each candidate's relative MSE over the most accurate one's "
            "(paired, geometric mean over the mixtures [95%]); the best's own geometric mean in bold.", "",
            "| K | solver | optimal grid | best closed form |", "|---|---|---|---|"]
    for K, b in lg["budget"].items():
        cands = b["candidates"]
        for solver in dict.fromkeys(c["solver"] for c in cands.values()):
            opt = cands.get(f"{solver}/optimal")
            closed = [c for c in cands.values() if c["solver"] == solver and c["grid"] != "optimal"]

            def cell(c):
                if c is None:
                    return "—"
                if b["best"] == {"solver": c["solver"], "grid": c["grid"]}:
                    return f"**{fmt(c['geo_mean'])} [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}]**"
                v = c["vs_best"]
                return f"x{fmt(v['geo_mean'])} [{fmt(v['ci'][0])}, {fmt(v['ci'][1])}]"
            out.append(f"| {K} | {SOLVERS[solver].label} | {cell(opt)} | "
                       + (f"{closed[0]['grid']} {cell(closed[0])}" if closed else "—") + " |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--builtins", default=None)
    ap.add_argument("--part", default="1/1")
    ap.add_argument("--solvers", default=None, help="comma-separated solvers to study [default: all]")
    ap.add_argument("--steps", default=",".join(map(str, STEPS)), help="comma-separated N [default: 4,8,16,32]")
    ap.add_argument("--combine", action="store_true")
    ap.add_argument("--with", dest="others", action="append", default=[],
                    help="with --combine: a folder of studies of other solvers on the same mixtures, joined in")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    steps = [int(n) for n in args.steps.split(",")]
    mixes = mixtures(args)
    names = [f"{i:02d}-{m.name}.json" for i, m in enumerate(mixes)]
    paths = [os.path.join(args.out, n) for n in names]
    if args.combine:
        studies = [json.load(open(p)) for p in paths]
        for other in args.others:
            studies = [join(s, json.load(open(os.path.join(other, n)))) for s, n in zip(studies, names)]
        lg = solver_study.league(studies)
        doc = {"studies": studies, "league": lg, "random": args.random, "seed": args.seed, "steps": steps,
               "samples": studies[0]["samples"], "train_samples": studies[0]["optimal"]["train_samples"],
               "delta": DELTA, "T": T, "solvers": studies[0]["solvers"]}
        write_atomic(os.path.join(args.out, "league.json"), to_json(doc) + "\n")
        solver_study.plot_league(lg, os.path.join(args.out, "league.png"))
        write_atomic(os.path.join(args.out, "league.md"), markdown(doc))
        print(f"combined {len(studies)} studies of {', '.join(doc['solvers'])}")
        return
    solvers = check_list(args.solvers)
    i, k = (int(v) for v in args.part.split("/"))
    for j, (mix, path) in enumerate(zip(mixes, paths)):
        if j % k != i - 1 or os.path.exists(path):
            continue
        c = time.perf_counter(), time.process_time()
        res = solver_study.run(MixtureTarget(mix), steps, DELTA, T, samples=SAMPLES, seed=args.seed,
                               rate_samples=RATE_SAMPLES, train_samples=TRAIN_SAMPLES, solvers=solvers)
        res["timing"] = {"wall_s": time.perf_counter() - c[0], "cpu_s": time.process_time() - c[1],
                         "load": os.getloadavg()[0]}
        write_atomic(path, to_json(res) + "\n")
        print(f"{os.path.basename(path)}: {res['timing']['wall_s']:.0f} s wall, {res['timing']['cpu_s']:.0f} s CPU",
              flush=True)


if __name__ == "__main__":
    main()
