"""Same numbers before and after a change of layout: run a fixed set of commands, keep their JSON, compare.

    python benchmarks/layout_parity.py run DIR [--quick]     # the commands' JSON outputs into DIR
    python benchmarks/layout_parity.py compare OLD NEW       # every number of OLD against NEW

`run` calls the installed `flowcert` (or the one on PYTHONPATH) as a user would:

* `grid ring8 --steps 8` for every grid kind (balanced under tri, sharp and empirical; `optimal` for
  every solver the command offers) and `--for` every preset (the winning export);
* `grid --model mixture:ring8` (the model path on the exact mixture): a closed form and an optimal grid;
* `solvers ring8 --steps 4,8`;
* `lipschitz --model digits --points 3`;
* `validate ring8 --preset quick` (its `results.json`).

`compare` walks both JSON trees: strings, integers, booleans and shapes must be equal, and floats equal to
`--rtol` relative (default 1e-12; `--atol` for values near 0), except fields that measure time
(`seconds`, `wall_seconds`, `model_calls`/`evaluations` of a search are numbers, not times, and are compared).
It prints every difference with its path and exits with status 1 when there is one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

TIMING = {"seconds", "wall_seconds", "cpu_seconds", "elapsed", "time_s", "wall", "started", "finished",
          "created", "version", "flowcert_version", "out", "folder", "path", "scheduler_config", "source",
          "blocks_per_second", "samples_per_second", "timing"}


# torch's global generator seeded first: a command that draws from it (before the seeding fix of
# `lipschitz --model`'s Lanczos start) gives the same numbers in both runs
SEEDED_CLI = ("import sys\ntry:\n    import torch\n    torch.manual_seed(0)\nexcept ImportError:\n    pass\n"
              "from flowcert.cli import main\nsys.argv[0] = 'flowcert'\nmain()")


def commands(quick: bool) -> dict:
    """{name: argv after `flowcert`}; the JSON is read from standard output (or a results file)."""
    out = {}
    for kind in ("balanced", "uniform", "edm", "logsnr", "kl-optimal"):
        out[f"grid-{kind}"] = ["grid", "ring8", "--steps", "8", "--kind", kind, "--units", "sigma",
                               "--format", "json"]
    for bound in ("sharp", "empirical"):
        out[f"grid-balanced-{bound}"] = ["grid", "ring8", "--steps", "8", "--bound", bound, "--format", "json"]
    for solver in ("euler", "heun", "dpmpp_2m"):
        out[f"grid-optimal-{solver}"] = ["grid", "ring8", "--steps", "4" if quick else "8", "--kind", "optimal",
                                         "--solver", solver, "--format", "json"]
    for preset in ("diffusers-euler", "diffusers-edm", "diffusers-flowmatch", "diffusers-timesteps", "k-diffusion",
                   "comfyui"):
        out[f"grid-for-{preset}"] = ["grid", "ring8", "--steps", "4" if quick else "8", "--for", preset,
                                     "--format", "json"]
    out["grid-for-logsnr-comfyui"] = ["grid", "ring8", "--steps", "8", "--kind", "logsnr", "--for", "comfyui",
                                      "--format", "json"]
    out["model-grid-logsnr"] = ["grid", "--model", "mixture:ring8", "--steps", "8", "--kind", "logsnr",
                                "--format", "json"]
    out["model-grid-optimal"] = ["grid", "--model", "mixture:ring8", "--steps", "4", "--kind", "optimal",
                                 "--solver", "dpmpp_2m", "--train-samples", "32", "--test-samples", "32",
                                 "--teacher-steps", "16", "--format", "json", "--threads", "1"]
    out["solvers"] = ["solvers", "ring8", "--steps", "4" if quick else "4,8", "--format", "json"]
    out["lipschitz-model"] = ["lipschitz", "--model", "digits", "--points", "3", "--format", "json", "--threads", "1"]
    if not quick:
        out["validate-quick"] = ["validate", "ring8", "--preset", "quick", "--quiet", "--no-plots"]
    return out


def run(folder: str, quick: bool, only: list[str] | None) -> None:
    os.makedirs(folder, exist_ok=True)
    env = dict(os.environ, PYTHONHASHSEED="0")
    for name, argv in commands(quick).items():
        if only and name not in only:
            continue
        clock = time.time()
        if name == "validate-quick":
            run_dir = os.path.join(folder, "validate-run")
            argv = argv + ["--out", run_dir]
        proc = subprocess.run([sys.executable, "-c", SEEDED_CLI, *argv], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"{name}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        if name == "validate-quick":
            with open(os.path.join(run_dir, "results.json")) as fh:
                text = fh.read()
        else:
            text = proc.stdout
        with open(os.path.join(folder, f"{name}.json"), "w") as fh:
            fh.write(text)
        print(f"{name}: {time.time() - clock:.1f} s")


def _walk(a, b, path, rtol, atol, diffs):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in TIMING:
                continue
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'new' if k not in a else 'old'}")
                continue
            _walk(a[k], b[k], f"{path}/{k}", rtol, atol, diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{path}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{path}[{i}]", rtol, atol, diffs)
    elif isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str) or a is None \
            or b is None:
        if a != b:
            diffs.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        x, y = float(a), float(b)
        if math.isnan(x) and math.isnan(y):
            return
        if not math.isclose(x, y, rel_tol=rtol, abs_tol=atol):
            rel = abs(x - y) / max(abs(x), abs(y), 1e-300)
            diffs.append(f"{path}: {x!r} != {y!r} (relative {rel:.2e})")
    elif a != b:
        diffs.append(f"{path}: {a!r} != {b!r}")


def compare(old: str, new: str, rtol: float, atol: float) -> int:
    bad = 0
    for name in sorted(os.listdir(old)):
        if not name.endswith(".json"):
            continue
        p = os.path.join(new, name)
        if not os.path.exists(p):
            print(f"{name}: missing in {new}")
            bad += 1
            continue
        with open(os.path.join(old, name)) as fa, open(p) as fb:
            a, b = json.load(fa), json.load(fb)
        diffs: list[str] = []
        _walk(a, b, "", rtol, atol, diffs)
        worst = max((float(d.rsplit("relative ", 1)[1].rstrip(")")) for d in diffs if "relative" in d), default=0.0)
        print(f"{name}: {'same' if not diffs else f'{len(diffs)} differences (largest relative {worst:.2e})'}")
        for d in diffs[:20]:
            print("   ", d)
        bad += bool(diffs)
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("folder")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--only", default=None, help="comma-separated command names")
    c = sub.add_parser("compare")
    c.add_argument("old")
    c.add_argument("new")
    c.add_argument("--rtol", type=float, default=1e-12)
    c.add_argument("--atol", type=float, default=1e-300)
    args = ap.parse_args()
    if args.what == "run":
        run(args.folder, args.quick, args.only.split(",") if args.only else None)
        return 0
    return compare(args.old, args.new, args.rtol, args.atol)


if __name__ == "__main__":
    sys.exit(main())
