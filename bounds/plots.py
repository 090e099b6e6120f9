"""Plots of the theory's numbers: L(t) against t, certified sizes against eps and delta."""

from __future__ import annotations

import numpy as np

from ..numcore.io import pyplot, save_figure


def lipschitz(out: dict, which, path) -> str:
    """L(t) per bound on log axes, with the brute-force sup and the p_t-mean of ||J||_op when present.

    ``out`` is the dict of :func:`bounds.lipschitz.report`.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = out["t"]
    for w in which:
        y = np.asarray(out[w])
        if w == "onesided":
            ax.plot(t, np.where(y > 0, y, np.nan), "--", label="onesided m(t) (where > 0)")
        else:
            ax.plot(t, y, label=f"L_{w}(t)")
    if "empirical_sup" in out:
        sampled = out.get("scope") == "sampled"  # a trained model: no bounds, no mean lines
        ax.plot(t, out["empirical_sup"], "k.", ms=4, label="largest sampled ||J||" if sampled else "brute-force sup ||J||")
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
    return save_figure(fig, path)


def certified_sizes(sweeps: dict, path, title: str) -> str:
    """Depth, width and params against log(1/eps) and against delta (log axis); ``sweeps`` from
    :func:`bounds.size_sweep.run` by variable."""
    plt = pyplot()
    panels = [v for v in ("eps", "delta") if v in sweeps]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.3), squeeze=False)
    for ax, var in zip(axes[0], panels):
        rows = [r for r in sweeps[var] if "error" not in r]
        x = [r["log_1_over_eps"] for r in rows] if var == "eps" else [r["delta"] for r in rows]
        for key, style in (("depth", "o-"), ("width", "s-"), ("params", "^-")):
            line, = ax.plot(x, [r[key] for r in rows], style, ms=4, label=f"{key} (tight)")
            ax.plot(x, [r[key + "_closed"] for r in rows], "--", color=line.get_color(), lw=1,
                    label=f"{key} (closed form)")
        ax.set_yscale("log")
        if var == "eps":
            ax.set_xlabel("log(1/eps)")
        else:
            ax.set_xscale("log")
            ax.set_xlabel("delta (low-noise time)")
        ax.set_ylabel("size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
