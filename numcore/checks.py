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
import unicodedata
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


# ----------------------------------------------------------------------------- names and text
MAX_NAME = 200  # the longest name (a mixture's, a model's, fit --name) flowcert echoes and writes
# Characters that change what a terminal or a line-oriented file shows: controls (newline, escape, carriage return,
# backspace, DEL), format characters (bidirectional overrides, zero-width joiners), lone surrogates, line and
# paragraph separators.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def unsafe_at(text: str) -> int | None:
    """The position of the first character of ``text`` that could forge or hide output (a control, format,
    surrogate or line-separator character: newline, escape, U+202E), or None when there is none."""
    if text.isascii():
        for i, c in enumerate(text):
            if c < " " or c == "\x7f":
                return i
        return None
    for i, c in enumerate(text):
        if unicodedata.category(c) in UNSAFE_CATEGORIES:
            return i
    return None


def printable(text, limit: int | None = MAX_NAME) -> str:
    """``text`` safe to echo on one line and to write into a file: every character :func:`unsafe_at` finds is
    replaced by its escape (``\\n``, ``\\x1b``, ``\\u202e``); longer than ``limit`` characters, it is cut to
    ``limit`` with ``...`` at the end.  For names flowcert derives itself (a file's stem, a folder's name, a
    path shown in a report); a name the user writes is checked with :func:`name` instead."""
    text = str(text)
    if unsafe_at(text) is not None:
        text = "".join(c.encode("unicode_escape").decode("ascii") if unsafe_at(c) is not None else c
                       for c in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def plain_text(field: str, value: str) -> str:
    """``value`` (a string read from a file) when it holds no character :func:`unsafe_at` finds; InputError naming
    ``field``, the character's code point and position otherwise (the text itself is never shown)."""
    i = unsafe_at(value)
    if i is not None:
        raise InputError(f"`{field}` holds the control character U+{ord(value[i]):04X} at position {i + 1}: "
                         "expected printable text (no line breaks, escapes or direction marks)")
    return value


def name(field: str, value, *, limit: int = MAX_NAME) -> str:
    """A name that flowcert echoes to the terminal and writes into files (a spec's ``name``, ``fit --name``, a
    model's name): a string of 1 to ``limit`` characters with no control character (:func:`plain_text`), so it
    cannot forge an output line.  The same rule for the spec reader and for every writer of specs, so flowcert
    never writes a name it would refuse to read.

    Raises:
        InputError: not a string, empty, too long or holding a control character; the name is never shown.
    """
    if not isinstance(value, str):
        raise InputError(f"`{field}` is {kind_of(value)}: expected a string of 1 to {limit} characters")
    if not 0 < len(value) <= limit:
        raise InputError(f"`{field}` is a string of {len(value)} characters: expected a string of 1 to {limit} "
                         "characters")
    return plain_text(field, value)


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


FLOAT32_MAX = float(np.finfo(np.float32).max)
MU_MAX = 80.0  # |mu| of a dynamic flow shift: e^mu stays finite in the scheduler's float32 arithmetic
RESOLUTION_MULTIPLE = 16  # image sides of the flow pipelines: 8x VAE, 2x2 patches (Flux packing, SD3 patch_size 2)

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
    "test_samples": _SAMPLES.defaults(4096, 128),
    "effort": _EFFORT.defaults(1.0, 0.1),
    "random": Domain("integer", 0, 1000, default=0),
    "teacher_steps": Domain("integer", 1, 100_000, default=64),  # RK4 steps of a model's own teacher
    # ... for `grid` (the optimal grid's teacher, the balanced grid's ODE samples): 32, its self-convergence
    # against 64 steps 1e-5 relative on the digits model, far below its solvers' errors (docs/results.md)
    "grid.teacher_steps": Domain("integer", 1, 100_000, default=32),
    "jacobian_samples": Domain("integer", 2, 10**7, default=_JACOBIAN_SAMPLES),
    "iters": Domain("integer", 1, 10_000, default=20),  # Lanczos iterations at most per point
    "tol": Domain("real", 0.0, 1.0, low_open=True, default=1e-3),  # relative Ritz residual or growth
    # torch threads of the model commands and functions: 1, measured on a 2-core machine, idle and loaded
    # (benchmarks/thread_default.py; docs/results.md, "Torch threads of the model commands")
    "threads": Domain("integer", 1, 1024, default=1),
    "amp_samples": Domain("integer", 0, 10**6, default=128),  # exact trajectories for the per-trajectory amplification
    "amplification.samples": Domain("integer", 2, 10**6, default=128),
    "step": Domain("real", 1e-4, 0.5, default=0.02),  # RK4 step in log sigma_VE of the numpy trajectories
    # the flow pipelines' shifts (grid kinds flow-shift and flux-mu, the diffusers-flowmatch export): the static shift
    # (SD3's 3.0; up to the largest float32, where the scheduler computes it), the dynamic shift mu (e^mu finite in
    # float32) and one side of an image resolution in pixels (a multiple of 16: the 8x VAE and 2x2 patches)
    "shift": Domain("real", 0.0, FLOAT32_MAX, low_open=True, default=3.0),
    "mu": Domain("real", -MU_MAX, MU_MAX),
    "resolution": Domain("integer", RESOLUTION_MULTIPLE, 2**16, default=1024),
    # fit: K = 1..max_components (and at most n); reg_covar is the surrogate's smallest variance, so it lies in a
    # spec's variance range [numcore.mixture.MIN_VARIANCE, MAX_VARIANCE] (a test keeps the two equal)
    "max_components": Domain("integer", 1, 1024, default=32),
    "reg_covar": Domain("real", 1e-8, 1e12, default=1e-6),
    # classifier-free guidance D_u + W (D_c - D_u): W = 1 the conditional model alone; W >= 0 (the guided bound's
    # domain); 1000 is far beyond any scale pipelines use (1 to 20)
    "guidance": Domain("real", 0.0, 1000.0),  # not given: 1, the conditional model alone
    "class_label": Domain("integer", 0, 2**31 - 1),  # a class of a class-conditional model or a labelled mixture
}


def option(key: str, value, name: str | None = None):
    """``value`` checked against ``OPTIONS[key]``; the message names ``name`` (default: the key's
    last part, so ``solvers.steps`` is reported as `steps`)."""
    return OPTIONS[key](name or key.rsplit(".", 1)[-1], value)


def options(**values) -> tuple:
    """Several options at once (``options(seed=s, points=n)``), checked in the order given."""
    return tuple(option(k, v) for k, v in values.items())


def resolution(value, name: str = "resolution") -> tuple[int, int]:
    """An image resolution ``H,W`` (text, or a pair of integers): each side in the ``resolution`` domain and a
    multiple of RESOLUTION_MULTIPLE (16: the flow pipelines' 8x VAE and 2x2 patches), as (height, width)."""
    items = value.replace("x", ",").split(",") if isinstance(value, str) else value
    if isinstance(items, (int, float, np.integer, np.floating)) or not hasattr(items, "__len__") or len(items) != 2:
        raise InputError(f"`{name}` = {show_value(value)}: expected HEIGHT,WIDTH in pixels (e.g. 1024,1024)")
    sides = []
    for v in items:
        if isinstance(v, str):
            v = v.strip()
            try:
                v = int(v)
            except ValueError:
                raise InputError(f"`{name}` = {show_value(value)}: expected HEIGHT,WIDTH in pixels as two "
                                 "integers (e.g. 1024,1024)") from None
        sides.append(option("resolution", v, name))
    if any(s % RESOLUTION_MULTIPLE for s in sides):
        raise InputError(f"`{name}` = {sides[0]},{sides[1]}: expected height and width divisible by "
                         f"{RESOLUTION_MULTIPLE} (the pipeline's 8x VAE and 2x2 patches; Flux resizes other sizes)")
    return sides[0], sides[1]


# ----------------------------------------------------------------------------- configuration files
CONFIG_BYTES = 16 * 2**20  # the largest configuration file read (a config.json with 10^6 trained betas is ~20 MB)
PLAIN_MAGNITUDE = 2.0**20  # a number in a field without a declared domain (sizes, counts, scales) at most this
PLAIN_LIST = 64  # entries of a list in such a field (block types, channel lists)


def _flag_value(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"`{name}` = {show_value(value)}: expected true or false")
    return bool(value)


def _text_value(name: str, value) -> str:
    if not isinstance(value, str):
        raise InputError(f"`{name}` = {show_value(value)}: expected a string")
    if len(value) > MAX_NAME:
        raise InputError(f"`{name}` is a string of {len(value)} characters: expected at most {MAX_NAME}")
    return plain_text(name, value)


def _plain_value(name: str, value, depth: int = 0):
    """A value of a field without a declared domain: null, true/false, a finite number of magnitude at most
    PLAIN_MAGNITUDE, printable text, or a list of at most PLAIN_LIST of these (lists in lists: two levels)."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, str):
        return _text_value(name, value)
    if _is_number(value):
        return real(name, value, low=-PLAIN_MAGNITUDE, high=PLAIN_MAGNITUDE) if isinstance(value, float) else \
            integer(name, value, low=-int(PLAIN_MAGNITUDE), high=int(PLAIN_MAGNITUDE))
    if isinstance(value, list) and depth < 2:
        if len(value) > PLAIN_LIST:
            raise InputError(f"`{name}` has {len(value)} entries: expected at most {PLAIN_LIST}")
        return [_plain_value(f"{name}[{i}]", v, depth + 1) for i, v in enumerate(value)]
    raise InputError(f"`{name}` is {kind_of(value)}: expected a number, text, true/false, null or a short list "
                     "of them")


@dataclass(frozen=True)
class Field:
    """The domain of one field of a configuration file (a diffusers config.json, scheduler_config.json,
    model_index.json): what :func:`check_config` accepts there and converts it to.

    kind: ``integer`` or ``real`` (in [low, high], open ends on request; ``infinite``: -inf and inf too, as
    diffusers writes some defaults), ``flag`` (true/false), ``choice`` (one of ``options``), ``text`` (printable,
    at most MAX_NAME characters) or ``plain`` (:func:`_plain_value`); ``null``: null is accepted (diffusers writes
    null for "not set"); ``many`` = (fewest, most): a list of such values, and with ``single`` one value too;
    ``null_items``: entries of such a list may be null (a pipeline component not saved is [null, null]).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    options: tuple = ()
    null: bool = False
    many: tuple[int, int] | None = None
    single: bool = False
    infinite: bool = False
    null_items: bool = False

    def one(self, name: str, value):
        if self.kind in ("integer", "real") and not _is_number(value):  # "8" is text in a file, not a number
            raise InputError(f"`{name}` = {show_value(value)}: expected {self.expected(one=True)}")
        if self.kind == "integer":
            if isinstance(value, float) and math.isfinite(value) and abs(value) > 2**53:
                raise InputError(f"`{name}` = {value:g}: expected {self.expected(one=True)}")
            return integer(name, value, low=self.low, high=self.high)
        if self.kind == "real":
            if self.infinite and isinstance(value, float) and math.isinf(value):
                return value
            out = real(name, value, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open)
            return value if isinstance(value, int) else out  # an integer stays one: libraries compute with its type
        if self.kind == "flag":
            return _flag_value(name, value)
        if self.kind == "choice":
            if not isinstance(value, str):
                raise InputError(f"`{name}` = {show_value(value)}: expected one of {', '.join(self.options)}")
            return choice(name, value, self.options)
        if self.kind == "text":
            return _text_value(name, value)
        return _plain_value(name, value)

    def __call__(self, name: str, value):
        if value is None:
            if self.null or self.kind == "plain":
                return None
            raise InputError(f"`{name}` is empty (null): expected {self.expected()}")
        if self.many is not None and (isinstance(value, list) or not self.single):
            lo, hi = self.many
            if not isinstance(value, list):
                raise InputError(f"`{name}` = {show_value(value)}: expected {self.expected()}")
            if not lo <= len(value) <= hi:
                raise InputError(f"`{name}` has {len(value)} entries: expected {lo} to {hi}")
            if self.kind == "real" and len(value) > PLAIN_LIST:  # long lists of numbers (trained betas): at once
                arr = array(name, value, ndim=1, limit=hi)
                low_bad = (arr < self.low) | ((arr == self.low) & self.low_open) if self.low is not None else False
                high_bad = (arr > self.high) | ((arr == self.high) & self.high_open) if self.high is not None else False
                bad = np.flatnonzero(np.asarray(low_bad | high_bad))
                if bad.size:
                    self.one(f"{name}[{bad[0]}]", float(arr[bad[0]]))  # raises with the entry's message
                return arr.tolist()
            return [None if v is None and self.null_items else self.one(f"{name}[{i}]", v)
                    for i, v in enumerate(value)]
        return self.one(name, value)

    def expected(self, one: bool = False) -> str:
        span = "" if self.low is None or self.high is None else \
            f" from {exact_text(self.low)} to {exact_text(self.high)}"
        what = {"integer": f"an integer{span}", "real": f"a number{span}", "flag": "true or false",
                "text": "a string", "choice": f"one of {', '.join(self.options)}", "plain": "a plain value"}[self.kind]
        if self.many is not None and not one:
            what = f"{what} or a list of them" if self.single else f"a list of {self.many[0]} to {self.many[1]} " \
                f"entries, each {what}"
        return what


_SIZE = Field("integer", 1, 4096)
_COUNT = Field("integer", 1, 64)
_NAME = Field("text")
_FLAG = Field("flag")
_POSITIVE = Field("real", 0.0, low_open=True, high=1e6)
_UNIT_OPEN = Field("real", 0.0, 1.0, low_open=True, high_open=True)
_NAMES = Field("text", many=(1, 16))
# Every field of a diffusers model's config.json that flowcert or the model's size depends on; any other field of
# the model class gets the plain domain, and a field the class does not take is refused.
MODEL_CONFIG: dict[str, Field] = {
    "_class_name": _NAME, "_diffusers_version": _NAME, "_name_or_path": _NAME,
    "sample_size": Field("integer", 1, 4096, many=(1, 3), single=True, null=True),
    "in_channels": _SIZE, "out_channels": Field("integer", 1, 4096, null=True),  # null: as in_channels (SD3, Flux)
    "block_out_channels": Field("integer", 1, 8192, many=(1, 16)),
    "layers_per_block": Field("integer", 1, 64, many=(1, 16), single=True),
    "transformer_layers_per_block": Field("integer", 1, 64, many=(1, 16), single=True),
    "num_layers": Field("integer", 1, 256, null=True),
    "norm_num_groups": Field("integer", 1, 1024, null=True), "attn_norm_num_groups": Field("integer", 1, 1024, null=True),
    "attention_head_dim": Field("integer", 1, 4096, many=(1, 16), single=True, null=True),
    "num_attention_heads": Field("integer", 1, 1024, many=(1, 16), single=True, null=True),
    "time_embedding_dim": Field("integer", 1, 65536, null=True),
    "num_class_embeds": Field("integer", 1, 10**6, null=True),
    "num_train_timesteps": Field("integer", 2, 10**6, null=True),
    "norm_eps": Field("real", 0.0, 1.0, low_open=True, high_open=True),
    "dropout": Field("real", 0.0, 1.0, high_open=True),
    "mid_block_scale_factor": _POSITIVE, "freq_shift": Field("real", -1e6, 1e6),
    "downsample_padding": Field("integer", 0, 64),
    "prediction_type": Field("choice", options=("epsilon", "sample", "v_prediction"), null=True),
    "down_block_types": _NAMES, "up_block_types": _NAMES, "mid_block_type": Field("text", null=True),
    "act_fn": _NAME, "flip_sin_to_cos": _FLAG, "center_input_sample": _FLAG, "add_attention": _FLAG,
    "time_embedding_type": Field("choice", options=("positional", "fourier", "learned")),
    "resnet_time_scale_shift": Field("choice", options=("default", "scale_shift", "ada_group", "spatial")),
    "downsample_type": Field("choice", options=("conv", "resnet")),
    "upsample_type": Field("choice", options=("conv", "resnet")),
    # the conditional families' fields (models.families reads them)
    "class_embed_type": Field("text", null=True), "addition_embed_type": Field("text", null=True),
    "encoder_hid_dim_type": Field("text", null=True), "encoder_hid_dim": Field("integer", 1, 65536, null=True),
    "cross_attention_dim": Field("integer", 1, 65536, many=(1, 16), single=True, null=True),
    "projection_class_embeddings_input_dim": Field("integer", 1, 10**6, null=True),
    "addition_time_embed_dim": Field("integer", 1, 65536, null=True),
    "num_embeds_ada_norm": Field("integer", 1, 10**6, null=True),
    "joint_attention_dim": Field("integer", 1, 65536, null=True),
    "pooled_projection_dim": Field("integer", 1, 65536, null=True),
    "patch_size": Field("integer", 1, 64, null=True), "pos_embed_max_size": Field("integer", 1, 4096, null=True),
    "guidance_embeds": _FLAG,
}
# flowcert.json beside a model's config.json: what diffusers' config has no field for (a class-conditional UNet's
# null class for classifier-free guidance)
SIDECAR_CONFIG: dict[str, Field] = {"null_class": Field("integer", 0, 10**6)}
# The fields of the DDPM-family scheduler configs (diffusers' DDPM, DDIM, Euler, DPM-Solver, EDM and flow-matching
# schedulers): the model loader reads the noise schedule and the prediction type, exports/presets.py the rest.
SCHEDULER_CONFIG: dict[str, Field] = {
    "_class_name": _NAME, "_diffusers_version": _NAME, "_name_or_path": _NAME,
    "num_train_timesteps": Field("integer", 1, 10**6),
    "beta_start": _UNIT_OPEN, "beta_end": _UNIT_OPEN,
    "beta_schedule": Field("choice", options=("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")),
    "trained_betas": Field("real", 0.0, 1.0, low_open=True, high_open=True, many=(2, 10**6), null=True),
    "prediction_type": Field("choice", options=("epsilon", "sample", "v_prediction", "flow_prediction")),
    "timestep_spacing": Field("choice", options=("linspace", "leading", "trailing")),
    "timestep_type": Field("choice", options=("discrete", "continuous")),
    "variance_type": Field("choice", options=("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log",
                                              "learned", "learned_range"), null=True),
    "final_sigmas_type": Field("choice", options=("zero", "sigma_min")),
    "interpolation_type": Field("choice", options=("linear", "log_linear")),
    "sigma_schedule": Field("choice", options=("karras", "exponential")),
    "steps_offset": Field("integer", 0, 10**6),
    "clip_sample_range": _POSITIVE, "sample_max_value": _POSITIVE,
    "dynamic_thresholding_ratio": Field("real", 0.0, 1.0, low_open=True),
    "sigma_min": Field("real", 0.0, 1e12, low_open=True, null=True),
    "sigma_max": Field("real", 0.0, 1e12, low_open=True, null=True),
    "sigma_data": _POSITIVE, "rho": _POSITIVE,
    "shift": _POSITIVE, "flow_shift": _POSITIVE,
    "solver_order": Field("integer", 1, 3),
    "lambda_min_clipped": Field("real", -1e6, 1e6, infinite=True),
    **{k: _FLAG for k in ("rescale_betas_zero_snr", "clip_sample", "thresholding", "set_alpha_to_one",
                          "skip_prk_steps", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                          "use_flow_sigmas", "use_dynamic_shifting", "lower_order_final", "euler_at_final",
                          "use_lu_lambdas", "invert_sigmas", "stochastic_sampling")},
}
# model_index.json of a pipeline folder: these fields (the pipelines' own flags among them), and components as
# [library, class] (a component not saved is [null, null]).
PIPELINE_INDEX: dict[str, Field] = {
    "_class_name": _NAME, "_diffusers_version": _NAME, "_name_or_path": _NAME,
    **{k: _FLAG for k in ("requires_safety_checker", "force_zeros_for_empty_prompt", "add_watermarker",
                          "requires_aesthetics_score", "is_cosxl_edit", "is_distilled")},
}
COMPONENT = Field("text", many=(2, 2), null=True, null_items=True)


def _key_text(key) -> str:
    """A key for a message: shown when it is a plain word (a field name), never arbitrary content."""
    return repr(key) if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,39}", key) else "(not shown)"


def check_config(cfg, schema: dict, where: str, *, known=None, other: Field | None = None) -> dict:
    """A configuration mapping checked field by field against ``schema`` (field -> :class:`Field`); the checked
    copy (integers as int, lists as lists) is returned, so every reader of the file reads checked values.

    A field outside ``schema`` gets ``other`` (default: the plain domain); with ``known`` (the fields the
    configured class takes), a field neither in ``schema`` nor in ``known`` and not starting with ``_`` is
    refused as unknown.  ``where`` starts every message: it names the file (``model config '/m/config.json'``).

    Raises:
        InputError: one line: ``where``, the field, its value and what was expected.
    """
    if not isinstance(cfg, dict):
        raise InputError(f"{where} is {kind_of(cfg)}: expected a JSON object")
    other = other or Field("plain")
    out = {}
    for key, value in cfg.items():
        if not isinstance(key, str):
            raise InputError(f"{where} has a key that is {kind_of(key)}: expected field names")
        field_ = schema.get(key)
        if field_ is None and known is not None and key not in known and not key.startswith("_"):
            raise InputError(f"{where}: unknown key {_key_text(key)}: expected only the fields its class takes")
        try:
            out[key] = (field_ or other)(key if _key_text(key) != "(not shown)" else "(key)", value)
        except InputError as exc:
            raise InputError(f"{where}: {str(exc).replace('`', '')}") from None
    return out


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


IMPORT_TIMEOUT_ENV = "FLOWCERT_IMPORT_TIMEOUT"
IMPORT_TIMEOUT_DEFAULT = 60.0


def import_timeout() -> float:
    """Seconds a model file (``FILE.py:NAME``) may take to import and return its model: ``$FLOWCERT_IMPORT_TIMEOUT``
    (default 60)."""
    import os

    text = os.environ.get(IMPORT_TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else IMPORT_TIMEOUT_DEFAULT
    except ValueError:
        seconds = float("nan")
    if not (math.isfinite(seconds) and 0 < seconds <= 86400):
        raise InputError(f"environment variable {IMPORT_TIMEOUT_ENV} = {show_value(text)}: expected seconds in "
                         "(0, 86400]")
    return seconds


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
