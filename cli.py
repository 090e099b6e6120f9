"""The flowcert command line: each command parses its options, calls one function of
:mod:`flowcert.api` and renders the result with :mod:`flowcert.render`.

Library errors name parameters as Python knows them (`ball_mass`); :class:`FlowcertGroup`
shows them as the command's flags (``--ball-mass``), on one line, with exit status 2.
"""

from __future__ import annotations

import codecs
import errno
import functools
import os
import re
import signal
import sys

import click

from . import api, render
from .numcore.checks import OPTIONS, InputError, printable, show_value, split_list
from .numcore.grids import FLOW_KINDS, GRID_KINDS, KINDS
from .numcore.io import check_folder, check_outputs, progress, write_atomic
from .numcore.solvers import NAMES
from .exports.presets import PRESETS

# ----------------------------------------------------------------------------- plumbing


def flag_names(command: click.Command) -> dict:
    """{python name: how the user spells it} for a command's options and arguments."""
    names = {}
    for p in command.params:
        if isinstance(p, click.Option):
            names[p.name] = max(p.opts, key=len)
        elif isinstance(p, click.Argument):
            names[p.name] = p.human_readable_name.rstrip(".")
    return names


def as_flags(message: str, names: dict) -> str:
    """`name` -> --flag for the command's parameters (first word of a backquoted phrase); other
    backquoted names lose their quotes."""

    def one(m):
        head, _, rest = m.group(1).partition(" ")
        return (names.get(head, head) + (" " + rest if rest else ""))

    return re.sub(r"`([^`]+)`", one, message)


class OutputError(Exception):
    """Standard output cannot take what a command writes: ``errno`` and ``strerror`` of the failed write."""

    def __init__(self, code: int, text: str):
        super().__init__(code, text)
        self.errno, self.strerror = code, text


def _unencodable(exc: UnicodeEncodeError):
    """Encoding error handler of :func:`say`: bytes a file name could not decode (surrogate escapes, U+DC80-DCFF)
    go out as those bytes (paths in 'wrote' lines are escaped before: numcore.checks.printable), any other
    character the stream's encoding lacks as a backslash escape."""
    chunk = exc.object[exc.start:exc.end]
    if all(0xDC80 <= ord(c) <= 0xDCFF for c in chunk):
        return bytes(ord(c) - 0xDC00 for c in chunk), exc.end
    return "".join(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}" for c in chunk), exc.end


codecs.register_error("flowcert.output", _unencodable)


def say(text: str) -> None:
    """One piece of text (a newline added) to standard output, flushed, in the stream's encoding whatever it is
    (``PYTHONIOENCODING=ascii`` or ``latin-1:strict``: see :func:`_unencodable`).

    The bytes go to the binary layer in a loop: an unbuffered stream (``PYTHONUNBUFFERED``, ``python -u``) writes
    to the descriptor directly, where a pipe whose reader left takes part of a write and reports no error; the text
    layer would drop the rest silently.

    Raises:
        OutputError: standard output is closed or cannot be written (a full disk, /dev/full, a broken pipe).
    """
    stream = sys.stdout
    if stream is None:
        raise OutputError(errno.EBADF, "it is closed")
    data = text + "\n"
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is None:  # a stream without a binary layer: its own write
            stream.write(data)
        else:
            stream.flush()
            view = memoryview(data.encode(getattr(stream, "encoding", None) or "utf-8", "flowcert.output"))
            while view.nbytes:
                n = buffer.write(view)
                if not n:
                    raise OSError(errno.EAGAIN, "the stream took no bytes")
                view = view[n:]
            buffer.flush()
        stream.flush()
    except OSError as exc:
        raise OutputError(exc.errno or errno.EIO, exc.strerror or str(exc)) from None
    except ValueError:  # "I/O operation on closed file"
        raise OutputError(errno.EBADF, "it is closed") from None


_CLOSED_AT_START: set = set()  # descriptors (0, 1, 2) that were closed when the command started


def _stdout_name() -> str:
    """Where standard output goes, for messages ('/dev/full', 'pipe:[123]'), or '' when unknown."""
    if 1 in _CLOSED_AT_START:
        return ""
    try:
        return " (" + os.readlink("/proc/self/fd/1") + ")"
    except OSError:
        return ""


def _discard_stdout() -> None:
    """After a failed write: point file descriptor 1 at /dev/null, so the interpreter's last flush of what is still
    buffered cannot fail again at exit (no 'Exception ignored' lines)."""
    try:
        if sys.stdout is None or sys.stdout.fileno() != 1:
            return
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # a test runner's stream has no descriptor
        pass


def output_failed(exc: OutputError) -> int:
    """The one line for an output that failed, and its exit status: 1 for a reader that went away (a broken pipe:
    nothing was wrong with the input), 2 for a destination that cannot be written (like -o onto a full disk)."""
    where = _stdout_name()
    _discard_stdout()
    if exc.errno == errno.EPIPE:
        click.echo(f"Error: standard output{where} was closed by the program reading it (broken pipe): the output "
                   "is incomplete", err=True)
        return 1
    click.echo(f"Error: standard output{where} cannot be written: {exc.strerror}: expected a writable standard "
               "output (or -o FILE where the command has it)", err=True)
    return 2


def _from_click_echo(exc: BaseException) -> bool:
    """Did ``exc`` come from click writing to a stream (a command's --help into a full or broken output)?"""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "echo" and code.co_filename.endswith(os.path.join("click", "utils.py")):
            return True
        tb = tb.tb_next
    return False


def _occupy_closed_descriptors() -> None:
    """A command started with standard input, output or error closed (``>&-``): put /dev/null on the free descriptor
    so that no file flowcert opens gets it (a C library writing to 'standard output' would write into that file).
    Python's own ``sys.stdout`` stays None, so :func:`say` still reports the closed output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _CLOSED_AT_START.add(fd)
            try:
                new = os.open(os.devnull, os.O_RDWR)
                if new != fd:
                    os.dup2(new, fd)
                    os.close(new)
            except OSError:
                pass


class FlowcertGroup(click.Group):
    """Turns bad input (InputError, and click's usage errors) into one line on stderr and exit status 2."""

    def main(self, *args, **kwargs):
        _occupy_closed_descriptors()
        try:
            return super().main(*args, **kwargs)
        except OutputError as exc:
            sys.exit(output_failed(exc))
        except OSError as exc:  # click's own output (--help, --version, usage) into a full or broken stream
            sys.exit(output_failed(OutputError(exc.errno or errno.EIO, exc.strerror or str(exc))))

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            click.echo(f"Error: {' '.join(exc.format_message().split())} (flowcert --help)", err=True)
            ctx.exit(2)

    def invoke(self, ctx):
        previous = _on_sigterm()
        try:
            return super().invoke(ctx)
        except InputError as exc:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            click.echo(f"Error: {as_flags(str(exc), flag_names(command) if command else {})}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:  # click's own parsing errors: the same one line, exit status 2
            name = ctx.invoked_subcommand
            hint = f" (flowcert {name} --help)" if name else " (flowcert --help)"
            click.echo(f"Error: {' '.join(exc.format_message().split())}{hint}", err=True)
            ctx.exit(2)
        except OutputError as exc:
            ctx.exit(output_failed(exc))
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug, not bad input: one line, traceback on request
            if isinstance(exc, OSError) and _from_click_echo(exc):  # a command's --help into a full or closed output
                ctx.exit(output_failed(OutputError(exc.errno or errno.EIO, exc.strerror or str(exc))))
            if os.environ.get("FLOWCERT_DEBUG"):
                raise
            first = " ".join(str(exc).split())[:300]
            click.echo(f"Error: internal error {type(exc).__name__}: {first} "
                       "(set FLOWCERT_DEBUG=1 for the traceback)", err=True)
            ctx.exit(1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _terminated(signum, frame):
    """SIGTERM ends the command like Ctrl-C does: every `finally` runs (temporary files are removed)."""
    raise SystemExit(128 + signum)


def _on_sigterm():
    """Install :func:`_terminated` for SIGTERM (main thread only); return the previous handler."""
    try:
        return signal.signal(signal.SIGTERM, _terminated)
    except (ValueError, AttributeError):  # not the main thread, or no SIGTERM on this platform
        return None


def emit(text: str | bytes, output: str | None) -> None:
    """Text to standard output, or atomically to a file."""
    if output is None:
        if isinstance(text, bytes):  # pragma: no cover - binary formats need -o (output_format refuses them)
            raise InputError("`output`: binary output is not written to standard output: expected -o FILE")
        say(text.rstrip("\n"))
    else:
        write_atomic(output, text if isinstance(text, bytes) or text.endswith("\n") else text + "\n")


def bars(enabled: bool = True):
    """The progress-bar factory the library functions take."""
    return functools.partial(progress, enabled=enabled)


LONG_RUN_EVALUATIONS = 100_000  # planned model evaluations from which a model command prints its start line


def start_line(command_name: str, model: str):
    """The ``announce(evaluations, text)`` callback of the model commands: when standard error is not a terminal
    (a log file, a pipe: the progress bars are off) and the run plans at least LONG_RUN_EVALUATIONS model
    evaluations, one line on standard error says what is about to run."""

    def announce(evaluations: int, text: str) -> None:
        stream = sys.stderr
        if evaluations < LONG_RUN_EVALUATIONS or stream is None or stream.isatty():
            return
        click.echo(f"flowcert {command_name} --model {show_value(model, 80)}: starting: {text}: about "
                   f"{evaluations:,} model evaluations (one network pass on one sample)", err=True)

    return announce


# ----------------------------------------------------------------------------- shared options
T_HELP = ("Largest OU time; sampling starts at x_T ~ p_T. The default 5 leaves alpha_T = 0.0067, so p_T is within "
          "KL <= e^{-10} KL(p_0 || N(0, I)) of the Gaussian prior.")
DELTA_HELP = ("Smallest OU time, > 0 and < --T; sampling stops there. The default 1e-3 is VE sigma 0.045, below "
              "the built-in mixtures' mode widths.")


def window_options(f):
    """--delta and --T, shared by every command that works on [delta, T]."""
    f = click.option("--T", "T", type=float, default=api.T_MAX, show_default=True, help=T_HELP)(f)
    return click.option("--delta", type=float, default=api.DELTA, show_default=True, help=DELTA_HELP)(f)


def format_option(*formats, default="table"):
    return click.option("--format", "fmt", type=click.Choice(list(formats)), default=default,
                        show_default=default is not None,
                        help="Output format (standard output, or -o)" + ("" if default is not None else
                             " [default: the -o extension's (.json, .csv), else table]") + ".")


def output_option(f):
    return click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                        help="Write to this file (atomically) instead of standard output.")(f)


def plot_option(what: str):
    return click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png", help=what)


def number(flag: str, key: str, help: str, dest: str | None = None, **kw):
    """A numeric option whose type, default and help default come from the option table (``numcore.checks.
    OPTIONS[key]``); :func:`command` fills in the default (the model's, with ``--model``) when it is not given."""
    d = OPTIONS[key]
    args = (flag, dest) if dest else (flag,)
    opt = click.option(*args, type=int if d.kind == "integer" else float, default=None,
                       help=f"{help} {d.default_text()}" if d.default is not None else help, **kw)

    def deco(f):
        f = opt(f)
        name = dest or flag.lstrip("-").replace("-", "_").lower()
        f.__dict__.setdefault("option_keys", {})[name] = key
        return f

    return deco


def command(name: str, **kw):
    """``main.command(name)`` whose numeric options (:func:`number`) get their table defaults when not given, and
    whose options are checked against :data:`APPLIES` (an option given where it does nothing is refused) before
    the command runs."""

    def deco(f):
        keys = f.__dict__.get("option_keys", {})

        @functools.wraps(f)
        def run(*args, **kwargs):
            given_now = given_options()
            model = kwargs.get("model") is not None
            for dest, key in keys.items():
                if kwargs.get(dest) is None:
                    kwargs[dest] = OPTIONS[key].default_for(model)
            check_applies(name, kwargs, given_now, keys)
            return f(*args, **kwargs)

        return main.command(name, **kw)(run)

    return deco


def given_options() -> set:
    """The parameters of the running command that the user gave (on the command line or through the environment),
    not defaults."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {p.name for p in ctx.command.params
            if ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}


# ----------------------------------------------------------------------------- which option applies when
# For every command, every parameter: None (it always acts) or (when, text): ``when(v)`` tells from the command's
# values ``v`` (defaults filled in; ``v["_given"]`` the names the user gave) whether the option changes anything;
# an option given where it does not is refused in one line naming ``text``, the combination where it acts.  Where
# the intent of a combination is clear it is honoured instead (grid: --bound with --for and no --kind exports the
# balanced grid on that bound, so there --bound acts).  tests/test_hostile.py checks that every parameter of every
# command is listed here; docs/commands.md shows the table.
def _model(v) -> bool:
    return v.get("model") is not None


def _units(v) -> list[str]:
    return [u.strip() for x in (v.get("units") or ()) for u in str(x).split(",") if u.strip()]


def grid_kind(v) -> str:
    """The grid a `flowcert grid` call computes: its --kind; with --for and no --kind the preset's winner, unless
    --bound names the balanced grid's rate (then balanced on it)."""
    if v.get("kind"):
        return v["kind"]
    if v.get("preset") and v.get("bound") is None:
        return "winner"
    return "balanced"


def _grid_rate(v) -> bool:
    """Does the grid compute a rate (Lambda)?  A mixture's grid always does (Lambda at every kind's nodes), but not
    the winner export; a model's only for the balanced grid."""
    kind = grid_kind(v)
    return kind == "balanced" if _model(v) else kind != "winner"


def _grid_empirical(v) -> bool:
    return _grid_rate(v) and (_model(v) or (v.get("bound") or "tri") == "empirical")


def _grid_search(v) -> bool:
    return grid_kind(v) in ("optimal", "winner")


def _validate_value(v, key):
    """A validate option as the run will have it: given, else the preset's, else ValidateConfig's default."""
    from .distill.config import MODEL_PRESETS, PRESETS, ValidateConfig

    if key in v["_given"]:
        return v[key]
    if _model(v) and not v.get("resume"):  # a model run's preset, default full (distill.validation.model_config)
        return MODEL_PRESETS[v.get("preset") or "full"].get(key, getattr(ValidateConfig(), key))
    return PRESETS[v.get("preset") or "full"].get(key, getattr(ValidateConfig(), key))


def _validate_grids(v) -> list[str]:
    return split_list("grids", _validate_value(v, "grids"))


def _flow_rule(param: str) -> tuple:
    """The APPLIES rule of a flow pipeline's parameter: it acts with the grid kinds and the presets that take it
    (numcore.grids.KINDS[k].params, exports.presets.PRESETS[p].options)."""
    kinds = [k for k, g in KINDS.items() if param in g.params]
    presets = [k for k, p in PRESETS.items() if param in p.options]

    def when(v) -> bool:
        return grid_kind(v) in kinds or v.get("preset") in presets

    return when, "with `kind` " + " or ".join(kinds) + ", or `preset` " + ", ".join(presets)


DIFFUSERS_BETAS = ("diffusers-euler", "diffusers-timesteps")
APPLIES: dict[str, dict] = {
    "mixture": {"spec": None, "delta": None, "T": None, "amp_samples": None, "fmt": None,
                "seed": (lambda v: v["amp_samples"] > 0, "with `amp_samples` > 0")},
    "lipschitz": {
        "spec": None, "model": None,
        "data": (_model, "with `model`"), "threads": (_model, "with `model`"),
        "iters": (_model, "with `model`"), "tol": (_model, "with `model`"),
        "bounds": (lambda v: not _model(v), "without `model` (a trained network has no analytic bound)"),
        "ball_mass": (lambda v: not _model(v), "without `model` (a trained network has no analytic bound)"),
        "latex": (lambda v: not _model(v), "without `model`"),
        "points": (lambda v: not v["latex"], "without `latex` (it prints the formulas only)"),
        "empirical": (lambda v: not v["latex"], "without `latex` (it prints the formulas only)"),
        "delta": (lambda v: not v["latex"], "without `latex` (it prints the formulas only)"),
        "T": (lambda v: not v["latex"], "without `latex` (it prints the formulas only)"),
        "fmt": (lambda v: not v["latex"], "without `latex` (it prints the formulas only)"),
        "output": (lambda v: not v["latex"], "without `latex` (it prints the formulas only)"),
        "plot": (lambda v: not v["latex"], "without `latex` (it prints the formulas only)"),
        "seed": (lambda v: not v["latex"] and (_model(v) or v["empirical"] > 0),
                 "with `empirical` > 0 or `model` (it seeds their samples)"),
    },
    "grid": {
        "spec": None, "model": None, "steps": None, "delta": None, "T": None, "kind": None, "preset": None,
        "fmt": None, "output": None,
        "threads": (_model, "with `model`"),
        "data": (lambda v: _model(v) and grid_kind(v) == "balanced",
                 "with `model` and the balanced grid (`kind` balanced, or `bound` with `preset`): no other grid "
                 "samples p_t"),
        "teacher_steps": (lambda v: _model(v) and (_grid_search(v) or (grid_kind(v) == "balanced"
                                                                        and v.get("data") is None)),
                          "with `model` for the optimal grid or `preset`'s winner (its teacher), or the balanced "
                          "grid without `data` (its samples of p_t)"),
        "solver": (_grid_search, "with `kind` optimal, or `preset` without `kind` (the solver whose grid wins)"),
        "bound": (_grid_rate, "where a rate is computed: a mixture's grids, a model's balanced grid"),
        "samples": (_grid_empirical, "with the empirical rate (`bound` empirical, or a model's balanced grid)"),
        "seed": (lambda v: _grid_empirical(v) or _grid_search(v),
                 "with the empirical rate or a searched grid (`kind` optimal, `preset`'s winner)"),
        "train_samples": (_grid_search, "with `kind` optimal or `preset`'s winner (no `kind`)"),
        "test_samples": (_grid_search, "with `kind` optimal or `preset`'s winner (no `kind`)"),
        "effort": (_grid_search, "with `kind` optimal or `preset`'s winner (no `kind`)"),
        "units": (lambda v: not v.get("preset"), "without `preset` (an export has its sampler's own values)"),
        "beta_schedule": (lambda v: v.get("preset") in DIFFUSERS_BETAS or (not v.get("preset") and "ddpm" in _units(v)),
                          "with `units` ddpm, or `preset` diffusers-euler or diffusers-timesteps"),
        "clip": (lambda v: v.get("preset") in (*DIFFUSERS_BETAS, "diffusers-edm")
                 or (not v.get("preset") and "ddpm" in _units(v)),
                 "with `units` ddpm, or `preset` diffusers-euler, diffusers-timesteps or diffusers-edm"),
        **{p: _flow_rule(p) for p in ("shift", "mu", "resolution")},
        "scheduler_config": None,  # grid_cmd and the presets name where it acts (an export, or a flow kind)
    },
    "certify": {
        "spec": None, "eps": None, "p": None, "t": None, "certificate": None, "latex": None, "verify": None,
        "export": None, "sweep": None, "plot": None, "fmt": None,
        "delta": (lambda v: v["t"] is None, "without `t` (the fixed-t network has no time window)"),
        "T": (lambda v: v["t"] is None, "without `t` (the fixed-t network has no time window)"),
        "times": (lambda v: v["t"] is None and v["verify"] > 0, "with `verify` > 0 and without `t`"),
        "seed": (lambda v: v["verify"] > 0, "with `verify` > 0 (it seeds the verification samples)"),
    },
    "solvers": {
        "specs": None, "model": None, "solvers": None, "steps": None, "samples": None, "train_samples": None, "effort": None,
        "seed": None, "delta": None, "T": None, "fmt": None, "output": None, "plot": None,
        "data": (_model, "with `model`"), "threads": (_model, "with `model`"),
        "reference": (_model, "with `model`"), "teacher_steps": (_model, "with `model`"),
        "random": (lambda v: not _model(v), "without `model` (random mixtures are a mixture study)"),
    },
    "fit": {"data": None, "max_components": None, "covariance_type": None, "reg_covar": None, "seed": None,
            "fmt": None, "output": None,
            "name": (lambda v: v["output"] is not None, "with `output` (the name goes into the spec file)")},
    "train-example": {"example": None, "out": None, "steps": None, "batch": None, "lr": None, "threads": None,
                      "seed": None},
    "demo": {"out": None},
    "validate": {
        **{k: None for k in ("specs", "resume", "out", "preset", "executor", "fmt", "no_plots", "quiet", "steps",
                             "grids", "seeds", "seed", "delta", "T", "budget", "depth", "iters", "batch", "lr",
                             "n_train", "n_test", "group", "finetune", "dtype", "device", "threads", "amp_times",
                             "amp_samples", "lip_samples")},
        "bound": (lambda v: "balanced" in _validate_grids(v) or _validate_value(v, "bound") == "empirical",
                  "with `grids` balanced (the rate it is balanced on)"),
        "solver": (lambda v: "optimal" in _validate_grids(v), "with `grids` optimal (the solver whose grid it is)"),
        "empirical_samples": (lambda v: "empirical" in _validate_grids(v) or _validate_value(v, "bound") == "empirical",
                              "with `grids` empirical or `bound` empirical (the runs that compute that rate)"),
        "total_params": (lambda v: _validate_value(v, "budget") == "total", "with `budget` total"),
        "width": (lambda v: _validate_value(v, "budget") == "per-block" or not _validate_value(v, "total_params"),
                  "with `budget` per-block, or total without `total_params` (which then sizes the budget)"),
        "workers": (lambda v: v["executor"] == "process" or (v["executor"] == "ray" and not v.get("ray_address")),
                    "with `executor` process, or ray without `ray_address` (the CPUs of a local Ray instance)"),
        "ray_address": (lambda v: v["executor"] == "ray", "with `executor` ray"),
        **{k: None for k in ("model", "block", "distance", "local_samples")},
        **{k: (_model, "with `model`") for k in ("data", "reference", "teacher_steps", "rate_points",
                                                  "surrogate_bound", "surrogate_components", "class_label",
                                                  "guidance")},
    },
}


def check_applies(command_name: str, values: dict, given: set, keys: dict | None = None) -> None:
    """InputError for the first option the user gave that does nothing in this combination (:data:`APPLIES`).  A
    numeric option (``keys``: {name: OPTIONS key}) outside its domain gets the domain's message instead: the value
    is wrong wherever it is given."""
    table = APPLIES.get(command_name, {})
    v = {**values, "_given": given}
    for name in sorted(given):
        rule = table.get(name)
        if rule is None:
            continue
        when, text = rule
        if not when(v):
            value = values.get(name)
            if keys and name in keys:
                OPTIONS[keys[name]](name, value)
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
            raise InputError(f"`{name}` = {show_value(shown)}: expected only {text}; it does nothing in this "
                             "combination")


def seed_option(what: str):
    return number("--seed", "seed", what)


MODEL_HELP = ("A trained model instead of a mixture SPEC: a diffusers folder (pipeline or model folder with its "
              "scheduler config: UNet2DModel, UNet2DConditionModel, DiTTransformer2DModel, SD3Transformer2DModel, "
              "FluxTransformer2DModel; DDPM-family or FlowMatch scheduler; safetensors weights only, pickles are never "
              "loaded), FILE.py:NAME (runs the file FILE.py as Python code with your rights, so name only files you "
              "trust, and takes its NAME: a flowcert.torch_model or a function of no arguments returning one; the "
              "file is first run in a child process, and one that exits, raises or runs past FLOWCERT_IMPORT_TIMEOUT "
              "seconds [default: 60] is refused), mixture:SPEC (the exact mixture as a torch model; a spec with "
              "labels is class-conditional), or digits or digits-flow (the shipped examples). Needs the torch extra.")
# the options that say how a model is loaded, conditioned and guided: one dict `load` for api.load_model
LOAD_OPTIONS = ("cond", "uncond", "class_label", "guidance", "prompt", "negative_prompt", "shape", "device", "dtype")
# in APPLIES they always act where they are accepted: with --model through api.load_model; with a mixture SPEC only
# --class-label (and --guidance for lipschitz's bound), the others refused by :func:`mixture_conditioning`
for _name in ("lipschitz", "grid", "solvers"):
    APPLIES[_name].update(dict.fromkeys(LOAD_OPTIONS))


def model_options(data_help: str):
    """--model, --data and --threads, and how the model is loaded, conditioned and guided (--cond, --uncond,
    --class-label, --guidance, --prompt, --negative-prompt, --shape, --device, --dtype), shared by the commands that
    take a trained model; the command receives the latter as one dict ``load`` (api.load_model's keywords, given
    ones only)."""

    def deco(cmd):
        @functools.wraps(cmd)
        def run(*args, **kwargs):
            load = {k: kwargs.pop(k) for k in LOAD_OPTIONS}
            return cmd(*args, load={k: v for k, v in load.items() if v is not None}, **kwargs)

        f = number("--threads", "threads", "With --model: torch CPU threads (one thread was faster than two on a "
                   "2-core machine, idle or busy: docs/results.md).")(run)
        f = click.option("--data", type=click.Path(dir_okay=False), default=None, metavar="FILE.npy",
                         help=data_help)(f)
        f = click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16", "float64"]), default=None,
                         help="With --model: the network's dtype (the solver state stays float64) [default: the "
                              "weights' own].")(f)
        f = click.option("--device", default=None, metavar="DEVICE",
                         help="With --model: cpu, cuda, cuda:N or mps, where the network runs (inputs are moved "
                              "there) [default: cpu].")(f)
        f = click.option("--shape", default=None, metavar="C,H,W",
                         help="With --model: the latent shape, where the config has none (Flux) or another is "
                              "wanted [default: the config's].")(f)
        f = click.option("--negative-prompt", default=None, metavar="TEXT",
                         help="With --model and --guidance: the unconditional branch's prompt, encoded as --prompt "
                              "(\"\" is the pipelines' empty prompt).")(f)
        f = click.option("--prompt", default=None, metavar="TEXT",
                         help="With --model (a pipeline folder with its text encoders): the prompt, encoded by the "
                              "folder's own encoders (needs flowcert[models]).")(f)
        f = number("--guidance", "guidance", "With --model: classifier-free guidance W >= 0, D_u + W (D_c - D_u) "
                   "(diffusers' convention; the unconditional branch from --uncond, --negative-prompt or the "
                   "family's null class). With a mixture SPEC (lipschitz): the guided field's bound. [default: 1, "
                   "the conditional model alone]")(f)
        f = number("--class-label", "class_label", "A class: shorthand for --cond with class_labels = [N] "
                   "(class-conditional networks, a mixture with labels: its class's components).")(f)
        f = click.option("--uncond", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                         help="With --model and --guidance: the unconditional branch's forward arguments "
                              "(.safetensors or .npz, as --cond).")(f)
        f = click.option("--cond", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                         help="With --model: the network's conditioning, a .safetensors or .npz file whose arrays "
                              "are forward keyword arguments (encoder_hidden_states, pooled_projections, "
                              "class_labels, text_embeds, time_ids, txt_ids, guidance ...) with a leading batch "
                              "dimension of 1. Never unpickled.")(f)
        return click.option("--model", default=None, metavar="MODEL", help=MODEL_HELP)(f)

    return deco


def mixture_conditioning(spec, load: dict, *, bound: bool = False):
    """A mixture SPEC with the model options: only --class-label (its class's mixture; and --guidance where the
    command has the guided bound, ``bound``).  Returns the spec or the class's mixture."""
    allowed = ("class_label", "guidance") if bound else ("class_label",)
    other = [k for k in load if k not in allowed]
    if other:
        raise InputError(f"`{other[0]}` applies to --model: with a mixture SPEC expected "
                         + ("--class-label and --guidance only" if bound else
                            "--class-label only (guided fields: --model mixture:SPEC)"))
    if bound or "class_label" not in load:
        return spec
    from .numcore.checks import option

    return api.load_mixture(spec).restrict(option("class_label", load["class_label"]))


def given(value, default):
    """An option's value, or its default when the option was not given (0 stays 0: the checks refuse it)."""
    return default if value is None else value


def spec_or_model(spec, model) -> None:
    """Exactly one of a mixture SPEC and --model."""
    if (spec is None) == (model is None):
        raise InputError("`spec` " + ("and `model`: expected one of them, not both" if spec else
                                      "missing: expected a mixture SPEC or --model MODEL"))


@click.group(cls=FlowcertGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowcert", prog_name="flowcert")
def main():
    """Turn the theory of flow distillation into numbers.

    A mixture SPEC is a built-in name (ring8, square4, line2, modes8d, aniso3,
    hetero3) or a .json/.yaml/.toml file with `means` (K x d), optional
    `weights`, and one of `variance` or `cov` (see the docs).  Times are OU times
    t (dX = -X dt + sqrt(2) dW); sampling runs from t = T down to t = delta.
    """


# ----------------------------------------------------------------------------- mixture


@command("mixture")
@click.argument("spec")
@window_options
@number("--amp-samples", "amp_samples", "Exact trajectories from x_T ~ p_T for the per-trajectory amplification (0: "
        "skip it).")
@seed_option("Seed of the --amp-samples draws.")
@format_option("table", "json")
def mixture_cmd(spec, delta, T, amp_samples, seed, fmt):
    """Describe a mixture: sizes, geometry, and where its Lipschitz bound L(t) peaks.

    Reports the triangle and sharp bounds at t = delta, the stability integral
    Lambda(T) = int_delta^T L and the amplification exp(Lambda(T)), the time
    where t*L(t) (the stability spent per unit of log t) peaks, and the time
    below which half of Lambda(T) is spent.  Beside the worst case exp(Lambda(T)),
    the amplification ||D Phi_{T->delta}(x_T)||_op over --amp-samples exact
    trajectories: measured, certified per trajectory (an upper bound for each
    trajectory) and predicted (an estimate); JSON field `amplification`.
    """
    mix = api.load_mixture(spec)
    info = api.describe(mix, delta=delta, T=T, amp_samples=amp_samples, seed=seed)
    if fmt == "json":
        say(render.to_json({**info, "means": mix.means, "eigvals": mix.eigvals}))
    else:
        say(render.mixture_text(info, mix.weights))


# ----------------------------------------------------------------------------- lipschitz


@command("lipschitz")
@click.argument("spec", required=False)
@model_options("With --model: data x_0 (n x d, or n images) whose p_t is sampled as alpha x_0 + sigma_vp z; "
               "without it, p_t is sampled from the model's own ODE started at N(0, I).")
@click.option("--bound", "bounds", multiple=True, default=("tri", "sharp", "onesided"), show_default=True,
              help="Bounds to evaluate (repeat or comma-separate): tri = |a| + b (triangle form), "
                   "sharp = both ends of J's spectrum, onesided = backward growth rate m(t) (may be < 0).")
@number("--points", "points", "Number of log-spaced times in [delta, T].")
@number("--empirical", "empirical", "Overlay the brute-force sup and the p_t-mean of ||J||_op from NSAMPLES samples "
        "of p_t (plus dense points on the segments between means) at each time.  With --model: samples per time for "
        "the power iteration.", metavar="NSAMPLES")
@number("--iters", "iters", "With --model: Lanczos iterations at most per point.")
@number("--tol", "tol", "With --model: relative Ritz residual (or growth of the Ritz value) that ends a point's "
        "iteration.")
@seed_option("Seed of the --empirical sampling.")
@number("--ball-mass", "ball_mass", "For per-component covariances: the bound holds on a ball of at least this "
        "p_t-mass.")
@click.option("--delta", type=float, default=None, help=DELTA_HELP + " With --model: inside its trained range. "
              "[default: 0.001]")
@click.option("--T", "T", type=float, default=None, help=T_HELP + " With --model: inside its trained range. "
              "[default: 5]")
@format_option("table", "json", "csv", default=None)
@output_option
@plot_option("Plot the bounds (and the empirical sup/mean) against t on log axes.")
@click.option("--latex", is_flag=True, help="Print the formulas as LaTeX (with this mixture's constants) and exit.")
def lipschitz_cmd(spec, model, data, threads, load, bounds, points, empirical, iters, tol, seed, ball_mass, delta, T,
                  fmt, output, plot, latex):
    """Lipschitz bounds L(t) of the probability-flow velocity v = -x - grad log p_t.

    Every bound is an upper bound of sup_x ||J(x,t)||_op, J = dv/dx (onesided:
    of the top eigenvalue of -J), globally for shared covariances and on a ball
    of stated p_t-mass for per-component covariances.  JSON holds `t`, one array
    per bound under its name, Lambda(T) per bound, and with --empirical
    `empirical_sup`, `empirical_mean` and `empirical_mean_se`.

    With --model (a trained network): no analytic bound exists, so the table holds
    the p_t-mean of ||J||_op with its 95% Monte-Carlo interval, the sampled sup, and
    the power iteration's record (iterations, converged fraction).

    With --class-label K (a mixture whose spec has labels): the bounds of class K's
    mixture; with --guidance W as well, those of the classifier-free-guided velocity
    (1 - W) v_u + W v_c (tri: |1 - W| L_u + W L_c), where both mixtures' bounds hold.
    """
    from .bounds.lipschitz import BOUNDS, LipschitzBound, violations

    fmt = output_format(fmt, output, ("table", "json", "csv"))
    spec_or_model(spec, model)
    check_outputs({"output": output, "plot": plot}, [spec, data, load.get("cond"), load.get("uncond"),
                                                    *api.model_files(model)])
    if model is not None:
        out = api.model_lipschitz(model, points=points, samples=empirical, data=data, delta=delta, T=T, seed=seed,
                                  iters=iters, tol=tol, threads=threads, load=load, progress=bars(),
                                  announce=start_line("lipschitz", model))
        if plot:
            from .bounds.plots import lipschitz

            lipschitz(out, (), plot)
        emit(render.model_lipschitz_output(out, fmt), output)
        return
    which = split_list("bounds", bounds, BOUNDS)
    mixture_conditioning(spec, load, bound=True)
    delta, T = api.DELTA if delta is None else delta, api.T_MAX if T is None else T
    if latex:
        if "class_label" in load:
            from .bounds.guided import GuidedLipschitzBound

            say(GuidedLipschitzBound(api.load_mixture(spec), load["class_label"], load.get("guidance", 1.0),
                                     ball_mass).latex(which))
        else:
            say(LipschitzBound(api.load_mixture(spec), ball_mass).latex(which))
        return
    out = api.lipschitz_report(spec, bounds=which, points=points, delta=delta, T=T, empirical=empirical,
                               seed=seed, ball_mass=ball_mass, class_label=load.get("class_label"),
                               guidance=load.get("guidance"), progress=bars())
    for w, n in violations(out).items():
        if n:
            click.echo(f"warning: brute force exceeds the {w} bound at {n} times", err=True)
    if plot:
        from .bounds.plots import lipschitz

        lipschitz(out, which, plot)
    emit({"json": render.to_json, "csv": lambda o: render.csv_text(render.lipschitz_columns(o, which)),
          "table": lambda o: render.lipschitz_text(o, which)}[fmt](out), output)


# ----------------------------------------------------------------------------- grid

GRID_FORMATS = ("table", "json", "csv", "npy", "txt")
PRESET_NAMES = tuple(PRESETS)


def output_format(fmt: str | None, output: str | None, allowed: tuple = ()) -> str:
    """--format, or the -o extension's (.json, .csv, .npy, .txt), else table; npy needs a file.  With ``allowed``
    (the command's formats): an extension that names a format the command cannot write is refused, so a .json file
    never holds a text table."""
    if fmt is None:
        ext = os.path.splitext(output or "")[1].lower()
        fmt = {".json": "json", ".csv": "csv", ".npy": "npy", ".txt": "txt"}.get(ext, "table")
        if allowed and fmt not in allowed:
            if fmt != "txt":
                raise InputError(f"`output` = {output!r}: its extension names {fmt}, which this command "
                                 f"does not write: expected {', '.join(allowed)} (or --format)")
            fmt = "table"
    if fmt == "npy" and output is None:
        raise InputError("`fmt` = 'npy': expected -o FILE.npy (binary output is not written to a terminal)")
    return fmt


@command("grid")
@click.argument("spec", required=False)
@model_options("With --model: data x_0 whose p_t is sampled for the empirical rate (else the model's own ODE).")
@click.option("--kind", type=click.Choice(list(GRID_KINDS)), default=None,
              help="; ".join(f"{k}: {KINDS[k].what}" for k in GRID_KINDS) + " (--solver; the teacher is the exact "
                   "flow map, or with --model the model's own many-step teacher).  "
                   "[default: balanced; with --for: the grid that wins for the preset's solver]")
@click.option("--solver", type=click.Choice(list(NAMES)), default=None,
              help="The solver of --kind optimal, and of the winning --for export (default: the one the preset "
                   "runs: a k-diffusion-* or comfyui-* preset names its sampler; unipc for diffusers-unipc, "
                   "dpmpp_2m for diffusers-timesteps, dpmpp_3m for diffusers-dpmsolver-3m, euler for the others).")
@click.option("--bound", type=click.Choice(["tri", "sharp", "empirical"]), default=None,
              help="Rate L(t) that defines Lambda: the triangle or sharp bound, or the empirical p_t-average of "
                   "||J||_op (data-aware; uses --samples and --seed).  [default: tri; empirical with --model, "
                   "the only rate a trained network has]")
@number("--steps", "steps", "Number of segments N (N + 1 nodes).")
@click.option("--delta", type=float, default=None, help=DELTA_HELP + " With --model: inside its trained range. "
              "[default: 0.001]")
@click.option("--T", "T", type=float, default=None, help=T_HELP + " With --model: inside its trained range. "
              "[default: 5]")
@click.option("--units", multiple=True, default=("t",), show_default=True,
              help="Extra units to output (repeat or comma-separate): t, sigma (VE/EDM), alpha, sigma_vp, logsnr, "
                   "rf (rectified flow), ddpm (fractional timestep of --beta-schedule, 1000 steps).")
@click.option("--beta-schedule", type=click.Choice(["linear", "scaled_linear"]), default=None,
              help="DDPM beta schedule for --units ddpm and the diffusers-euler / diffusers-timesteps / "
                   "diffusers-dpmsolver-3m exports "
                   "[default: linear, or the --scheduler-config's].")
@click.option("--clip", is_flag=True, help="Clip times outside the DDPM schedule's (or the --scheduler-config's) "
                                           "range (with a warning) instead of failing.")
@number("--samples", "samples", "Samples of p_t per table time for --bound empirical.")
@seed_option("Seed for --bound empirical and for the trajectories of the optimal grid.")
@number("--train-samples", "train_samples", "Trajectories the optimal grid is fitted on (exact, or the model's "
        "teacher).")
@number("--test-samples", "test_samples", "Fresh trajectories its error (and the closed forms') is measured on.")
@number("--teacher-steps", "grid.teacher_steps", "With --model: RK4 steps (4 evaluations each) of the model's "
        "own many-step teacher.")
@number("--effort", "effort", "Multiplies the grid search's evaluation budgets (a longer search: 4; with --model "
        "each evaluation costs a network pass).")
@click.option("--for", "preset", default=None, metavar="PRESET",
              help="Write the grid the way one sampler takes it: " + ", ".join(PRESET_NAMES) +
                   " (conventions in the docs: order, trailing 0, final sigma, shift).")
@click.option("--shift", type=float, default=None,
              help="A flow pipeline's static shift: --kind flow-shift's [default: the flow scheduler config's, else "
                   "3 (SD3)], and the diffusers-flowmatch (and diffusers-unipc) scheduler's, pre-inverted [default: 1 (neutral), or the "
                   "--scheduler-config's; a config's own shift wins, and a --shift that disagrees with it is refused "
                   "unless --kind flow-shift, whose alone it then is].")
@click.option("--mu", type=float, default=None,
              help="A flow pipeline's dynamic shift mu (e^mu / (e^mu + 1/s - 1)): --kind flux-mu's [default: the mu "
                   "of 1024,1024, 1.15], and the one a dynamically shifting diffusers-flowmatch scheduler gets, "
                   "pre-inverted (the export carries it as `mu`).")
@click.option("--resolution", default=None, metavar="H,W",
              help="Image height and width in pixels (multiples of 16): mu = diffusers' calculate_shift of "
                   "(H/16)(W/16) tokens (base/max shift 0.5/1.15 at 256/4096 tokens, or the scheduler config's), as "
                   "Flux and SD3 pipelines compute it; instead of --mu.")
@click.option("--scheduler-config", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A pipeline's own scheduler_config.json (diffusers presets; comfyui: a flow-matching config makes "
                   "the SIGMAS flow times): build the export for that scheduler (beta schedule, zero terminal SNR, "
                   "sigma range, static or dynamic shift, shift_terminal, invert_sigmas) and check it there; with "
                   "--kind flow-shift or flux-mu and no --for, the shift or line the kind defaults to.")
@click.option("--format", "fmt", type=click.Choice(GRID_FORMATS), default=None,
              help="Output format; default from the -o extension (.json, .csv, .npy, .txt), else table. "
                   "txt: the values alone, one per line (comma-separated for comfyui).")
@output_option
def grid_cmd(spec, model, data, threads, load, kind, solver, bound, steps, delta, T, units, beta_schedule, clip, samples,
             seed, train_samples, test_samples, teacher_steps, effort, preset, shift, mu, resolution, scheduler_config,
             fmt, output):
    """A time grid for N-step sampling or distillation, exported for other samplers.

    The default is the stability-balanced grid: t_i = Lambda^{-1}((N - i)/N Lambda(T)),
    so each segment carries the same stability budget.  With --for PRESET and no
    --kind, the grid that makes the preset's solver most accurate (measured against
    the exact flow map, or with --model against the model's own many-step teacher,
    with log-SNR, KL-optimal and EDM on the same fresh batch).  Nodes are descending,
    t[0] = T and t[N] = delta.  JSON holds `t`, `lambda` (Lambda at each node under
    --bound), `kind`, `bound`, `steps` and each requested unit under its name.  With
    --model the balanced grid is balanced on the network's p_t-average of ||J||_op,
    and JSON adds `model` and `cost` (seconds, model evaluations).
    """
    from .numcore.units import UNITS

    spec_or_model(spec, model)
    names = split_list("units", units, UNITS)
    fmt = output_format(fmt, output)
    check_outputs({"output": output}, [spec, scheduler_config, data, load.get("cond"), load.get("uncond"),
                                       *api.model_files(model)])
    if preset is None and scheduler_config is not None and kind not in FLOW_KINDS:
        raise InputError("`scheduler_config` applies to the exports and to `kind` " + " and ".join(FLOW_KINDS) +
                         ": expected `preset` with it")
    if preset is not None and kind is None and bound is not None:
        kind = "balanced"  # --bound names a rate: the export of the grid balanced on it (not the preset's winner)
    common = dict(clip=clip, seed=seed, solver=solver, effort=effort, samples=samples, train_samples=train_samples,
                  test_samples=test_samples, shift=shift, mu=mu, resolution=resolution,
                  scheduler_config=scheduler_config, progress=bars())
    if model is not None:
        common.update(bound=bound or "empirical", delta=delta, T=T, data=data, teacher_steps=teacher_steps,
                      threads=threads, load=load, announce=start_line("grid", model))
        grid_fn, export_fn, source = api.model_grid, api.model_export_grid, model
    else:
        common.update(bound=bound or "tri", delta=api.DELTA if delta is None else delta,
                      T=api.T_MAX if T is None else T)
        grid_fn, export_fn, source = api.grid, api.export_grid, mixture_conditioning(spec, load)
    if preset is None:
        g = grid_fn(source, steps, kind=kind or "balanced", units=names, beta_schedule=beta_schedule or "linear",
                    **common)
        for w in g.get("warnings", []):
            click.echo(f"warning: {w}", err=True)
        emit(render.grid_output(g, names, fmt, common["samples"], seed), output)
        return
    out = export_fn(source, steps, preset, kind=kind, beta_schedule=beta_schedule, **common)
    for w in out["export"].warnings:
        click.echo(f"warning: {w}", err=True)
    emit(render.preset_output(out["export"], out["grid"], fmt, out["selection"]), output)


# ----------------------------------------------------------------------------- certify


@command("certify")
@click.argument("spec")
@click.option("--eps", type=float, required=True, help="Target accuracy in L^p(p_t); 0 < eps < the score's scale.")
@number("--p", "p", "Exponent p >= 1 of the L^p(p_t) norm.", dest="p")
@click.option("--t", "t", type=float, default=None,
              help="Fixed OU time t > 0 (Part A). Without --t, t is a network input on [--delta, --T] (Part B).")
@window_options
@click.option("--certificate", type=click.Choice(["tight", "closed"]), default="tight", show_default=True,
              help="tight: smallest R, m, n, J satisfying the exact budget inequalities; closed: closed-form choices.")
@click.option("--latex", is_flag=True, help="Print the size formulas and parameter choices as LaTeX first.")
@number("--verify", "verify", "Monte-Carlo check of the materialized network on N samples of p_t (95% CI).",
        metavar="N")
@number("--times", "times", "Without --t: number of verification times across [delta, T] (geometric, both ends "
        "included).")
@click.option("--export", type=click.Path(dir_okay=False), default=None, metavar="FILE.npz",
              help="Write the materialized network (W{l}, b{l}, act{l}, W_out, b_out).")
@click.option("--sweep", multiple=True, metavar="VAR=START:STOP[:COUNT]",
              help="Size table over eps (eps=1e-1:1e-8) or over the low-noise time (delta=1e-1:1e-4).")
@plot_option("PNG of depth, width, params against log(1/eps) and against delta.")
@format_option("table", "json")
@seed_option("Seed of the --verify samples.")
def certify_cmd(spec, eps, p, t, delta, T, certificate, latex, verify, times, export, sweep, plot, fmt, seed):
    """Certified sizes of a ReLU-ReQU network approximating the mixture score to eps in L^p(p_t).

    With --t the network approximates s(., t) at that one time (fixed-t
    construction); without it, t is a second input and the guarantee covers
    every t in [--delta, --T] (time-input construction).  Prints depth, width,
    nonzero parameters, every parameter choice and the error budget; --verify
    builds the network and measures its error against the exact score;
    --export writes it.
    """
    check_outputs({"export": export, "plot": plot}, [spec])
    out = api.certify(spec, eps, t=t, p=p, delta=delta, T=T, certificate=certificate, verify=verify, times=times,
                      seed=seed, export=export, sweep=sweep, plot=plot, latex=latex, progress=bars(fmt != "json"))
    if fmt == "json":
        say(render.to_json(out))
        return
    if latex:
        say(out.pop("latex"))
    say(render.certify_text(out))


# ----------------------------------------------------------------------------- solvers


@command("solvers")
@click.argument("specs", nargs=-1, metavar="[SPEC...]")
@model_options("With --model: data x_0 whose p_t is sampled for the balanced grid's empirical rate (else the "
               "model's own ODE).")
@click.option("--reference", type=click.Path(dir_okay=False), default=None, metavar="FILE.npy",
              help="With --model: held-out data; the sliced W2 of each solver's samples to it (pushed to p_delta) "
                   "is reported with a bootstrap interval.")
@number("--teacher-steps", "teacher_steps", "With --model: RK4 steps (4 evaluations each) of the model's own "
        "many-step teacher.")
@click.option("--steps", default=None, help="Comma-separated numbers of steps N to compare. "
              "[default: 4,8,16,32; 4,8,16 with --model]")
@number("--random", "random", "Add this many seeded random mixtures (isotropic, shared-full, per-component; d in "
        "1..8, K in 2..8) and summarise every grid against the optimal one over all mixtures (the league).")
@number("--samples", "solvers.samples", "Exact samples x_T ~ p_T (the test batch, and the size of the p_delta "
        "reference for the sliced W2); the empirical rate of the balanced-empirical grid uses min(samples, 4096) "
        "samples per time. With --model: x_T ~ N(0, I).")
@number("--train-samples", "train_samples", "Trajectories the optimal grids are fitted on (independent of "
        "--samples; with --model the model's teacher's).")
@number("--effort", "effort", "Multiplies the grid search's evaluation budgets.")
@click.option("--solvers", "solvers", default=None, metavar="NAMES",
              help="Comma-separated solvers to study, each with its own optimal grid: "
                   + ", ".join(NAMES) + " [default: all]")
@seed_option("Seed of the samples, projections and random mixtures.")
@click.option("--delta", type=float, default=None, help=DELTA_HELP + " [default: 0.001]")
@click.option("--T", "T", type=float, default=None, help=T_HELP + " [default: 5]")
@format_option("table", "json", default=None)
@output_option
@plot_option("Plot relative MSE and sliced W2 against N per grid and solver (with several mixtures: the league).")
def solvers_cmd(specs, model, data, threads, load, reference, teacher_steps, steps, random, samples, train_samples,
                effort, solvers, seed, delta, T, fmt, output, plot):
    """Which grid makes which solver most accurate, against the exact flow map.

    For each grid (balanced from the tri, sharp and empirical rates; uniform;
    EDM rho = 7; log-SNR; KL-optimal; and each solver's optimal grid, fitted on
    --train-samples other trajectories) and each N, runs every solver of
    --solvers (default all) from exact x_T ~ p_T with the exact denoiser, and reports the
    relative MSE against the exact endpoint Phi_{T->delta}(x_T) with a 95% CI, and
    the sliced W2 distance to an independent sample of p_delta with its Monte-Carlo
    noise floor.  JSON holds `rows` (grid, solver, steps, nfe, engine, rel_mse,
    rel_mse_ci, sw), `sw_floor`, `summary` (winner per solver and N), `optimal` and
    `league` (every grid's error over the optimal grid's, geometric mean over the
    mixtures with a 95% interval); with several mixtures `studies` and `league`.

    With --model (a trained network): x_T ~ N(0, I), the reference is the model's
    own many-step teacher (RK4 in log sigma; its step count and self-convergence
    are printed), and --reference gives held-out data for the distribution distance.
    """
    fmt = output_format(fmt, output, ("table", "json"))
    if model is not None:
        spec_or_model(specs[0] if specs else None, model)
    check_outputs({"output": output, "plot": plot}, [*specs, data, reference, load.get("cond"), load.get("uncond"),
                                                    *api.model_files(model)])
    if model is not None:
        res = api.model_solvers(model, given(steps, "4,8,16"), samples=samples, data=data, threads=threads,
                                reference=reference, teacher_steps=teacher_steps, delta=delta, T=T, seed=seed,
                                train_samples=train_samples, effort=effort, solvers=solvers, plot=plot, load=load,
                                progress=bars(), announce=start_line("solvers", model))
        emit(render.to_json(res) if fmt == "json" else render.model_solvers_text(res), output)
        return
    if load:
        specs = tuple(mixture_conditioning(s, load) for s in specs) if specs else specs
        if not specs:
            raise InputError("`class_label` needs a mixture SPEC with labels or --model")
    res = api.solvers(list(specs) or None, given(steps, "4,8,16,32"), random=random,
                      delta=api.DELTA if delta is None else delta, T=api.T_MAX if T is None else T,
                      samples=samples, seed=seed, train_samples=train_samples, effort=effort,
                      solvers=solvers, plot=plot, progress=bars())
    emit(render.to_json(res) if fmt == "json" else render.solvers_text(res), output)


# ----------------------------------------------------------------------------- fit


@command("fit")
@click.argument("data", metavar="DATA.npy")
@number("--max-components", "max_components", "Fit K = 1..this many components (at most the number of samples) and "
        "keep the smallest BIC.")
@click.option("--covariance", "covariance_type", type=click.Choice(["full", "tied", "diag", "spherical", "auto"]),
              default="full", show_default=True,
              help="Covariance type (tied: one shared covariance, where the analytic bounds hold for every x); "
                   "auto tries all four.")
@number("--reg-covar", "reg_covar", "Added to every covariance's diagonal: the surrogate's smallest variance (inside "
        "a spec's variance range, 1e-8 to 1e12).")
@click.option("--name", default=None, help="Name of the mixture in the spec written by -o [default: the output file's "
              "stem].")
@seed_option("Seed of scikit-learn's initialisation.")
@format_option("table", "json")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="FILE.yaml|.json|.toml",
              help="Write the spec to this file (atomically), in the format its extension names: .yaml/.yml, .json "
                   "or .toml.  The spec is read back before it is written: flowcert takes every spec fit writes.")
def fit_cmd(data, max_components, covariance_type, reg_covar, name, seed, fmt, output):
    """A Gaussian-mixture surrogate of data, as a flowcert mixture spec (BIC over K).

    Fits scikit-learn's GaussianMixture for K = 1..--max-components to DATA
    (an .npy array of n samples, or n images, flattened) and keeps the
    smallest BIC.  -o writes the spec (.yaml, .json, .toml) for every analytic
    command (lipschitz, grid, certify, solvers, validate); the table lists
    every fit's BIC.
    """
    check_outputs({"output": output}, [data])
    if output is not None:
        render.spec_format(output)  # an extension no spec is read from is refused before the work
    stem = printable(os.path.splitext(os.path.basename(output))[0]) if output else "fitted"  # derived: escaped
    res = api.fit(data, max_components=max_components, covariance_type=covariance_type, reg_covar=reg_covar,
                  seed=seed, name=name or stem, progress=bars())
    if output is not None:
        text = render.spec_text(res["spec"], output)
        spec_reads_back(text, output)
        write_atomic(output, text)
    say(render.to_json({k: v for k, v in res.items() if k != "spec"}) if fmt == "json"
        else render.fit_text(res, output))


def spec_reads_back(text: str, output: str) -> None:
    """InputError unless ``text`` (a spec about to be written to ``output``) loads with the mixture loader from a file
    of the same extension: fit never writes a spec that flowcert refuses."""
    import tempfile

    from .numcore.mixture import load

    ext = os.path.splitext(output)[1].lower()
    with tempfile.TemporaryDirectory(prefix="flowcert-fit-") as folder:
        probe = os.path.join(folder, "spec" + ext)
        write_atomic(probe, text)
        try:
            load(probe)
        except InputError as exc:
            reason = str(exc).replace(f"mixture file {probe!r}: ", "").replace(f"mixture file {probe!r}", "it")
            raise InputError(f"`output` = {output!r}: the fitted spec would not load back ({reason})") from None


# ----------------------------------------------------------------------------- train-example


@command("train-example")
@click.argument("example", type=click.Choice(["digits", "digits-flow"]))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the checkpoint and the saved model (resumes from its checkpoint.pt). "
                   "[default: flowcert-EXAMPLE]")
@click.option("--steps", type=int, default=None, help="Training steps. [default: 4000; digits-flow 3000]")
@click.option("--batch", type=int, default=None, help="Batch size. [default: 128]")
@click.option("--lr", type=float, default=None, help="Peak Adam learning rate. [default: 2e-3]")
@click.option("--threads", type=int, default=None,
              help="Torch threads (1 is fastest on a machine busy with other work).")
@seed_option("Seed of the data split, initial weights and batches.")
def train_example_cmd(example, out, steps, batch, lr, threads, seed):
    """Train an example model on scikit-learn's digits: a small diffusers UNet2DModel.

    The 1797 8 x 8 handwritten digits ship inside scikit-learn (no download):
    1437 train it, 360 are held out (written to OUT/data/).  digits: a DDPM
    epsilon predictor (linear betas, continuous timesteps) saved as a
    DDPMPipeline folder, about 17 minutes on 2 busy CPU cores.  digits-flow: a
    class-conditional flow-matching model (FlowMatchEulerDiscreteScheduler,
    v = eps - x_0, null class 10 for classifier-free guidance, 10% label
    dropout) saved as a DigitsFlowPipeline folder with a digits classifier
    (classifier.npz).  The checkpoint in OUT makes a killed run resumable with
    the same result.
    """
    out = out or f"flowcert-{example}"
    api.train_options(example, steps=steps, batch=batch, lr=lr, seed=seed)  # a bad option leaves no folder behind
    check_folder(out, "out")
    res = api.train_example(example, out, threads=threads, steps=steps, batch=batch, lr=lr, seed=seed,
                            progress=bars())
    say(render.train_text(res))


# ----------------------------------------------------------------------------- demo


@command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="flowcert-demo", show_default=True,
              help="Folder for the demo's files.")
def demo_cmd(out):
    """Run the main job on the built-in ring8 mixture and write its results.

    Prints the mixture summary, writes the Lipschitz bounds with a brute-force
    overlay (lipschitz.json, lipschitz.png), the balanced and baseline grids
    (grid_*.json), and a certified score network with its measured error
    (certify.json, net.npz) into --out.  The distillation study is separate:
    `flowcert validate ring8 --preset quick` (a few minutes on a CPU).
    """
    from .bounds.plots import lipschitz

    check_folder(out, "out")
    here = functools.partial(os.path.join, out)
    mix = api.load_mixture("ring8")
    say("== flowcert mixture ring8\n" + render.mixture_text(api.describe(mix), mix.weights))
    lip = api.lipschitz_report(mix, points=24, empirical=20000, progress=bars())
    write_atomic(here("lipschitz.json"), render.to_json(lip) + "\n")
    lipschitz(lip, ("tri", "sharp", "onesided"), here("lipschitz.png"))
    for kind in ("balanced", "uniform", "edm", "logsnr"):
        g = api.grid(mix, 8, kind=kind, units=("sigma",))
        say(f"\n== flowcert grid ring8 --kind {kind} --steps 8 --units sigma\n"
                   + render.grid_output(g, ("sigma",), "table", 4096, 0))
        write_atomic(here(f"grid_{kind}.json"), render.to_json(g) + "\n")
    cert = api.certify(mix, 1e-3, t=0.05, verify=20000, export=here("net.npz"), progress=bars())
    say(f"\n== flowcert certify ring8 --eps 1e-3 --t 0.05 --verify 20000 --export {here('net.npz')}\n"
               + render.certify_text(cert))
    write_atomic(here("certify.json"), render.to_json(cert) + "\n")
    say(f"\nwrote {', '.join(sorted(os.listdir(out)))} into {printable(out, None)}/")


# ----------------------------------------------------------------------------- validate

VALIDATE_EXECUTION = ("specs", "model", "data", "reference", "resume", "out", "preset", "executor", "workers",
                      "ray_address", "fmt", "no_plots", "quiet")


def validate_options(f):
    """The options that set a field of ValidateConfig; defaults shown from the config itself, so they are
    defined once (a preset fills in what the user did not give)."""
    from .distill.config import GRIDS, ValidateConfig

    d = ValidateConfig()
    listing = lambda v: ",".join(map(str, v))  # noqa: E731
    opts = [
        ("--steps", dict(metavar="N1,N2,...", help="Numbers of segments N to train students for.",
                         default=listing(d.steps))),
        ("--grids", dict(metavar="G1,G2,...", default=listing(d.grids),
                         help=f"Grids to compare ({', '.join(GRIDS)}); empirical is balanced on the data-aware "
                              "p_t-average rate; kl-optimal is Align Your Steps' closed form; optimal is the grid "
                              "that minimises --solver's error against the exact flow map.")),
        ("--bound", dict(type=click.Choice(["tri", "sharp", "onesided", "empirical"]), default=d.bound,
                         help="Rate the balanced grid is uniform in (empirical: the same as the grid named empirical).")),
        ("--solver", dict(type=click.Choice(list(NAMES)), default=d.solver,
                          help="The solver whose optimal grid (on the exact mixture) the grid named optimal is.")),
        ("--seeds", dict(type=int, default=d.seeds, help="Number of seeds (teacher data and initial weights).")),
        ("--seed", dict(type=int, default=d.seed, help="First seed.")),
        ("--delta", dict(type=float, default=d.delta, help="Smallest OU time.")),
        ("--T", dict(type=float, default=d.T, help="Largest OU time.")),
        ("--budget", dict(type=click.Choice(["per-block", "total"]), default=d.budget,
                          help="per-block: every block has --width for every N; total: N blocks share --total-params "
                               "(the fair one-step vs multi-step comparison).")),
        ("--width", dict(type=int, default=d.width, help="Hidden width of each block (per-block budget).")),
        ("--depth", dict(type=int, default=d.depth, help="Hidden layers per block.")),
        ("--total-params", dict(type=int, default=d.total_params,
                                help="Parameter budget of the whole student for --budget total (0: max N x one "
                                     "--width block).")),
        ("--iters", dict(type=int, default=d.iters, help="Adam steps per block group.")),
        ("--batch", dict(type=int, default=d.batch, help="Mini-batch size.")),
        ("--lr", dict(type=float, default=d.lr, help="Peak Adam learning rate (cosine decay).")),
        ("--train-samples", dict(type=int, default=d.n_train, help="Teacher trajectories per seed for training.")),
        ("--test-samples", dict(type=int, default=d.n_test, help="Fresh teacher trajectories for the measurements.")),
        ("--group", dict(type=int, default=d.group, help="Blocks trained together (and checkpointed together).")),
        ("--finetune", dict(type=int, default=d.finetune, help="End-to-end fine-tuning steps of the chained student.")),
        ("--dtype", dict(type=click.Choice(["float32", "float64"]), default=d.dtype, help="Student precision.")),
        ("--device", dict(type=click.Choice(["auto", "cpu", "cuda"]), default=d.device,
                          help="Torch device; auto picks CUDA when a GPU is visible.")),
        ("--threads", dict(type=int, default=d.threads,
                           help="Torch threads per job (fixed so results do not depend on the executor).")),
        ("--empirical-samples", dict(type=int, default=d.empirical_samples,
                                     help="Samples of p_t per table time for the empirical (data-aware) rate.")),
        ("--amp-times", dict(type=int, default=d.amp_times,
                             help="Times t (log-spaced) where ||D Phi_{t->delta}||_op is measured.")),
        ("--amp-samples", dict(type=int, default=d.amp_samples, help="Samples of p_t per amplification time.")),
        ("--lip-samples", dict(type=int, default=d.lip_samples,
                               help="Points per segment for block and teacher Lipschitz constants.")),
        ("--block", dict(type=click.Choice(["mlp", "conv"]), default=d.block,
                         help="Block type: an MLP on the flattened sample, or (image-shaped models) small 3x3 "
                              "convolutional networks; --width is the MLP's width or the conv's channels.")),
        ("--local-samples", dict(type=int, default=d.local_samples,
                                 help="Chain states per segment for the local errors (0: every test trajectory).")),
        ("--distance", dict(type=click.Choice(["auto", "sw2", "none"]), default=d.distance,
                            help="Sliced W2 of the students' end points to a reference at delta: exact samples (a "
                                 "mixture), held-out data (--reference, a model); auto: where there is a reference.")),
        ("--teacher-steps", dict(type=int, default=d.teacher_steps,
                                 help="With --model: RK4 steps of the model's own teacher over [delta, T] (at least the "
                                      "largest N).")),
        ("--rate-points", dict(type=int, default=d.rate_points,
                               help="With --model: times of the model's E||J||_op table (the empirical rate).")),
        ("--surrogate-bound", dict(type=click.Choice(["tri", "sharp", "onesided", "empirical"]),
                                   default=d.surrogate_bound,
                                   help="With --model: the rate of the fitted mixture the grid named surrogate is "
                                        "balanced on.")),
        ("--surrogate-components", dict(type=int, default=d.surrogate_components,
                                        help="With --model: the most components of the fitted mixture (K by BIC).")),
    ]
    dest = {"--train-samples": "n_train", "--test-samples": "n_test", "--T": "T"}
    for name, kw in reversed(opts):
        args = (name, dest[name]) if name in dest else (name,)
        f = click.option(*args, show_default=True, **kw)(f)
    return f


@command("validate")
@click.argument("specs", nargs=-1, metavar="SPEC...")
@validate_options
@click.option("--model", default=None, metavar="MODEL",
              help="Distil a trained model instead of mixtures: a diffusers folder, FILE.py:NAME (runs the file), "
                   "mixture:SPEC or the shipped digits; its own RK4 teacher, its E||J|| rate.")
@click.option("--data", type=click.Path(dir_okay=False), default=None, metavar="FILE.npy",
              help="With --model: training data x_0 (samples of p_t for its rate; the surrogate grid's fit) [the "
                   "shipped model's own].")
@click.option("--reference", type=click.Path(dir_okay=False), default=None, metavar="FILE.npy",
              help="With --model: held-out data x_0 for the sliced W2 of the students' samples [the shipped model's "
                   "own].")
@number("--class-label", "class_label", "With --model: a class of a class-conditional network (digits-flow) or a "
        "labelled mixture:SPEC; the shipped model's data are that class's samples.")
@number("--guidance", "guidance", "With --model: classifier-free guidance W >= 0 applied to the teacher and every "
        "measurement, D_u + W (D_c - D_u) (diffusers' convention; the null class as D_u) [default: 1, the conditional "
        "model alone].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (config, checkpoints, results.json, summary.md, plots).  [default: flowcert-validate]")
@click.option("--preset", default=None, type=click.Choice(["quick", "full"]),
              help="quick: ring8-sized comparison (uniform vs balanced, N in 1,4,8, 2 seeds, small students), "
                   "a few minutes on a laptop CPU; full: the defaults.  Options given explicitly override it.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "process", "ray"]),
              help="How the (mixture, grid, N, seed) jobs run: in this process, a local process pool, or Ray "
                   "(optional dependency: pip install 'flowcert[ray]').  Results do not depend on it.")
@click.option("--workers", default=None, type=int, help="Processes for --executor process, CPUs of a local Ray instance.")
@click.option("--ray-address", default=None, help="Connect to this Ray cluster instead of starting a local instance.")
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this directory (after a crash or a kill) with its saved configuration.")
@format_option("table", "json")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def validate_cmd(ctx, specs, model, data, reference, class_label, guidance, resume, out, preset, executor, workers,
                 ray_address, fmt, no_plots, quiet, **options):
    """Train residual students on exact teacher flows and compare grids, with intervals.

    For each mixture SPEC, grid, number of segments N and seed: exact PF-ODE trajectories
    (teacher, float64), a residual student of N blocks x <- x + f_i(x) trained segment-wise, and
    its chained relative MSE E||S(x_T) - Phi(x_T)||^2 / E||Phi(x_T)||^2 on fresh x_T ~ p_T.  Also:
    local errors per segment, the fan bound sum_i eps_i exp(Lambda(t_{i-1})) against the measured
    error, measured ||D Phi_{t->delta}||_op against exp(Lambda(t)) (tri, sharp, onesided), and block
    Lipschitz constants against the teacher's.  Writes results.json, summary.md and plots to --out;
    every step is checkpointed, so `flowcert validate --resume DIR` continues a killed run with
    identical results.  Needs the torch extra: pip install 'flowcert[torch]'.

    With --model M the teacher is the network's own probability-flow ODE (RK4 in log sigma,
    --teacher-steps, its self-convergence reported), x_T ~ N(0, I), the balanced grid is on its
    E||J||_op (empirical), and its amplification is measured by autograd through the teacher (an
    estimate, no bound).

    \b
    flowcert validate ring8 --preset quick --out runs/quick
    flowcert validate ring8 square4 --grids uniform,balanced,empirical --steps 8 --seeds 3
    flowcert validate --model digits --preset quick --out runs/digits
    flowcert validate --model digits-flow --class-label 3 --guidance 2 --preset quick
    flowcert validate --resume runs/quick
    """
    from click.core import ParameterSource

    given = {k: (v if ctx.get_parameter_source(k) != ParameterSource.DEFAULT else None) for k, v in options.items()}
    guide = {k: v for k, v in (("class_label", class_label), ("guidance", guidance))
             if ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    if guide:
        given["model_options"] = guide
    doc = api.validate(specs, model=model, data=data, reference=reference, out=out, resume=resume, preset=preset,
                       executor=executor, workers=workers, ray_address=ray_address, progress=not quiet,
                       plots=not no_plots, **given)
    if fmt == "json":
        say(render.to_json(doc["summary"]))
        return
    from .distill.report import summary_markdown

    say(summary_markdown(doc).rstrip("\n"))
    folder = printable(resume or out or "flowcert-validate", None)  # a path echoed: control characters escaped
    say(f"\nwrote {folder}/results.json, {folder}/summary.md" + ("" if no_plots else " and plots"))


if __name__ == "__main__":
    main()
