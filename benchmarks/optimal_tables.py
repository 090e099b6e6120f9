"""Markdown tables for docs/results.md and README.md from the outputs of the optimal-grid runs.

    python benchmarks/optimal_tables.py league.json [bench.json ...]

league.json: `flowcert solvers SPEC... --random M --format json -o league.json`;
bench.json:  `python benchmarks/bench_optimal.py --json bench.json` (any parts).
"""

from __future__ import annotations

import json
import sys

from flowcert.numcore.solvers import SOLVERS

NAMES = {name: s.label for name, s in SOLVERS.items()}


def ratio(cell) -> str:
    ci = f" [{cell['ci'][0]:.3g}, {cell['ci'][1]:.3g}]" if cell.get("ci") else ""
    return f"{cell['geo_mean']:.3g}{ci} ({100 * cell['within']:.0f}%)"


def league_tables(lg: dict, studies: list) -> str:
    out = [f"League over {len(lg['mixtures'])} mixtures: relative MSE / optimal grid's, geometric mean over the "
           "mixtures [95% interval] (share of mixtures within 1.1x of the optimum).", ""]
    for solver, per in lg["table"].items():
        steps = list(per)
        grids = list(per[steps[0]]["grids"])
        out += [f"**{NAMES[solver]}**", "", "| grid | " + " | ".join(f"N = {N}" for N in steps) + " |",
                "| --- |" + " --- |" * len(steps)]
        for g in grids:
            out.append(f"| {g} | " + " | ".join(ratio(per[N]["grids"][g]) for N in steps) + " |")
        out.append("")
    out += ["Headline (README): the best closed form per solver and N, its ratio to the optimal grid.", "",
            "| solver | " + " | ".join(f"N = {N}" for N in steps) + " |", "| --- |" + " --- |" * len(steps)]
    for solver, per in lg["table"].items():
        out.append(f"| {NAMES[solver]} | " + " | ".join(
            f"{per[N]['best_baseline']} {ratio(per[N]['grids'][per[N]['best_baseline']])}" for N in steps) + " |")
    below = []
    for s in studies:
        for solver, byN in s["summary"].items():
            for N, cell in byN.get("vs_optimal", {}).items():
                worse = {g: v for g, v in cell.items() if v < 1.0}
                if worse:
                    below.append(f"{s['mixture']} {solver} N={N}: " + ", ".join(f"{g} {v:.3g}" for g, v in worse.items()))
    out += ["", f"Cases where a grid beat the optimal one on the test batch ({len(below)}):", ""]
    out += [f"* {b}" for b in below]
    return "\n".join(out)


def ci(c) -> str:
    return f" [{c[0]:.3g}, {c[1]:.3g}]" if c else ""


def export_table(rows: list) -> str:
    out = ["| mixture | solver (preset) | N | default export | best closed form | closed form / default | "
           "longer search | default / longer | export wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["errors"]
        out.append(f"| {r['mixture']} | {NAMES[r['solver']]} ({r['preset']}) | {r['N']} | {r['kind']} "
                   f"{e['default']['rel_mse']:.3g} | {r['best_baseline']} {e[r['best_baseline']]['rel_mse']:.3g} | "
                   f"{r['gain_over_best_baseline']:.3g}{ci(r.get('gain_ci'))} | {e['longer']['rel_mse']:.3g} | "
                   f"{r['default_over_longer']:.3f}{ci(r.get('default_over_longer_ci'))} | {r['export_wall_s']:.1f} |")
    return "\n".join(out)


def search_table(rows: list) -> str:
    out = ["| mixture | solver | N | search wall s | search CPU s | evaluations | with exact trajectories, wall s |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['mixture']} | {NAMES[r['solver']]} | {r['N']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                   f"{r['evaluations']} | {r['teacher_wall_s'] + r['wall_s']:.2f} |")
    return "\n".join(out)


def main():
    for path in sys.argv[1:]:
        doc = json.load(open(path))
        if "league" in doc:
            print(league_tables(doc["league"], doc.get("studies", [doc])))
        if "exports" in doc:
            print(export_table(doc["exports"]))
        if "search" in doc:
            print(search_table(doc["search"]))
        for key in ("teacher", "solvers"):
            if key in doc:
                print(key, json.dumps(doc[key], indent=1))
        print()


if __name__ == "__main__":
    main()
