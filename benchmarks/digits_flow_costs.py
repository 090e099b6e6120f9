"""The costs (model evaluations and seconds) of `lipschitz` and `grid --kind optimal` on the digits-flow model.

    nice python benchmarks/digits_flow_costs.py OUT.json

Runs the real commands, one after the other, each with --threads 1 and --format json:

    flowcert lipschitz --model digits-flow --class-label 3 --guidance 2
    flowcert grid --model digits-flow --class-label 3 --kind optimal --steps 8 --solver euler

Records each command's own cost fields (network passes per sample of the E||J|| table; model evaluations and seconds of the teacher and the
search), its wall and CPU seconds and the load average before and after.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time



def run(args: list[str]) -> dict:
    before, clock = os.getloadavg(), time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-m", "flowcert.cli", *args, "--threads", "1", "--format", "json"],
                       capture_output=True, text=True)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    return {"command": "flowcert " + " ".join(args), "wall_seconds": time.perf_counter() - clock,
            "cpu_seconds": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
            "load_before": before, "load_after": os.getloadavg(), "result": json.loads(r.stdout)}


def costs(doc, path=()) -> dict:
    """Every field of a command's JSON whose name says it is a cost (evaluations, passes, seconds, cost), by path."""
    out = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            p = (*path, str(k))
            if any(w in str(k) for w in ("evaluation", "passes", "seconds", "cost", "nfe")) and not isinstance(v, dict):
                out["/".join(p)] = v
            else:
                out.update(costs(v, p))
    return out


def main() -> None:
    out = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else "digits-flow"
    commands = {"lipschitz": ["lipschitz", "--model", model, "--class-label", "3", "--guidance", "2"],
                "grid_optimal": ["grid", "--model", model, "--class-label", "3", "--kind", "optimal", "--steps", "8", "--solver", "euler"]}
    doc = json.load(open(out)) if os.path.exists(out) else {}
    for key, args in commands.items():
        if key not in doc:  # resumable: a finished command is kept
            doc[key] = run(args)
            doc[key]["costs"] = costs(doc[key]["result"])
            with open(out + ".tmp", "w") as fh:
                json.dump(doc, fh, indent=1)
            os.replace(out + ".tmp", out)
        r = doc[key]
        print(f"{r['command']}: {r['wall_seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU, load "
              f"{r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}; {json.dumps(r['costs'])}", flush=True)


if __name__ == "__main__":
    main()
