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


RAY_CONNECT_S = 5.0  # how long a --ray-address may take to accept a TCP connection


def check_ray_address(address: str | None) -> None:
    """InputError unless ``address`` (``HOST:PORT``, ``ray://HOST:PORT``, ``auto`` or None) can be connected to:
    checked with a plain TCP connection before any work, so an address where no Ray head listens is refused in one
    line instead of ray.init retrying for minutes with log lines."""
    import socket

    if address is None or address in ("auto", "local"):
        return
    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"`ray_address` = {address!r}: expected HOST:PORT of a running Ray head (or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_S):
            pass
    except OSError as exc:
        raise InputError(f"`ray_address` = {address!r}: no Ray head answers there ({exc.strerror or exc}): expected "
                         "the address of a running cluster (ray start --head), or no `ray_address` for a local "
                         "instance") from None


def _quiet_stderr():
    """A context that sends file descriptor 2 to a scratch file while Ray starts (its Python warnings and the C++
    log lines of its core worker), so a failure ends in flowcert's one line; on exit the scratch file's text is
    available as ``.text`` and descriptor 2 is restored."""
    import contextlib
    import os
    import sys
    import tempfile

    class Quiet(contextlib.AbstractContextManager):
        text = ""

        def __enter__(self):
            sys.stderr.flush()
            self.saved = os.dup(2)
            self.file = tempfile.TemporaryFile()
            os.dup2(self.file.fileno(), 2)
            return self

        def __exit__(self, *exc):
            sys.stderr.flush()
            os.dup2(self.saved, 2)
            os.close(self.saved)
            self.file.seek(0)
            self.text = self.file.read(1 << 16).decode("utf-8", "replace")
            self.file.close()
            return False

    return Quiet()


def _ray_failed(what: str, exc: BaseException) -> InputError:
    first = " ".join(str(exc).split())[:200]
    return InputError(f"`executor` = 'ray': {what}: {type(exc).__name__}: {first} (everything written before is "
                      "kept: resume the run once this is fixed, or use `executor` process)")


def run_ray(fn, jobs, on_done, address: str | None, workers: int | None):
    """Jobs as Ray tasks (one CPU each; one GPU each when the job runs on CUDA).

    Large payloads (teacher trajectories) go through the object store once per distinct payload.
    A local Ray instance is started when ``address`` is None (``workers`` CPUs); otherwise the
    driver connects to the cluster at ``address``.  Ray that does not start (an unwritable temporary
    folder, a cluster that refuses the driver) and a job that fails inside a worker end in one line:
    the job's own InputError, or one naming Ray.
    """
    require_ray()
    import ray

    started = False
    if not ray.is_initialized():
        kw = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                  configure_logging=False)
        check_ray_address(address)
        try:
            with _quiet_stderr():
                if address:
                    ray.init(address=address, **kw)
                else:
                    ray.init(num_cpus=workers, **kw)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds (OSError, ConnectionError, RuntimeError)
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
            raise _ray_failed("Ray did not start" if not address else f"cannot join the cluster at {address}",
                              exc) from None
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
                try:
                    out[i] = ray.get(r)
                except Exception as exc:  # noqa: BLE001 - RayTaskError wraps the job's own exception
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, InputError):
                        raise InputError(str(cause)) from None
                    raise _ray_failed(f"job {i} failed in a Ray worker", cause or exc) from None
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
