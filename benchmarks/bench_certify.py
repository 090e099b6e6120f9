"""Speed of `flowcert certify --verify N`: compiled network + fused exact-score error vs plain numpy.

    python benchmarks/bench_certify.py                 # modes8d (d = 8, K = 8), N = 1e6
    python benchmarks/bench_certify.py --n 200000 --mixture ring8 --t 0.01 --eps 1e-6

Times, in the same process and on the same samples of p_t:
  * numba: the whole --verify path (sampling, compiled network, fused exact-score L^p error),
  * numba network alone,
  * numpy: the same network with dense numpy matrix products (Network.forward_numpy) and
    the exact score in plain numpy (log-sum-exp over components, batched).
Prints sizes and the ratios.  The first calls compile or load the numba cache; they are
warmed up on a few points before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


from flowcert.bounds.certificate import certify  # noqa: E402
from flowcert.bounds.verification import verify  # noqa: E402
from flowcert.numcore import marginal  # noqa: E402
from flowcert.numcore.mixture import load  # noqa: E402


def numpy_score(mix, x, t):
    """Exact score of p_t in plain numpy (dense precisions, log-sum-exp)."""
    a = np.exp(-t)
    S = a * a * mix.covs + (1 - a * a) * np.eye(mix.d)
    P = np.linalg.inv(S)
    logdet = np.linalg.slogdet(S)[1]
    r = x[:, None, :] - a * mix.means[None]                      # (n, K, d)
    g = -np.einsum("kij,nkj->nki", P, r)                          # component scores
    l = np.log(mix.weights) - 0.5 * logdet + 0.5 * np.einsum("nki,nki->nk", r, g)
    w = np.exp(l - l.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    return np.einsum("nk,nki->ni", w, g)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixture", default="modes8d")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--t", type=float, default=0.05)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--p", type=float, default=2.0)
    args = ap.parse_args()

    mix = load(args.mixture)
    cert = certify(mix, args.t, args.eps, args.p, "tight")
    net = cert.build()
    print(f"{mix.name}: d = {mix.d}, K = {mix.K}, t = {args.t:g}, eps = {args.eps:g}, p = {args.p:g}; "
          f"network depth {net.depth}, width {net.width}, params {net.params}; N = {args.n}")
    warm = marginal.sample(mix, args.t, 64, 0)
    net(warm)
    verify(cert, net, 64, seed=1)

    t0 = time.perf_counter()
    res = verify(cert, net, args.n, seed=0)
    t_verify = time.perf_counter() - t0
    print(f"numba  --verify {args.n}: {t_verify:.2f} s  (mc_error {res['mc_error']:.3e} "
          f"[{res['ci_low']:.3e}, {res['ci_high']:.3e}], {res['verdict']})")

    x = marginal.sample(mix, args.t, args.n, np.random.default_rng(0))
    t0 = time.perf_counter()
    y = net(x)
    t_net = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = marginal.score(mix, x, args.t)
    t_score = time.perf_counter() - t0

    chunk = 50_000
    t0 = time.perf_counter()
    y_np = np.concatenate([net.forward_numpy(x[i:i + chunk]) for i in range(0, args.n, chunk)])
    t_net_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    s_np = np.concatenate([numpy_score(mix, x[i:i + chunk], args.t) for i in range(0, args.n, chunk)])
    t_score_np = time.perf_counter() - t0
    err_np = (np.sqrt(((y_np - s_np) ** 2).sum(1)) ** args.p).mean() ** (1 / args.p)

    print(f"network      numba {t_net:7.2f} s   numpy {t_net_np:7.2f} s   ratio {t_net_np / t_net:6.1f}x   "
          f"max |diff| {np.abs(y - y_np).max():.1e}")
    print(f"exact score  numba {t_score:7.2f} s   numpy {t_score_np:7.2f} s   ratio {t_score_np / t_score:6.1f}x   "
          f"max |diff| {np.abs(s - s_np).max():.1e}")
    tot_np = t_net_np + t_score_np
    print(f"verify path  numba {t_verify:7.2f} s (incl. sampling)   numpy net+score {tot_np:7.2f} s   "
          f"ratio {tot_np / t_verify:6.1f}x;  numpy L^p error {err_np:.3e}")


if __name__ == "__main__":
    main()
