"""Markdown tables of a league (benchmarks/league.py --combine): per solver the best closed form over the optimum
per N, each solver's full table, the budget table (K model evaluations), and the cases where a closed form beat
the optimal grid on the test batch.

    python benchmarks/league_tables.py benchmarks/results/league_new_solvers/league.json [--full SOLVER,...]
        [--budgets 4,8,16,32]
"""

from __future__ import annotations

import argparse
import json

from flowcert.numcore.solvers import SOLVERS
from flowcert.studies.solver_study import OPTIMAL


def fmt(v: float) -> str:
    return f"{v:.3g}"


def cell(c: dict, within: bool = False) -> str:
    ci = f" [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}]" if c.get("ci") else ""
    return fmt(c["geo_mean"]) + ci + (f" ({c['within']:.0%})" if within else "")


def summary(lg: dict) -> str:
    steps = list(next(iter(lg["table"].values())))
    out = ["| solver | " + " | ".join(f"N = {N}" for N in steps) + " |", "| --- |" + " --- |" * len(steps)]
    for solver, per in lg["table"].items():
        out.append(f"| {SOLVERS[solver].label} | " + " | ".join(
            f"{per[N]['best_baseline']} {cell(per[N]['grids'][per[N]['best_baseline']])}" for N in steps) + " |")
    return "\n".join(out)


def full(lg: dict, solver: str) -> str:
    per = lg["table"][solver]
    steps = list(per)
    out = [f"**{SOLVERS[solver].label}**", "", "| grid | " + " | ".join(f"N = {N}" for N in steps) + " |",
           "| --- |" + " --- |" * len(steps)]
    for g in per[steps[0]]["grids"]:
        out.append(f"| {g} | " + " | ".join(cell(per[N]["grids"][g], within=True) for N in steps) + " |")
    return "\n".join(out)


def budget(lg: dict) -> str:
    """Per K: the best candidate, then every solver's optimal grid (and its best closed form) against it."""
    out = ["| K evaluations | most accurate (relative MSE, geometric mean [95%]) | runner-up: its error over the best's (paired) | each solver's optimal grid over the best (paired) | best closed form over the best |",
           "| --- | --- | --- | --- | --- |"]
    for K, b in lg["budget"].items():
        cand = b["candidates"]
        best = cand[b["order"][0]]
        second = cand[b["order"][1]] if len(b["order"]) > 1 else None
        label = lambda c: f"{SOLVERS[c['solver']].label}, {c['grid']}"  # noqa: E731
        opts = sorted((c for c in cand.values() if c["grid"] == OPTIMAL), key=lambda c: c["vs_best"]["geo_mean"])
        closed = min((c for c in cand.values() if c["grid"] != OPTIMAL), key=lambda c: c["geo_mean"])
        out.append(f"| {K} | {label(best)}: {cell(best)} | " + (f"{label(second)}: x{cell(second['vs_best'])}"
                                                                 if second else "—") + " | "
                   + "; ".join(f"{SOLVERS[c['solver']].label} x{fmt(c['vs_best']['geo_mean'])}" for c in opts)
                   + f" | {label(closed)}: x{cell(closed['vs_best'])} |")
    return "\n".join(out)


def budget_matrix(lg: dict, budgets=None) -> str:
    """The budget table by solver: per K, each solver's optimal grid and its best closed form as relative MSE over
    the best candidate's at that K (paired geometric mean [95%]); the best in bold, '—' where the solver has no
    run with K evaluations (Heun at K = 4: N = 2 is not studied)."""
    Ks = [K for K in lg["budget"] if budgets is None or int(K) in budgets]
    seen = {c["solver"] for K in Ks for c in lg["budget"][K]["candidates"].values()}
    solvers = [s for s in SOLVERS if s in seen]  # the registry's order
    out = ["| solver, grid | " + " | ".join(f"K = {K}" for K in Ks) + " |", "| --- |" + " --- |" * len(Ks)]
    for solver in solvers:
        for kind in ("optimal", "closed"):
            cells = []
            for K in Ks:
                b = lg["budget"][K]
                c = [c for c in b["candidates"].values() if c["solver"] == solver
                     and (c["grid"] == OPTIMAL) == (kind == "optimal")]
                if not c:
                    cells.append("—")
                    continue
                c = c[0]
                text = (f"{fmt(c['geo_mean'])} [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}]"
                        if b["best"] == {"solver": c["solver"], "grid": c["grid"]} else cell(c["vs_best"]))
                name = "" if kind == "optimal" else f"{c['grid']} "
                best = b["best"] == {"solver": c["solver"], "grid": c["grid"]}
                cells.append(f"**{name}{text}**" if best else f"{name}x{text}")
            label = f"{SOLVERS[solver].label}, " + ("optimal" if kind == "optimal" else "best closed form")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def beaten(doc: dict) -> list[str]:
    lines = []
    for s in doc["studies"]:
        err = {(r["grid"], r["solver"], r["steps"]): r["rel_mse"] for r in s["rows"]}
        for solver in s["solvers"]:
            for N in s["steps"]:
                best = min((g for g in s["grids"] if g != OPTIMAL), key=lambda g: err[g, solver, N])
                ratio = err[best, solver, N] / err[OPTIMAL, solver, N]
                if ratio < 1:
                    lines.append(f"{s['mixture']} {solver} N={N}: {best} {ratio:.3g}")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("league")
    ap.add_argument("--full", default="", help="comma-separated solvers whose full table to print")
    ap.add_argument("--budgets", default=None, help="comma-separated K of the budget tables [default: all]")
    args = ap.parse_args()
    doc = json.load(open(args.league))
    lg = doc["league"]
    print(f"league over {len(lg['mixtures'])} mixtures: best closed form / optimal grid's relative MSE\n")
    print(summary(lg), "\n")
    for solver in filter(None, args.full.split(",")):
        print(full(lg, solver), "\n")
    print("budget\n")
    Ks = [int(K) for K in args.budgets.split(",")] if args.budgets else None
    if Ks:
        lg = {**lg, "budget": {K: b for K, b in lg["budget"].items() if int(K) in Ks}}
    print(budget(lg), "\n")
    print("budget by solver: the best's relative MSE (bold), the others' over it (paired)\n")
    print(budget_matrix(lg), "\n")
    cases = beaten(doc)
    n = sum(len(s["solvers"]) * len(s["steps"]) for s in doc["studies"])
    print(f"closed form beat the optimal grid on the test batch in {len(cases)} of {n} cases:")
    for line in cases:
        print("*", line)


if __name__ == "__main__":
    main()
