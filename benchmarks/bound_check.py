"""Are the Lipschitz bounds bounds, and how tight are they?  A check on random mixtures at scale.

    python benchmarks/bound_check.py --quick            # 20 mixtures, small oracle (the tests run this)
    python benchmarks/bound_check.py --mixtures 1000    # the full check (resumable: --out FILE.jsonl)

Mixtures: structure i % 5 of (iso, shared, iso_k, diag_k, full_k), d in 1..8, K in 2..8, variances
log-uniform in [0.01, 1.5], means N(0, 2^2), Dirichlet(2) weights (tests/conftest.random_spec), seed 7
unless --seed.  Times t in {1e-3, 1e-2, 0.1, 1}.

Oracle (numcore.empirical.jacobian_stats): samples of p_t, dense and refined points on the lines through
every pair of scaled means, and (refine > 0) projected gradient ascent of ||J||_op and of
lambda_max(-J) inside the ball ||x|| <= R(t) from the best of those points and from random points in
and on the ball.  For ball-local bounds only points inside the ball count.

Printed: violations per bound (brute force above the bound beyond relative 1e-9), and the quantiles of
sup / bound (``sharp``, ``tri``) and growth sup / bound (``onesided``, where the bound is > 0) per
structure.  Closer to 1 is tighter; above 1 would be a violation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

STRUCTURES = ("iso", "shared", "iso_k", "diag_k", "full_k")
TIMES = (1e-3, 1e-2, 0.1, 1.0)
QUICK = dict(mixtures=10, samples=400, per_segment=33, refine=8)
FULL = dict(mixtures=1000, samples=1500, per_segment=65, refine=24)


def check_one(i: int, seed: int, samples: int, per_segment: int, refine: int) -> list[dict]:
    """Rows (one per time) for mixture i of the sequence."""
    from conftest import random_spec

    from flowcert.bounds.lipschitz import LipschitzBound
    from flowcert.numcore.empirical import jacobian_stats
    from flowcert.numcore.mixture import from_spec

    rng = np.random.default_rng([seed, i])
    structure = STRUCTURES[i % len(STRUCTURES)]
    d, K = int(rng.integers(1, 9)), int(rng.integers(2, 9))
    mix = from_spec(random_spec(rng, d, K, structure, var_lo=0.01, var_hi=1.5), name=f"{structure}-{i}")
    lb = LipschitzBound(mix)
    rows = []
    for j, t in enumerate(TIMES):
        R = float(lb.radius(t)[0]) if lb.scope == "ball" else None
        r = jacobian_stats(mix, t, samples, np.random.default_rng([seed, i, j]), per_segment=per_segment,
                           radius=R, refine=refine)
        b = {w: float(lb(t, w)[0]) for w in ("sharp", "tri", "onesided")}
        rows.append({"i": i, "structure": structure, "scope": lb.scope, "d": d, "K": K, "t": t, "sup": r.sup,
                     "growth_sup": r.sup_growth, **b})
    return rows


def violations(rows) -> dict:
    out = {}
    for w in ("sharp", "tri", "onesided"):
        ref = "growth_sup" if w == "onesided" else "sup"
        out[w] = sum(1 for r in rows if r[ref] > r[w] * (1 + 1e-9) + 1e-9 * abs(r[w]) + 1e-12)
    return out


def tightness(rows) -> dict:
    """{structure: {bound: quantiles of reference / bound}} (onesided only where its bound is > 0)."""
    out = {}
    for s in STRUCTURES:
        rr = [r for r in rows if r["structure"] == s]
        if not rr:
            continue
        out[s] = {"mixture_times": len(rr), "mixtures": len({r["i"] for r in rr})}
        for w in ("sharp", "tri", "onesided"):
            ref = "growth_sup" if w == "onesided" else "sup"
            v = np.array([r[ref] / r[w] for r in rr if r[w] > 0])
            q = np.quantile(v, [0.0, 0.1, 0.5, 0.9, 1.0]) if v.size else [np.nan] * 5
            out[s][w] = dict(zip(("min", "q10", "median", "q90", "max"), map(float, q)), n=int(v.size))
    return out


def run(mixtures: int, samples: int, per_segment: int, refine: int, seed: int = 7, out: str | None = None,
        progress: bool = False, part: tuple = (0, 1)) -> dict:
    """Check ``mixtures`` random mixtures; with ``out`` (a .jsonl file) finished mixtures are kept and
    skipped on the next call (resumable).  ``part`` = (i, p) checks only mixtures i, i + p, i + 2p, ...
    (run p processes, then one more call without ``part`` on the concatenated rows to summarise)."""
    done = {}
    if out and os.path.exists(out):
        with open(out) as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    done.setdefault(r["i"], []).append(r)
    rows = []
    t0 = time.perf_counter()
    fh = open(out, "a") if out else None
    try:
        for i in range(mixtures):
            if i % part[1] != part[0] and not (i in done and len(done[i]) == len(TIMES)):
                continue
            if i in done and len(done[i]) == len(TIMES):
                rows += done[i]
                continue
            new = check_one(i, seed, samples, per_segment, refine)
            rows += new
            if fh:
                fh.write("".join(json.dumps(r) + "\n" for r in new))
                fh.flush()
            if progress and (i + 1) % 10 == 0:
                print(f"  {i + 1}/{mixtures} mixtures, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    finally:
        if fh:
            fh.close()
    return {"mixtures": mixtures, "samples": samples, "per_segment": per_segment, "refine": refine, "seed": seed,
            "times": list(TIMES), "violations": violations(rows), "tightness": tightness(rows),
            "seconds": time.perf_counter() - t0, "rows": len(rows)}


def markdown(res: dict) -> str:
    lines = [f"{res['mixtures']} random mixtures x {len(res['times'])} times (t in {res['times']}); oracle: "
             f"{res['samples']} samples, {res['per_segment']} points per mean line, {res['refine']} local-max starts",
             "violations: " + ", ".join(f"{w} {n}" for w, n in res["violations"].items()), "",
             "| structure | mixtures | bound | min | q10 | median | q90 | max |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for s, v in res["tightness"].items():
        for w in ("sharp", "tri", "onesided"):
            q = v[w]
            lines.append(f"| {s} | {v['mixtures']} | {w} | {q['min']:.3g} | {q['q10']:.3g} | {q['median']:.3g} | "
                         f"{q['q90']:.3g} | {q['max']:.3g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small setting the tests use")
    ap.add_argument("--mixtures", type=int, default=None)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--refine", type=int, default=None)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None, help="rows as JSON lines (resumable)")
    ap.add_argument("--json", default=None, help="write the summary as JSON")
    ap.add_argument("--part", default="0/1", help="I/P: only mixtures i with i %% P == I (for parallel processes)")
    a = ap.parse_args(argv)
    cfg = dict(QUICK if a.quick else FULL)
    for k in ("mixtures", "samples", "refine"):
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    part = tuple(int(v) for v in a.part.split("/"))
    res = run(**cfg, seed=a.seed, out=a.out, progress=True, part=part)
    print(markdown(res))
    print(f"\n{res['seconds']:.0f} s")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 1 if any(res["violations"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
