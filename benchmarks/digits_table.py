"""The digits results table of docs/results.md from ``flowcert solvers --model ... --format json`` output.

    flowcert solvers --model digits --steps 4,8,16 --samples 512 --data examples/digits/assets/data/train.npy \\
        --reference examples/digits/assets/data/test.npy --format json -o solvers_digits.json
    python benchmarks/digits_table.py solvers_digits.json [--readme] [--optimal optimal_digits.json]

Prints, for Euler and DPM-Solver++(2M) at each N, every grid's relative MSE to the model's teacher (95%
interval) and sliced W2 to the held-out digits (bootstrap 95% interval), the best of each column in bold.
``--optimal`` adds the rows of ``benchmarks/digits_optimal.py`` (each solver's optimal grid, measured on the
same test batch; Heun's cells then show only the study's grids).
"""

from __future__ import annotations

import json
import sys

ORDER = ("optimal", "gits", "balanced-empirical", "kl-optimal", "logsnr", "edm", "uniform")


def compact(res: dict) -> None:
    """Two tables (relative MSE, SW2), rows = grids, columns = solver x N, intervals in brackets (README)."""
    rows = {(r["grid"], r["solver"], r["steps"]): r for r in res["rows"]}
    grids = [g for g in ORDER if g in res["grids"]] + [g for g in res["grids"] if g not in ORDER]
    cols = [(s, n) for s in ("euler", "dpmpp_2m") for n in res["steps"]]
    name = {"euler": "Euler", "dpmpp_2m": "DPM++(2M)"}
    for key, ci, fmt, what in (("rel_mse", "rel_mse_ci", "{:.2g}", "relative MSE to the model's own teacher"),
                               ("sw", "sw_ci", "{:.3f}", "sliced W2 to the 360 held-out digits")):
        print(f"\n{what} [95% CI]:\n")
        print("| grid | " + " | ".join(f"{name[s]} N={n}" for s, n in cols) + " |")
        print("| --- |" + " --- |" * len(cols))
        best = {c: min(rows[g, c[0], c[1]][key] for g in grids) for c in cols}
        for g in grids:
            cells = []
            for c in cols:
                r = rows[g, c[0], c[1]]
                text = f"{fmt.format(r[key])} [{fmt.format(r[ci][0])}, {fmt.format(r[ci][1])}]"
                cells.append(f"**{text}**" if r[key] == best[c] else text)
            print(f"| {g} | " + " | ".join(cells) + " |")


def main(path: str) -> None:
    res = json.load(open(path))
    if "--optimal" in sys.argv:
        extra = json.load(open(sys.argv[sys.argv.index("--optimal") + 1]))
        res["rows"] = [r for r in res["rows"] if r["grid"] != "optimal"] + extra["rows"]
        res["grids"] = ["optimal"] + [g for g in res["grids"] if g != "optimal"]
    if "--readme" in sys.argv:
        compact(res)
        return
    rows = {(r["grid"], r["solver"], r["steps"]): r for r in res["rows"]}
    grids = [g for g in ORDER if g in res["grids"]] + [g for g in res["grids"] if g not in ORDER]
    for solver, name in (("euler", "Euler"), ("dpmpp_2m", "DPM-Solver++(2M)")):
        print(f"\n**{name}** (relative MSE to the teacher [95% CI]; SW2 to held-out digits [95% CI])\n")
        print("| grid | " + " | ".join(f"N = {n}: rel. MSE | N = {n}: SW2" for n in res["steps"]) + " |")
        print("| --- |" + " --- | --- |" * len(res["steps"]))
        best = {n: min(rows[g, solver, n]["rel_mse"] for g in grids) for n in res["steps"]}
        best_sw = {n: min(rows[g, solver, n]["sw"] for g in grids) for n in res["steps"]}
        for g in grids:
            cells = []
            for n in res["steps"]:
                r = rows[g, solver, n]
                e = f"{r['rel_mse']:.3g} [{r['rel_mse_ci'][0]:.2g}, {r['rel_mse_ci'][1]:.2g}]"
                w = f"{r['sw']:.3f} [{r['sw_ci'][0]:.3f}, {r['sw_ci'][1]:.3f}]"
                cells += [f"**{e}**" if r["rel_mse"] == best[n] else e, f"**{w}**" if r["sw"] == best_sw[n] else w]
            print(f"| {g} | " + " | ".join(cells) + " |")
    te, fl = res["teacher"], res["sw_floor"]
    print(f"\nteacher: {te['steps']} RK4 steps ({te['nfe']} evaluations), self-convergence "
          f"{te['self_convergence']['rel_mse']:.2g}; teacher's SW2 {fl['value']:.3f} "
          f"[{fl['ci'][0]:.3f}, {fl['ci'][1]:.3f}], training data's {fl['data']['value']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
