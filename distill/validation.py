"""The validation sweep: phases, jobs and checkpoints.

Phases (each with a progress bar on stderr, each cached in the run directory):

1. ``stability``: Lambda for ``tri``, ``sharp``, ``onesided`` (and ``empirical`` when that grid is
   asked for) and every grid (kind, N)  -> ``grids.json``
2. ``teacher``: per (mixture, seed), n_train + n_test exact trajectories from x_T ~ p_T through
   the union of all grid nodes  -> ``teacher/<mixture>-s<seed>.pt``
3. ``amplification``: ||D Phi_{t->delta}||_op over x ~ p_t at log-spaced t  -> ``amplification.json``
4. ``train``: one job per (mixture, grid, N, seed); blocks train in groups, each group
   checkpointed (``jobs/<key>/group<g>.pt``), then the evaluation (``jobs/<key>/result.json``).
5. ``report``: ``results.json``, ``summary.md``, plots.

Every random draw is seeded from (mixture, seed, N, group) alone -- the grids compared at one N
share their teacher data and initial weights (common random numbers, so differences between grids
are paired) -- every job runs with a
fixed number of torch threads, and every file is written atomically (temporary file in the same
directory, then os.replace), so a run killed at any point and continued with ``resume`` ends with
the same results as an uninterrupted run, whatever the executor.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from pathlib import Path

import numpy as np

from ..numcore.checks import InputError
from ..numcore.io import progress as progress_bar

from .config import ValidateConfig, resolve_device
from . import runcheck
from .runfiles import RunLock, torch_save_atomic, write_json

RATES = ("tri", "sharp", "onesided")
HOLDS_RTOL = 1e-6  # a bound holds when bound >= measured * (1 - HOLDS_RTOL): see holds()


def holds(bound: float, measured: float) -> bool:
    """bound >= measured up to a relative HOLDS_RTOL: the teacher's RK4 flow maps (step 0.01 in
    log sigma_VE) agree to about 1e-9 relative between the direct and the node-by-node integration,
    and float64 sums to 1e-15; a bound met with equality (one component, one segment) holds."""
    return bool(bound >= measured * (1.0 - HOLDS_RTOL))


def seed_of(*parts) -> int:
    """A 31-bit seed determined by the parts alone (stable across processes and machines)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def mixture_key(i: int, name: str) -> str:
    return f"{i}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:40]}"


def job_key(job: dict) -> str:
    return f"{job['mkey']}_{job['grid']}_N{job['N']}_s{job['seed']}"


def _bar(total, desc, enabled=True):
    return progress_bar(total, desc, enabled)


# ----------------------------------------------------------------------------- phase 1
def stability_phase(cfg: ValidateConfig, mixes, out: Path, progress=True) -> dict:
    """Lambda at the grid nodes for every rate, and every grid, per mixture (cached)."""
    path = out / "grids.json"
    if path.exists():
        return runcheck.load_grids(out, cfg, mixes)
    from ..studies.optimal import optimal_grid
    from ..bounds.stability import stability
    from ..numcore import grids as G

    result = {}
    with _bar(len(mixes), "stability", progress) as bar:
        for mkey, mix in mixes.items():
            st = {r: stability(mix, r, cfg.delta, cfg.T) for r in RATES}
            if "empirical" in cfg.grids or cfg.bound == "empirical":
                st["empirical"] = stability(mix, "empirical", cfg.delta, cfg.T, samples=cfg.empirical_samples,
                                            seed=cfg.seed)
            grids = {}
            for kind in cfg.grids:
                for N in cfg.steps:
                    if kind == "balanced":
                        nodes = G.build("balanced", N, cfg.delta, cfg.T, stability=st[cfg.bound].integral)
                    elif kind == "empirical":
                        nodes = G.build("balanced", N, cfg.delta, cfg.T, stability=st["empirical"].integral)
                    elif kind == "optimal":  # the solver's optimal grid on the exact mixture
                        nodes = optimal_grid(mix, N, cfg.solver, delta=cfg.delta, T=cfg.T, seed=cfg.seed)["t"]
                    else:
                        nodes = G.build(kind, N, cfg.delta, cfg.T)
                    nodes = np.asarray(nodes, float)
                    if np.any(np.diff(nodes) >= 0):
                        raise InputError(f"`grids` {kind} with N = {N}: the grid has repeated nodes "
                                         f"(stability budget too small to split); use fewer steps")
                    grids[f"{kind}/{N}"] = {
                        "nodes": nodes.tolist(),
                        "Lambda": {r: st[r].integral(nodes).tolist() for r in RATES},
                    }
            union = np.unique(np.concatenate([np.asarray(g["nodes"]) for g in grids.values()]))[::-1]
            amp_t = np.geomspace(cfg.delta, cfg.T, cfg.amp_times + 1)[1:]
            result[mkey] = {
                "describe": mix.describe(),
                "Lambda_T": {r: s.integral.total for r, s in st.items()},
                "Lambda_T_error": {r: s.integral.error for r, s in st.items()},
                "amplification_bound_T": {r: float(np.exp(min(s.integral.total, 700.0))) for r, s in st.items()},
                "rate_meta": {r: s.meta for r, s in st.items()},
                "grids": grids,
                "union_nodes": union.tolist(),
                "amp_times": amp_t.tolist(),
                "amp_Lambda": {r: st[r].integral(amp_t).tolist() for r in RATES},
            }
            bar.update(1)
    write_json(path, result)
    return result


# ----------------------------------------------------------------------------- phase 2
def teacher_path(out: Path, mkey: str, seed: int) -> Path:
    return out / "teacher" / f"{mkey}-s{seed}.pt"


def teacher_phase(cfg, mixes, info, out: Path, device: str, progress=True) -> None:
    """Exact trajectories of n_train + n_test samples of p_T through the union of grid nodes."""
    import torch

    from ..numcore.marginal import sample

    from .teacher import Teacher

    todo = [(mk, s) for mk in mixes for s in cfg.seed_list if not teacher_path(out, mk, s).exists()]
    if not todo:
        return
    steps = sum(len(info[mk]["union_nodes"]) - 1 for mk, _ in todo)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with _bar(steps, "teacher", progress) as bar:
            for mk, s in todo:
                mix, nodes = mixes[mk], info[mk]["union_nodes"]
                x = sample(mix, cfg.T, cfg.n_train + cfg.n_test, np.random.default_rng(seed_of("teacher", mk, s)))
                traj = Teacher(mix, device, torch.float64, cfg.teacher_step).trajectory(x, nodes, progress=bar)
                traj = traj.cpu()
                torch_save_atomic(teacher_path(out, mk, s), {
                    "nodes": torch.tensor(nodes, dtype=torch.float64),
                    "train": traj[: cfg.n_train].clone(), "test": traj[cfg.n_train:].clone()})
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- phase 3
def amplification_phase(cfg, mixes, info, out: Path, device: str, progress=True) -> dict:
    path = out / "amplification.json"
    if path.exists():
        return runcheck.load_amplification(out, cfg, mixes)
    import torch

    from .measure import amplification
    from .teacher import Teacher

    result = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with _bar(len(mixes) * cfg.amp_times, "amplification", progress) as bar:
            for mk, mix in mixes.items():
                teacher = Teacher(mix, device, torch.float64, cfg.teacher_step)
                seed = seed_of("amplification", mk, cfg.seed)
                rows = amplification(teacher, mix, info[mk]["amp_times"], cfg.delta, cfg.amp_samples, seed,
                                     progress=bar)
                for j, row in enumerate(rows):
                    row["predicted"] = {r: float(np.exp(min(info[mk]["amp_Lambda"][r][j], 700.0))) for r in RATES}
                    row["holds"] = {r: holds(row["predicted"][r], row["max"]) for r in RATES}
                    row["holds_rtol"] = HOLDS_RTOL
                    row.update(per_trajectory_row(mix, row["t"], cfg.delta, cfg.amp_samples, [seed, j]))
                result[mk] = rows
    finally:
        torch.set_num_threads(threads)
    write_json(path, result)
    return result


def per_trajectory_row(mix, t: float, delta: float, n: int, seed) -> dict:
    """Per-trajectory factors of ||D Phi_{t->delta}|| on the same samples as :func:`measure.amplification`:
    ``certified`` (an upper bound per trajectory) and ``trajectory_estimate`` (the Gronwall integral without
    its error term), each as mean/p99/max, and ``certificate_holds`` against the propagated Jacobian."""
    from ..numcore.estimators import spread
    from ..numcore.marginal import sample
    from ..numcore.trajectory import gronwall

    x = sample(mix, float(t), n, np.random.default_rng(seed))
    g = gronwall(mix, x, float(t), delta, step=0.02)
    measured = g.measured  # the numpy RK4 Jacobian on the same samples (agrees with the torch teacher's)
    return {"certified": spread(g.certified), "trajectory_estimate": spread(g.predicted),
            "certificate_holds": int((g.certified >= measured).sum()), "certificate_checked": int(n)}


# ----------------------------------------------------------------------------- phase 3b
def trajectory_phase(cfg, mixes, info, out: Path, progress=True) -> dict:
    """Per-trajectory factors along the union of grid nodes, from x_T ~ p_T (``amp_samples`` exact
    trajectories, numpy): per grid the certified, estimated and measured factor of every segment and of
    the whole map T -> delta, and per node the RMS certified factor to delta (for the fan estimate)."""
    path = out / "trajectory.json"
    if path.exists():
        return runcheck.load_trajectory(out, info, mixes)
    from ..numcore.marginal import sample
    from ..numcore.trajectory import gronwall

    result = {}
    with _bar(sum(len(info[mk]["union_nodes"]) - 1 for mk in mixes), "per-trajectory", progress) as bar:
        for mk, mix in mixes.items():
            union = info[mk]["union_nodes"]
            x = sample(mix, cfg.T, cfg.amp_samples, np.random.default_rng(seed_of("trajectory", mk, cfg.seed)))
            cert, est, jac = [], [], []
            for a, b in zip(union, union[1:]):
                g = gronwall(mix, x, a, b, step=0.02)
                cert.append(g.log_certified), est.append(g.log_predicted), jac.append(g.jacobian)
                x = g.endpoints
                bar.update(1)
            cert, est = np.array(cert), np.array(est)  # (segments, n)
            pos = {t: i for i, t in enumerate(union)}
            grids = {}
            for key, g in info[mk]["grids"].items():
                idx = [pos[t] for t in g["nodes"]]
                segs = []
                for i0, i1 in zip(idx, idx[1:]):
                    W = jac[i0]
                    for k in range(i0 + 1, i1):
                        W = jac[k] @ W
                    m = np.linalg.norm(W, ord=2, axis=(1, 2))
                    c, e = np.exp(np.minimum(cert[i0:i1].sum(0), 700)), np.exp(np.minimum(est[i0:i1].sum(0), 700))
                    segs.append({"certified_max": float(c.max()), "estimate_max": float(e.max()),
                                 "measured_max": float(m.max()), "holds": int((c >= m).sum())})
                to_end = [np.exp(np.minimum(cert[i:idx[-1]].sum(0), 700)) for i in idx]
                grids[key] = {"segments": segs,
                              "rms_certified_to_delta": [float(np.sqrt((v**2).mean())) for v in to_end]}
            W = jac[0]
            for k in range(1, len(jac)):
                W = jac[k] @ W
            m = np.linalg.norm(W, ord=2, axis=(1, 2))
            c, e = np.exp(np.minimum(cert.sum(0), 700)), np.exp(np.minimum(est.sum(0), 700))
            result[mk] = {"one_step": {"certified_max": float(c.max()), "certified_p99": float(np.quantile(c, 0.99)),
                                       "estimate_max": float(e.max()), "measured_max": float(m.max()),
                                       "measured_p99": float(np.quantile(m, 0.99)), "holds": int((c >= m).sum()),
                                       "n": int(c.size)},
                          "grids": grids}
    write_json(path, result)
    return result


# ----------------------------------------------------------------------------- phase 4: one job
def block_width(cfg: ValidateConfig, N: int, d: int) -> int:
    from .students import width_for_total

    if cfg.budget == "per-block":
        return cfg.width
    return width_for_total(cfg.block_total(), N, d, cfg.depth)


def run_job(ctx: dict, payload=None) -> dict:
    """Train and evaluate one student; resumable from the checkpoints in ``ctx['dir']``.

    ``payload`` holds the teacher trajectories ({'train', 'test'} tensors at the union nodes);
    when None they are read from ``ctx['teacher_path']``.
    """
    import torch

    from ..numcore.mixture import from_spec

    from . import measure as M
    from .students import BlockStack, finetune_chain, param_count, train_segments
    from .teacher import Teacher

    jdir, out = Path(ctx["dir"]), Path(ctx["out"])
    done = jdir / "result.json"
    job = ctx["job"]
    if done.exists():
        return runcheck.load_result(out, done, job, ctx["nodes"])
    cfg = ValidateConfig.from_dict(ctx["config"])
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        device = ctx["device"]
        dtype = getattr(torch, cfg.dtype)
        mix = from_spec(ctx["spec"], name=ctx["spec"].get("name", job["mkey"]))
        if payload is None:
            payload = runcheck.load_teacher(out, ctx["teacher_path"], cfg, ctx["union"], mix.d)
        idx = torch.as_tensor(ctx["node_index"])
        train = payload["train"][:, idx].transpose(0, 1).contiguous()  # (N+1, n, d)
        test = payload["test"][:, idx].transpose(0, 1).contiguous()
        nodes, N, d = ctx["nodes"], job["N"], mix.d
        width = block_width(cfg, N, d)
        Xtr = train.to(device=device, dtype=dtype)
        timing = {"train_s": 0.0, "finetune_s": 0.0, "eval_s": 0.0}

        # -- training, one checkpoint per block group
        parts, losses = [], []
        for g, start in enumerate(range(0, N, cfg.group)):
            blocks = list(range(start, min(N, start + cfg.group)))
            ck = jdir / f"group{g}.pt"
            if ck.exists():
                saved = runcheck.load_blocks(out, ck, jdir, len(blocks), d, width, cfg.depth, (len(blocks),), dtype)
            else:
                t0 = time.perf_counter()
                gen = torch.Generator().manual_seed(seed_of(job["mkey"], job["seed"], N, "group", g))
                stack = BlockStack.init(len(blocks), d, width, cfg.depth, gen, dtype, device)
                loss = train_segments(stack, Xtr[blocks], Xtr[[b + 1 for b in blocks]], iters=cfg.iters,
                                      batch=cfg.batch, lr=cfg.lr, generator=gen)
                saved = {"state": stack.state(), "loss": loss.double().cpu(),
                         "seconds": time.perf_counter() - t0}
                torch_save_atomic(ck, saved)
            timing["train_s"] += float(saved["seconds"])
            parts.append(BlockStack.from_state(saved["state"], dtype, device))
            losses += saved["loss"].tolist()
        stack = BlockStack.concat(parts)

        finetune_loss = None
        if cfg.finetune > 0:
            ck = jdir / "finetune.pt"
            if ck.exists():
                saved = runcheck.load_blocks(out, ck, jdir, N, d, width, cfg.depth, None, dtype)
            else:
                t0 = time.perf_counter()
                gen = torch.Generator().manual_seed(seed_of(job["mkey"], job["seed"], N, "finetune"))
                fl = finetune_chain(stack, Xtr[0], Xtr[-1], iters=cfg.finetune, batch=cfg.batch,
                                    lr=cfg.finetune_lr, generator=gen)
                saved = {"state": stack.state(), "loss": fl, "seconds": time.perf_counter() - t0}
                torch_save_atomic(ck, saved)
            stack = BlockStack.from_state(saved["state"], dtype, device)
            finetune_loss, timing["finetune_s"] = float(saved["loss"]), float(saved["seconds"])

        # -- evaluation on fresh teacher trajectories
        t0 = time.perf_counter()
        Xte = test.to(device)  # float64
        with torch.no_grad():
            out, states = stack.chain(Xte[0].to(dtype), keep=True)
        rel = M.relative_error_stats(out, Xte[-1])
        teacher = Teacher(mix, device, torch.float64, cfg.teacher_step)
        local_teacher, local_chain = [], []
        for i in range(N):
            with torch.no_grad():
                psi_t = stack.apply_block(i, Xte[i].to(dtype)).double()
            local_teacher.append(M.rms_ci(((psi_t - Xte[i + 1]) ** 2).sum(1).cpu().numpy()))
            z = states[i].double()
            phi = teacher.flow(z, nodes[i], nodes[i + 1])
            local_chain.append(M.rms_ci(((states[i + 1].double() - phi) ** 2).sum(1).cpu().numpy()))
        eps = [e["value"] for e in local_chain]
        measured = rel["rms_error"]["value"]
        fan = {}
        for r in M.FAN_RATES:
            Lam = ctx["Lambda"][r]
            start, end = M.fan_bound(eps, Lam, "start"), M.fan_bound(eps, Lam, "end")
            fan[r] = {"bound": start, "bound_end": end, "measured_rms": measured,
                      "bound_ci": [M.fan_bound([e["ci_low"] for e in local_chain], Lam, "start"),
                                   M.fan_bound([e["ci_high"] for e in local_chain], Lam, "start")],
                      "measured_rms_ci": [rel["rms_error"]["ci_low"], rel["rms_error"]["ci_high"]],
                      "holds": holds(start, measured), "holds_end": holds(end, measured), "holds_rtol": HOLDS_RTOL,
                      "slack": start / measured if measured > 0 else float("inf"),
                      "slack_end": end / measured if measured > 0 else float("inf")}
        fan_traj = None
        if ctx.get("rms_certified"):
            rms = ctx["rms_certified"]  # nodes t_0..t_N
            fan_traj = {"estimate_end": float(sum(e * r for e, r in zip(eps, rms[1:]))),
                        "estimate_start": float(sum(e * r for e, r in zip(eps, rms[:-1]))),
                        "measured_rms": measured,
                        "what": "sum_i eps_i q_i with q_i the RMS over trajectories of the certified per-trajectory "
                                "factor from t_i (end) or t_{i-1} (start) to delta: a first-order estimate, not a bound"}
        lip = []
        n_lip = cfg.lip_samples
        for i in range(N):
            x = Xte[i][:n_lip]
            Jb = M.block_jacobian(stack, i, x.to(dtype))
            _, Jt = teacher.flow_jacobian(x, nodes[i], nodes[i + 1])
            b, t = M.opnorm(Jb), M.opnorm(Jt)
            lip.append({"segment": i + 1, "t_start": nodes[i], "t_end": nodes[i + 1],
                        "block_max": float(b.max()), "block_mean": M.mean_ci(b),
                        "teacher_max": float(t.max()), "teacher_mean": M.mean_ci(t),
                        "ratio_max": float(b.max() / t.max())})
        timing["eval_s"] = time.perf_counter() - t0
        result = {
            "mixture": job["mixture"], "mkey": job["mkey"], "grid": job["grid"], "N": N, "seed": job["seed"],
            "nodes": list(nodes), "width": width, "depth": cfg.depth,
            "params_per_block": param_count(d, width, cfg.depth),
            "params_total": N * param_count(d, width, cfg.depth),
            "train_loss": losses, "finetune_loss": finetune_loss,
            "rel_mse": rel, "local_error_teacher": local_teacher, "local_error_chain": local_chain,
            "fan": fan, "fan_trajectory": fan_traj, "lipschitz": lip, "timing": timing,
        }
        write_json(done, result)
        return result
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the whole run
def load_mixtures(cfg: ValidateConfig) -> dict:
    from ..numcore.mixture import from_spec

    return {mixture_key(i, spec.get("name", f"mixture{i}")): from_spec(spec, name=spec.get("name", f"mixture{i}"))
            for i, spec in enumerate(cfg.specs)}


def jobs_of(cfg: ValidateConfig, mixes) -> list[dict]:
    return [{"mixture": mix.name, "mkey": mk, "grid": g, "N": N, "seed": s}
            for mk, mix in mixes.items() for s in cfg.seed_list for g in cfg.grids for N in cfg.steps]


def prepare(out: Path, cfg: ValidateConfig | None, resume: bool) -> ValidateConfig:
    """Write (or check, or read back and re-check) ``config.json`` in the run directory."""
    path = out / "config.json"
    if resume:
        if not path.exists():
            raise InputError(f"`resume` = '{out}': no config.json there (not a validate run directory)")
        return runcheck.load_config(out)
    if path.exists():
        old = runcheck.load_config(out)
        if old.to_dict() != json.loads(json.dumps(cfg.to_dict())):
            raise InputError(f"`out` = '{out}': holds a run with a different configuration; "
                             f"continue it with `resume` {out} or choose another `out`")
    else:
        write_json(path, runcheck.with_checksum(json.loads(json.dumps(cfg.to_dict()))))
    return cfg


def run(cfg: ValidateConfig | None, out, *, resume: bool = False, executor: str = "local",
        workers: int | None = None, address: str | None = None, progress: bool = True,
        plots: bool = True) -> dict:
    """Run (or continue) a validation sweep in directory ``out``; returns the results mapping.

    The folder is locked for the whole run (:class:`~distill.runfiles.RunLock`): a second
    process on the same folder is refused."""
    out = Path(out)
    with RunLock(out):
        return _run(cfg, out, resume=resume, executor=executor, workers=workers, address=address,
                    progress=progress, plots=plots)


def _run(cfg, out: Path, *, resume, executor, workers, address, progress, plots) -> dict:
    from . import report
    from .executors import execute

    cfg = prepare(out, cfg, resume)
    device = resolve_device(cfg.device)
    t_start = time.perf_counter()
    mixes = load_mixtures(cfg)
    info = stability_phase(cfg, mixes, out, progress)
    teacher_phase(cfg, mixes, info, out, device, progress)
    amp = amplification_phase(cfg, mixes, info, out, device, progress)
    traj = trajectory_phase(cfg, mixes, info, out, progress)

    jobs = jobs_of(cfg, mixes)
    payloads = {}
    tasks = []
    for job in jobs:
        mk = job["mkey"]
        union = info[mk]["union_nodes"]
        g = info[mk]["grids"][f"{job['grid']}/{job['N']}"]
        pos = {t: i for i, t in enumerate(union)}
        ctx = {"job": job, "config": cfg.to_dict(), "spec": cfg.specs[int(mk.split("-", 1)[0])],
               "nodes": g["nodes"], "node_index": [pos[t] for t in g["nodes"]], "Lambda": g["Lambda"],
               "dir": str(out / "jobs" / job_key(job)), "device": device, "out": str(out), "union": union,
               "teacher_path": str(teacher_path(out, mk, job["seed"])),
               "rms_certified": traj[mk]["grids"][f"{job['grid']}/{job['N']}"]["rms_certified_to_delta"]}
        payload = None
        if executor in ("local", "ray") and not (Path(ctx["dir"]) / "result.json").exists():
            key = (mk, job["seed"])
            if key not in payloads:
                payloads[key] = runcheck.load_teacher(out, ctx["teacher_path"], cfg, union, mixes[mk].d)
            payload = payloads[key]
        tasks.append((ctx, payload))

    bar = _bar(len(tasks), "train+evaluate", progress)

    def on_done(i, result):
        done = Path(tasks[i][0]["dir"]) / "result.json"
        if not done.exists():  # a worker on another machine (Ray) wrote it there, not here
            write_json(done, result)
        bar.update(1)
        bar.set_postfix_str(f"{job_key(jobs[i])} relMSE={result['rel_mse']['value']:.3g}")

    with bar:
        results = execute(run_job, tasks, on_done, executor, workers, address)
    results_doc = report.assemble(cfg, info, amp, results, device=device, executor=executor, trajectory=traj,
                                  wall_s=time.perf_counter() - t_start)
    report.write(out, results_doc, plots=plots, progress=progress)
    return results_doc


def start(specs=(), *, out: str | None = None, resume: str | None = None, preset: str | None = None,
          executor: str = "local", workers: int | None = None, address: str | None = None,
          progress: bool = True, plots: bool = True, **options) -> dict:
    """Check the request, then start (``specs``) or continue (``resume``) a validation run.

    ``specs`` are mixture names/paths or :class:`~numcore.mixture.GaussianMixture` objects;
    ``options`` are fields of :class:`ValidateConfig` (None: the preset's value, then the default).
    A resumed run takes its saved configuration, so nothing else may be given with ``resume``.
    Returns the results document (``results.json``).

    Raises:
        InputError: bad options, a missing or foreign run folder, Ray asked for but not installed.
    """
    from ..numcore.checks import choice, option
    from ..numcore.io import check_folder
    from ..numcore.mixture import GaussianMixture, load

    from .config import EXECUTORS, build_config

    choice("executor", executor, EXECUTORS)
    if workers is not None:
        option("workers", workers)
    if executor == "ray":
        from .executors import check_ray_address, require_ray

        require_ray()
        check_ray_address(address)  # before any work or folder: an address where no Ray head listens
    if resume is not None:
        given = [k for k, v in options.items() if v is not None]
        given += ["specs"] * bool(specs) + ["preset"] * bool(preset) + ["out"] * bool(out)
        if given:
            what = "the `specs`" if given[0] == "specs" else f"`{given[0]}`"
            raise InputError(f"`resume` = {resume!r}: continues the saved configuration; drop {what}")
        if not os.path.isdir(resume):
            raise InputError(f"`resume` = {resume!r}: no such directory")
        check_folder(resume, "resume")
        cfg, folder = None, resume
    else:
        if not specs:
            raise InputError("`specs` is missing: expected a mixture name or file (or `resume` DIR)")
        mixes = [s if isinstance(s, GaussianMixture) else load(s) for s in specs]
        names = [s if isinstance(s, str) else s.name for s in specs]
        cfg = build_config(names, [m.to_spec() | {"name": m.name} for m in mixes], preset=preset, **options)
        resolve_device(cfg.device)
        from .runfiles import RUN_FILES

        folder = check_folder(out or "flowcert-validate", "out", [s for s in specs if isinstance(s, str)], RUN_FILES)
    return run(cfg, folder, resume=resume is not None, executor=executor, workers=workers, address=address,
               progress=progress, plots=plots)
