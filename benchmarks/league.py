"""The league of `flowcert solvers SPEC... --random M --seed S`, resumable and split into parts.

    python benchmarks/league.py OUT_DIR [--random 20] [--seed 0] [--part 1/2] [--builtins ring8,...]
    python benchmarks/league.py OUT_DIR --combine            # league.json (the command's JSON) and league.png

Each mixture's study is written to OUT_DIR/<i>-<name>.json as soon as it is done (a killed run continues where
it stopped); `--part i/k` takes every k-th mixture, so k processes can share the work.  The study of each mixture
is exactly the one `flowcert solvers` runs (`flowcert.studies.solver_study.run` with the command's defaults and
the same seed), so `--combine` gives the command's result.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from flowcert.studies import solver_study
from flowcert.numcore.io import to_json, write_atomic
from flowcert.numcore.mixture import BUILTINS, builtin, random_mixtures

STEPS = [4, 8, 16, 32]
DELTA, T = 1e-3, 5.0


def mixtures(args) -> list:
    names = args.builtins.split(",") if args.builtins else list(BUILTINS)
    return [builtin(n) for n in names] + random_mixtures(args.random, args.seed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--builtins", default=None)
    ap.add_argument("--part", default="1/1")
    ap.add_argument("--combine", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    mixes = mixtures(args)
    paths = [os.path.join(args.out, f"{i:02d}-{m.name}.json") for i, m in enumerate(mixes)]
    if args.combine:
        studies = [json.load(open(p)) for p in paths]
        lg = solver_study.league(studies)
        doc = {"studies": studies, "league": lg, "random": args.random, "seed": args.seed, "steps": STEPS,
               "samples": studies[0]["samples"], "train_samples": studies[0]["optimal"]["train_samples"],
               "delta": DELTA, "T": T}
        write_atomic(os.path.join(args.out, "league.json"), to_json(doc) + "\n")
        solver_study.plot_league(lg, os.path.join(args.out, "league.png"))
        print(f"combined {len(studies)} studies")
        return
    i, k = (int(v) for v in args.part.split("/"))
    for j, (mix, path) in enumerate(zip(mixes, paths)):
        if j % k != i - 1 or os.path.exists(path):
            continue
        c = time.perf_counter(), time.process_time()
        res = solver_study.run(mix, STEPS, DELTA, T, samples=10000, seed=args.seed, empirical_samples=4096)
        res["timing"] = {"wall_s": time.perf_counter() - c[0], "cpu_s": time.process_time() - c[1],
                         "load": os.getloadavg()[0]}
        write_atomic(path, to_json(res) + "\n")
        print(f"{os.path.basename(path)}: {res['timing']['wall_s']:.0f} s wall, {res['timing']['cpu_s']:.0f} s CPU",
              flush=True)


if __name__ == "__main__":
    main()
