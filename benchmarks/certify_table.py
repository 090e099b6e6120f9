"""The verification table of README.certify.md: certified sizes vs measured error, several mixtures.

    python benchmarks/certify_table.py [--n 200000] [--window]

For each mixture, time and eps: the tight certificate (depth, width, params), the
closed-form params, the measured L^2(p_t) error of the materialized network on n
samples with its 95% CI, and the slack eps / ci_high.  With --window also the
time-input networks on [1e-3, 5], verified at 5 geometric times.
"""

from __future__ import annotations

import argparse
import os
import sys


from flowcert.bounds.certificate import certify  # noqa: E402
from flowcert.bounds.certificate_time import certify_window, verify_window  # noqa: E402
from flowcert.bounds.verification import verify  # noqa: E402
from flowcert.numcore.mixture import builtin  # noqa: E402

MIXTURES = ("ring8", "modes8d", "aniso3", "hetero3")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--window", action="store_true")
    ap.add_argument("--p", type=float, default=2.0)
    args = ap.parse_args()
    print("| mixture | t | eps | depth | width | params (tight) | params (closed) | shrink | mc_error [95% CI] | slack eps/ci_high |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in MIXTURES:
        mix = builtin(name)
        for t in (1e-3, 0.05, 1.0):
            for eps in (1e-2, 1e-4, 1e-6):
                c = certify(mix, t, eps, args.p, "tight")
                o = certify(mix, t, eps, args.p, "closed")
                net = c.build()
                assert (net.depth, net.width, net.params) == (c.depth, c.width, c.params)
                r = verify(c, net, args.n, seed=0)
                print(f"| {name} | {t:g} | {eps:g} | {c.depth} | {c.width} | {c.params} | {o.params} | "
                      f"{o.params / c.params:.2f}x | {r['mc_error']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}] | "
                      f"{r['slack']:.3g} |")
    if not args.window:
        return
    print()
    print("| mixture | window | eps | depth | width | params | N_ch | worst t | mc_error [95% CI] at worst t | slack |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in MIXTURES:
        mix = builtin(name)
        for eps in (1e-2, 1e-4):
            c = certify_window(mix, 1e-3, 5.0, eps, args.p, "tight")
            net = c.build()
            assert (net.depth, net.width, net.params) == (c.depth, c.width, c.params)
            res = verify_window(c, net, args.n // 4, times=5, seed=0)
            w = max(res, key=lambda r: r["ci_high"])
            print(f"| {name} | [1e-3, 5] | {eps:g} | {c.depth} | {c.width} | {c.params} | {c.choices['N_ch']} | "
                  f"{w['t']:.3g} | {w['mc_error']:.3g} [{w['ci_low']:.3g}, {w['ci_high']:.3g}] | {w['slack']:.3g} |")


if __name__ == "__main__":
    main()
