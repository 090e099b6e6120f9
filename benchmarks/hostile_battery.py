"""The hostile-input battery: every case runs the real `flowcert` command in a fresh folder, and is counted by kind.

    python benchmarks/hostile_battery.py [--kinds 1,2] [--json FILE] [--timeout 120] [--only NAME,...]

A case is a dict in one of the case modules beside this script (``battery_cases_*.py``, each a list ``CASES``):

    kind      the issue's kind number (0-12)
    name      a unique short name
    argv      the arguments after `flowcert`, with ``{tmp}`` (the case's folder) and the keys ``setup`` returns
    setup     optional callable(tmp: pathlib.Path) -> dict of substitutions: it plants files (a FIFO, a config
              with NaN, a pickle, ...) before the command runs
    expect    "refused": exit status 2 and exactly one line on standard error, starting with ``Error:``, no
              traceback, no library log line; "ok": exit status 0 (and ``check``, if given, returns None)
    check     optional callable(tmp, stdout, stderr) -> None or a string saying what is wrong
    env       optional extra environment; ``stdout``: optional path standard output is written to (/dev/full)

Outcomes: ``good``, ``exit0`` / ``exit1`` / ``exitN`` (a refused case with that status), ``lines`` (exit 2 but more
than one line, or library log lines), ``traceback``, ``timeout``, ``wrong`` (an "ok" case whose check failed or
that failed).  The table gives, per kind, how many cases end each way.  Run it against an older tree with
``PYTHONPATH`` pointing at it to get the "before" counts.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_cases() -> list[dict]:
    cases = []
    for path in sorted(glob.glob(str(HERE / "battery_cases_*.py"))):
        spec = importlib.util.spec_from_file_location(Path(path).stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        cases += mod.CASES
    names = [c["name"] for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit(f"duplicate case names: {sorted(dup)}")
    return cases


def run_case(case: dict, timeout: float) -> tuple[str, str]:
    with tempfile.TemporaryDirectory(prefix="flowcert-battery-") as tmp:
        tmp = Path(tmp)
        subs = {"tmp": str(tmp)}
        if case.get("setup"):
            subs.update(case["setup"](tmp) or {})
        argv = [a.format(**subs) for a in case["argv"]]
        env = dict(os.environ, **case.get("env", {}))
        out_path = case.get("stdout")
        try:
            with open(out_path, "wb") if out_path else open(tmp / ".stdout", "wb") as out:
                proc = subprocess.run([sys.executable, "-m", "flowcert.cli", *argv], stdout=out,
                                      stderr=subprocess.PIPE, cwd=tmp, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", f"killed after {timeout:g} s"
        stdout = "" if out_path else (tmp / ".stdout").read_text(errors="replace")
        stderr = proc.stderr.decode(errors="replace")
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        if "Traceback (most recent call last)" in stderr:
            return "traceback", lines[-1] if lines else ""
        if case["expect"] == "refused":
            if proc.returncode != 2:
                return f"exit{proc.returncode}", (lines[-1] if lines else stdout[-200:])
            if len(lines) != 1 or not lines[0].startswith("Error: ") or "internal error" in lines[0]:
                return "lines", " | ".join(lines)[:300]
            return "good", lines[0]
        if proc.returncode != 0:
            return "wrong", f"exit {proc.returncode}: " + (lines[-1] if lines else "")
        problem = case["check"](tmp, stdout, stderr) if case.get("check") else None
        return ("wrong", problem) if problem else ("good", "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=None, help="comma-separated kind numbers")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cases = load_cases()
    if a.kinds:
        kinds = {int(k) for k in a.kinds.split(",")}
        cases = [c for c in cases if c["kind"] in kinds]
    if a.only:
        only = set(a.only.split(","))
        cases = [c for c in cases if c["name"] in only]
    results, table = [], defaultdict(Counter)
    for c in cases:
        clock = time.time()
        outcome, detail = run_case(c, a.timeout)
        table[c["kind"]][outcome] += 1
        results.append({"kind": c["kind"], "name": c["name"], "expect": c["expect"], "outcome": outcome,
                        "detail": detail, "seconds": round(time.time() - clock, 2)})
        print(f"[{c['kind']:2d}] {c['name']:<48} {outcome:<9} {detail[:110]}", flush=True)
    outcomes = sorted({o for t in table.values() for o in t})
    print("\nkind  cases  " + "  ".join(f"{o:>9}" for o in outcomes))
    for k in sorted(table):
        print(f"{k:4d}  {sum(table[k].values()):5d}  " + "  ".join(f"{table[k][o]:9d}" for o in outcomes))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"results": results, "table": {k: dict(v) for k, v in table.items()}}, fh, indent=1)
    return 0 if all(r["outcome"] == "good" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
