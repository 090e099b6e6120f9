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
from dataclasses import dataclass, replace
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
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"`{name}` = {show_value(value)}: expected a real number")
    try:
        out = float(value)
    except OverflowError:
        raise InputError(f"`{name}` = {show_value(value)}: expected a finite real number") from None
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
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"`{name}` = {show_value(value)}: expected an integer")
    if isinstance(value, (int, np.integer)):
        out = int(value)
    else:
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"`{name}` = {show_value(value)}: expected an integer") from None
        if not math.isfinite(f) or f != int(f):
            raise InputError(f"`{name}` = {show_value(value)}: expected an integer")
        out = int(f)
    if low is not None and out < low:
        raise InputError(f"`{name}` = {show_value(out)}: expected an integer >= {low}")
    if high is not None and out > high:
        raise InputError(f"`{name}` = {show_value(out)}: expected an integer <= {high}")
    return out


MAX_ARRAY_VALUES = 2**24 + 2**21  # the largest spec: K x d x d covariances (2^24) plus means and weights
MAX_NESTING = 8  # lists inside lists: arrays here have at most 3 dimensions


def kind_of(value) -> str:
    """What a non-number is, in words (the value itself is never shown: it may be a secret)."""
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, (str, bytes)):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "empty (null)"
    return f"a {type(value).__name__}"


_NUMBER_TYPES = (int, float, np.floating, np.integer)
_PLAIN = {int, float}  # exact types (bool is its own type): the fast path for parsed files


def _is_number(value) -> bool:
    return isinstance(value, _NUMBER_TYPES) and not isinstance(value, (bool, np.bool_))


def numeric_shape(name: str, value, limit: int = MAX_ARRAY_VALUES) -> tuple[int, ...]:
    """The shape of a nested list of numbers, checked without building an array.

    Every leaf must be a number (int or float, not a boolean, a string or null); the
    lists must be rectangular; at most ``limit`` numbers are visited, so a structure
    whose expansion is huge (shared or recursive references, YAML aliases) is refused
    in time proportional to ``limit``.  Numpy arrays must have a numeric dtype.

    Raises:
        InputError: naming the first offending position (``means[1][0]``), never its content.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise InputError(f"`{name}` is an array of {value.dtype}: expected numbers only")
        if value.size > limit:
            raise InputError(f"`{name}` has {value.size} entries: expected at most {limit}")
        return value.shape
    if _is_number(value):
        return ()
    if not isinstance(value, (list, tuple)):
        raise InputError(f"`{name}` is {kind_of(value)}: expected numbers only")
    level = [(value, "")]
    shape: list[int] = []
    while True:
        if len(shape) == MAX_NESTING:
            raise InputError(f"`{name}` is nested more than {MAX_NESTING} lists deep: expected an array of numbers")
        n = len(level[0][0])
        for v, where in level:
            if len(v) != n:
                raise InputError(f"`{name}{where}` has {len(v)} entries, `{name}{level[0][1]}` has {n}: "
                                 "expected a rectangular array (ragged lists)")
        shape.append(n)
        if len(level) * n > limit:
            raise InputError(f"`{name}` expands to more than {limit} entries: expected at most {limit} "
                             "(shared or repeated references in the spec?)")
        if n == 0:
            return tuple(shape)
        if not isinstance(level[0][0][0], (list, tuple)):  # the innermost level: every entry a number
            for v, where in level:
                if set(map(type, v)) <= _PLAIN or all(map(_is_number, v)):
                    continue
                i = next(i for i, x in enumerate(v) if not _is_number(x))
                raise InputError(f"`{name}{where}[{i}]` is {kind_of(v[i])}: expected numbers only")
            return tuple(shape)
        nxt = []
        for v, where in level:
            for i, x in enumerate(v):
                if not isinstance(x, (list, tuple)):
                    what = "a number" if _is_number(x) else kind_of(x)
                    raise InputError(f"`{name}{where}[{i}]` is {what}: expected a list like its neighbours")
                nxt.append((x, f"{where}[{i}]"))
        level = nxt


def array(name: str, value, *, ndim: int | tuple[int, ...], shape=None, what: str = "",
          limit: int = MAX_ARRAY_VALUES) -> np.ndarray:
    """A finite float64 array with ndim (or one of several) and, optionally, a shape.

    The value must be numbers only (nested lists or a numeric numpy array: no booleans,
    strings or nulls), checked by :func:`numeric_shape` before any array is built.
    ``shape`` entries that are None are free.  ``what`` describes the expected layout in
    the message (for example "K x d").
    """
    got = numeric_shape(name, value, limit)
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if len(got) not in ndims:
        raise InputError(f"`{name}` has shape {got}: expected {what or f'{ndims[0]} dimension(s)'}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        raise InputError(f"`{name}` holds an integer beyond the float64 range: expected finite numbers") from None
    if shape is not None and arr.ndim == len(shape):
        for g, want in zip(arr.shape, shape):
            if want is not None and g != want:
                raise InputError(f"`{name}` has shape {arr.shape}: expected {what}")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].ravel()[0]
        raise InputError(f"`{name}` contains {bad}: expected finite numbers only")
    return arr


def finite(what: str, values) -> None:
    """InputError unless every number in ``values`` is finite: a statistic about to be reported.  ``what`` names it,
    the model and where (``model 'x': E||J||_op at OU time t = 0.1``); NaN or inf is never printed as a result."""
    parts = values if isinstance(values, (list, tuple)) else [values]
    for part in parts:
        arr = np.asarray(part, dtype=float)
        if not np.all(np.isfinite(arr)):
            bad = arr[~np.isfinite(arr)].ravel()[0]
            raise InputError(f"{what} is {bad}: expected a finite number (refused rather than reported)")


def choice(name: str, value: str, options) -> str:
    """One of a fixed set of strings."""
    if value not in options:
        raise InputError(f"`{name}` = {show_value(value)}: expected one of {', '.join(options)}")
    return value


TEACHER_DELTA_MIN = 1e-10  # smallest OU time of the exact teacher (solvers, validate): VE sigma 1.4e-5
T_LIMIT = 50.0  # largest OU time: alpha_T = 2e-22, p_T is the prior to float64 precision


def time_window(delta, T, *, delta_min: float | None = None) -> tuple[float, float]:
    """The OU time window 0 < delta < T <= 50 used by bounds, integrals and grids.

    ``delta_min`` (the commands that integrate the exact teacher pass TEACHER_DELTA_MIN): the
    teacher steps in log sigma_VE, so its work grows without bound as delta -> 0 while nothing
    changes below the smallest allowed mode width (variance 1e-8, sigma 1e-4)."""
    if delta_min is None:
        d = real("delta", delta, low=0.0, low_open=True)
    else:
        d = real("delta", delta, low=delta_min)
        if d < delta_min:  # pragma: no cover - real() has refused it
            raise InputError(f"`delta` = {exact_text(d)}: expected a number >= {delta_min:g}")
    T_ = real("T", T, low=0.0, low_open=True, high=T_LIMIT)
    if d >= T_:
        raise InputError(f"`delta` = {exact_text(d)}: expected a value below `T` = {exact_text(T_)}")
    return d, T_


@dataclass(frozen=True)
class Domain:
    """The domain of one option: integers or reals in [low, high] (open ends on request), with the command's
    default (``default``) and, where a trained model changes it, the default with ``--model`` (``model``)."""

    kind: str  # "integer" or "real"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    default: object = None
    model: object = None

    def __call__(self, name: str, value):
        if self.kind == "integer":
            return integer(name, value, low=self.low, high=self.high)
        return real(name, value, low=self.low, high=self.high, low_open=self.low_open,
                    high_open=self.high_open)

    def defaults(self, default=None, model=None) -> "Domain":
        """The same domain with a command's defaults."""
        return replace(self, default=default, model=model)

    def default_for(self, model: bool = False):
        """The default value (with ``--model`` when ``model``)."""
        return self.model if model and self.model is not None else self.default

    def default_text(self) -> str:
        """``[default: 4096; 256 with --model]`` for a help text."""
        show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
        text = show(self.default)
        if self.model is not None and self.model != self.default:
            text += f"; {show(self.model)} with --model"
        return f"[default: {text}]"


# The domains shared by several options (each bound is written once) ...
_SAMPLES = Domain("integer", 16, 10**7)
_STEPS = Domain("integer", 1, 64)  # a solver's optimal grid: the grid search's limit
_EFFORT = Domain("real", 0.05, 100.0)
_JACOBIAN_SAMPLES = 256  # a model's ||J|| table: points of p_t per time
# ... and every option of every command, by the name it has in the API (commands and the library check with the
# same entry; the command line builds its options, defaults and help defaults from it).  A key ``cmd.name`` is
# the option `name` of one command whose default differs.  A new option adds its line here; ``option(key, value)``
# checks it.
OPTIONS: dict[str, Domain] = {
    "seed": Domain("integer", 0, 2**32 - 1, default=0),
    "points": Domain("integer", 2, 100_000, default=50, model=40),
    "empirical": Domain("integer", 0, 10**8, default=0, model=_JACOBIAN_SAMPLES),
    "samples": _SAMPLES.defaults(4096, 256),
    "solvers.samples": _SAMPLES.defaults(10_000, 512),
    "steps": Domain("integer", 1, 100_000, default=8),
    "solvers.steps": _STEPS,  # every N gets each solver's optimal grid
    "optimal.steps": _STEPS,
    "eps": Domain("real", 0.0, low_open=True),
    "p": Domain("real", 1.0, 64.0, default=2.0),
    "t": Domain("real", 0.0, T_LIMIT, low_open=True),
    "verify": Domain("integer", 0, 10**8, default=0),
    "times": Domain("integer", 2, 100, default=6),
    "ball_mass": Domain("real", 0.0, 1.0, low_open=True, high_open=True, default=1 - 1e-6),
    "workers": Domain("integer", 1, 4096),
    "train_samples": _SAMPLES.defaults(4096, 128),
    "test_samples": _SAMPLES.defaults(4096, 256),
    "effort": _EFFORT.defaults(1.0, 0.1),
    "random": Domain("integer", 0, 1000, default=0),
    "teacher_steps": Domain("integer", 1, 100_000, default=64),  # RK4 steps of a model's own teacher
    "jacobian_samples": Domain("integer", 2, 10**7, default=_JACOBIAN_SAMPLES),
    "iters": Domain("integer", 1, 10_000, default=20),  # Lanczos iterations at most per point
    "tol": Domain("real", 0.0, 1.0, low_open=True, default=1e-3),  # relative Ritz residual or growth
    # torch threads of the model commands and functions: 1, measured on a 2-core machine, idle and loaded
    # (benchmarks/thread_default.py; docs/results.md, "Torch threads of the model commands")
    "threads": Domain("integer", 1, 1024, default=1),
    "amp_samples": Domain("integer", 0, 10**6, default=128),  # exact trajectories for the per-trajectory amplification
    "amplification.samples": Domain("integer", 2, 10**6, default=128),
    "step": Domain("real", 1e-4, 0.5, default=0.02),  # RK4 step in log sigma_VE of the numpy trajectories
    # fit: K = 1..max_components (and at most n); reg_covar is the surrogate's smallest variance, so it lies in a
    # spec's variance range [numcore.mixture.MIN_VARIANCE, MAX_VARIANCE] (a test keeps the two equal)
    "max_components": Domain("integer", 1, 1024, default=32),
    "reg_covar": Domain("real", 1e-8, 1e12, default=1e-6),
}


def option(key: str, value, name: str | None = None):
    """``value`` checked against ``OPTIONS[key]``; the message names ``name`` (default: the key's
    last part, so ``solvers.steps`` is reported as `steps`)."""
    return OPTIONS[key](name or key.rsplit(".", 1)[-1], value)


def options(**values) -> tuple:
    """Several options at once (``options(seed=s, points=n)``), checked in the order given."""
    return tuple(option(k, v) for k, v in values.items())


# ----------------------------------------------------------------------------- memory
MEMORY_ENV = "FLOWCERT_MEMORY_GB"
MEMORY_DEFAULT_GB = 4.0


def memory_budget() -> float:
    """Bytes one request may allocate: ``$FLOWCERT_MEMORY_GB`` GiB (default 4)."""
    import os

    text = os.environ.get(MEMORY_ENV, "")
    try:
        gb = float(text) if text else MEMORY_DEFAULT_GB
    except ValueError:
        gb = float("nan")
    if not (math.isfinite(gb) and gb > 0):
        raise InputError(f"environment variable {MEMORY_ENV} = {show_value(text)}: expected a number of GiB > 0")
    return gb * 2**30


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def fits_memory(name: str, value, need_bytes: float, what: str, largest=None) -> None:
    """InputError when ``need_bytes`` (the estimate for ``what``) exceeds :func:`memory_budget`.

    The message names the option, the estimate, the budget and (``largest``) the largest value
    that fits."""
    budget = memory_budget()
    if need_bytes > budget:
        hint = "" if largest is None else f"; expected at most {largest}" if largest >= 1 else \
            "; no value fits this budget"
        raise InputError(f"`{name}` = {value}: {what} needs about {gib(need_bytes)} of memory, above the "
                         f"budget of {gib(budget)} (set {MEMORY_ENV} to change it){hint}")


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
