"""The size formulas of both networks as text: plain formulas, LaTeX, and one certificate's values.

Shared by the fixed-t (:mod:`bounds.sizes`) and time-input (:mod:`bounds.sizes_time`)
formulas, which it imports; neither imports this module.
"""

from __future__ import annotations

import sympy as sp

from . import sizes as A
from . import sizes_time as B


def formulas_text(time_input: bool = False) -> dict:
    """Plain-text formulas (sympy's sstr) of the sizes, the budget terms and the closed-form choices."""
    items = A.sizes() + A.budget() + A.choices_closed()
    if time_input:
        items = [("depth", B.DEPTH), ("width", B.WIDTH), ("params", B.PARAMS),
                 ("coef", B.COEF)] + A.budget() + A.choices_closed()
    return {name: sp.sstr(A.display(expr)) for name, expr in items}


def latex(time_input: bool = False) -> str:
    """Every size formula as LaTeX: the fixed-t network, and the time-input one on request."""
    return A.render("latex") + ("\n" + B.render("latex") if time_input else "")


def latex_values(cert: dict) -> str:
    """LaTeX lines with one certificate's evaluated choices, budget and sizes (from Certificate.as_dict)."""
    where = f"t = {cert['t']:g}" if "t" in cert else f"t \\in [{cert['delta']:g}, {cert['T']:g}]"
    lines = [f"% {cert['mixture']}: K = {cert['K']}, d = {cert['d']}, {where}, "
             f"\\varepsilon = {cert['eps']:g}, p = {cert['p']:g} ({cert['certificate']} certificate)"]
    ch = cert["choices"]
    names = [("R", "R"), ("G", "G"), ("C_s", "C_s"), ("B", "B"), ("m", "m"), ("n", "n"), ("L", "L"),
             ("J", "J"), ("D", "D"), ("theta", r"\theta"), ("N_ch", r"N_{\mathrm{ch}}"), ("slices", "S+1")]
    vals = [f"{tex} = {ch[k]:.6g}" if isinstance(ch[k], float) else f"{tex} = {ch[k]}" for k, tex in names if k in ch]
    lines.append(",\\quad ".join(vals))
    bu = cert["budget"]
    terms = [k for k in ("tail", "trunc", "exp", "recip", "coef") if k in bu]
    lines.append(" + ".join(f"\\mathrm{{{k}}} {bu[k]:.3g}" for k in terms)
                 + f" = {bu['total']:.3g} \\le \\varepsilon")
    lines.append(f"\\mathrm{{depth}} = {cert['depth']},\\quad \\mathrm{{width}} = {cert['width']},"
                 f"\\quad \\mathrm{{params}} = {cert['params']}")
    return "\n".join(lines)
