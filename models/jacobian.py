"""||J(x, t)||_op of a model's probability-flow velocity by batched power iteration, and its p_t statistics.

J = dv/dx is not symmetric for a trained network, so the operator norm (largest singular value) is found
by a Krylov power method (Lanczos with full reorthogonalisation) on J^T J with ``torch.func``: J^T w by
a vector-Jacobian product of v, and J u by the vector-Jacobian product of the linear map w -> J^T w
(reverse over reverse; forward-mode jvp is not implemented for every layer a diffusers UNet uses on the
CPU).  One forward pass per (batch, time), then per iteration one J u and one J^T (J u).  After k
iterations the top Ritz value gives a lower estimate of ||J||_op that increases to it; a point has
converged when its Ritz residual, or the growth of the Ritz value in one iteration, is below ``tol``
(relative).  Plain power iteration stops early on
points whose top two singular values are close (measured on the built-in mixtures: up to 80% low on
single points and 4% on the mean when warm-started); Lanczos does not.  Each point is an independent function of its own input
(the batch is a batch of independent samples: evaluation-mode networks).

Samples of p_t: from data, x_t = alpha x_0 + sigma_vp z with x_0 drawn from the data (exact samples of
the data's p_t), or from the model's own ODE pushed forward from N(0, I) at t = T (samples of the
model's p_t).  The same x_0 and z (or the same ODE trajectories) serve every time of the table (common
random numbers), and the power iteration at each time starts from the singular vectors found at the
previous time, which cuts the iterations the table needs.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy.special import ndtri

from ..numcore.checks import OPTIONS, InputError

DEFAULT_ITERS = OPTIONS["iters"].default
DEFAULT_TOL = OPTIONS["tol"].default


def _unit(u: torch.Tensor) -> torch.Tensor:
    return u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)


def opnorm(model, x: torch.Tensor, t: float, *, iters: int = DEFAULT_ITERS, tol: float = DEFAULT_TOL,
           u0: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict:
    """||J(x_i, t)||_op for each row of x (n, d) by batched Lanczos iteration on A = J^T J.

    Each iteration applies A once (one J u and one J^T (J u)) and reorthogonalises fully; the top Ritz
    value theta of the k x k tridiagonal matrix is a lower estimate of lambda_max(A) = ||J||_op^2 that
    increases with k.  A point has converged when its Ritz residual ||A y - theta y|| = beta_k |s_k| (y
    the Ritz vector) is at most ``tol`` theta, or when theta grew by at most ``tol`` (relative) in the last
    iteration (a network's J^T J has no gap below its top singular value: the vector converges slowly,
    the value fast).  The Krylov space starts from ``u0`` (the
    previous time's singular vectors in a table) mixed with a random direction, so a warm start never
    confines the search to a stale singular vector.  The random direction comes from ``generator`` (a fixed seed
    when None: torch's global generator is seeded differently in every process, so it is never used).

    Points that have stopped leave the batch: when half of the active points have stopped, the graph is
    rebuilt on the rest (one forward pass), so a few slow points do not make every point iterate.

    Returns:
        dict with ``norm`` (n,) = theta^{1/2}, lower estimates of ||J||_op; ``u`` (n, d) the top right
        singular vector estimates; ``iterations`` (n,) iterations until each point met ``tol`` (``iters``
        if never); ``converged`` (n,) bool; ``residual`` (n,) the last beta_k |s_k| / theta; ``change``
        (n,) the last relative growth of theta; ``passes`` (network passes per point: forward graphs, J u
        and J^T w each count one, over the points they ran on, divided by n).
    """
    from torch.func import vjp

    x = torch.as_tensor(x).to(model.work_dtype).detach()
    n, d = x.shape
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    g = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    q = _unit(g) if u0 is None else _unit(_unit(u0.double()) + 0.5 * _unit(g))
    k_max = max(1, min(int(iters), d))

    def graph(rows):
        v, vjp_fn = vjp(lambda z: model.velocity(z, t), x[rows])
        jt = lambda w: vjp_fn(w.to(v.dtype))[0]  # noqa: E731  J^T w
        _, jvp_fn = vjp(jt, torch.zeros_like(v))  # the vjp of the linear map w -> J^T w is u -> J u
        return v.dtype, jt, jvp_fn

    from .denoiser import where

    sigma = math.sqrt(math.expm1(2.0 * t))
    try:
        with torch.enable_grad():
            return _lanczos(graph, n, d, k_max, iters, tol, q)
    except InputError:
        raise
    except _Overflow as exc:
        raise InputError(f"`model` {getattr(model, 'name', 'model')!r}: J^T J u is NaN or inf at {where(sigma)} for "
                         f"{exc.args[0]} of {n} samples: expected a network whose Jacobian is finite (its derivatives "
                         "overflow there)") from None
    except Exception as exc:  # autograd of the network itself: e.g. a layer without a double backward
        raise InputError(f"`model` {getattr(model, 'name', 'model')!r}: its Jacobian-vector products failed at "
                         f"{where(sigma)}: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}: expected a "
                         "network that torch.func can differentiate twice (reverse over reverse)") from None


class _Overflow(ArithmeticError):
    """A product J^T J u of the iteration is not finite (args: the number of samples where it is not)."""


def _lanczos(graph, n: int, d: int, k_max: int, iters: int, tol: float, q: torch.Tensor) -> dict:
    """The iteration of :func:`opnorm` (its loop, with the graph builder ``graph(rows)``)."""
    Q = torch.zeros(n, k_max + 1, d, dtype=torch.float64)
    Q[:, 0] = q
    alpha = torch.zeros(n, k_max, dtype=torch.float64)
    beta = torch.zeros(n, k_max, dtype=torch.float64)
    done = torch.zeros(n, dtype=torch.bool)
    its = torch.full((n,), int(iters), dtype=torch.long)
    theta = torch.zeros(n, dtype=torch.float64)
    change = torch.full((n,), float("inf"), dtype=torch.float64)
    res = torch.full((n,), float("inf"), dtype=torch.float64)
    y = q.clone()
    act = torch.arange(n)  # the points still iterating; the graph is rebuilt on them when half have stopped
    passes = 0
    dt, jt, jvp_fn = graph(act)
    passes += 1.0
    for k in range(k_max):
        Qa = Q[act]
        qk = Qa[:, k]
        w = jt(jvp_fn(qk.to(dt))[0]).double().detach()  # A q_k
        bad = ~torch.isfinite(w).all(1)
        if bool(bad.any()):
            raise _Overflow(int(bad.sum()))
        passes += 2.0 * act.numel() / n
        a_k = (w * qk).sum(1)
        for _ in range(2):  # full reorthogonalisation against q_0..q_k
            w = w - torch.einsum("nj,njd->nd", torch.einsum("njd,nd->nj", Qa[:, :k + 1], w), Qa[:, :k + 1])
        b = w.norm(dim=1)
        alpha[act, k], beta[act, k] = a_k, b
        Q[act, k + 1] = w / b.clamp_min(1e-300)[:, None]
        T = torch.diag_embed(alpha[act, :k + 1])
        if k:
            off = torch.diag_embed(beta[act, :k], offset=1)
            T = T + off + off.transpose(1, 2)
        ev, S = torch.linalg.eigh(T)
        th = ev[:, -1].clamp_min(0.0)
        change[act] = (th - theta[act]) / th.clamp_min(1e-300)  # the Ritz value only increases with k
        theta[act] = th
        res[act] = b * S[:, -1, -1].abs() / th.clamp_min(1e-300)
        y[act] = torch.einsum("njd,nj->nd", Q[act, :k + 1], S[:, :, -1])
        exhausted = b <= 1e-12 * th.sqrt()  # invariant subspace: exact
        value_done = (change[act] <= tol) if k else torch.zeros(act.numel(), dtype=torch.bool)
        now = (res[act] <= tol) | value_done | exhausted | torch.tensor(k + 1 == d)
        now &= ~done[act]
        its[act[now]] = k + 1
        done[act[now]] = True
        left = act[~done[act]]
        if left.numel() == 0:
            break
        if left.numel() <= act.numel() // 2 and k + 1 < k_max:
            act = left
            dt, jt, jvp_fn = graph(act)
            passes += act.numel() / n
    return {"norm": theta.sqrt(), "u": _unit(y), "iterations": its, "converged": done, "residual": res,
            "change": change if k_max > 1 else torch.zeros(n, dtype=torch.float64), "passes": passes}


def dense_opnorm(model, x: torch.Tensor, t: float) -> torch.Tensor:
    """||J(x_i, t)||_op from the dense Jacobian (d reverse passes and an SVD): the check for small d."""
    J = model.dense_jacobian(x, t).double()
    return torch.linalg.matrix_norm(J, ord=2)


def load_data(path_or_array, d: int, name: str = "data") -> np.ndarray:
    """Data x_0 as a float64 array (n, d): a .npy file or an array; images are flattened
    (:func:`numcore.fit.load_data` with the model's d).

    Raises:
        InputError: an unreadable or damaged file, a shape that does not hold d numbers per sample, NaN or inf.
    """
    from ..numcore.fit import load_data as load

    return load(path_or_array, name, d)


def table(model, ts, samples: int, *, data=None, seed: int = 0, iters: int = DEFAULT_ITERS,
          tol: float = DEFAULT_TOL, teacher_steps: int = 64, batch: int = 512, level: float = 0.95,
          progress=None) -> dict:
    """E||J||_op, the sampled sup and their Monte-Carlo intervals at each OU time of ``ts``.

    Args:
        model: a :class:`~models.denoiser.Denoiser`.
        ts: OU times (increasing), shape (m,).
        samples: points of p_t per time.
        data: (n0, d) data x_0, or None to sample p_t from the model's ODE started at N(0, I) at max(ts).
        iters, tol: power-iteration limits.
        teacher_steps: RK4 steps of the model ODE (data=None only).
        level: of the Monte-Carlo interval of the mean.
        progress: a bar advanced once per time.

    Returns:
        dict of arrays (m,): ``t``, ``empirical_mean``, ``empirical_mean_se``, ``empirical_mean_ci``
        (m, 2), ``empirical_sup``, ``iterations_mean``, ``iterations_max``, ``converged_fraction``,
        ``last_change_median`` (the median last relative growth of the Ritz value); and
        ``empirical_samples``, ``empirical_seed``, ``samples_from``, ``power_iteration``, ``seconds``,
        ``passes`` (network passes per sample over the table: forward, J u, J^T w and ODE evaluations).
    """
    t0 = time.time()
    ts = np.asarray(ts, float)
    m = ts.size
    g = torch.Generator().manual_seed(int(seed))
    if data is not None:
        idx = torch.randint(0, data.shape[0], (samples,), generator=g)
        x0 = torch.as_tensor(data, dtype=torch.float64)[idx]
        z = torch.randn(samples, model.d, generator=g, dtype=torch.float64)
        source = (f"data: x_t = alpha x_0 + sigma_vp z, x_0 drawn with replacement from {data.shape[0]} samples "
                  "(exact samples of the data's p_t); the same x_0, z at every time")
        traj = None
    else:
        from .flow import flow, prior

        order = np.argsort(-ts)
        xT = prior(model, samples, seed)
        states = flow(model, xT, ts[order], teacher_steps, batch=batch)
        traj = torch.empty_like(states)
        traj[:, order] = states
        source = (f"the model's own ODE (RK4, {teacher_steps} steps in log sigma) from N(0, I) at t = {ts.max():g}; "
                  "one trajectory per sample through every time")
    u = torch.randn(samples, model.d, generator=g, dtype=torch.float64)
    mean, se, sup, itm, itx, conv, last = (np.empty(m) for _ in range(7))
    passes = 0 if traj is None else 4 * int(teacher_steps)
    for j in np.argsort(-ts):  # from T down, warm-starting each time from the previous singular vectors
        t = float(ts[j])
        if traj is None:
            x = math.exp(-t) * x0 + math.sqrt(-math.expm1(-2 * t)) * z
        else:
            x = traj[:, j]
        norms, its, ok, chg, batch_passes = [], [], [], [], []
        for lo in range(0, samples, batch):
            r = opnorm(model, x[lo:lo + batch], t, iters=iters, tol=tol, u0=u[lo:lo + batch], generator=g)
            u[lo:lo + batch] = r["u"].double()
            norms.append(r["norm"].numpy())
            its.append(r["iterations"].numpy())
            ok.append(r["converged"].numpy())
            chg.append(r["change"].numpy())
            batch_passes.append(r["passes"] * min(batch, samples - lo) / samples)
        nrm, it, okv = np.concatenate(norms), np.concatenate(its), np.concatenate(ok)
        if not np.all(np.isfinite(nrm)):
            from .denoiser import where

            bad = int((~np.isfinite(nrm)).sum())
            raise InputError(f"`model` {getattr(model, 'name', 'model')!r}: ||J||_op is NaN or inf at "
                             f"{where(math.sqrt(math.expm1(2.0 * t)))} for {bad} of {samples} samples: expected a "
                             "network whose Jacobian is finite (its derivatives overflow float64 there)")
        mean[j], se[j], sup[j] = nrm.mean(), nrm.std(ddof=1) / math.sqrt(samples), nrm.max()
        itm[j], itx[j], conv[j] = it.mean(), it.max(), okv.mean()
        last[j] = float(np.median(np.concatenate(chg)))
        passes += sum(batch_passes)
        if progress is not None:
            progress.update(1)
    zq = float(ndtri(0.5 + level / 2))
    return {
        "t": ts, "empirical_mean": mean, "empirical_mean_se": se,
        "empirical_mean_ci": np.stack([mean - zq * se, mean + zq * se], 1), "empirical_sup": sup,
        "iterations_mean": itm, "iterations_max": itx, "converged_fraction": conv, "last_change_median": last,
        "empirical_samples": int(samples), "empirical_seed": int(seed), "samples_from": source, "level": level,
        "power_iteration": {"max_iterations": int(iters), "tol": float(tol),
                            "estimate": "Lanczos on J^T J: the top Ritz value^(1/2), a lower estimate of ||J||_op "
                                        "increasing to it; started from the previous time's singular vectors "
                                        "mixed with a random direction",
                            "products": "torch.func vjp (J^T w) and vjp of w -> J^T w (J u)"},
        "seconds": time.time() - t0,
        "passes": int(round(passes)),
        "passes_what": "network passes per sample over the whole table (forward graphs, J u and J^T w each count "
                       "one; the model ODE counts 4 per RK4 step)",
    }
