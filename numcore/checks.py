"""The one place where user input is checked and converted.

Every function here either returns a clean value (a float, an int, a float64
array of the expected shape) or raises :class:`InputError` with a one-line
message that names the parameter, the offending value and what was expected.
The command line turns an :class:`InputError` into that line on standard error
and exit status 2.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np


class InputError(ValueError):
    """Bad user input: one line naming the parameter, the value and what was expected.

    Parameter names stand in backquotes, as Python knows them (`delta`, `ball_mass`);
    :attr:`param` is the first of them.  The command line shows each as its flag
    (``--delta``, ``--ball-mass``) and exits with status 2.
    """

    def __init__(self, message: str):
        super().__init__(message)
        found = re.search(r"`([^`]+)`", message)
        self.param = found.group(1) if found else None


def show_value(value, limit: int = 60) -> str:
    """A value as at most ``limit`` characters of one line, for messages."""
    text = repr(value) if not isinstance(value, np.ndarray) else np.array2string(
        value, threshold=6, precision=4
    )
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def limit_text(value: float, lower: bool, digits: int = 6, strict: bool = False) -> str:
    """A limit printed so that the printed number is itself accepted when fed back.

    A lower limit is rounded up and an upper limit down (to ``digits`` significant digits):
    ``float(limit_text(x, lower=True)) >= x`` and ``float(limit_text(x, lower=False)) <= x`` always
    hold, because the rounding is done on the exact binary value and the nearest double to a
    decimal at or above a double is never below it.  ``strict``: the limit itself is excluded, so the
    printed number lies strictly inside.
    """
    x = float(value)
    if strict and math.isfinite(x):
        x = math.nextafter(x, math.inf if lower else -math.inf)
    if not math.isfinite(x) or x == 0.0:
        return repr(x)
    d = Decimal(x)
    exp = d.adjusted() - (digits - 1)
    q = d.quantize(Decimal(1).scaleb(exp), rounding=ROUND_CEILING if lower else ROUND_FLOOR)
    text = f"{float(q):.{digits}g}"
    # the float of the quantized decimal formats back to the same digits; guard the contract anyway
    if (float(text) < x) if lower else (float(text) > x):  # pragma: no cover - defensive
        text = repr(x)
    return text


def exact_text(x: float) -> str:
    """x printed short (``:g``) when that is exact, else with every digit (repr): a bound that reads back as itself."""
    short = f"{float(x):g}"
    return short if float(short) == float(x) else repr(float(x))


def real(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite real number, optionally inside [low, high] (open ends on request)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` = {show_value(value)}: expected a real number") from None
    if not math.isfinite(out):
        raise InputError(f"`{name}` = {show_value(value)}: expected a finite real number")
    if low is not None and (out < low or (low_open and out == low)):
        op = ">" if low_open else ">="
        raise InputError(f"`{name}` = {out:g}: expected a number {op} {exact_text(low)}")
    if high is not None and (out > high or (high_open and out == high)):
        op = "<" if high_open else "<="
        raise InputError(f"`{name}` = {out:g}: expected a number {op} {exact_text(high)}")
    return out


def integer(name: str, value, *, low=None, high=None) -> int:
    """An integer (floats like 8.0 are accepted), optionally inside [low, high]."""
    if isinstance(value, bool):
        raise InputError(f"`{name}` = {show_value(value)}: expected an integer")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` = {show_value(value)}: expected an integer") from None
    if not math.isfinite(f) or f != int(f):
        raise InputError(f"`{name}` = {show_value(value)}: expected an integer")
    out = int(f)
    if low is not None and out < low:
        raise InputError(f"`{name}` = {out}: expected an integer >= {low}")
    if high is not None and out > high:
        raise InputError(f"`{name}` = {out}: expected an integer <= {high}")
    return out


def array(name: str, value, *, ndim: int | tuple[int, ...], shape=None, what: str = "") -> np.ndarray:
    """A finite float64 array with ndim (or one of several) and, optionally, a shape.

    ``shape`` entries that are None are free.  ``what`` describes the expected
    layout in the message (for example "K x d").
    """
    if isinstance(value, (str, bytes, dict)) or value is None:
        raise InputError(f"`{name}` = {show_value(value)}: expected {what or 'a numeric array'}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"`{name}` = {show_value(value)}: expected {what or 'a numeric array'} "
            "(ragged or non-numeric entries)"
        ) from None
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in ndims:
        raise InputError(
            f"`{name}` has shape {arr.shape}: expected {what or f'{ndims[0]} dimension(s)'}"
        )
    if shape is not None and arr.ndim == len(shape):
        for got, want in zip(arr.shape, shape):
            if want is not None and got != want:
                raise InputError(f"`{name}` has shape {arr.shape}: expected {what}")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].ravel()[0]
        raise InputError(f"`{name}` contains {bad}: expected finite numbers only")
    return arr


def choice(name: str, value: str, options) -> str:
    """One of a fixed set of strings."""
    if value not in options:
        raise InputError(f"`{name}` = {show_value(value)}: expected one of {', '.join(options)}")
    return value


def time_window(delta, T) -> tuple[float, float]:
    """The OU time window 0 < delta < T <= 50 used by bounds, integrals and grids."""
    d = real("delta", delta, low=0.0, low_open=True)
    T_ = real("T", T, low=0.0, low_open=True, high=50.0)
    if d >= T_:
        raise InputError(f"`delta` = {exact_text(d)}: expected a value below `T` = {exact_text(T_)}")
    return d, T_


def split_list(name: str, value, options=None) -> list[str]:
    """Comma-separated (or repeated, or a list of) items, stripped, duplicates dropped in order.

    With ``options``, each item must be one of them.  Raises InputError on an empty list.
    """
    raw = value if isinstance(value, (list, tuple)) else (value,)
    items = [s.strip() for v in raw for s in str(v).split(",") if s.strip()]
    if not items:
        raise InputError(f"`{name}` = {show_value(value)}: expected a comma-separated list")
    for s in items:
        if options is not None and s not in options:
            raise InputError(f"`{name}` = {s!r}: expected one of {', '.join(options)}")
    return list(dict.fromkeys(items))


def steps_list(name: str, value, high: int) -> list[int]:
    """A list of step counts N (comma-separated text or integers), each 1..high, sorted, unique."""
    return sorted({integer(name, v, low=1, high=high) for v in split_list(name, value)})


def require(module: str, extra: str | None, what: str, package: str | None = None) -> None:
    """InputError saying what to install when an optional dependency is missing.

    ``extra`` names flowcert's extra that brings the module; with ``extra`` None (a base dependency),
    the hint is ``pip install PACKAGE`` (``package`` defaults to the module's name).
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        hint = f"pip install 'flowcert[{extra}]'" if extra else f"pip install {package or module}"
        raise InputError(f"{what} needs the {module} package, which is not installed: {hint}") from None
