"""flowcert: certified sizes, stability bounds and balanced grids for flow distillation.

The command line only parses options and prints; the work happens in numcore/,
bounds/ and distill/.  Heavy libraries are imported inside the commands so that
``flowcert --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys

import click

DEFAULT_DELTA = 1e-3
DEFAULT_T = 5.0
T_HELP = ("Largest OU time; sampling starts at x_T ~ p_T. The default 5 leaves alpha_T = 0.0067, so p_T is within "
          "KL <= e^{-10} KL(p_0 || N(0, I)) of the Gaussian prior.")
DELTA_HELP = ("Smallest OU time, > 0 and < --T; sampling stops there. The default 1e-3 is VE sigma 0.045, below "
              "the built-in mixtures' mode widths.")


# ----------------------------------------------------------------------------- plumbing


class FlowcertGroup(click.Group):
    """Turns bad input (numcore.checks.InputError) into one line on stderr and exit status 2."""

    def invoke(self, ctx):
        from numcore.checks import InputError

        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug, not bad input: one line, traceback on request
            if os.environ.get("FLOWCERT_DEBUG"):
                raise
            first = " ".join(str(exc).split())[:300]
            click.echo(f"Error: internal error {type(exc).__name__}: {first} "
                       "(set FLOWCERT_DEBUG=1 for the traceback)", err=True)
            ctx.exit(1)


def window_options(f):
    """--delta and --T, shared by every command that works on [delta, T]."""
    f = click.option("--T", "T", type=float, default=DEFAULT_T, show_default=True, help=T_HELP)(f)
    f = click.option("--delta", type=float, default=DEFAULT_DELTA, show_default=True, help=DELTA_HELP)(f)
    return f


def load_mixture(spec: str):
    from numcore.mixture import load

    return load(spec)


def write_atomic(path: str, data: bytes | str) -> None:
    """Write data to path through a temporary file in the same folder, then rename."""
    from numcore.checks import InputError

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"output {path!r}: folder {folder!r} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with open(tmp, mode) as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise InputError(f"output {path!r} cannot be written: {exc.strerror}") from None


def emit(text: str, out: str | None) -> None:
    """Text to standard output, or atomically to a file."""
    if out is None:
        click.echo(text.rstrip("\n"))
    else:
        write_atomic(out, text if text.endswith("\n") else text + "\n")


def to_json(obj) -> str:
    import numpy as np

    def clean(o):
        """Plain JSON: arrays to lists, non-finite floats to null."""
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, (np.floating, np.integer)):
            o = o.item()
        if isinstance(o, float) and not np.isfinite(o):
            return None
        return o

    return json.dumps(clean(obj), indent=2, allow_nan=False)


def table(columns: dict, fmt: str = "{:.6g}") -> str:
    """Aligned text columns from a mapping name -> sequence."""
    names = list(columns)
    rows = [[c if isinstance(c, str) else fmt.format(c) for c in col] for col in columns.values()]
    widths = [max(len(n), *(len(c) for c in col)) if len(col) else len(n) for n, col in zip(names, rows)]
    lines = ["  ".join(n.rjust(w) for n, w in zip(names, widths))]
    for i in range(len(rows[0]) if rows else 0):
        lines.append("  ".join(col[i].rjust(w) for col, w in zip(rows, widths)))
    return "\n".join(lines)


def csv_text(columns: dict) -> str:
    import numpy as np

    names = list(columns)
    cols = [np.asarray(v) for v in columns.values()]
    lines = [",".join(names)]
    for i in range(len(cols[0])):
        lines.append(",".join(repr(float(c[i])) for c in cols))
    return "\n".join(lines) + "\n"


def split_list(name: str, value: str | tuple, options) -> list[str]:
    """Comma-separated (or repeated) choices, checked against options."""
    from numcore.checks import InputError

    items = []
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
        items += [s.strip() for s in str(v).split(",") if s.strip()]
    for s in items:
        if s not in options:
            raise InputError(f"{name} = {s!r}: expected one of {', '.join(options)}")
    return list(dict.fromkeys(items))


def progress(total: int, desc: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled or None, leave=False)


@click.group(cls=FlowcertGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="flowcert")
def main():
    """Turn the theory of flow distillation into numbers.

    A mixture SPEC is a built-in name (ring8, square4, line2, modes8d, aniso3,
    hetero3) or a .json/.yaml/.toml file with `means` (K x d), optional
    `weights`, and one of `variance` or `cov` (see README).  Times are OU times
    t (dX = -X dt + sqrt(2) dW); sampling runs from t = T down to t = delta.
    """


# ----------------------------------------------------------------------------- mixture


@main.command("mixture")
@click.argument("spec")
@window_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Human-readable summary or machine-readable JSON.")
def mixture_cmd(spec, delta, T, fmt):
    """Describe a mixture: sizes, geometry, and where its Lipschitz bound L(t) peaks.

    Reports the triangle and sharp bounds at t = delta, the stability integral
    Lambda(T) = int_delta^T L and the amplification exp(Lambda(T)), the time
    where t*L(t) (the stability spent per unit of log t) peaks, and the time
    below which half of Lambda(T) is spent.
    """
    import numpy as np

    from bounds.lipschitz import LipschitzBound
    from bounds.stability import stability
    from numcore.checks import time_window

    delta, T = time_window(delta, T)
    mix = load_mixture(spec)
    info = mix.describe()
    lb = LipschitzBound(mix)
    ts = np.geomspace(delta, T, 400)
    info["bounds"] = {}
    for name in ("tri", "sharp"):
        st = stability(mix, name, delta, T, bound=lb)
        L = lb(ts, name)
        half = float(st.integral.invert([0.5 * st.integral.total])[0])
        info["bounds"][name] = {
            "L_at_delta": float(L[0]),
            "lambda_T": st.integral.total,
            "lambda_T_error": st.integral.error,
            "amplification": st.amplification,
            "t_peak_tL": float(ts[np.argmax(ts * L)]),
            "t_half_lambda": half,
        }
    info.update({"delta": delta, "T": T, "scope": lb.scope, "where": lb.where(), "notes": lb.notes})
    if fmt == "json":
        info["means"] = mix.means.tolist()
        info["eigvals"] = mix.eigvals.tolist()
        click.echo(to_json(info))
        return
    w = ", ".join(f"{x:.4g}" for x in mix.weights[:8]) + (" ..." if mix.K > 8 else "")
    lines = [
        f"mixture {info['name']}: K = {mix.K} components in d = {mix.d}, covariance {mix.structure}",
        f"  weights          {w}",
        f"  mean diameter D  {info['diameter']:.6g}   (min separation {info['min_separation']:.6g}, "
        f"max |mu| {info['max_mean_norm']:.6g})",
        f"  variances        {info['min_variance']:.6g} .. {info['max_variance']:.6g}",
        f"  bounds hold      {lb.where()}",
        f"  window           delta = {delta:g}, T = {T:g}",
    ]
    for name, b in info["bounds"].items():
        lines.append(
            f"  L_{name:<5} L(delta) = {b['L_at_delta']:.4g}; Lambda(T) = {b['lambda_T']:.6g} "
            f"(+-{b['lambda_T_error']:.1g}), exp(Lambda) = {b['amplification']:.4g}; "
            f"t*L(t) peaks at t = {b['t_peak_tL']:.3g}; half of Lambda below t = {b['t_half_lambda']:.3g}"
        )
    for note in lb.notes:
        lines.append(f"  note: {note}")
    click.echo("\n".join(lines))


# ----------------------------------------------------------------------------- lipschitz


@main.command("lipschitz")
@click.argument("spec")
@click.option("--bound", "bound_", multiple=True, default=("tri", "sharp", "onesided"), show_default=True,
              help="Bounds to evaluate (repeat or comma-separate): tri = |a| + b (triangle form), "
                   "sharp = both ends of J's spectrum, onesided = backward growth rate m(t) (may be < 0).")
@click.option("--points", type=int, default=50, show_default=True,
              help="Number of log-spaced times in [delta, T].")
@click.option("--empirical", type=int, default=0, metavar="NSAMPLES",
              help="Overlay the brute-force sup and the p_t-mean of ||J||_op from NSAMPLES samples of p_t "
                   "(plus dense points on the segments between means) at each time.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --empirical sampling.")
@click.option("--ball-mass", type=float, default=1 - 1e-6, show_default=True,
              help="For per-component covariances: the bound holds on a ball of at least this p_t-mass.")
@window_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="Output format on standard output (or -o).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to this file.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Plot the bounds (and the empirical sup/mean) against t on log axes.")
@click.option("--latex", is_flag=True, help="Print the formulas as LaTeX (with this mixture's constants) and exit.")
def lipschitz_cmd(spec, bound_, points, empirical, seed, ball_mass, delta, T, fmt, output, plot, latex):
    """Lipschitz bounds L(t) of the probability-flow velocity v = -x - grad log p_t.

    Every bound is an upper bound of sup_x ||J(x,t)||_op, J = dv/dx (onesided:
    of the top eigenvalue of -J), globally for shared covariances and on a ball
    of stated p_t-mass for per-component covariances.  JSON holds `t`, one array
    per bound under its name, Lambda(T) per bound, and with --empirical
    `empirical_sup`, `empirical_mean` and `empirical_mean_se`.
    """
    import numpy as np

    from bounds.lipschitz import BOUNDS, WHAT, LipschitzBound
    from bounds.stability import stability
    from numcore.checks import integer, real, time_window

    delta, T = time_window(delta, T)
    which = split_list("--bound", bound_, BOUNDS)
    points = integer("--points", points, low=2, high=100000)
    empirical = integer("--empirical", empirical, low=0, high=10**8)
    ball_mass = real("--ball-mass", ball_mass, low=0.0, high=1.0, low_open=True, high_open=True)
    mix = load_mixture(spec)
    lb = LipschitzBound(mix, ball_mass)
    if latex:
        click.echo(lb.latex(which))
        return
    ts = np.geomspace(delta, T, points)
    out = {"mixture": mix.name, "t": ts, "scope": lb.scope, "where": lb.where(), "what": {w: WHAT[w] for w in which}}
    for w in which:
        out[w] = lb(ts, w)
    out["lambda_T"] = {w: stability(mix, w, delta, T, bound=lb).integral.total for w in which}
    if lb.scope == "ball":
        out["radius"] = lb.radius(ts)
        out["ball_mass"] = ball_mass
    if lb.notes:
        out["notes"] = lb.notes
    if empirical:
        from numcore.empirical import jacobian_stats

        sup, sup_growth, mean, se = [], [], [], []
        seeds = np.random.SeedSequence(seed).spawn(points)
        with progress(points, "brute-force ||J||") as bar:
            for i, tt in enumerate(ts):
                r = jacobian_stats(mix, tt, empirical, np.random.default_rng(seeds[i]),
                                   radius=out["radius"][i] if lb.scope == "ball" else None)
                sup.append(r.sup), sup_growth.append(r.sup_growth), mean.append(r.mean), se.append(r.mean_se)
                bar.update(1)
        out.update(empirical_sup=np.array(sup), empirical_growth_sup=np.array(sup_growth),
                   empirical_mean=np.array(mean), empirical_mean_se=np.array(se),
                   empirical_samples=empirical, empirical_seed=seed)
        tight = {}
        for w in which:
            ref = out["empirical_growth_sup"] if w == "onesided" else out["empirical_sup"]
            ok = ref <= out[w] * (1 + 1e-9) + 1e-12
            tight[w] = {"max_ratio": float(np.max(ref / out[w])) if w != "onesided" else None,
                        "holds_at_all_points": bool(ok.all())}
            if not ok.all():
                click.echo(f"warning: brute force exceeds the {w} bound at {int((~ok).sum())} times", err=True)
        out["tightness"] = tight
    if plot:
        _plot_lipschitz(out, which, plot)
    if fmt == "json":
        emit(to_json(out), output)
        return
    cols = {"t": ts, **{w: out[w] for w in which}}
    if empirical:
        cols.update(empirical_sup=out["empirical_sup"], empirical_mean=out["empirical_mean"])
    if lb.scope == "ball":
        cols["radius"] = out["radius"]
    if fmt == "csv":
        emit(csv_text(cols), output)
        return
    head = [f"# {mix.name}: bounds hold {lb.where()}"]
    head += [f"# Lambda_{w}(T) = {out['lambda_T'][w]:.6g}" for w in which]
    if empirical:
        head.append(f"# empirical: {empirical} samples of p_t per time (seed {seed}) + mean segments")
    emit("\n".join(head) + "\n" + table(cols), output)


def _plot_lipschitz(out, which, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = out["t"]
    for w in which:
        y = np.asarray(out[w])
        if w == "onesided":
            ax.plot(t, np.where(y > 0, y, np.nan), "--", label="onesided m(t) (where > 0)")
        else:
            ax.plot(t, y, label=f"L_{w}(t)")
    if "empirical_sup" in out:
        ax.plot(t, out["empirical_sup"], "k.", ms=4, label="brute-force sup ||J||")
        m, se = np.asarray(out["empirical_mean"]), np.asarray(out["empirical_mean_se"])
        ax.plot(t, m, "k-", lw=1, label="p_t-mean ||J|| (+-2 se)")
        ax.fill_between(t, np.maximum(m - 2 * se, 1e-300), m + 2 * se, color="k", alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("OU time t")
    ax.set_ylabel("Lipschitz constant of v(., t)")
    ax.set_title(f"{out['mixture']}: {out['where']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- grid


def build_grid(mix, kind, bound, steps, delta, T, samples=4096, seed=0, bar=None):
    """(t, Lambda at t, Stability) for a grid kind balanced on/measured with ``bound``."""
    from bounds.stability import stability
    from numcore import grids

    st = stability(mix, bound, delta, T, samples=samples, seed=seed, progress=bar)
    t = grids.build(kind, steps, delta, T, st.integral)
    return t, st.integral(t), st


GRID_FORMATS = ("table", "json", "csv", "npy", "txt")
PRESET_NAMES = ("diffusers-euler", "diffusers-edm", "diffusers-flowmatch", "diffusers-timesteps", "k-diffusion",
                "comfyui")


@main.command("grid")
@click.argument("spec")
@click.option("--kind", type=click.Choice(["balanced", "uniform", "edm", "logsnr"]), default="balanced",
              show_default=True,
              help="balanced: equal Lambda per segment; uniform in t; edm: Karras rho=7 in VE sigma; "
                   "logsnr: uniform in log-SNR.")
@click.option("--bound", type=click.Choice(["tri", "sharp", "empirical"]), default="tri", show_default=True,
              help="Rate L(t) that defines Lambda: the triangle or sharp bound, or the empirical p_t-average of "
                   "||J||_op (data-aware; uses --samples and --seed).")
@click.option("--steps", type=int, default=8, show_default=True, help="Number of segments N (N + 1 nodes).")
@window_options
@click.option("--units", multiple=True, default=("t",), show_default=True,
              help="Extra units to output (repeat or comma-separate): t, sigma (VE/EDM), alpha, sigma_vp, logsnr, "
                   "rf (rectified flow), ddpm (fractional timestep of --beta-schedule, 1000 steps).")
@click.option("--beta-schedule", type=click.Choice(["linear", "scaled_linear"]), default="linear",
              show_default=True, help="DDPM beta schedule for --units ddpm.")
@click.option("--clip", is_flag=True, help="Clip times outside the DDPM schedule's range (with a warning) "
                                           "instead of failing.")
@click.option("--samples", type=int, default=4096, show_default=True,
              help="Samples of p_t per table time for --bound empirical.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --bound empirical.")
@click.option("--for", "for_", default=None, metavar="PRESET",
              help="Write the grid the way one sampler takes it: " + ", ".join(PRESET_NAMES) +
                   " (conventions in README: order, trailing 0, final sigma, shift).")
@click.option("--shift", type=float, default=1.0, show_default=True,
              help="diffusers-flowmatch: the scheduler's static shift to compensate (1 = neutral).")
@click.option("--format", "fmt", type=click.Choice(GRID_FORMATS), default=None,
              help="Output format; default from the -o extension (.json, .csv, .npy, .txt), else table. "
                   "txt: the values alone, one per line (comma-separated for comfyui).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the grid to this file (atomically); default standard output.")
def grid_cmd(spec, kind, bound, steps, delta, T, units, beta_schedule, clip, samples, seed, for_, shift, fmt,
             output):
    """A time grid for N-step sampling or distillation, exported for other samplers.

    The default is the stability-balanced grid: t_i = Lambda^{-1}((N - i)/N Lambda(T)),
    so each segment carries the same stability budget.  Nodes are descending,
    t[0] = T and t[N] = delta.  JSON holds `t`, `lambda` (Lambda at each node
    under --bound), `kind`, `bound`, `steps` and each requested unit under its name.
    """
    import numpy as np

    from numcore import units as un
    from numcore.checks import InputError, integer, time_window

    delta, T = time_window(delta, T)
    steps = integer("--steps", steps, low=1, high=100000)
    names = split_list("--units", units, un.UNITS)
    if bound == "empirical":
        samples = integer("--samples", samples, low=16, high=10**7)
    if fmt is None:
        ext = os.path.splitext(output or "")[1].lower()
        fmt = {".json": "json", ".csv": "csv", ".npy": "npy", ".txt": "txt"}.get(ext, "table")
    if fmt == "npy" and output is None:
        raise InputError("--format npy: expected -o FILE.npy (binary output is not written to a terminal)")
    if for_ is not None:
        from numcore.presets import check

        check(for_)
    mix = load_mixture(spec)
    with progress(40, "empirical rate", enabled=bound == "empirical") as bar:
        t, lam, st = build_grid(mix, kind, bound, steps, delta, T, samples, seed, bar)
    if for_ is not None:
        _emit_preset(mix, for_, t, kind, bound, steps, delta, T, beta_schedule, clip, shift, fmt, output)
        return
    cols = {"t": t}
    for u in names:
        if u == "t":
            continue
        if u == "ddpm" and clip:
            lo, hi = un.ddpm_range(beta_schedule)
            if np.any((t < lo) | (t > hi)):
                click.echo(f"warning: times outside the {beta_schedule} DDPM range [{lo:.4g}, {hi:.4g}] "
                           "clipped to timesteps 0 / 999", err=True)
        cols[u] = un.convert(t, u, beta_schedule=beta_schedule, clip=clip)
    out = {"mixture": mix.name, "kind": kind, "bound": bound, "steps": steps, "delta": delta, "T": T,
           "t": t, "lambda": lam, "lambda_T": st.integral.total, "lambda_error": st.integral.error,
           "amplification": st.amplification, "log10_amplification": st.log10_amplification,
           "bound_info": st.meta}
    if "ddpm" in cols:
        out["beta_schedule"] = beta_schedule
    for u, v in cols.items():
        out[u] = v
    if fmt == "json":
        emit(to_json(out), output)
    elif fmt == "txt":
        emit("\n".join(repr(float(v)) for v in t) + "\n", output)
    elif fmt == "csv":
        emit(csv_text({"t": t, "lambda": lam, **{u: v for u, v in cols.items() if u != "t"}}), output)
    elif fmt == "npy":
        fields = {"t": t, "lambda": lam, **{u: v for u, v in cols.items() if u != "t"}}
        rec = np.zeros(t.size, dtype=[(k, "f8") for k in fields])
        for k, v in fields.items():
            rec[k] = v
        import io

        buf = io.BytesIO()
        np.save(buf, rec)
        write_atomic(output, buf.getvalue())
    else:
        head = f"# {kind} grid, {steps} steps on [{delta:g}, {T:g}], Lambda from {bound}: " \
               f"Lambda(T) = {st.integral.total:.6g}, exp(Lambda(T)) = {st.amplification:.4g}"
        if bound == "empirical":
            head += f"\n# empirical rate: {samples} samples per time, seed {seed}, " \
                    f"Lambda(T) MC interval {st.meta['lambda_T_mc_interval'][0]:.4g}..{st.meta['lambda_T_mc_interval'][1]:.4g}"
        emit(head + "\n" + table({"i": [str(i) for i in range(t.size)], "lambda": lam, **cols}), output)


def _emit_preset(mix, name, t, kind, bound, steps, delta, T, beta_schedule, clip, shift, fmt, output):
    """grid --for PRESET: the values one sampler takes (numcore.presets), in the chosen format."""
    import numpy as np

    from numcore.presets import export

    ex = export(name, t, beta_schedule=beta_schedule, clip=clip, shift=shift)
    for w in ex.warnings:
        click.echo(f"warning: {w}", err=True)
    if fmt == "txt":
        emit(ex.text(), output)
    elif fmt == "npy":
        import io

        buf = io.BytesIO()
        np.save(buf, ex.values)
        write_atomic(output, buf.getvalue())
    elif fmt == "json":
        emit(to_json({"for": name, "argument": ex.argument, ex.argument: ex.values, "scheduler_config": ex.config,
                      "schedule": ex.schedule, "t": ex.t, "conventions": ex.conventions,
                      "warnings": list(ex.warnings), "mixture": mix.name, "kind": kind, "bound": bound,
                      "steps": steps, "delta": delta, "T": T}), output)
    else:
        n = ex.values.size
        cols = {"i": [str(i) for i in range(n)], ex.argument: [str(v) if ex.values.dtype.kind in "iu"
                                                              else f"{v:.9g}" for v in ex.values],
                "schedule": [f"{v:.9g}" for v in ex.schedule[:n]]}
        if fmt == "csv":
            emit(csv_text({"i": np.arange(n), ex.argument: ex.values, "schedule": ex.schedule[:n]}), output)
            return
        head = [f"# {name}: {kind} grid ({bound}), {steps} steps on [{delta:g}, {T:g}] for {mix.name}",
                f"# pass {ex.argument}=<column {ex.argument}>; scheduler config {to_json(ex.config)}".replace("\n", ""),
                f"# {ex.conventions}"]
        if ex.schedule.size > n:
            head.append(f"# the scheduler appends {ex.schedule[-1]:g}")
        emit("\n".join(head) + "\n" + table(cols), output)


# ----------------------------------------------------------------------------- certify


def _certify_one(mix, t, delta, T, eps, p, kind):
    """A fixed-t certificate (t given) or a time-input certificate on [delta, T]."""
    if t is not None:
        from bounds.certificate import certify

        return certify(mix, t, eps, p, kind)
    from bounds.certificate_time import certify_window

    return certify_window(mix, delta, T, eps, p, kind)


def _certify_text(d: dict, res, tight_vs_closed) -> str:
    ch, bu = d["choices"], d["budget"]
    where = f"t = {d['t']:g}" if d.get("part") != "B" else f"t in [{d['delta']:g}, {d['T']:g}] (t is an input)"
    lines = [
        f"certified ReLU-ReQU score network for {d['mixture']} (K = {d['K']}, d = {d['d']}), {where}",
        f"  guarantee   ||N - s||_(L^{d['p']:g}(p_t)) <= eps = {d['eps']:g}"
        + ("" if d.get("part") != "B" else " at every t in the window (see notes)"),
        f"  sizes       depth {d['depth']}, width {d['width']}, params {d['params']}   "
        f"({d['certificate']} certificate)",
    ]
    if tight_vs_closed is not None:
        o = tight_vs_closed
        lines.append(f"  closed form depth {o.depth}, width {o.width}, params {o.params}   "
                     f"(tight is {o.params / d['params']:.2f}x fewer params, {o.width / d['width']:.2f}x narrower)")
    keys = [k for k in ("R", "G", "C_s", "B", "m", "n", "L", "J", "D", "theta", "N_ch", "slices") if k in ch]
    lines.append("  choices     " + ", ".join(f"{k} = {ch[k]:.6g}" if isinstance(ch[k], float) else f"{k} = {ch[k]}"
                                         for k in keys))
    terms = [k for k in ("tail", "trunc", "exp", "recip", "coef") if k in bu]
    lines.append("  budget      " + " + ".join(f"{k} {bu[k]:.3g}" for k in terms) + f" = {bu['total']:.3g} <= eps")
    lines.append(f"  formulas    depth = {d['formulas']['depth']}   (width, params, choices: --latex or --format json)")
    for note in d.get("notes", []):
        lines.append(f"  note: {note}")
    if res is not None:
        rows = res if isinstance(res, list) else [res]
        for r in rows:
            at = f" t = {r['t']:.4g}:" if "t" in r else ""
            lines.append(f"  verify {at} {r['verdict']}; mc_error {r['mc_error']:.4g} "
                         f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}] ({r['level']:.0%}, n = {r['n_samples']}), "
                         f"slack eps/ci_high = {r['slack']:.3g}")
        lines.append(f"  checked: {rows[0]['checked']}")
        lines.append(f"  {rows[0]['not_checked']}")
    return "\n".join(lines)


@main.command("certify")
@click.argument("spec")
@click.option("--eps", type=float, required=True, help="Target accuracy in L^p(p_t); 0 < eps < the score's scale.")
@click.option("--p", "p", type=float, default=2.0, show_default=True, help="Exponent p >= 1 of the L^p(p_t) norm.")
@click.option("--t", "t", type=float, default=None,
              help="Fixed OU time t > 0 (Part A). Without --t, t is a network input on [--delta, --T] (Part B).")
@window_options
@click.option("--certificate", "kind", type=click.Choice(["tight", "closed"]), default="tight", show_default=True,
              help="tight: smallest R, m, n, J satisfying the exact budget inequalities; closed: closed-form choices.")
@click.option("--latex", is_flag=True, help="Print the size formulas and parameter choices as LaTeX first.")
@click.option("--verify", "n_verify", type=int, default=0, metavar="N",
              help="Monte-Carlo check of the materialized network on N samples of p_t (95% CI).")
@click.option("--times", type=int, default=6, show_default=True,
              help="Without --t: number of verification times across [delta, T] (geometric, both ends included).")
@click.option("--export", "export", type=click.Path(dir_okay=False), default=None, metavar="FILE.npz",
              help="Write the materialized network (W{l}, b{l}, act{l}, W_out, b_out).")
@click.option("--sweep", "sweep", multiple=True, metavar="VAR=START:STOP[:COUNT]",
              help="Size table over eps (eps=1e-1:1e-8) or over the low-noise time (delta=1e-1:1e-4).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="PNG of depth, width, params against log(1/eps) and against delta.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --verify samples.")
def certify_cmd(spec, eps, p, t, delta, T, kind, latex, n_verify, times, export, sweep, plot, fmt, seed):
    """Certified sizes of a ReLU-ReQU network approximating the mixture score to eps in L^p(p_t).

    With --t the network approximates s(., t) at that one time (fixed-t
    construction); without it, t is a second input and the guarantee covers
    every t in [--delta, --T] (time-input construction).  Prints depth, width,
    nonzero parameters, every parameter choice and the error budget; --verify
    builds the network and measures its error against the exact score;
    --export writes it.
    """
    from numcore.checks import InputError, integer, real, time_window

    mix = load_mixture(spec)
    delta, T = time_window(delta, T)
    if t is None and not (0 < delta < T):
        raise InputError(f"--delta = {delta:g}: expected a value below --T = {T:g}")
    if t is not None:
        real("--t", t, low=0.0, low_open=True, high=50.0)
    real("--p", p, low=1.0)
    real("--eps", eps, low=0.0, low_open=True)
    n_verify = integer("--verify", n_verify, low=0, high=10**8)
    times = integer("--times", times, low=2, high=100)
    for name, path in (("--export", export), ("--plot", plot)):
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise InputError(f"{name} {path!r}: folder {os.path.dirname(os.path.abspath(path))!r} does not exist")
    if plot is not None and not sweep:
        sweep = ("eps=1e-1:1e-8",)
    if sweep:
        from bounds import sweep as sw

        sweep_values = [sw.parse(text) for text in sweep]  # bad --sweep fails before any work

    cert = _certify_one(mix, t, delta, T, eps, p, kind)
    other = _certify_one(mix, t, delta, T, eps, p, "closed") if kind == "tight" else None
    out = cert.as_dict()
    from bounds.sizes import formulas_text

    out["formulas"] = formulas_text(time_input=t is None)
    if latex:  # formulas, then this certificate's values; inside the JSON with --format json
        from bounds import sizes, sizes_time

        tex = sizes.render("latex") + ("\n" + sizes_time.render("latex") if t is None else "")
        tex += "\n" + sizes.latex_values(out)
        if fmt == "json":
            out["latex"] = tex
        else:
            click.echo(tex)
    if other is not None:
        out["closed_form"] = {"depth": other.depth, "width": other.width, "params": other.params,
                              "choices": other.choices}
        out["shrink_params"] = other.params / cert.params
    res = None
    if n_verify or export:
        net = cert.build()
        out["materialized"] = {"depth": net.depth, "width": net.width, "params": net.params,
                               "matches_formulas": [net.depth, net.width, net.params] == [cert.depth, cert.width,
                                                                                           cert.params]}
        if export:
            try:
                net.save(export)
            except OSError as exc:
                raise InputError(f"--export {export!r} cannot be written: {exc.strerror}") from None
            out["export"] = export
        if n_verify:
            if t is not None:
                from bounds.verification import verify

                with progress(n_verify, "verify", fmt != "json") as bar:
                    res = verify(cert, net, n_verify, seed, bar=bar)
                out.update({k: res[k] for k in ("mc_error", "ci_low", "ci_high", "n_samples")})
                out["verification"] = res
            else:
                from bounds.certificate_time import verify_window

                with progress(n_verify * times, "verify", fmt != "json") as bar:
                    res = verify_window(cert, net, n_verify, times, seed, bar=bar)
                worst = max(res, key=lambda r: r["ci_high"])
                out.update({k: worst[k] for k in ("mc_error", "ci_low", "ci_high", "n_samples")})
                out["verification"] = res
    sweeps = {}
    if sweep:
        for var, values in sweep_values:

            def one(v, val, k):
                if v == "eps":
                    return _certify_one(mix, t, delta, T, val, p, k)
                if t is not None:
                    return _certify_one(mix, val, delta, T, eps, p, k)
                return _certify_one(mix, None, val, T, eps, p, k)

            with progress(len(values), f"sweep {var}", fmt != "json") as bar:
                sweeps[var] = sw.run(one, var, values, bar)
        if plot:
            if "delta" not in sweeps:
                import numpy as np

                start = 1e-1 if t is None else max(t, 1e-1)
                vals = np.geomspace(start, start * 1e-3, 7)
                vals = vals[vals < T] if t is None else vals
                with progress(len(vals), "sweep delta", fmt != "json") as bar:
                    sweeps["delta"] = sw.run(lambda v, val, k: one("delta", val, k), "delta", vals, bar)
            sw.plot(sweeps, plot, f"{mix.name}: certified sizes (p = {p:g}, "
                    + (f"t = {t:g}" if t is not None else f"T = {T:g}") + f", eps = {eps:g} in the delta panel)")
            out["plot"] = plot
        out["sweep"] = sweeps
    if fmt == "json":
        click.echo(to_json(out))
        return
    text = _certify_text(out, res, other)
    if export:
        text += f"\n  wrote {export} (.npz: W{{l}}, b{{l}}, act{{l}} for l = 0..{cert.depth - 1}, W_out, b_out)"
    for var, rows in sweeps.items():
        ok = [r for r in rows if "error" not in r]
        cols = {var: [f"{r[var]:.3g}" for r in ok], "log(1/eps)": [f"{r['log_1_over_eps']:.2f}" for r in ok]}
        for key in ("depth", "width", "params", "depth_closed", "width_closed", "params_closed", "n", "m", "J"):
            cols[key] = [str(r[key]) for r in ok]
        text += f"\n\n# sweep over {var} (tight certificate; *_closed: closed-form choices)\n" + table(cols)
        for r in rows:
            if "error" in r:
                text += f"\n# {var} = {r[var]:.3g}: no certificate ({r['error']})"
    if plot:
        text += f"\nwrote {plot}"
    click.echo(text)


# ----------------------------------------------------------------------------- solvers


def parse_steps(value: str) -> list[int]:
    """--steps 4,8,16,32 -> [4, 8, 16, 32] (each an integer >= 1, duplicates dropped, sorted)."""
    from numcore.checks import InputError, integer

    items = [v.strip() for v in str(value).split(",") if v.strip()]
    if not items:
        raise InputError(f"--steps = {value!r}: expected a comma-separated list of integers >= 1")
    return sorted({integer("--steps", v, low=1, high=4096) for v in items})


@main.command("solvers")
@click.argument("spec")
@click.option("--steps", default="4,8,16,32", show_default=True,
              help="Comma-separated numbers of steps N to compare.")
@click.option("--samples", type=int, default=10000, show_default=True,
              help="Exact samples x_T ~ p_T (and the size of the p_delta reference for the sliced W2); the "
                   "empirical rate of the balanced-empirical grid uses min(samples, 4096) samples per time.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples and projections.")
@window_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Human-readable table or machine-readable JSON.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to this file.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Plot relative MSE and sliced W2 against N per grid and solver.")
def solvers_cmd(spec, steps, samples, seed, delta, T, fmt, output, plot):
    """Which grid makes which solver most accurate, against the exact flow map.

    For each grid (balanced from the tri, sharp and empirical rates; uniform;
    EDM rho = 7; log-SNR) and each N, runs Euler (diffusers' EulerDiscreteScheduler
    when diffusers is installed), Heun and DPM-Solver++(2M) (flowcert's own:
    diffusers' versions take only integer timesteps) from exact x_T ~ p_T with
    the exact denoiser, and reports the relative MSE against the exact teacher
    endpoint Phi_{T->delta}(x_T) with a 95% CI, and the sliced W2 distance to an
    independent sample of p_delta with its Monte-Carlo noise floor.  JSON holds
    `rows` (grid, solver, steps, nfe, engine, rel_mse, rel_mse_ci, sw), `sw_floor`
    and `summary` (winner per solver and N, factor over the runner-up).
    """
    from numcore import solver_study
    from numcore.checks import integer, time_window

    delta, T = time_window(delta, T)
    ns = parse_steps(steps)
    samples = integer("--samples", samples, low=16, high=10**7)
    mix = load_mixture(spec)
    total = len(solver_study.GRIDS) * len(ns) * len(solver_study.SOLVERS)
    with progress(16, "exact teacher") as tbar, progress(total, "solvers") as bar:
        res = solver_study.run(mix, ns, delta, T, samples=samples, seed=seed, bar=bar, teacher_bar=tbar,
                               empirical_samples=min(samples, 4096))
    if plot:
        solver_study.plot(res, plot)
    if fmt == "json":
        emit(to_json(res), output)
        return
    emit(solvers_table(res), output)


def solvers_table(res) -> str:
    rows = res["rows"]
    cols = {
        "grid": [r["grid"] for r in rows], "solver": [r["solver"] for r in rows],
        "N": [str(r["steps"]) for r in rows], "NFE": [str(r["nfe"]) for r in rows],
        "rel_MSE": [f"{r['rel_mse']:.3e}" for r in rows],
        "95% CI": [f"[{r['rel_mse_ci'][0]:.3e}, {r['rel_mse_ci'][1]:.3e}]" for r in rows],
        "SW2": [f"{r['sw']:.4f}" for r in rows],
    }
    fl = res["sw_floor"]
    engines = sorted({f"{r['solver']}: {r['engine']}" for r in rows})
    head = [f"# {res['mixture']}: {res['samples']} exact samples x_T ~ p_T, T = {res['T']:g} -> delta = "
            f"{res['delta']:g}, seed {res['seed']}; rel_MSE = sum|x - Phi(x_T)|^2 / sum|Phi(x_T)|^2",
            f"# SW2 to an independent p_delta sample ({res['sw_directions']} directions); noise floor "
            f"{fl['value']:.4f} (SW2 of the exact endpoints to the same sample; over {fl['repeats']} reference "
            f"samples {fl['mean']:.4f} +- {fl['sd']:.4f})",
            "# engines: " + "; ".join(engines)]
    lines = ["", "winners (smallest relative MSE; factor = runner-up / winner):"]
    for solver, s in res["summary"].items():
        per = ", ".join(f"N={n}: {w['winner']} x{w['factor']:.2f}" for n, w in s["per_steps"].items())
        lines.append(f"  {solver:9s} {per}")
        lines.append(f"  {'':9s} over all N (geometric mean): {s['overall_winner']} x{s['overall_factor']:.2f} "
                     f"over the next; edm / winner = {s['vs']['edm']:.3g}, balanced-empirical / winner = "
                     f"{s['vs']['balanced-empirical']:.3g}, balanced-tri / winner = {s['vs']['balanced-tri']:.3g}")
    return "\n".join(head) + "\n" + table(cols) + "\n".join(lines)


# ----------------------------------------------------------------------------- demo


@main.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="flowcert-demo", show_default=True,
              help="Folder for the demo's files.")
def demo_cmd(out_dir):
    """Run the main job on the built-in ring8 mixture and write its results.

    Prints the mixture summary, writes the Lipschitz bounds with a brute-force
    overlay (lipschitz.json, lipschitz.png), the balanced and baseline grids
    (grid_*.json), and a certified score network with its measured error
    (certify.json, net.npz) into --out.  The distillation study is separate:
    `flowcert validate ring8 --preset quick` (a few minutes on a CPU).
    """
    os.makedirs(out_dir, exist_ok=True)
    here = lambda name: os.path.join(out_dir, name)  # noqa: E731
    steps = [
        ["mixture", "ring8"],
        ["lipschitz", "ring8", "--points", "24", "--empirical", "20000", "--format", "json",
         "-o", here("lipschitz.json"), "--plot", here("lipschitz.png")],
        *[["grid", "ring8", "--kind", kind, "--steps", "8", "--units", "sigma"] for kind in
          ("balanced", "uniform", "edm", "logsnr")],
        *[["grid", "ring8", "--kind", kind, "--steps", "8", "--units", "sigma", "-o", here(f"grid_{kind}.json")]
          for kind in ("balanced", "uniform", "edm", "logsnr")],
        ["certify", "ring8", "--eps", "1e-3", "--t", "0.05", "--verify", "20000", "--export", here("net.npz")],
        ["certify", "ring8", "--eps", "1e-3", "--t", "0.05", "--format", "json", "--verify", "20000"],
    ]
    for args in steps:
        if "-o" not in args and "--format" not in args:
            click.echo(f"\n== flowcert {' '.join(args)}")
        if args[-2:] == ["--verify", "20000"] and "json" in args:
            import contextlib
            import io

            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                main.main(args=args, standalone_mode=False)
            write_atomic(here("certify.json"), buf.getvalue())
            continue
        main.main(args=args, standalone_mode=False)
    click.echo(f"\nwrote {', '.join(sorted(os.listdir(out_dir)))} into {out_dir}/")


# ----------------------------------------------------------------------------- validate

VALIDATE_CONFIG_OPTIONS = ("steps", "grids", "bound", "seeds", "seed", "delta", "T", "n_train", "n_test", "iters",
                           "batch", "lr", "width", "depth", "budget", "total_params", "group", "finetune",
                           "finetune_lr", "dtype", "teacher_step", "device", "threads", "amp_times",
                           "amp_samples", "lip_samples", "empirical_samples")


@main.command("validate")
@click.argument("spec", nargs=-1)
@click.option("--steps", default=None, metavar="N1,N2,...",
              help="Numbers of segments N to train students for.  [default: 1,2,4,8,16]")
@click.option("--grids", default=None, metavar="G1,G2,...",
              help="Grids to compare: uniform, balanced (uniform in Lambda of --bound), edm, logsnr, empirical "
                   "(balanced on the data-aware p_t-average rate).  [default: uniform,balanced,edm,logsnr]")
@click.option("--bound", default=None, type=click.Choice(["tri", "sharp", "onesided", "empirical"]),
              help="Rate the balanced grid is uniform in (empirical: the data-aware p_t-average of ||J||_op, "
                   "the same as the grid named empirical).  [default: tri]")
@click.option("--seeds", default=None, type=int, help="Number of seeds (teacher data and initial weights).  [default: 3]")
@click.option("--seed", default=None, type=int, help="First seed.  [default: 0]")
@click.option("--delta", default=None, type=float, help="Smallest OU time.  [default: 0.001]")
@click.option("--T", "T", default=None, type=float, help="Largest OU time.  [default: 5]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (config, checkpoints, results.json, summary.md, plots).  [default: flowcert-validate]")
@click.option("--preset", default=None, type=click.Choice(["quick", "full"]),
              help="quick: ring8-sized comparison (uniform vs balanced, N in 1,4,8, 2 seeds, small students), "
                   "a few minutes on a laptop CPU; full: the default sweep.  Explicit options override it.")
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Torch device; auto picks CUDA when a GPU is visible.  [default: auto]")
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "process", "ray"]),
              help="How the (mixture, grid, N, seed) jobs run: in this process, a local process pool, or Ray "
                   "(optional dependency: pip install 'flowcert[ray]').  Results do not depend on it.")
@click.option("--workers", default=None, type=int, help="Processes for --executor process, CPUs of a local Ray instance.")
@click.option("--ray-address", default=None, help="Connect to this Ray cluster instead of starting a local instance.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this directory (after a crash or a kill) with its saved configuration.")
@click.option("--budget", default=None, type=click.Choice(["per-block", "total"]),
              help="per-block: every block has --width for every N; total: N blocks share --total-params "
                   "(the fair one-step vs multi-step comparison).  [default: per-block]")
@click.option("--width", default=None, type=int, help="Hidden width of each block (per-block budget).  [default: 64]")
@click.option("--depth", default=None, type=int, help="Hidden layers per block.  [default: 2]")
@click.option("--total-params", default=None, type=int,
              help="Parameter budget of the whole student for --budget total (0: max N x one --width block).")
@click.option("--iters", default=None, type=int, help="Adam steps per block group.  [default: 3000]")
@click.option("--batch", default=None, type=int, help="Mini-batch size.  [default: 1024]")
@click.option("--lr", default=None, type=float, help="Peak Adam learning rate (cosine decay).  [default: 0.003]")
@click.option("--train-samples", "n_train", default=None, type=int, help="Teacher trajectories per seed for training.")
@click.option("--test-samples", "n_test", default=None, type=int, help="Fresh teacher trajectories for the measurements.")
@click.option("--group", default=None, type=int, help="Blocks trained together (and checkpointed together).  [default: 8]")
@click.option("--finetune", default=None, type=int, help="End-to-end fine-tuning steps of the chained student.  [default: 0]")
@click.option("--dtype", default=None, type=click.Choice(["float32", "float64"]), help="Student precision.  [default: float32]")
@click.option("--threads", default=None, type=int, help="Torch threads per job (fixed so results do not depend on the executor).  [default: 1]")
@click.option("--empirical-samples", default=None, type=int,
              help="Samples of p_t per table time for the empirical (data-aware) rate.  [default: 2048]")
@click.option("--amp-times", default=None, type=int, help="Times t (log-spaced) where ||D Phi_{t->delta}||_op is measured.")
@click.option("--amp-samples", default=None, type=int, help="Samples of p_t per amplification time.")
@click.option("--lip-samples", default=None, type=int, help="Points per segment for block and teacher Lipschitz constants.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="How the summary is printed.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def validate_cmd(spec, resume_dir, out_dir, preset, executor, workers, ray_address, fmt, no_plots, quiet, **options):
    """Train residual students on exact teacher flows and compare grids, with intervals.

    For each mixture SPEC, grid, number of segments N and seed: exact PF-ODE trajectories
    (teacher, float64), a residual student of N blocks x <- x + f_i(x) trained segment-wise, and
    its chained relative MSE E||S(x_T) - Phi(x_T)||^2 / E||Phi(x_T)||^2 on fresh x_T ~ p_T.  Also:
    local errors per segment, the fan bound sum_i eps_i exp(Lambda(t_{i-1})) against the measured
    error, measured ||D Phi_{t->delta}||_op against exp(Lambda(t)) (tri, sharp, onesided), and block
    Lipschitz constants against the teacher's.  Writes results.json, summary.md and plots to --out;
    every step is checkpointed, so `flowcert validate --resume DIR` continues a killed run with
    identical results.

    \b
    flowcert validate ring8 --preset quick --out runs/quick
    flowcert validate ring8 square4 --grids uniform,balanced,empirical --steps 8 --seeds 3
    flowcert validate --resume runs/quick
    """
    from numcore.checks import InputError

    if workers is not None and workers < 1:
        raise InputError(f"--workers = {workers}: expected an integer >= 1")
    if resume_dir is not None:
        given = [k for k, v in options.items() if v is not None] + (["SPEC"] if spec else [])
        given += ["--preset"] if preset else []
        given += ["--out"] if out_dir else []
        if given:
            raise InputError(f"--resume = {resume_dir!r}: continues the saved configuration; drop "
                             f"{given[0].replace('_', '-') if given[0] != 'SPEC' else 'the SPEC argument'}")
        if not os.path.isdir(resume_dir):
            raise InputError(f"--resume = {resume_dir!r}: no such directory")
    elif not spec:
        raise InputError("SPEC is missing: expected a mixture name or file (or --resume DIR)")

    from distill import config as vcfg
    from distill import sweep

    cfg = None
    if resume_dir is None:
        mixes = [load_mixture(s) for s in spec]
        specs = [m.to_spec() | {"name": m.name} for m in mixes]
        cfg = vcfg.build_config(list(spec), specs, preset=preset, **options)
        vcfg.resolve_device(cfg.device)
        out = out_dir or "flowcert-validate"
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(f"--out = {out!r}: exists and is not a directory")
    else:
        out = resume_dir
    if executor == "ray":
        from distill.executors import ray_available

        if not ray_available():
            raise InputError("--executor = 'ray': the ray package is not installed; "
                             "install the optional dependency with pip install 'flowcert[ray]'")
    doc = sweep.run(cfg, out, resume=resume_dir is not None, executor=executor, workers=workers,
                    address=ray_address, progress=not quiet, plots=not no_plots)
    if fmt == "json":
        click.echo(to_json(doc["summary"]))
    else:
        from distill.report import summary_markdown

        click.echo(summary_markdown(doc).rstrip("\n"))
        click.echo(f"\nwrote {out}/results.json, {out}/summary.md" + ("" if no_plots else " and plots"))


if __name__ == "__main__":
    main()
