"""Foundation benchmarks: numba kernels against vectorised numpy in the same process.

    python benchmarks/bench_foundation.py [--quick]

Sizes are printed with every row.  Ratios are numpy time / numba time (warm,
best of 3).  Also reports the numba first-call compile time (fresh cache in a
subprocess), the cached start-up, and whole-process wall times of
`flowcert grid ring8 --steps 8` and `flowcert --help`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np


from flowcert.numcore import marginal as mg  # noqa: E402
from flowcert.numcore.lp import score_lp_error  # noqa: E402
from flowcert.numcore.mixture import from_spec  # noqa: E402


def best(fn, reps=3):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


# ------------------------------------------------------------------ numpy baselines


def np_terms(mix, x, t):
    """Vectorised numpy: logits (n, K) and component scores (n, K, d) from dense precisions."""
    a = np.exp(-t)
    S = a * a * mix.covs + (1 - a * a) * np.eye(mix.d)
    P = np.linalg.inv(S)
    _, logdet = np.linalg.slogdet(S)
    r = x[:, None, :] - a * mix.means[None]  # (n, K, d)
    g = -np.einsum("kij,nkj->nki", P, r)
    logits = np.log(mix.weights) - 0.5 * logdet + 0.5 * np.einsum("nki,nki->nk", r, g)
    logits -= logits.max(1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(1, keepdims=True)
    return w, g, P


def np_score(mix, x, t):
    w, g, _ = np_terms(mix, x, t)
    return np.einsum("nk,nki->ni", w, g)


def np_lp(mix, x, t, s_hat, p=2.0):
    e = np.linalg.norm(s_hat - np_score(mix, x, t), axis=1) ** p
    return e.mean(), e.std(ddof=1) / np.sqrt(e.size)


def np_opnorm(mix, x, t):
    w, g, P = np_terms(mix, x, t)
    s = np.einsum("nk,nki->ni", w, g)
    c = g - s[:, None, :]
    H = -np.einsum("nk,kij->nij", w, P) + np.einsum("nk,nki,nkj->nij", w, c, c)
    J = -np.eye(mix.d) - H
    return np.abs(np.linalg.eigvalsh(J)).max(1)


# ------------------------------------------------------------------ cases


def mixtures(d=16, K=8, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.0, size=(K, d))
    iso = from_spec({"means": means.tolist(), "variance": 0.05}, name="isotropic")
    A = rng.normal(size=(d, d))
    full = from_spec({"means": means.tolist(), "cov": (0.05 * (A @ A.T / d + np.eye(d))).tolist()}, name="shared-full")
    covs = []
    for _ in range(K):
        A = rng.normal(size=(d, d))
        covs.append((0.05 * (A @ A.T / d + np.eye(d))).tolist())
    comp = from_spec({"means": means.tolist(), "cov": covs}, name="per-component-full")
    return [iso, full, comp]


def row(name, size, t_np, t_nb):
    print(f"| {name:<34} | {size:<28} | {t_np * 1e3:9.1f} | {t_nb * 1e3:9.1f} | {t_np / t_nb:6.1f}x |")


def main():
    quick = "--quick" in sys.argv
    n_score = 100_000 if quick else 1_000_000
    n_jac = 10_000 if quick else 100_000
    t = 0.05
    import numba

    print(f"numba {numba.__version__}, numpy {np.__version__}, threads {numba.get_num_threads()}, "
          f"cores {os.cpu_count()}")
    print("| kernel | size | numpy ms | numba ms | speed-up |")
    print("|---|---|---:|---:|---:|")
    for mix in mixtures():
        x = mg.sample(mix, t, n_score, 1)
        mg.score(mix, x[:10], t)  # warm
        ref = np_score(mix, x[:1000], t)
        assert np.allclose(mg.score(mix, x[:1000], t), ref, rtol=1e-8, atol=1e-8)
        row(f"score ({mix.name})", f"n={n_score}, d=16, K=8", best(lambda: np_score(mix, x, t)),
            best(lambda: mg.score(mix, x, t)))
    for mix in mixtures()[:2]:
        x = mg.sample(mix, t, n_score, 2)
        s_hat = mg.score(mix, x, t) + 0.01
        score_lp_error(mix, x[:10], t, s_hat[:10])
        row(f"MC L^2 error ({mix.name})", f"n={n_score}, d=16, K=8", best(lambda: np_lp(mix, x, t, s_hat)),
            best(lambda: score_lp_error(mix, x, t, s_hat)))
    for mix in mixtures()[:2]:
        x = mg.sample(mix, t, n_jac, 3)
        mg.jacobian_opnorm(mix, x[:10], t)
        assert np.allclose(mg.jacobian_opnorm(mix, x[:500], t), np_opnorm(mix, x[:500], t), rtol=1e-8)
        row(f"sup ||J||_op ({mix.name})", f"n={n_jac}, d=16, K=8", best(lambda: np_opnorm(mix, x, t).max()),
            best(lambda: mg.jacobian_opnorm(mix, x, t).max()))

    # L(t) + Lambda + balanced grid, in process
    from flowcert.bounds.lipschitz import LipschitzBound
    from flowcert.bounds.stability import stability
    from flowcert.numcore import grids
    from flowcert.numcore.mixture import builtin

    ring = builtin("ring8")
    tt = best(lambda: grids.build("balanced", 8, 1e-3, 5.0, stability(ring, "tri", 1e-3, 5.0,
                                                                       bound=LipschitzBound(ring)).integral))
    print(f"\nL_tri(t) + Lambda + balanced grid (ring8, N=8), in process: {tt * 1e3:.1f} ms")

    # whole-process wall times
    exe = [sys.executable, "-m", "flowcert.cli"]
    for args in (["grid", "ring8", "--steps", "8"], ["--help"]):
        walls = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run(exe + args, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        print(f"flowcert {' '.join(args)}: best {min(walls):.3f} s, median {np.median(walls):.3f} s (whole process)")

    # compile vs cached start-up of the kernels
    code = ("import time; t0=time.perf_counter(); import numpy as np; from flowcert.numcore import marginal as mg; "
            "from flowcert.numcore.mixture import builtin; m=builtin('ring8'); x=mg.sample(m,0.1,10,0); "
            "mg.score(m,x,0.1); mg.jacobian_opnorm(m,x,0.1); print(time.perf_counter()-t0)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        first = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                     check=True).stdout)
        warm = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout)
    print(f"score + Jacobian kernels: first call with an empty cache {first:.2f} s (compile), "
          f"cached {warm:.2f} s (import + load)")


if __name__ == "__main__":
    main()
