"""Which torch thread count should the model commands use by default?  Wall time of two model workloads with 1 and 2
torch threads, on an idle machine and on one loaded with busy loops (issue 22, kind 11).

    python benchmarks/thread_default.py [--threads 1,2] [--loads 0,2] [--what lipschitz,snippet]
                                        [--timeout 600] [--points 4] [--json benchmarks/results/thread_default.json]

Workloads (each a fresh process, so torch starts with the given threads; wall time of the whole process):

* ``lipschitz``: ``flowcert lipschitz --model digits --points 4 --threads T`` (the shipped UNet, 256 samples per time
  from its own ODE, Lanczos on J^T J);
* ``snippet``: README's model lines, ``m = flowcert.load_model("digits")`` and
  ``flowcert.model_grid(m, steps=8, data=<digits train.npy>, threads=T)`` (the balanced grid: 40 times x 256
  samples).

A load of k starts k busy loops (``while True: pass`` in k Python processes) before the runs and stops them after;
the load average before each run is recorded.  A run past ``--timeout`` is stopped and reported as ``> timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SNIPPET = """
import flowcert, os, time
from flowcert.models.loaders import builtin_folder
m = flowcert.load_model("digits")
data = os.path.join(builtin_folder("digits"), "data", "train.npy")
gm = flowcert.model_grid(m, steps=8, data=data, threads={threads})
"""


POINTS = 4  # --points of the lipschitz workload (set by the option of the same name)


def command(what: str, threads: int) -> list[str]:
    if what == "lipschitz":
        return [sys.executable, "-m", "flowcert.cli", "lipschitz", "--model", "digits", "--points", str(POINTS), "--threads",
                str(threads), "--format", "json"]
    if what == "snippet":
        return [sys.executable, "-c", SNIPPET.format(threads=threads)]
    raise SystemExit(f"unknown workload {what!r}")


def busy(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:  # only the loops this script started, by their own handles
        p.terminate()
    for p in procs:
        p.wait(10)


def run(what: str, threads: int, timeout: float) -> dict:
    load = os.getloadavg()[0]
    clock = time.perf_counter()
    try:
        r = subprocess.run(command(what, threads), capture_output=True, timeout=timeout)
        seconds, status = time.perf_counter() - clock, r.returncode
        error = r.stderr.decode(errors="replace").strip().splitlines()[-1:] if r.returncode else []
    except subprocess.TimeoutExpired:
        seconds, status, error = None, "timeout", []
    return {"what": what, "threads": threads, "seconds": seconds, "status": status, "load_average_before": load,
            "error": error}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--loads", default="0,2", help="busy loops running during the runs (comma-separated)")
    ap.add_argument("--what", default="lipschitz,snippet")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--points", type=int, default=4, help="--points of the lipschitz workload")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    global POINTS
    POINTS = a.points
    threads = [int(t) for t in a.threads.split(",")]
    rows = []
    for load in (int(k) for k in a.loads.split(",")):
        loops = busy(load)
        try:
            time.sleep(5 if load else 0)
            for what in a.what.split(","):
                for t in threads:
                    row = {"busy_loops": load, **run(what, t, a.timeout)}
                    rows.append(row)
                    shown = "> %g" % a.timeout if row["seconds"] is None else "%.1f" % row["seconds"]
                    print(f"busy loops {load}  {what:<9}  threads {t}  {shown:>8} s  (load average before "
                          f"{row['load_average_before']:.2f}){'  ' + ' '.join(row['error']) if row['error'] else ''}",
                          flush=True)
        finally:
            stop(loops)
    doc = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "timeout": a.timeout,
           "points": a.points, "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
