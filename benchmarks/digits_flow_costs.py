"""The costs (model evaluations and seconds) of `lipschitz` and `grid --kind optimal` on the digits-flow model.

    nice python benchmarks/digits_flow_costs.py OUT.json [--merged]

Runs the real commands, one after the other, each with --threads 1 and --format json:

    flowcert lipschitz --model digits-flow --class-label 3 --guidance 2
    flowcert grid --model digits-flow --class-label 3 --kind optimal --steps 8 --solver euler

With ``--merged`` the model options are those of the issue-19 loaders; without, the same models through the local
wrapper (``--model benchmarks/digits_flow_local.py:class3_w2`` and ``:class3_w1``).  Records each command's own
cost fields (network passes per sample of the E||J|| table; model evaluations and seconds of the teacher and the
search), its wall and CPU seconds and the load average before and after.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


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


def main() -> None:
    out = sys.argv[1]
    merged = "--merged" in sys.argv
    if merged:
        lip = ["--model", "digits-flow", "--class-label", "3", "--guidance", "2"]
        opt = ["--model", "digits-flow", "--class-label", "3"]
    else:
        lip = ["--model", os.path.join(HERE, "digits_flow_local.py") + ":class3_w2"]
        opt = ["--model", os.path.join(HERE, "digits_flow_local.py") + ":class3_w1"]
    doc = {"merged": merged}
    doc["lipschitz"] = run(["lipschitz", *lip])
    res = doc["lipschitz"]["result"]
    print(f"lipschitz: {res.get('passes')} network passes per sample x {res.get('samples', 256)} samples; "
          f"{doc['lipschitz']['wall_seconds']:.0f} s wall, {doc['lipschitz']['cpu_seconds']:.0f} s CPU", flush=True)
    doc["grid_optimal"] = run(["grid", *opt, "--kind", "optimal", "--steps", "8", "--solver", "euler"])
    cost = doc["grid_optimal"]["result"].get("optimal", {}).get("cost")
    print(f"grid --kind optimal: {json.dumps(cost)}; {doc['grid_optimal']['wall_seconds']:.0f} s wall, "
          f"{doc['grid_optimal']['cpu_seconds']:.0f} s CPU", flush=True)
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
