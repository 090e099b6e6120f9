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
from ..numcore.solvers import NAMES

SAMPLING_NOTE = ("for sampling, the grid with the smallest error for a solver is `--kind optimal --solver "
                 + "|".join(NAMES) + "`; `--for PRESET` exports it by default for the solver the preset runs "
                 "(docs/samplers.md)")


def flow_options(kind: str | None, preset: str | None, scheduler_config: dict | None, *, shift=None, mu=None,
                 resolution=None) -> tuple[dict, dict]:
    """The flow pipeline's options routed to where they apply: (the parameters of the flow grid kinds, the options of
    the diffusers-flowmatch export).

    ``shift`` (static), ``mu`` or ``resolution`` H,W (dynamic: the mu a pipeline computes for that image size)
    describe the pipeline.  The grid kinds flow-shift and flux-mu take them, defaulting to the scheduler config's
    own (its static shift; its dynamic line at 1024 x 1024), else SD3's shift 3 and Flux's mu at 1024 x 1024 (1.15).
    The diffusers-flowmatch export pre-inverts them (:func:`exports.presets.flow_scheduler`), except where a
    scheduler config defines the scheduler and the kind asked for is the one that takes the option: then it is the
    grid's alone (``--kind flow-shift --shift 5`` for a pipeline whose config says 3).

    Raises:
        InputError: an option that neither the kind nor the preset takes; both ``mu`` and ``resolution``.
    """
    from ..exports.presets import PRESETS, flow_pipeline, is_flow
    from ..numcore.checks import InputError, option, resolution as check_resolution, show_value

    given = {k: v for k, v in (("shift", shift), ("mu", mu), ("resolution", resolution)) if v is not None}
    flow_preset = preset is not None and is_flow(preset, scheduler_config)
    own = PRESETS[preset].options if preset in PRESETS else ()  # the preset's own shift options (diffusers-unipc: shift)
    takes = kind in grids.FLOW_KINDS or (kind is None and flow_preset)
    untaken = [k for k in given if not takes and k not in own]
    if untaken:
        key = untaken[0]
        exports = " and ".join(name for name, p in PRESETS.items() if key in p.options)
        raise InputError(f"`{key}` = {show_value(given[key])} applies to the grid kinds {', '.join(grids.FLOW_KINDS)} "
                         f"and to the {exports} export{'s' if ' and ' in exports else ''} (a flow pipeline's shift): expected `kind` "
                         f"{' or '.join(grids.FLOW_KINDS)}, or no `{key}`")
    if mu is not None and resolution is not None:
        raise InputError(f"`mu` = {show_value(mu)} and `resolution` = {show_value(resolution)}: expected one of them "
                         "(the pipeline computes mu from the resolution)")
    pipe = flow_pipeline(scheduler_config) if scheduler_config is not None else None
    line = pipe["line"] if pipe is not None else dict(grids.DYNAMIC_DEFAULTS)
    params = {"shift": shift if shift is not None else (pipe["shift"] if pipe is not None and not pipe["dynamic"]
                                                        else None)}
    usable = line["base_shift"] is not None and line["max_shift"] is not None and \
        line["base_image_seq_len"] != line["max_image_seq_len"]
    if mu is not None:
        params["mu"] = option("mu", mu)
    elif resolution is not None:
        hw = check_resolution(resolution)
        if not usable:
            raise InputError("`resolution`: the scheduler config has no line (base/max shift at two sequence "
                             "lengths) to compute mu from: expected `mu`")
        params["mu"] = option("mu", grids.mu_for_resolution(*hw, **line), "resolution")
    elif pipe is not None and pipe["dynamic"] and usable:  # the config's own line at the default image size
        params["mu"] = option("mu", grids.mu_for_resolution(*grids.DEFAULT_RESOLUTION, **line), "resolution")
    export = {k: v for k, v in (("shift", shift), ("mu", mu), ("resolution", resolution)) if k in own}
    if preset == "diffusers-flowmatch":
        export = {"shift": shift, "mu": mu, "resolution": resolution}
        if scheduler_config is not None and kind == "flow-shift":
            export["shift"] = None
        if scheduler_config is not None and kind == "flux-mu" and pipe is not None and not pipe["dynamic"]:
            export["mu"] = export["resolution"] = None
    return params, export


def flow_params(kind: str, params: dict) -> dict:
    """The parameters grid kind ``kind`` takes, resolved and checked (``{"shift": 3.0}``; {} for other kinds)."""
    return grids.KINDS[kind].parameters(**params)


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
          effort: float = 1.0, shift: float | None = None, mu: float | None = None, resolution=None,
          scheduler_config: dict | None = None, params: dict | None = None, progress=no_progress) -> dict:
    """The grid with N = ``steps`` segments of a :class:`~studies.targets.Target`, descending from t[0] = T to
    t[N] = delta.

    Returns a dict: ``t`` (N + 1,) OU times, ``lambda`` (Lambda at each node under ``bound``; None where the
    target's rate is not computed for this kind: a trained model's closed forms), ``lambda_T``,
    ``lambda_error``, ``amplification`` = exp(Lambda(T)), ``log10_amplification``, ``bound_info``, ``kind``,
    ``bound``, ``steps``, ``delta``, ``T``, ``mixture`` (and ``model`` for a model), each requested unit
    under its name (``sigma``, ``alpha``, ``sigma_vp``, ``logsnr``, ``rf``, ``ddpm``), and
    ``beta_schedule`` when ``ddpm`` is asked for, and ``warnings`` (a list of lines) when times were clipped.
    The flow kinds add their parameter (``shift`` or ``mu``: from ``shift``, ``mu`` or ``resolution``, else the
    ``scheduler_config``'s (a trained model's own by default), else SD3's 3 and Flux's 1.15; :func:`flow_options`).
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
    if params is None:
        if scheduler_config is None:
            scheduler_config = target.scheduler_config()
        params, _ = flow_options(kind, None, scheduler_config, shift=shift, mu=mu, resolution=resolution)
    params = flow_params(kind, params)
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
                         clip=clip, t=t, extra={**extra, **params}, params=params)
    out = {**target.header(), **out}
    target.finish_grid(out, kind, st, clock)
    return out


def export(target, steps: int, preset: str, *, kind: str | None = None, solver: str | None = None,
           bound: str = "tri", delta: float = 1e-3, T: float = 5.0, beta_schedule: str | None = None,
           clip: bool = False, shift: float | None = None, mu: float | None = None, resolution=None,
           scheduler_config: dict | None = None, samples: int = 4096, seed: int = 0, train_samples: int = 4096,
           test_samples: int = 4096, effort: float = 1.0, progress=no_progress) -> dict:
    """A grid of N = ``steps`` segments exported for one sampler (``flowcert grid --for PRESET``).

    Without ``kind``: the grid that wins for the solver the preset runs (:func:`studies.optimal.winning_export`
    against the target's teacher; for a flow preset the flow pipelines' defaults flow-shift and flux-mu are
    candidates too).  With ``kind``: that grid (:func:`build`), exported.  A diffusers model's exports follow its
    own scheduler config unless ``scheduler_config`` is given.  ``shift``, ``mu`` and ``resolution`` describe a
    flow pipeline's shift (:func:`flow_options`).

    Returns:
        dict: ``export``, ``grid`` and ``selection`` (None with ``kind``).
    """
    from ..exports.presets import CONFIGURABLE, check, export as export_
    from .optimal import check_steps, winning_export

    check(preset)
    delta, T = target.window(delta, T)
    if scheduler_config is None and preset in CONFIGURABLE:
        scheduler_config = target.scheduler_config()  # a model's own, for the presets that read one
    params, flow = flow_options(kind, preset, scheduler_config, shift=shift, mu=mu, resolution=resolution)
    if kind is not None:
        g = build(target, steps, kind=kind, bound=bound, delta=delta, T=T, beta_schedule=beta_schedule or "linear",
                  clip=clip, samples=samples, seed=seed, solver=solver, train_samples=train_samples,
                  test_samples=test_samples, effort=effort, params=params, progress=progress)
        return {"export": export_(preset, g["t"], beta_schedule=beta_schedule, clip=clip,
                                  scheduler_config=scheduler_config, **flow), "grid": g, "selection": None}
    target.check_rate(bound)
    steps = check_steps(option("steps", steps))
    ex, rec = winning_export(target, steps, preset, solver=solver, delta=delta, T=T, beta_schedule=beta_schedule,
                             clip=clip, scheduler_config=scheduler_config, train=train_samples, test=test_samples,
                             seed=seed, effort=effort, flow_params=params, progress=progress, **flow)
    g = {**target.header(), "kind": rec["kind"], "bound": target.winner_bound(bound), "steps": steps, "delta": delta,
         "T": T, "t": ex.t, "solver": rec["solver"]}
    if rec["kind"] in grids.FLOW_KINDS:
        g.update(flow_params(rec["kind"], params))
    return {"export": ex, "grid": g, "selection": rec}


def from_stability(st, steps: int, *, kind: str, delta: float, T: float, units=("t",),
                   beta_schedule: str = "linear", clip: bool = False, t=None, extra: dict | None = None,
                   params: dict | None = None) -> dict:
    """The grid of :func:`build` from a computed :class:`~bounds.stability.Stability` (or None for kinds that
    need no rate: then ``lambda`` and the amplification are None), with the nodes ``t`` when they were
    computed already (the optimal grid), the kind's ``params`` and ``extra`` fields.  Inputs are assumed checked."""
    if t is None:
        t = grids.build(kind, steps, delta, T, st.integral if st is not None else None, **(params or {}))
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
