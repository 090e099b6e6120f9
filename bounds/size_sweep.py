"""How certified sizes scale: sweeps over eps and over the low-noise time, table and plot.

``parse("eps=1e-1:1e-8")`` gives the log-spaced values (one per decade unless a
third field gives the count: ``eps=1e-1:1e-8:15``); the variable is ``eps`` or
``delta`` (for a fixed-t certificate, ``delta`` is the time t itself: the
low-noise end).  :func:`run` evaluates the tight and the closed-form
certificates at every value; sizes are exact integers from the formulas.  A value
whose certificate cannot be given (an InputError) keeps its row with an "error".
"""

from __future__ import annotations

import math

import numpy as np

from ..numcore.checks import InputError, real

VARIABLES = ("eps", "delta")


def parse(text: str) -> tuple[str, np.ndarray]:
    """'eps=1e-1:1e-8[:count]' -> ('eps', values)."""
    if "=" not in text:
        raise InputError(f"`sweep` = {text!r}: expected VAR=START:STOP[:COUNT] with VAR in eps, delta")
    var, rng = text.split("=", 1)
    var = var.strip()
    if var not in VARIABLES:
        raise InputError(f"`sweep` variable = {var!r}: expected one of {', '.join(VARIABLES)}")
    parts = rng.split(":")
    if len(parts) not in (2, 3):
        raise InputError(f"`sweep` = {text!r}: expected VAR=START:STOP[:COUNT]")
    a = real(f"sweep {var} start", parts[0], low=0.0, low_open=True)
    b = real(f"sweep {var} stop", parts[1], low=0.0, low_open=True)
    if len(parts) == 3:
        try:
            count = int(parts[2])
        except ValueError:
            raise InputError(f"`sweep` count = {parts[2]!r}: expected an integer") from None
    else:
        count = int(round(abs(math.log10(b) - math.log10(a)))) + 1  # (b / a overflows for 1e-300:1e300)
    if not 1 <= count <= 200:
        raise InputError(f"`sweep` = {text!r}: {count} values, expected 1..200 (one per decade by default; "
                         "give START:STOP:COUNT)")
    return var, np.geomspace(a, b, count)


def run(certify_one, var: str, values, bar=None) -> list[dict]:
    """Rows of sizes for every value; certify_one(var, value, kind) -> certificate."""
    rows = []
    for v in values:
        try:
            tight = certify_one(var, float(v), "tight")
            closed = certify_one(var, float(v), "closed")
        except InputError as exc:  # this value is out of reach; keep the others
            rows.append({var: float(v), "error": str(exc).replace("`", "")})
            if bar is not None:
                bar.update(1)
            continue
        rows.append({
            var: float(v), "log_1_over_eps": math.log(1.0 / tight.eps),
            "depth": tight.depth, "width": tight.width, "params": tight.params,
            "depth_closed": closed.depth, "width_closed": closed.width, "params_closed": closed.params,
            "n": tight.choices["n"], "m": tight.choices["m"], "J": tight.choices["J"], "R": tight.choices["R"],
        })
        if bar is not None:
            bar.update(1)
    return rows
