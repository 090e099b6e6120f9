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
from .sweeps import HOLDS_RTOL, RATES, holds, seed_of, target_key, targets_of  # noqa: F401  (re-exported)

mixture_key = target_key  # the key of a target in run files (kept under its old name)


def job_key(job: dict) -> str:
    return f"{job['mkey']}_{job['grid']}_N{job['N']}_s{job['seed']}"


def _bar(total, desc, enabled=True):
    return progress_bar(total, desc, enabled)


def _bars(enabled: bool):
    """A bar factory ``bars(total, desc)`` (the ``progress`` argument of the studies' targets)."""
    return lambda total, desc: _bar(total, desc, enabled)


# ----------------------------------------------------------------------------- phase 1
def stability_phase(cfg: ValidateConfig, targets, out: Path, progress=True) -> dict:
    """Rates, Lambda at the grid nodes and every grid, per target (cached in ``grids.json``)."""
    path = out / "grids.json"
    if path.exists():
        return runcheck.load_grids(out, cfg, targets)
    import torch

    result = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with _bar(len(targets), "stability", progress) as bar:
            for mk, target in targets.items():
                result[mk] = target.stability(cfg, out, _bars(progress))
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
    write_json(path, result)
    return result


# ----------------------------------------------------------------------------- phase 2
def teacher_path(out: Path, mkey: str, seed: int) -> Path:
    return out / "teacher" / f"{mkey}-s{seed}.pt"


def teacher_phase(cfg, targets, info, out: Path, device: str, progress=True) -> None:
    """Teacher trajectories of n_train + n_test samples of x_T through the union of grid nodes, per (target, seed),
    with what the target records about its teacher (a model: its evaluations and self-convergence)."""
    import torch

    todo = [(mk, s) for mk in targets for s in cfg.seed_list if not teacher_path(out, mk, s).exists()]
    if not todo:
        return
    steps = sum(len(info[mk]["union_nodes"]) - 1 for mk, _ in todo)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with _bar(steps, "teacher", progress) as bar:
            for mk, s in todo:
                target, nodes = targets[mk], info[mk]["union_nodes"]
                x = target.sample_T(cfg, cfg.n_train + cfg.n_test, seed_of("teacher", mk, s))
                teacher = target.teacher(cfg, device, nodes)
                clock = time.perf_counter()
                traj = teacher.trajectory(x, nodes, progress=bar).cpu()
                record = target.teacher_record(cfg, teacher, x, traj, nodes)
                doc = {"nodes": torch.tensor(nodes, dtype=torch.float64),
                       "train": traj[: cfg.n_train].clone(), "test": traj[cfg.n_train:].clone()}
                if record:
                    doc["record"] = {**record, "seconds": time.perf_counter() - clock}
                torch_save_atomic(teacher_path(out, mk, s), doc)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- phase 3
def amplification_phase(cfg, targets, info, out: Path, device: str, progress=True) -> dict:
    """||D Phi_{t->delta}||_op per target (cached in ``amplification.json``)."""
    path = out / "amplification.json"
    if path.exists():
        return runcheck.load_amplification(out, cfg, targets, info)
    import torch

    result = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        total = sum(cfg.amp_times if t.kind == "mixture" else cfg.amp_samples for t in targets.values())
        with _bar(total, "amplification", progress) as bar:
            for mk, target in targets.items():
                result[mk] = target.amplification(cfg, info[mk], out, device, bar)
    finally:
        torch.set_num_threads(threads)
    write_json(path, result)
    return result


# ----------------------------------------------------------------------------- phase 3b
def trajectory_phase(cfg, targets, info, out: Path, progress=True) -> dict:
    """Per-trajectory factors along the union of grid nodes, per target (cached in ``trajectory.json``)."""
    path = out / "trajectory.json"
    if path.exists():
        return runcheck.load_trajectory(out, info, targets)
    import torch

    result = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        total = sum(len(info[mk]["union_nodes"]) - 1 for mk, t in targets.items() if t.kind == "mixture")
        with _bar(total, "per-trajectory", progress) as bar:
            for mk, target in targets.items():
                result[mk] = target.trajectory(cfg, info[mk], out, bar)
    finally:
        torch.set_num_threads(threads)
    write_json(path, result)
    return result


# ----------------------------------------------------------------------------- phase 4: one job
def block_width(cfg: ValidateConfig, N: int, d) -> int:
    """The width of each of N blocks: ``width`` (per-block budget) or the widest whose N blocks fit the total
    (``d``: numbers per sample, or the sample's shape)."""
    from .students import width_for_total

    if cfg.budget == "per-block":
        return cfg.width
    shape = (int(d),) if isinstance(d, int) else tuple(d)
    return width_for_total(cfg.block_total(), N, int(np.prod(shape)), cfg.depth, block=cfg.block, shape=shape)


def _distance(target, cfg, job, student, teacher_end) -> dict | None:
    """Sliced W2 (bootstrap 95% interval) of the student's and the teacher's end points to the target's reference
    sample of p_delta (at most DISTANCE_SAMPLES points of each)."""
    from ..numcore.distances import sliced_wasserstein_ci

    from .sweeps import DISTANCE_SAMPLES, SW_BOOTS

    if cfg.distance == "none":
        return None
    n = min(DISTANCE_SAMPLES, student.shape[0])
    ref = target.reference(cfg, job["seed"], n)
    if ref is None:
        return None
    ref, theta, what = ref
    out = {}
    for name, x in (("student", student), ("teacher", teacher_end)):
        rng = np.random.default_rng(seed_of("sw2", job["mkey"], job["grid"], job["N"], job["seed"], name))
        e = sliced_wasserstein_ci(np.asarray(x[:n], float), ref, theta, rng, boots=SW_BOOTS)
        out[name] = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
    return {"sw2": out["student"], "teacher_sw2": out["teacher"], "samples": int(n), "reference_samples": len(ref),
            "directions": int(len(theta)), "reference": what,
            "what": "sliced W2 of the student's end points (and of the teacher's: its floor) to the reference at "
                    "p_delta, bias-corrected percentile bootstrap 95% interval"}


def run_job(ctx: dict, payload=None) -> dict:
    """Train and evaluate one student; resumable from the checkpoints in ``ctx['dir']``.

    ``payload`` holds the teacher trajectories ({'train', 'test'} tensors at the union nodes);
    when None they are read from ``ctx['teacher_path']``.
    """
    import torch

    from . import measure as M
    from .students import block_params, finetune_chain, stack_class, train_segments
    from .sweeps import target_of

    jdir, out = Path(ctx["dir"]), Path(ctx["out"])
    done = jdir / "result.json"
    job = ctx["job"]
    if done.exists():
        return runcheck.load_result(out, done, job, ctx["nodes"], ctx["fan_rates"])
    cfg = ValidateConfig.from_dict(ctx["config"])
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        device = ctx["device"]
        dtype = getattr(torch, cfg.dtype)
        target = target_of(job["mkey"], ctx["target"], device)
        if payload is None:
            payload = runcheck.load_teacher(out, ctx["teacher_path"], cfg, ctx["union"], target.d)
        idx = torch.as_tensor(ctx["node_index"])
        train = payload["train"][:, idx].transpose(0, 1).contiguous()  # (N+1, n, d)
        test = payload["test"][:, idx].transpose(0, 1).contiguous()
        nodes, N, d, shape = ctx["nodes"], job["N"], target.d, target.shape
        width = block_width(cfg, N, shape)
        Stack = stack_class(cfg.block)
        Xtr = train.to(device=device, dtype=dtype)
        timing = {"train_s": 0.0, "finetune_s": 0.0, "eval_s": 0.0}

        # -- training, one checkpoint per block group
        parts, losses = [], []
        for g, start in enumerate(range(0, N, cfg.group)):
            blocks = list(range(start, min(N, start + cfg.group)))
            ck = jdir / f"group{g}.pt"
            if ck.exists():
                saved = runcheck.load_blocks(out, ck, jdir, len(blocks), shape, width, cfg.depth, (len(blocks),),
                                             dtype, block=cfg.block)
            else:
                t0 = time.perf_counter()
                gen = torch.Generator().manual_seed(seed_of(job["mkey"], job["seed"], N, "group", g))
                stack = Stack.init(len(blocks), d if cfg.block == "mlp" else shape, width, cfg.depth, gen, dtype,
                                   device)
                loss = train_segments(stack, Xtr[blocks], Xtr[[b + 1 for b in blocks]], iters=cfg.iters,
                                      batch=cfg.batch, lr=cfg.lr, generator=gen)
                saved = {"state": stack.state(), "loss": loss.double().cpu(),
                         "seconds": time.perf_counter() - t0}
                torch_save_atomic(ck, saved)
            timing["train_s"] += float(saved["seconds"])
            parts.append(Stack.from_state(saved["state"], dtype, device))
            losses += saved["loss"].tolist()
        stack = Stack.concat(parts)

        finetune_loss = None
        if cfg.finetune > 0:
            ck = jdir / "finetune.pt"
            if ck.exists():
                saved = runcheck.load_blocks(out, ck, jdir, N, shape, width, cfg.depth, None, dtype, block=cfg.block)
            else:
                t0 = time.perf_counter()
                gen = torch.Generator().manual_seed(seed_of(job["mkey"], job["seed"], N, "finetune"))
                fl = finetune_chain(stack, Xtr[0], Xtr[-1], iters=cfg.finetune, batch=cfg.batch,
                                    lr=cfg.finetune_lr, generator=gen)
                saved = {"state": stack.state(), "loss": fl, "seconds": time.perf_counter() - t0}
                torch_save_atomic(ck, saved)
            stack = Stack.from_state(saved["state"], dtype, device)
            finetune_loss, timing["finetune_s"] = float(saved["loss"]), float(saved["seconds"])

        # -- evaluation on fresh teacher trajectories
        t0 = time.perf_counter()
        Xte = test.to(device)  # float64
        with torch.no_grad():
            end, states = stack.chain(Xte[0].to(dtype), keep=True)
        rel = M.relative_error_stats(end, Xte[-1])
        teacher = target.job_teacher(cfg, device, ctx["union"])
        e0 = getattr(teacher, "evaluations", None)
        ls = cfg.local_samples or Xte.shape[1]
        local_teacher, local_chain = [], []
        for i in range(N):
            with torch.no_grad():
                psi_t = stack.apply_block(i, Xte[i].to(dtype)).double()
            local_teacher.append(M.rms_ci(((psi_t - Xte[i + 1]) ** 2).sum(1).cpu().numpy()))
            z = states[i][:ls].double()
            phi = teacher.flow(z, nodes[i], nodes[i + 1]).to(z.device)
            local_chain.append(M.rms_ci(((states[i + 1][:ls].double() - phi) ** 2).sum(1).cpu().numpy()))
        eps = [e["value"] for e in local_chain]
        measured = rel["rms_error"]["value"]
        fan = {}
        for r in target.fan_rates:
            Lam = ctx["Lambda"][r]
            start, end_b = M.fan_bound(eps, Lam, "start"), M.fan_bound(eps, Lam, "end")
            fan[r] = {"bound": start, "bound_end": end_b, "measured_rms": measured,
                      "bound_ci": [M.fan_bound([e["ci_low"] for e in local_chain], Lam, "start"),
                                   M.fan_bound([e["ci_high"] for e in local_chain], Lam, "start")],
                      "measured_rms_ci": [rel["rms_error"]["ci_low"], rel["rms_error"]["ci_high"]],
                      "holds": holds(start, measured), "holds_end": holds(end_b, measured), "holds_rtol": HOLDS_RTOL,
                      "slack": start / measured if measured > 0 else float("inf"),
                      "slack_end": end_b / measured if measured > 0 else float("inf")}
        fan_traj = None
        if ctx.get("fan_factors"):
            q = ctx["fan_factors"]  # nodes t_0..t_N
            what = ("sum_i eps_i q_i with q_i the RMS over trajectories of the certified per-trajectory factor from t_i "
                    "(end) or t_{i-1} (start) to delta: a first-order estimate, not a bound") \
                if target.factor == "certified" else \
                ("sum_i eps_i q_i with q_i the RMS over teacher trajectories of the measured ||D Phi_{t_i->delta}||_op "
                 "of the model's flow (end; start: from t_{i-1}): a first-order estimate, not a bound")
            fan_traj = {"estimate_end": float(sum(e * r for e, r in zip(eps, q[1:]))),
                        "estimate_start": float(sum(e * r for e, r in zip(eps, q[:-1]))),
                        "measured_rms": measured, "measured_rms_ci": [rel["rms_error"]["ci_low"],
                                                                      rel["rms_error"]["ci_high"]],
                        "estimate_end_ci": [float(sum((e["ci_low"] or 0.0) * r for e, r in zip(local_chain, q[1:]))),
                                            float(sum(e["ci_high"] * r for e, r in zip(local_chain, q[1:])))
                                            if all(e["ci_high"] is not None for e in local_chain) else None],
                        "factor": target.factor, "what": what}
        lip = []
        for i in range(N):
            x, t = target.lipschitz_points(cfg, ctx, out, teacher, Xte, nodes, i)
            Jb = M.block_jacobian(stack, i, x.to(device=device, dtype=dtype))
            b = M.opnorm(Jb)
            lip.append({"segment": i + 1, "t_start": nodes[i], "t_end": nodes[i + 1],
                        "block_max": float(b.max()), "block_mean": M.mean_ci(b),
                        "teacher_max": float(t.max()), "teacher_mean": M.mean_ci(t),
                        "ratio_max": float(b.max() / t.max())})
        distance = _distance(target, cfg, job, end.double().cpu().numpy(), Xte[-1].cpu().numpy())
        timing["eval_s"] = time.perf_counter() - t0
        per_block = block_params(cfg.block, shape, width, cfg.depth)
        result = {
            "mixture": job["mixture"], "mkey": job["mkey"], "grid": job["grid"], "N": N, "seed": job["seed"],
            "nodes": list(nodes), "block": cfg.block, "width": width, "depth": cfg.depth,
            "params_per_block": per_block, "params_total": N * per_block,
            "train_loss": losses, "finetune_loss": finetune_loss,
            "rel_mse": rel, "local_error_teacher": local_teacher, "local_error_chain": local_chain,
            "fan": fan, "fan_trajectory": fan_traj, "lipschitz": lip, "timing": timing,
        }
        if distance is not None:
            result["distance"] = distance
        if e0 is not None:
            result["cost"] = {"model_evaluations": int(teacher.evaluations - e0), "local_samples": int(ls),
                              "what": "the teacher's maps of the student's chain states (local errors)"}
        write_json(done, result)
        return result
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the whole run
def load_mixtures(cfg: ValidateConfig) -> dict:
    """{key: target} of a configuration (its mixtures, or its model)."""
    return targets_of(cfg, resolve_device(cfg.device) if cfg.model else "cpu")


def jobs_of(cfg: ValidateConfig, targets) -> list[dict]:
    return [{"mixture": t.name, "mkey": mk, "grid": g, "N": N, "seed": s}
            for mk, t in targets.items() for s in cfg.seed_list for g in cfg.grids for N in cfg.steps]


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
    targets = targets_of(cfg, device)
    info = stability_phase(cfg, targets, out, progress)
    teacher_phase(cfg, targets, info, out, device, progress)
    amp = amplification_phase(cfg, targets, info, out, device, progress)
    traj = trajectory_phase(cfg, targets, info, out, progress)

    jobs = jobs_of(cfg, targets)
    payloads = {}
    tasks, first = [], {}  # first: the job that computes each distinct student (same target, seed, N and nodes)
    for i, job in enumerate(jobs):
        mk = job["mkey"]
        target = targets[mk]
        union = info[mk]["union_nodes"]
        key = f"{job['grid']}/{job['N']}"
        g = info[mk]["grids"][key]
        pos = {t: k for k, t in enumerate(union)}
        ctx = {"job": job, "config": cfg.to_dict(), "target": target.context(), "fan_rates": list(target.fan_rates),
               "nodes": g["nodes"], "node_index": [pos[t] for t in g["nodes"]], "Lambda": g["Lambda"],
               "dir": str(out / "jobs" / job_key(job)), "device": device, "out": str(out), "union": union,
               "teacher_path": str(teacher_path(out, mk, job["seed"])),
               "fan_factors": target.fan_factors(traj[mk], key),
               "info": {"union_nodes": union, "grids": {key: {"nodes": g["nodes"]}}} if target.kind == "model" else None,
               "grid": job["grid"]}
        same = (mk, job["seed"], job["N"], tuple(g["nodes"]))
        if same in first:
            tasks.append((ctx, None, first[same]))
            continue
        first[same] = i
        payload = None
        if executor in ("local", "ray") and not (Path(ctx["dir"]) / "result.json").exists():
            pk = (mk, job["seed"])
            if pk not in payloads:
                payloads[pk] = runcheck.load_teacher(out, ctx["teacher_path"], cfg, union, target.d)
            payload = payloads[pk]
        tasks.append((ctx, payload, None))

    bar = _bar(len(tasks), "train+evaluate", progress)
    results = [None] * len(tasks)
    twins = {}  # a computed job -> the jobs with the same student (their results are copies with their grid)
    for i, (_, _, src) in enumerate(tasks):
        if src is not None:
            twins.setdefault(src, []).append(i)
    run_list = [i for i, (_, _, src) in enumerate(tasks) if src is None]

    def record(i, result):
        done = Path(tasks[i][0]["dir"]) / "result.json"
        if not done.exists():  # a worker on another machine (Ray) wrote it there, not here; or a twin
            write_json(done, result)
        results[i] = result
        bar.update(1)
        bar.set_postfix_str(f"{job_key(jobs[i])} relMSE={result['rel_mse']['value']:.3g}")

    def on_done(k, result):
        i = run_list[k]
        record(i, result)
        for j in twins.get(i, ()):
            done = Path(tasks[j][0]["dir"]) / "result.json"
            if done.exists():
                twin = runcheck.load_result(out, done, jobs[j], tasks[j][0]["nodes"], tasks[j][0]["fan_rates"])
            else:
                twin = {**json.loads(json.dumps(result)), "grid": jobs[j]["grid"], "same_student_as": result["grid"]}
            record(j, twin)

    with bar:
        execute(run_job, [tasks[i][:2] for i in run_list], on_done, executor, workers, address)
    results_doc = report.assemble(cfg, info, amp, results, device=device, executor=executor, trajectory=traj,
                                  wall_s=time.perf_counter() - t_start, out=out)
    report.write(out, results_doc, plots=plots, progress=progress)
    return results_doc


def model_config(model, *, preset=None, data=None, reference=None, model_options=None, **options) -> ValidateConfig:
    """The configuration of a model run: the model is loaded once here, to record its sample shape and check the
    window against its trained range; the shipped model brings its own training and held-out data (``data``,
    ``reference``) unless others are named (with ``class_label``, only that class's samples, where the shipped data
    have labels); every data file is checked against the model's sample size and its
    sha256 recorded (a resumed run refuses a file that changed)."""
    from ..models.loaders import builtin_data
    from ..studies.targets import ModelTarget

    from .config import build_config
    from .sweeps import class_rows, file_sha256, load_model

    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise InputError(f"`model` = {model!r}: expected a model source a run folder can load again (a diffusers "
                         "folder, FILE.py:NAME, mixture:SPEC or a shipped model's name)")
    source = os.fspath(model)
    from .config import MODEL_OPTIONS

    if not isinstance(model_options, (dict, type(None))) or any(k not in MODEL_OPTIONS for k in model_options or {}):
        raise InputError(f"`model_options` = {model_options!r:.80}: expected a mapping with keys among "
                         f"{', '.join(MODEL_OPTIONS)}")
    model_options = dict(model_options or {})
    net = load_model(source, model_options, resolve_device(options.get("device") or "auto"))
    shipped = builtin_data(source)
    files = {}
    label = model_options.get("class_label")
    for name, given, default in (("data", data, "train"), ("reference", reference, "test")):
        path = given if given is not None else (shipped or {}).get(default)
        if path:
            from ..models.jacobian import load_data

            path = os.path.abspath(os.fspath(path))
            n = load_data(path, net.d, name).shape[0]
            files[name], files[f"{name}_sha256"] = path, file_sha256(path)
            labels = (shipped or {}).get(f"{default}_labels") if given is None and label is not None else None
            if labels:  # the shipped guided model's data: only the class's samples
                class_rows(labels, n, label, name)
                files[f"{name}_labels"], files[f"{name}_labels_sha256"] = labels, file_sha256(labels)
    if options.get("grids") is None and "data" not in files:  # the preset's surrogate grid needs training data
        from .config import MODEL_PRESETS

        options["grids"] = [g for g in MODEL_PRESETS[preset or "full"]["grids"] if g != "surrogate"]
    cfg = build_config([], [], preset=preset, model=source, shape=list(net.shape), model_options=model_options,
                       **files, **options)
    ModelTarget(net).window(cfg.delta, cfg.T, teacher=True)
    return cfg


def start(specs=(), *, model=None, out: str | None = None, resume: str | None = None, preset: str | None = None,
          executor: str = "local", workers: int | None = None, address: str | None = None,
          progress: bool = True, plots: bool = True, data=None, reference=None, model_options=None,
          **options) -> dict:
    """Check the request, then start (``specs`` or ``model``) or continue (``resume``) a validation run.

    ``specs`` are mixture names/paths or :class:`~numcore.mixture.GaussianMixture` objects; ``model`` a model
    source (:func:`flowcert.load_model`'s: a diffusers folder, ``FILE.py:NAME``, ``mixture:SPEC``, ``digits``)
    with ``data`` / ``reference`` (training and held-out .npy; the shipped model's own by default) and
    ``model_options`` (keyword arguments of load_model);
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
        given += ["specs"] * bool(specs) + ["preset"] * bool(preset) + ["out"] * bool(out) + \
            ["model"] * (model is not None) + ["data"] * (data is not None) + ["reference"] * (reference is not None)
        if given:
            what = "the `specs`" if given[0] == "specs" else f"`{given[0]}`"
            raise InputError(f"`resume` = {resume!r}: continues the saved configuration; drop {what}")
        if not os.path.isdir(resume):
            raise InputError(f"`resume` = {resume!r}: no such directory")
        check_folder(resume, "resume")
        cfg, folder = None, resume
    else:
        from .runfiles import RUN_FILES

        if model is not None:
            if specs:
                raise InputError("`model` and the `specs` together: expected mixture SPECs or one `model`, not both")
            from ..models.loaders import input_files

            cfg = model_config(model, preset=preset, data=data, reference=reference, model_options=model_options,
                               **options)
            inputs = input_files(cfg.model) + [p for p in (cfg.data, cfg.reference) if p]
        else:
            if not specs:
                raise InputError("`specs` is missing: expected a mixture name or file, or `model` (or `resume` DIR)")
            for name, value in (("data", data), ("reference", reference), ("model_options", model_options)):
                if value is not None:
                    raise InputError(f"`{name}` is given without `model`: a mixture's teacher and distance use its "
                                     "exact samples")
            mixes = [s if isinstance(s, GaussianMixture) else load(s) for s in specs]
            names = [s if isinstance(s, str) else s.name for s in specs]
            cfg = build_config(names, [m.to_spec() | {"name": m.name} for m in mixes], preset=preset, **options)
            inputs = [s for s in specs if isinstance(s, str)]
        resolve_device(cfg.device)
        folder = check_folder(out or "flowcert-validate", "out", inputs, RUN_FILES)
    return run(cfg, folder, resume=resume is not None, executor=executor, workers=workers, address=address,
               progress=progress, plots=plots)
