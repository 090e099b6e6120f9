"""The Lipschitz bound of a classifier-free-guided velocity over two mixtures (docs/theory.md, "Guided fields").

A mixture with labels has the unconditional density p_t (every component) and, for a class c, the conditional
density p_t^c (the components labelled c, renormalised).  Guidance at scale W (diffusers' convention
D_W = D_u + W (D_c - D_u)) is affine in the denoiser with coefficients 1 - W and W that sum to 1, so the score,
the velocity and its Jacobian combine the same way:

    v_W = (1 - W) v_u + W v_c,        J_W = (1 - W) J_u + W J_c        (J = -I - Hess log p_t, symmetric).

Bounds, for W >= 0, at every x where both mixtures' bounds hold:

* ``tri``: the triangle inequality, ||J_W|| <= |1 - W| L_u + W L_c (each mixture's ``tri`` bound);
* ``sharp`` and ``onesided``: each mixture's spectrum enclosure spec(J) in [l - V, h] (:class:`LipschitzBound`)
  carried through Weyl's inequalities for sums of symmetric matrices: with a = 1 - W, b = W,
  lambda_max(J_W) <= a h_u + b h_c and lambda_min(J_W) >= a (l_u - V_u) + b (l_c - V_c) for a >= 0, and for
  a < 0 (W > 1) the ends of J_u swap: lambda_max(J_W) <= a (l_u - V_u) + b h_c, lambda_min(J_W) >= a h_u +
  b (l_c - V_c).  ``sharp`` is the larger modulus of the two ends (never above |1 - W| L_sharp,u + W L_sharp,c),
  ``onesided`` minus the lower end.

W = 1 gives the conditional mixture's own bounds, W = 0 the unconditional one's.  These bound the guided
velocity field's Jacobian; the guided field is not the probability-flow velocity of any family of densities
(p_u^{1-W} p_c^W is not transported by the OU process), so nothing here is a bound on the density that guided
sampling reaches.
"""

from __future__ import annotations

import numpy as np

from ..numcore.checks import InputError, option
from ..numcore.mixture import GaussianMixture
from .lipschitz import BOUNDS, LipschitzBound


class GuidedLipschitzBound:
    """L(t) of the guided velocity v_W = (1 - W) v_u + W v_c of a labelled mixture: unconditional ``mix`` and the
    class ``label``'s conditional mixture, guidance ``guidance`` = W >= 0.  The interface of
    :class:`LipschitzBound` (``__call__(t, which)``, ``parts``, ``scope``, ``where``, ``radius``, ``notes``)."""

    def __init__(self, mix: GaussianMixture, label: int, guidance: float = 1.0, ball_mass: float = 1 - 1e-6):
        self.guidance = option("guidance", guidance)
        self.label = int(option("class_label", label))
        self.cond_mixture = mix.restrict(self.label)
        self.mixture = mix
        self.u = LipschitzBound(mix, ball_mass)
        self.c = LipschitzBound(self.cond_mixture, ball_mass)
        self.ball_mass = self.u.ball_mass
        self.scope = "global" if self.u.scope == self.c.scope == "global" else "ball"
        self.notes = [f"unconditional: {n}" for n in self.u.notes] + [f"class {self.label}: {n}" for n in self.c.notes]

    def parts(self, t):
        """(hi, lo): the spectrum of J_W lies in [lo, hi]."""
        a, b = 1.0 - self.guidance, self.guidance
        hu, lu, Vu = self.u.parts(t)
        hc, lc, Vc = self.c.parts(t)
        if a >= 0:
            return a * hu + b * hc, a * (lu - Vu) + b * (lc - Vc)
        return a * (lu - Vu) + b * hc, a * hu + b * (lc - Vc)

    def __call__(self, t, which: str = "tri") -> np.ndarray:
        if which not in BOUNDS:
            raise InputError(f"`bound` = {which!r}: expected one of {', '.join(BOUNDS)}")
        if which == "tri":
            return abs(1.0 - self.guidance) * self.u(t, "tri") + self.guidance * self.c(t, "tri")
        hi, lo = self.parts(t)
        return np.maximum(np.abs(hi), np.abs(lo)) if which == "sharp" else -lo

    def radius(self, t) -> np.ndarray:
        """The ball where both mixtures' bounds hold: the smaller of their radii (inf for global bounds)."""
        return np.minimum(self.u.radius(t), self.c.radius(t))

    def where(self) -> str:
        what = (f"guided velocity (1 - W) v_u + W v_c, W = {self.guidance:g}, class {self.label} (bounds its Jacobian; "
                "not the probability flow of any density)")
        if self.scope == "global":
            return f"global: every x in R^d; {what}"
        return (f"local: the ball ||x|| <= R(t) where both mixtures' bounds hold (the smaller radius; each ball has "
                f"its own mixture's p_t-mass >= {self.ball_mass:.10g}); {what}")

    def latex(self, which=BOUNDS) -> str:
        """The guided bound's formulas and both mixtures' constants."""
        lines = [r"J_W = (1 - W) J_u + W J_c,\quad W = " + f"{self.guidance:g}",
                 r"L^{\mathrm{tri}}_W(t) = |1 - W|\, L^{\mathrm{tri}}_u(t) + W\, L^{\mathrm{tri}}_c(t)",
                 r"\mathrm{spec}(J_W) \subset [a\,\ell_u + b\,\ell_c,\ a\,h_u + b\,h_c]\ (a = 1 - W \ge 0),\quad "
                 r"[a\,h_u + b\,\ell_c,\ a\,\ell_u + b\,h_c]\ (a < 0),\quad \ell = l - V,\ b = W",
                 r"\text{unconditional mixture:}", self.u.latex(which),
                 rf"\text{{class {self.label}:}}", self.c.latex(which)]
        return "\n".join(lines)


def brute_force(lb: GuidedLipschitzBound, ts, samples: int, seed: int, progress) -> dict:
    """The brute-force sup and mean of ||J_W||_op and the sup of lambda_max(-J_W) at each time, from ``samples``
    points: half from the conditional p_t^c, half from the unconditional p_t (inside the ball for ball-local
    bounds when the sup is taken; the mean is over every point)."""
    from ..numcore.marginal import sample, velocity_jacobian

    a, b = 1.0 - lb.guidance, lb.guidance
    d = lb.mixture.d
    chunk = max(1, 2**22 // (d * d))
    radius = lb.radius(ts)
    sup, growth, mean, se = [], [], [], []
    seeds = np.random.SeedSequence(seed).spawn(len(ts))
    with progress(len(ts) * samples, "brute-force ||J_W|| (samples)") as bar:
        for i, t in enumerate(ts):
            rng = np.random.default_rng(seeds[i])
            half = samples // 2
            norms, grow, inside = [], [], []
            for mix, count in ((lb.cond_mixture, samples - half), (lb.mixture, half)):
                for lo in range(0, count, chunk):
                    k = min(chunk, count - lo)
                    x = sample(mix, t, k, rng)
                    J = a * velocity_jacobian(lb.mixture, x, t) + b * velocity_jacobian(lb.cond_mixture, x, t)
                    ev = np.linalg.eigvalsh(0.5 * (J + np.swapaxes(J, 1, 2)))
                    norms.append(np.abs(ev).max(1))
                    grow.append(-ev[:, 0])
                    inside.append(np.linalg.norm(x, axis=1) <= radius[i])
                    bar.update(k)
            nrm, g, ins = np.concatenate(norms), np.concatenate(grow), np.concatenate(inside)
            sup.append(float(nrm[ins].max()) if ins.any() else float("-inf"))
            growth.append(float(g[ins].max()) if ins.any() else float("-inf"))
            mean.append(float(nrm.mean()))
            se.append(float(nrm.std(ddof=1) / np.sqrt(nrm.size)) if nrm.size > 1 else 0.0)
    return {"empirical_sup": np.array(sup), "empirical_growth_sup": np.array(growth),
            "empirical_mean": np.array(mean), "empirical_mean_se": np.array(se),
            "empirical_samples": samples, "empirical_seed": seed,
            "empirical_points": "half from the conditional p_t^c, half from the unconditional p_t"}
