"""How tight are the Lipschitz bounds?  brute-force sup ||J||_op / bound, per mixture and time.

    python benchmarks/tightness.py [--random 40]

Brute force: 20000 samples of p_t plus dense and refined points on the lines
through pairs of means (numcore.empirical).  Ratios <= 1 always (the bounds are
bounds); closer to 1 is tighter.  Also the p_t-mean of ||J|| relative to the sup.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from flowcert.bounds.lipschitz import LipschitzBound  # noqa: E402
from flowcert.numcore.empirical import jacobian_stats  # noqa: E402
from flowcert.numcore.mixture import BUILTINS, builtin, from_spec  # noqa: E402

TIMES = (1e-3, 1e-2, 0.1, 1.0)


def ratios(mix, n=20000):
    lb = LipschitzBound(mix)
    out = []
    for t in TIMES:
        R = lb.radius(t)[0] if lb.scope == "ball" else None
        r = jacobian_stats(mix, t, n, 0, radius=R)
        out.append((t, r.sup / lb(t, "sharp")[0], r.sup / lb(t, "tri")[0], r.mean / r.sup))
    return lb.scope, out


def main():
    print("| mixture | scope | t | sup/L_sharp | sup/L_tri | mean/sup |")
    print("|---|---|---:|---:|---:|---:|")
    for name in BUILTINS:
        scope, rows = ratios(builtin(name))
        for t, rs, rt, ms in rows:
            print(f"| {name} | {scope} | {t:g} | {rs:.3f} | {rt:.3f} | {ms:.3f} |")
    nrand = int(sys.argv[sys.argv.index("--random") + 1]) if "--random" in sys.argv else 40
    from conftest import random_spec

    rng = np.random.default_rng(1)
    agg = {}
    for i in range(nrand):
        structure = ("iso", "shared", "iso_k", "full_k")[i % 4]
        d, K = int(rng.integers(1, 9)), int(rng.integers(2, 9))
        mix = from_spec(random_spec(rng, d, K, structure))
        scope, rows = ratios(mix, 5000)
        for t, rs, rt, ms in rows:
            agg.setdefault((structure, scope), []).append((rs, rt, ms))
    print(f"\nrandom mixtures (d 1..8, K 2..8, variances 0.05..1.5, t in {TIMES}):")
    print("| covariance | scope | cases | sup/L_sharp min / median / max | sup/L_tri median | mean/sup median |")
    print("|---|---|---:|---|---:|---:|")
    for (structure, scope), v in agg.items():
        v = np.array(v)
        print(f"| {structure} | {scope} | {len(v)} | {v[:, 0].min():.3f} / {np.median(v[:, 0]):.3f} / "
              f"{v[:, 0].max():.3f} | {np.median(v[:, 1]):.3f} | {np.median(v[:, 2]):.3f} |")


if __name__ == "__main__":
    main()
