"""One certify request as one report: the certificate, its closed-form twin, the network, its
measured error and size sweeps.

:func:`run` is what ``flowcert certify`` and :func:`flowcert.certify` compute; the
fields of the returned dict are the command's JSON fields.
"""

from __future__ import annotations

import numpy as np

from ..numcore.checks import InputError, fits_memory, option, options, time_window
from ..numcore.io import check_outputs, no_progress
from ..numcore.mixture import GaussianMixture

from . import size_sweep, size_text


def certificate(mix: GaussianMixture, eps: float, p: float, kind: str, *, t: float | None, delta: float,
                T: float, floor: bool = True):
    """A fixed-t certificate (``t`` given, Part A) or a time-input one on [delta, T] (Part B); with
    ``floor`` the float64 round-off of its network is measured and eps below what it supports refused."""
    if t is not None:
        from .certificate import certify

        return certify(mix, t, eps, p, kind, floor=floor)
    from .certificate_time import certify_window

    return certify_window(mix, delta, T, eps, p, kind, floor=floor)


def run(mix: GaussianMixture, eps: float, *, t: float | None = None, p: float = 2.0, delta: float = 1e-3,
        T: float = 5.0, certificate_kind: str = "tight", verify: int = 0, times: int = 6, seed: int = 0,
        export: str | None = None, sweep=(), plot: str | None = None, latex: bool = False,
        progress=no_progress, inputs=()) -> dict:
    """Certify, optionally materialise and verify, export, sweep and plot; a JSON-ready dict.

    Fields: everything of ``Certificate.as_dict`` (depth, width, params, choices, budget, ...),
    ``formulas``, ``closed_form`` and ``shrink_params`` (tight certificates), ``latex`` (with
    ``latex``), ``materialized``, ``mc_error``/``ci_low``/``ci_high``/``n_samples`` and
    ``verification`` (with ``verify``), ``export``, ``sweep`` and ``plot``.

    Raises:
        InputError: a parameter out of its domain, a folder of ``export``/``plot`` missing,
            or no certificate for this request (eps too small or above the score's scale).
    """
    delta, T = time_window(delta, T)
    if t is not None:
        t = option("t", t)
    p, eps, verify, times, seed = options(p=p, eps=eps, verify=verify, times=times, seed=seed)
    if verify == 1:
        raise InputError("`verify` = 1: expected 0 (no check) or at least 2 samples (an interval needs two)")
    check_outputs({"export": export, "plot": plot}, inputs)
    sweep = tuple(sweep or ())
    if plot is not None and not sweep:
        sweep = ("eps=1e-1:1e-8",)
    sweep_values = [size_sweep.parse(text) for text in sweep]  # a bad sweep fails before any work

    cert = certificate(mix, eps, p, certificate_kind, t=t, delta=delta, T=T)
    closed = certificate(mix, eps, p, "closed", t=t, delta=delta, T=T, floor=False) \
        if certificate_kind == "tight" else None
    out = cert.as_dict()
    out["formulas"] = size_text.formulas_text(time_input=t is None)
    if latex:
        out["latex"] = size_text.latex(time_input=t is None) + "\n" + size_text.latex_values(out)
    if closed is not None:
        out["closed_form"] = {"depth": closed.depth, "width": closed.width, "params": closed.params,
                              "choices": closed.choices}
        out["shrink_params"] = closed.params / cert.params
    if verify or export:
        from .verification import build_bytes

        fits_memory("verify" if verify else "export", verify or export, build_bytes(cert),
                    f"building the network (depth {cert.depth}, width {cert.width}, {cert.params} params)")
        _materialize(cert, out, t, verify, times, seed, export, progress)
    if sweep_values:
        out["sweep"] = _sweeps(mix, sweep_values, t, eps, p, delta, T, plot, progress)
    if plot:
        from .plots import certified_sizes

        certified_sizes(out["sweep"], plot, f"{mix.name}: certified sizes (p = {p:g}, "
                        + (f"t = {t:g}" if t is not None else f"T = {T:g}") + f", eps = {eps:g} in the delta panel)")
        out["plot"] = plot
    return out


def _materialize(cert, out, t, verify, times, seed, export, progress) -> None:
    """Build the network, export it, and measure its error (fields added to ``out``)."""
    net = cert.build()
    out["materialized"] = {"depth": net.depth, "width": net.width, "params": net.params,
                           "matches_formulas": [net.depth, net.width, net.params] == [cert.depth, cert.width,
                                                                                       cert.params]}
    if export:
        net.save(export, "export")
        out["export"] = export
    if not verify:
        return
    if t is not None:
        from .verification import verify as check

        with progress(verify, "verify") as bar:
            res = check(cert, net, verify, seed, bar=bar)
        worst = res
    else:
        from .certificate_time import verify_window

        with progress(verify * times, "verify") as bar:
            res = verify_window(cert, net, verify, times, seed, bar=bar)
        worst = max(res, key=lambda r: r["ci_high"])
    out.update({k: worst[k] for k in ("mc_error", "ci_low", "ci_high", "n_samples")})
    out["verification"] = res


def _sweeps(mix, sweep_values, t, eps, p, delta, T, plot, progress) -> dict:
    """Size tables over eps or delta (and a delta table for the plot's second panel)."""

    def one(var, val, kind):
        floor = kind == "tight"  # the closed-form twin is a size comparison: its round-off is not asked for
        if var == "eps":
            return certificate(mix, val, p, kind, t=t, delta=delta, T=T, floor=floor)
        if t is not None:
            return certificate(mix, eps, p, kind, t=val, delta=delta, T=T, floor=floor)
        return certificate(mix, eps, p, kind, t=None, delta=val, T=T, floor=floor)

    sweeps = {}
    for var, values in sweep_values:
        with progress(len(values), f"sweep {var}") as bar:
            sweeps[var] = size_sweep.run(one, var, values, bar)
    if plot and "delta" not in sweeps:
        start = 1e-1 if t is None else max(t, 1e-1)
        vals = np.geomspace(start, start * 1e-3, 7)
        vals = vals[vals < T] if t is None else vals
        with progress(len(vals), "sweep delta") as bar:
            sweeps["delta"] = size_sweep.run(one, "delta", vals, bar)
    return sweeps


