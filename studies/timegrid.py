"""A time grid for one mixture: its kind, the rate Lambda is taken from, its nodes in every unit.

:func:`build` is what ``flowcert grid`` and :func:`flowcert.grid` compute; the keys of
the returned dict are the command's JSON fields.
"""

from __future__ import annotations

from ..numcore import grids
from ..numcore import units as un
from ..numcore.checks import InputError, option, options, time_window
from ..numcore.io import no_progress
from ..numcore.mixture import GaussianMixture

from ..bounds.stability import stability

KINDS = grids.KINDS + ("optimal",)
BOUNDS = ("tri", "sharp", "empirical")
SAMPLING_NOTE = ("for sampling, the grid with the smallest error for a solver is `--kind optimal --solver "
                 "euler|heun|dpmpp_2m`; `--for PRESET` exports it by default for the solver the preset runs "
                 "(docs/samplers.md)")


def build(mix: GaussianMixture, steps: int = 8, *, kind: str = "balanced", bound: str = "tri",
          delta: float = 1e-3, T: float = 5.0, units=("t",), beta_schedule: str = "linear", clip: bool = False,
          samples: int = 4096, seed: int = 0, solver: str | None = None, train_samples: int = 4096,
          test_samples: int = 4096, effort: float = 1.0, progress=no_progress) -> dict:
    """The grid with N = ``steps`` segments, descending from t[0] = T to t[N] = delta.

    Returns a dict: ``t`` (N + 1,) OU times, ``lambda`` (Lambda at each node under ``bound``),
    ``lambda_T``, ``lambda_error``, ``amplification`` = exp(Lambda(T)), ``log10_amplification``,
    ``bound_info``, ``kind``, ``bound``, ``steps``, ``delta``, ``T``, ``mixture``, each requested unit
    under its name (``sigma``, ``alpha``, ``sigma_vp``, ``logsnr``, ``rf``, ``ddpm``), and
    ``beta_schedule`` when ``ddpm`` is asked for, and ``warnings`` (a list of lines) when times were clipped.
    Kind ``optimal`` adds ``solver`` and ``optimal`` (the search's record, :func:`studies.optimal.optimal_grid`:
    training and test errors, closed forms on the same test batch, stopping reason); the other kinds carry
    ``sampling`` (one line pointing to that grid).

    Raises:
        InputError: ``steps``, ``kind``, ``bound``, ``units``, ``samples`` or the window out of range,
            or (without ``clip``) a node outside the DDPM schedule's range; kind ``optimal`` without a
            ``solver`` or with more than MAX_STEPS steps.
    """
    delta, T = time_window(delta, T)
    steps, seed = options(steps=steps, seed=seed)
    if kind not in KINDS:
        raise InputError(f"`kind` = {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "optimal":
        from .optimal import check_optimal

        solver = check_optimal(solver, steps)
    if bound not in BOUNDS:
        raise InputError(f"`bound` = {bound!r}: expected one of {', '.join(BOUNDS)}")
    names = list(dict.fromkeys(units))
    for u in names:
        if u not in un.UNITS:
            raise InputError(f"`units` = {u!r}: expected one of {', '.join(un.UNITS)}")
    if bound == "empirical":
        samples = option("samples", samples)
    with progress(40, "empirical rate") if bound == "empirical" else no_progress() as bar:
        st = stability(mix, bound, delta, T, samples=samples, seed=seed, progress=bar)
    t, extra = None, {"sampling": SAMPLING_NOTE}
    if kind == "optimal":
        from .optimal import optimal_grid

        rec = optimal_grid(mix, steps, solver, delta=delta, T=T, train=train_samples, test=test_samples,
                           seed=seed, effort=effort, progress=progress)
        t = rec.pop("t")
        extra = {"solver": solver, "optimal": rec}
    out = from_stability(st, steps, kind=kind, delta=delta, T=T, units=names, beta_schedule=beta_schedule,
                         clip=clip, t=t, extra=extra)
    return {"mixture": mix.name, **out}


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
