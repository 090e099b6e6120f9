"""Executors for the sweep's independent jobs: in-process, a local process pool, or Ray.

Every executor calls the same pure function ``fn(ctx, payload)`` on each job and returns the
results in job order, so the results do not depend on the executor.  ``on_done(i, result)`` is
called in the driver as each job finishes (the driver checkpoints results there).
"""

from __future__ import annotations

from ..numcore.checks import InputError


def run_local(fn, jobs, on_done):
    out = []
    for i, (ctx, payload) in enumerate(jobs):
        r = fn(ctx, payload)
        on_done(i, r)
        out.append(r)
    return out


PARENT_POLL_S = 0.5  # how often a pool worker checks that the process that started it still runs


def watch_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """Pool-worker initializer: a daemon thread ends this process (os._exit) as soon as its parent is
    gone (re-parented: getppid() changes), so a killed run leaves no workers behind, even ones busy
    inside a long job."""
    import os
    import threading
    import time

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="flowcert-parent-watch", daemon=True).start()


def run_process(fn, jobs, on_done, workers: int):
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    out = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=watch_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(fn, ctx, payload): i for i, (ctx, payload) in enumerate(jobs)}
        for fut in as_completed(futures):
            i = futures[fut]
            out[i] = fut.result()
            on_done(i, out[i])
    return out


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray() -> None:
    """InputError unless Ray is installed."""
    if not ray_available():
        raise InputError("`executor` = 'ray': the ray package is not installed; "
                         "install the optional dependency with pip install 'flowcert[ray]'")


def run_ray(fn, jobs, on_done, address: str | None, workers: int | None):
    """Jobs as Ray tasks (one CPU each; one GPU each when the job runs on CUDA).

    Large payloads (teacher trajectories) go through the object store once per distinct payload.
    A local Ray instance is started when ``address`` is None (``workers`` CPUs); otherwise the
    driver connects to the cluster at ``address``.
    """
    require_ray()
    import ray

    started = False
    if not ray.is_initialized():
        kw = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                  configure_logging=False)
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=workers, **kw)
        started = True
    try:
        refs, shared = [], {}
        remote = ray.remote(fn)
        for ctx, payload in jobs:
            key = id(payload)
            if payload is not None and key not in shared:
                shared[key] = ray.put(payload)
            opts = {"num_cpus": 1, "num_gpus": 1 if ctx.get("device") == "cuda" else 0}
            refs.append(remote.options(**opts).remote(ctx, shared.get(key) if payload is not None else None))
        index = {r: i for i, r in enumerate(refs)}
        out = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                i = index[r]
                out[i] = ray.get(r)
                on_done(i, out[i])
        return out
    finally:
        if started:
            ray.shutdown()


def execute(fn, jobs, on_done, executor: str = "local", workers: int | None = None, address: str | None = None):
    """Run ``fn(ctx, payload)`` for each (ctx, payload) in ``jobs`` and return results in order."""
    if executor == "local":
        return run_local(fn, jobs, on_done)
    if executor == "process":
        import os

        return run_process(fn, jobs, on_done, workers or os.cpu_count() or 1)
    if executor == "ray":
        return run_ray(fn, jobs, on_done, address, workers)
    raise InputError(f"`executor` = {executor!r}: expected one of local, process, ray")
