"""A GITS-style teacher search: the grid whose Euler steps stay closest to a teacher's trajectory."""

from __future__ import annotations

import time

import numpy as np


def gits_search(model, x_T, steps, *, delta: float, T: float, teacher_steps: int = 64, trajectory: dict | None = None
                ) -> dict:
    """A GITS-style teacher search (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
    Sampling"): teacher trajectories on ``teacher_steps`` + 1 nodes uniform in log sigma (one RK4 step
    between nodes, the denoiser at each node kept from its first stage: :func:`~models.flow.nodes`),
    the cost of one Euler step from every node i to every later node j (mean squared OU-scale distance to
    the teacher's state at j), and a dynamic programme for the path from T to delta with exactly N steps and
    the least summed cost.

    Args:
        x_T: (n, d) starting states (a search batch, not the test batch).
        steps: N, or a list of N (one dynamic programme each, on the same cost matrix).
        trajectory: the teacher's :func:`~models.flow.nodes` of x_T when computed already (then no
            model evaluation happens here; ``nfe_per_sample`` still states what the teacher cost).

    Returns:
        dict: ``t`` ({N: grid} OU times, descending), ``nfe_per_sample`` (4 teacher_steps + 1),
        ``nfe_total``, ``seconds``, ``candidates``, ``samples``, ``method``.
    """
    from ..models.flow import nodes
    from ..numcore.units import t_from_sigma

    t0 = time.time()
    ns = [steps] if isinstance(steps, int) else list(steps)
    tr = trajectory if trajectory is not None else nodes(model, x_T, T, delta, teacher_steps)
    Y, Dn, sig = tr["y"], tr["denoised"], tr["sigma"]  # (M, n, d), (M, n, d), (M,)
    alpha = 1.0 / np.sqrt(1.0 + sig**2)
    M = Y.shape[0]
    cost = np.full((M, M), np.inf)
    for i in range(M - 1):
        j = np.arange(i + 1, M)
        step = Y[i][None] + ((sig[j] - sig[i]) / sig[i])[:, None, None] * (Y[i] - Dn[i])[None]
        cost[i, j] = np.mean(np.sum((alpha[j, None, None] * (step - Y[j])) ** 2, axis=2), axis=1)
    grids_out = {}
    for N in ns:
        best = np.full((N + 1, M), np.inf)
        arg = np.zeros((N + 1, M), dtype=int)
        best[0, 0] = 0.0
        for k in range(1, N + 1):
            tot = best[k - 1][:, None] + cost  # (i, j)
            arg[k] = np.argmin(tot, axis=0)
            best[k] = tot[arg[k], np.arange(M)]
        path, j = [M - 1], M - 1
        for k in range(N, 0, -1):
            j = arg[k, j]
            path.append(j)
        t = t_from_sigma(sig[np.array(path[::-1])])
        t[0], t[-1] = T, delta
        grids_out[N] = t
    n = int(Y.shape[1])
    return {"t": grids_out, "nfe_per_sample": int(tr["nfe"]), "nfe_total": int(tr["nfe"]) * n,
            "seconds": time.time() - t0, "candidates": M, "samples": n, "cost_matrix": cost,
            "method": "GITS-style: Euler local costs on the teacher's log-sigma nodes, dynamic programme"}
