"""A time grid for a mixture or a trained model: its kind, the rate Lambda is taken from, its nodes in every unit,
and the grid exported for a sampler.

:func:`build` is what ``flowcert grid`` and :func:`flowcert.grid` compute, :func:`export` what ``grid --for``
writes; the keys of the returned dicts are the command's JSON fields.  Both take a
:class:`~studies.targets.Target`, so a mixture and a model go through the same code.
"""

from __future__ import annotations

import time

from ..numcore import grids
from ..numcore import units as un
from ..numcore.checks import option, options
from ..numcore.io import no_progress

SAMPLING_NOTE = ("for sampling, the grid with the smallest error for a solver is `--kind optimal --solver "
                 "euler|heun|dpmpp_2m`; `--for PRESET` exports it by default for the solver the preset runs "
                 "(docs/samplers.md)")


def check_units(units) -> list[str]:
    names = list(dict.fromkeys(units))
    for u in names:
        if u not in un.UNITS:
            from ..numcore.checks import InputError

            raise InputError(f"`units` = {u!r}: expected one of {', '.join(un.UNITS)}")
    return names


def build(target, steps: int = 8, *, kind: str = "balanced", bound: str = "tri", delta: float = 1e-3,
          T: float = 5.0, units=("t",), beta_schedule: str = "linear", clip: bool = False, samples: int = 4096,
          seed: int = 0, solver: str | None = None, train_samples: int = 4096, test_samples: int = 4096,
          effort: float = 1.0, progress=no_progress) -> dict:
    """The grid with N = ``steps`` segments of a :class:`~studies.targets.Target`, descending from t[0] = T to
    t[N] = delta.

    Returns a dict: ``t`` (N + 1,) OU times, ``lambda`` (Lambda at each node under ``bound``; None where the
    target's rate is not computed for this kind: a trained model's closed forms), ``lambda_T``,
    ``lambda_error``, ``amplification`` = exp(Lambda(T)), ``log10_amplification``, ``bound_info``, ``kind``,
    ``bound``, ``steps``, ``delta``, ``T``, ``mixture`` (and ``model`` for a model), each requested unit
    under its name (``sigma``, ``alpha``, ``sigma_vp``, ``logsnr``, ``rf``, ``ddpm``), and
    ``beta_schedule`` when ``ddpm`` is asked for, and ``warnings`` (a list of lines) when times were clipped.
    Kind ``optimal`` adds ``solver`` and ``optimal`` (the search's record, :func:`studies.optimal.optimal_grid`:
    training and test errors, closed forms on the same test batch, stopping reason); the other kinds carry
    ``sampling`` (one line pointing to that grid).  A model adds ``cost``.

    Raises:
        InputError: ``steps``, ``kind``, ``bound``, ``units``, ``samples`` or the window out of range,
            or (without ``clip``) a node outside the DDPM schedule's range; kind ``optimal`` without a
            ``solver`` or with more than MAX_STEPS steps.
    """
    delta, T = target.window(delta, T)
    steps, seed = options(steps=steps, seed=seed)
    grids.check(kind, grids.GRID_KINDS)
    if kind == "optimal":
        from .optimal import check_optimal

        solver = check_optimal(solver, steps)
    target.check_rate(bound)
    names = check_units(units)
    clock = time.time()
    st, t, extra = None, None, {"sampling": SAMPLING_NOTE}
    if target.rate_is_cheap or grids.KINDS[kind].needs == grids.RATE:
        if bound == "empirical":
            samples = option(target.samples_option, samples, "samples")
        st = target.stability(bound, delta, T, samples=samples, seed=seed, progress=progress)
    if kind == "optimal":
        from .optimal import optimal_grid

        rec = optimal_grid(target, steps, solver, delta=delta, T=T, train=train_samples, test=test_samples,
                           seed=seed, effort=effort, progress=progress)
        t = rec.pop("t")
        extra = {"solver": solver, "optimal": rec}
    out = from_stability(st, steps, kind=kind, delta=delta, T=T, units=names, beta_schedule=beta_schedule,
                         clip=clip, t=t, extra=extra)
    out = {**target.header(), **out}
    target.finish_grid(out, kind, st, clock)
    return out


def export(target, steps: int, preset: str, *, kind: str | None = None, solver: str | None = None,
           bound: str = "tri", delta: float = 1e-3, T: float = 5.0, beta_schedule: str | None = None,
           clip: bool = False, shift: float | None = None, scheduler_config: dict | None = None,
           samples: int = 4096, seed: int = 0, train_samples: int = 4096, test_samples: int = 4096,
           effort: float = 1.0, progress=no_progress) -> dict:
    """A grid of N = ``steps`` segments exported for one sampler (``flowcert grid --for PRESET``).

    Without ``kind``: the grid that wins for the solver the preset runs (:func:`studies.optimal.winning_export`
    against the target's teacher).  With ``kind``: that grid (:func:`build`), exported.  A diffusers model's
    exports follow its own scheduler config unless ``scheduler_config`` is given.

    Returns:
        dict: ``export``, ``grid`` and ``selection`` (None with ``kind``).
    """
    from ..exports.presets import check, export as export_
    from .optimal import check_steps, winning_export

    check(preset)
    delta, T = target.window(delta, T)
    if scheduler_config is None:
        scheduler_config = target.scheduler_config()
    if kind is not None:
        g = build(target, steps, kind=kind, bound=bound, delta=delta, T=T, beta_schedule=beta_schedule or "linear",
                  clip=clip, samples=samples, seed=seed, solver=solver, train_samples=train_samples,
                  test_samples=test_samples, effort=effort, progress=progress)
        return {"export": export_(preset, g["t"], beta_schedule=beta_schedule, clip=clip, shift=shift,
                                  scheduler_config=scheduler_config), "grid": g, "selection": None}
    target.check_rate(bound)
    steps = check_steps(option("steps", steps))
    ex, rec = winning_export(target, steps, preset, solver=solver, delta=delta, T=T, beta_schedule=beta_schedule,
                             clip=clip, shift=shift, scheduler_config=scheduler_config, train=train_samples,
                             test=test_samples, seed=seed, effort=effort, progress=progress)
    g = {**target.header(), "kind": rec["kind"], "bound": target.winner_bound(bound), "steps": steps, "delta": delta,
         "T": T, "t": ex.t, "solver": rec["solver"]}
    return {"export": ex, "grid": g, "selection": rec}


def from_stability(st, steps: int, *, kind: str, delta: float, T: float, units=("t",),
                   beta_schedule: str = "linear", clip: bool = False, t=None, extra: dict | None = None) -> dict:
    """The grid of :func:`build` from a computed :class:`~bounds.stability.Stability` (or None for kinds that
    need no rate: then ``lambda`` and the amplification are None), with the nodes ``t`` when they were
    computed already (the optimal grid) and ``extra`` fields.  Inputs are assumed checked."""
    if t is None:
        t = grids.build(kind, steps, delta, T, st.integral if st is not None else None)
    out = {"kind": kind, "bound": st.name if st is not None else None, "steps": steps, "delta": delta, "T": T,
           "t": t, "lambda": st.integral(t) if st is not None else None,
           "lambda_T": st.integral.total if st is not None else None,
           "lambda_error": st.integral.error if st is not None else None,
           "amplification": st.amplification if st is not None else None,
           "log10_amplification": st.log10_amplification if st is not None else None,
           "bound_info": st.meta if st is not None else None, **(extra or {})}
    names = list(dict.fromkeys(units))
    for u in names:
        if u == "t":
            continue
        if u == "ddpm":
            out["beta_schedule"] = beta_schedule
            lo, hi = un.ddpm_range(beta_schedule)
            if clip and ((t < lo) | (t > hi)).any():
                out["warnings"] = [f"times outside the {beta_schedule} DDPM range [{lo:.4g}, {hi:.4g}] "
                                   "clipped to timesteps 0 / 999"]
        out[u] = un.convert(t, u, beta_schedule=beta_schedule, clip=clip)
    return out
