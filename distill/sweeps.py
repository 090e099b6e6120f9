"""What a validation sweep runs on: a Gaussian mixture or a trained model, behind one interface.

The sweep (:mod:`distill.validation`) runs the same phases, jobs, checkpoints and report on both; what differs
between them is asked of its target (``studies/targets.py`` style: the sweep never asks which kind it has):

* :class:`MixtureSweep` (``validate SPEC``): x_T ~ p_T exactly; the teacher is the exact flow map (RK4 in
  log sigma_VE, :class:`~distill.teacher.Teacher`); the analytic rates ``tri``, ``sharp``, ``onesided`` (bounds)
  and the empirical p_t-average of ||J||_op; the amplification ||D Phi_{t->delta}||_op by forward-mode Jacobians
  against exp(Lambda(t)); per-trajectory certified factors (numpy Gronwall); the fan bound for every analytic
  rate and the fan estimate from certified factors; the sliced W2 to exact samples of p_delta.
* :class:`ModelSweep` (``validate --model M``, any :class:`~models.denoiser.Denoiser`): x_T ~ N(0, I); the
  teacher is the network's own probability-flow ODE (RK4 in log sigma, ``teacher_steps`` steps over the window,
  :class:`~distill.teacher.NetworkTeacher`, its self-convergence reported); its only rate is E||J||_op by Lanczos
  (:class:`~studies.targets.ModelTarget`: a typical rate, no bound); the grids add ``optimal`` against the
  model's teacher and ``surrogate`` (balanced on a Gaussian mixture fitted to the training data); the
  amplification and every segment's ||D Phi||_op come from dense Jacobians by autograd through the teacher's RK4
  steps on ``amp_samples`` trajectories (measured: the fan estimate built on them is an estimate, never a bound);
  the sliced W2 to held-out data pushed to p_delta, when there are such data.

Seeds are drawn from names and numbers alone (:func:`seed_of`), so every phase gives the same numbers whatever
process, executor or machine runs it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import zlib
from pathlib import Path

import numpy as np

from ..numcore.checks import InputError

RATES = ("tri", "sharp", "onesided")  # a mixture's analytic rates: bounds of the flow's growth
HOLDS_RTOL = 1e-6  # a bound holds when bound >= measured * (1 - HOLDS_RTOL): see holds()
MIXTURE_SW_DIRECTIONS = 64
MODEL_SW_DIRECTIONS = 256
DISTANCE_SAMPLES = 2048  # at most this many student end points enter the sliced W2 (its bootstrap sorts them)
SW_BOOTS = 200


def holds(bound: float, measured: float) -> bool:
    """bound >= measured up to a relative HOLDS_RTOL: the teacher's RK4 flow maps (step 0.01 in
    log sigma_VE) agree to about 1e-9 relative between the direct and the node-by-node integration,
    and float64 sums to 1e-15; a bound met with equality (one component, one segment) holds."""
    return bool(bound >= measured * (1.0 - HOLDS_RTOL))


def seed_of(*parts) -> int:
    """A 31-bit seed determined by the parts alone (stable across processes and machines)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def target_key(i: int, name: str) -> str:
    """The key of the i-th target in run files (``0-ring8``)."""
    return f"{i}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:40]}"


def file_sha256(path: str) -> str:
    """sha256 of a data file's bytes (bounded read of a regular file)."""
    from ..numcore.io import read_bounded

    return hashlib.sha256(read_bounded(path, "data")).hexdigest()


# ----------------------------------------------------------------------------- mixtures
class MixtureSweep:
    """A Gaussian mixture: the exact teacher, analytic and empirical rates, certified per-trajectory factors."""

    kind = "mixture"
    fan_rates = RATES  # the rates whose fan bound every job reports
    lambda_rates = RATES  # Lambda at every grid's nodes (grids.json)
    factor = "certified"  # what the fan estimate's per-node factors are

    def __init__(self, key: str, spec: dict, device: str = "cpu"):
        from ..numcore.mixture import from_spec

        self.key, self.spec, self.device = key, spec, device
        self.mix = from_spec(spec, name=spec.get("name", key))
        self.name, self.d, self.shape = self.mix.name, self.mix.d, (self.mix.d,)

    def context(self) -> dict:
        """What a job needs to rebuild this target in another process."""
        return {"kind": self.kind, "spec": self.spec}

    # ------------------------------------------------------------------ phase 1: rates and grids
    def stability(self, cfg, out: Path, bars) -> dict:
        """Lambda for ``tri``, ``sharp``, ``onesided`` (and ``empirical`` when asked for) and every grid."""
        from ..bounds.stability import stability
        from ..numcore import grids as G
        from ..studies.optimal import optimal_grid

        mix = self.mix
        st = {r: stability(mix, r, cfg.delta, cfg.T) for r in RATES}
        if "empirical" in cfg.grids or cfg.bound == "empirical":
            st["empirical"] = stability(mix, "empirical", cfg.delta, cfg.T, samples=cfg.empirical_samples,
                                        seed=cfg.seed)
        grids = {}
        for kind in cfg.grids:
            for N in cfg.steps:
                if kind == "balanced":
                    nodes = G.build("balanced", N, cfg.delta, cfg.T, stability=st[cfg.bound].integral)
                elif kind == "empirical":
                    nodes = G.build("balanced", N, cfg.delta, cfg.T, stability=st["empirical"].integral)
                elif kind == "optimal":  # the solver's optimal grid on the exact mixture
                    nodes = optimal_grid(mix, N, cfg.solver, delta=cfg.delta, T=cfg.T, seed=cfg.seed)["t"]
                else:
                    nodes = G.build(kind, N, cfg.delta, cfg.T)
                nodes = check_nodes(kind, N, nodes)
                grids[f"{kind}/{N}"] = {"nodes": nodes.tolist(),
                                        "Lambda": {r: st[r].integral(nodes).tolist() for r in RATES}}
        union = union_of(grids)
        amp_t = np.geomspace(cfg.delta, cfg.T, cfg.amp_times + 1)[1:]
        return {
            "describe": mix.describe(),
            "kind": self.kind,
            "Lambda_T": {r: s.integral.total for r, s in st.items()},
            "Lambda_T_error": {r: s.integral.error for r, s in st.items()},
            "amplification_bound_T": {r: float(np.exp(min(s.integral.total, 700.0))) for r, s in st.items()},
            "rate_meta": {r: s.meta for r, s in st.items()},
            "grids": grids,
            "union_nodes": union.tolist(),
            "amp_times": amp_t.tolist(),
            "amp_Lambda": {r: st[r].integral(amp_t).tolist() for r in RATES},
        }

    # ------------------------------------------------------------------ phase 2: the teacher
    def sample_T(self, cfg, n: int, seed: int):
        """x_T ~ p_T (numpy, (n, d))."""
        from ..numcore.marginal import sample

        return sample(self.mix, cfg.T, n, np.random.default_rng(seed))

    def teacher(self, cfg, device: str, union=None):
        """The exact flow maps (torch, float64) of the run's ``teacher_step``."""
        import torch

        from .teacher import Teacher

        return Teacher(self.mix, device, torch.float64, cfg.teacher_step)

    def teacher_record(self, cfg, teacher, x, traj, union) -> dict:
        """What the teacher phase stores beside the trajectories (nothing for the exact flow map)."""
        return {}

    # ------------------------------------------------------------------ phase 3: amplification
    def amplification(self, cfg, info, out: Path, device: str, bar) -> list[dict]:
        """||D Phi_{t->delta}(x)||_op over x ~ p_t at the run's ``amp_times`` against exp(Lambda(t)), with the
        per-trajectory factors on the same samples."""
        import torch

        from .measure import amplification
        from .teacher import Teacher

        teacher = Teacher(self.mix, device, torch.float64, cfg.teacher_step)
        seed = seed_of("amplification", self.key, cfg.seed)
        rows = amplification(teacher, self.mix, info["amp_times"], cfg.delta, cfg.amp_samples, seed, progress=bar)
        for j, row in enumerate(rows):
            row["predicted"] = {r: float(np.exp(min(info["amp_Lambda"][r][j], 700.0))) for r in RATES}
            row["holds"] = {r: holds(row["predicted"][r], row["max"]) for r in RATES}
            row["holds_rtol"] = HOLDS_RTOL
            row.update(self.per_trajectory_row(row["t"], cfg.delta, cfg.amp_samples, [seed, j]))
        return rows

    def per_trajectory_row(self, t: float, delta: float, n: int, seed) -> dict:
        """Per-trajectory factors of ||D Phi_{t->delta}|| on the same samples as :func:`measure.amplification`:
        ``certified`` (an upper bound per trajectory) and ``trajectory_estimate`` (the Gronwall integral without
        its error term), each as mean/p99/max, and ``certificate_holds`` against the propagated Jacobian."""
        from ..numcore.estimators import spread
        from ..numcore.marginal import sample
        from ..numcore.trajectory import gronwall

        x = sample(self.mix, float(t), n, np.random.default_rng(seed))
        g = gronwall(self.mix, x, float(t), delta, step=0.02)
        measured = g.measured  # the numpy RK4 Jacobian on the same samples (agrees with the torch teacher's)
        return {"certified": spread(g.certified), "trajectory_estimate": spread(g.predicted),
                "certificate_holds": int((g.certified >= measured).sum()), "certificate_checked": int(n)}

    # ------------------------------------------------------------------ phase 3b: per-trajectory factors
    def trajectory(self, cfg, info, out: Path, bar) -> dict:
        """Per-trajectory factors along the union of grid nodes, from x_T ~ p_T (``amp_samples`` exact
        trajectories, numpy): per grid the certified, estimated and measured factor of every segment and of
        the whole map T -> delta, and per node the RMS certified factor to delta (for the fan estimate)."""
        from ..numcore.marginal import sample
        from ..numcore.trajectory import gronwall

        mk, mix = self.key, self.mix
        union = info["union_nodes"]
        x = sample(mix, cfg.T, cfg.amp_samples, np.random.default_rng(seed_of("trajectory", mk, cfg.seed)))
        cert, est, jac = [], [], []
        for a, b in zip(union, union[1:]):
            g = gronwall(mix, x, a, b, step=0.02)
            cert.append(g.log_certified), est.append(g.log_predicted), jac.append(g.jacobian)
            x = g.endpoints
            bar.update(1)
        cert, est = np.array(cert), np.array(est)  # (segments, n)
        pos = {t: i for i, t in enumerate(union)}
        grids = {}
        for key, g in info["grids"].items():
            idx = [pos[t] for t in g["nodes"]]
            segs = []
            for i0, i1 in zip(idx, idx[1:]):
                W = jac[i0]
                for k in range(i0 + 1, i1):
                    W = jac[k] @ W
                m = np.linalg.norm(W, ord=2, axis=(1, 2))
                c, e = np.exp(np.minimum(cert[i0:i1].sum(0), 700)), np.exp(np.minimum(est[i0:i1].sum(0), 700))
                segs.append({"certified_max": float(c.max()), "estimate_max": float(e.max()),
                             "measured_max": float(m.max()), "holds": int((c >= m).sum())})
            to_end = [np.exp(np.minimum(cert[i:idx[-1]].sum(0), 700)) for i in idx]
            grids[key] = {"segments": segs,
                          "rms_certified_to_delta": [float(np.sqrt((v**2).mean())) for v in to_end]}
        W = jac[0]
        for k in range(1, len(jac)):
            W = jac[k] @ W
        m = np.linalg.norm(W, ord=2, axis=(1, 2))
        c, e = np.exp(np.minimum(cert.sum(0), 700)), np.exp(np.minimum(est.sum(0), 700))
        return {"one_step": {"certified_max": float(c.max()), "certified_p99": float(np.quantile(c, 0.99)),
                             "estimate_max": float(e.max()), "measured_max": float(m.max()),
                             "measured_p99": float(np.quantile(m, 0.99)), "holds": int((c >= m).sum()),
                             "n": int(c.size)},
                "grids": grids}

    @staticmethod
    def fan_factors(trajectory: dict, key: str) -> list[float]:
        """The per-node factors q_i of the fan estimate sum_i eps_i q_i (nodes t_0..t_N)."""
        return trajectory["grids"][key]["rms_certified_to_delta"]

    # ------------------------------------------------------------------ in a job
    def job_teacher(self, cfg, device: str, union):
        """The teacher that maps chain states over one segment (local errors)."""
        return self.teacher(cfg, device, union)

    def lipschitz_points(self, cfg, job: dict, out: Path, teacher, test_states, nodes, i: int):
        """(points (n, d) float64, ||D Phi_{t_{i-1}->t_i}||_op of the teacher at them) for segment i: the first
        ``lip_samples`` teacher states at t_{i-1}, the teacher's Jacobian by forward-mode propagation."""
        from .measure import opnorm

        x = test_states[i][:cfg.lip_samples]
        _, Jt = teacher.flow_jacobian(x, nodes[i], nodes[i + 1])
        return x, opnorm(Jt)

    def reference(self, cfg, seed: int, n: int):
        """(exact samples of p_delta, directions, what) for the sliced W2 of a job with ``seed``."""
        from ..numcore.distances import directions
        from ..numcore.marginal import sample

        ref = sample(self.mix, cfg.delta, n, np.random.default_rng(seed_of("reference", self.key, seed)))
        theta = directions(self.d, MIXTURE_SW_DIRECTIONS, np.random.default_rng(seed_of("directions", self.key)))
        return ref, theta, "exact samples of p_delta"


# ----------------------------------------------------------------------------- trained models
_LOADED: dict = {}


def load_model(source: str, options: dict, device: str):
    """A model by its source (loaded once per process and device); ``options``: ``prediction`` for the loader, and
    ``class_label`` / ``guidance`` condition and guide it (a class-conditional network or labelled mixture at one
    guidance scale: :func:`models.conditioning.condition`, as ``flowcert.load_model`` does)."""
    key = (source, json.dumps(options, sort_keys=True), device)
    if key not in _LOADED:
        from ..models.conditioning import condition
        from ..models.loaders import load

        options = dict(options)
        guide = {k: options.pop(k) for k in ("class_label", "guidance") if options.get(k) is not None}
        _LOADED.clear()  # one model at a time per process
        model = load(source, device=device, conditioned=bool(guide) or None, **options)
        _LOADED[key] = condition(model, **guide) if guide else model
    return _LOADED[key]


def load_data_checked(path: str, sha256: str, d: int, name: str, labels: str = "", labels_sha256: str = "",
                      label: int | None = None) -> np.ndarray:
    """A run's data file, refused when it changed since the run started (its sha256 is in config.json); with
    ``labels`` (a .npy of one integer per sample, also checked) only the rows of class ``label``."""
    from ..models.jacobian import load_data

    for file, digest, what in ((path, sha256, name), (labels, labels_sha256, f"{name}_labels")):
        if file and digest and file_sha256(file) != digest:
            raise InputError(f"`{what}` = {file!r}: the file changed since the run started (its sha256 differs from "
                             "the one in config.json): restore it, or start a new run")
    data = load_data(path, d, name)
    if not labels:
        return data
    return data[class_rows(labels, data.shape[0], label, name)]


def class_rows(labels: str, n: int, label, name: str) -> np.ndarray:
    """Indices of the samples of class ``label`` in a labels file (.npy, n integers).

    Raises:
        InputError: an unreadable labels file, another count than the data's, non-integer labels, no sample of
            the class.
    """
    from ..numcore.io import read_bounded

    try:
        import io

        lab = np.load(io.BytesIO(read_bounded(labels, f"{name}_labels")), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"`{name}_labels` = {labels!r}: expected a .npy array of integer labels ({e})") from None
    if lab.shape != (n,) or lab.dtype.kind not in "iu":
        raise InputError(f"`{name}_labels` = {labels!r}: expected {n} integer labels (one per sample of `{name}`), "
                         f"got shape {lab.shape} of {lab.dtype}")
    rows = np.flatnonzero(lab == int(label))
    if rows.size < 2:
        raise InputError(f"`class_label` = {label}: `{name}` has {rows.size} samples of this class: expected at "
                         "least 2")
    return rows


class ModelSweep:
    """A trained model (any :class:`~models.denoiser.Denoiser`): its own teacher, its measured amplification."""

    kind = "model"
    fan_rates = ()  # a network has no analytic rate: no fan bound, only the estimate
    lambda_rates = ()
    factor = "measured"
    OPTIMAL_TRAIN, OPTIMAL_TEST, OPTIMAL_EFFORT = 128, 256, 0.1  # `grid --model --kind optimal`'s defaults
    SURROGATE_COVARIANCE = "diag"
    JACOBIAN_BATCH = 4  # trajectories per checkpoint of the Jacobian phase
    SELF_CONVERGENCE = 64  # test trajectories the teacher's self-convergence is measured on

    def __init__(self, key: str, source: str, options: dict | None = None, device: str = "cpu"):
        self.key, self.source, self.options, self.device = key, source, dict(options or {}), device
        self.model = load_model(source, self.options, device)
        self.name, self.d, self.shape = self.model.name, self.model.d, tuple(self.model.shape)
        self._jac = None

    def context(self) -> dict:
        return {"kind": self.kind, "source": self.source, "options": self.options}

    # ------------------------------------------------------------------ phase 1: rates and grids
    def stability(self, cfg, out: Path, bars) -> dict:
        """The model's E||J||_op rate (when a grid is balanced on it) and every grid: closed forms, ``empirical``
        (= ``balanced``), ``optimal`` (``solver``'s grid against the model's teacher) and ``surrogate`` (balanced on
        the ``surrogate_bound`` rate of a mixture fitted to ``data``)."""
        from ..numcore import grids as G
        from ..studies.targets import ModelTarget

        data = load_data_checked(cfg.data, cfg.data_sha256, self.d, "data", cfg.data_labels, cfg.data_labels_sha256,
                                 cfg.model_options.get("class_label")) if cfg.data else None
        target = ModelTarget(self.model, data=data, points=cfg.rate_points, teacher_steps=cfg.teacher_steps)
        out_info: dict = {"describe": self.model.describe(), "kind": self.kind, "Lambda_T": {}, "Lambda_T_error": {},
                          "rate_meta": {}, "cost": {}}
        st = None
        if {"empirical", "balanced"} & set(cfg.grids):
            st = target.stability("empirical", cfg.delta, cfg.T, samples=cfg.empirical_samples, seed=cfg.seed,
                                  progress=bars)
            tab = st.table
            out_info["Lambda_T"]["empirical"] = st.integral.total
            out_info["Lambda_T_error"]["empirical"] = st.integral.error
            out_info["rate_meta"]["empirical"] = st.meta
            out_info["rate_table"] = {"t": np.asarray(tab["t"]).tolist(),
                                      "mean": np.asarray(tab["empirical_mean"]).tolist(),
                                      "mean_ci": np.asarray(tab["empirical_mean_ci"]).tolist(),
                                      "sup": np.asarray(tab["empirical_sup"]).tolist(),
                                      "samples": int(tab["empirical_samples"]), "samples_from": tab["samples_from"]}
            out_info["cost"]["rate"] = {"network_passes": int(tab["passes"]) * int(tab["empirical_samples"]),
                                        "seconds": float(tab["seconds"]),
                                        "what": "E||J||_op table by Lanczos: forward graphs, J u and J^T w each count "
                                                "one network pass per sample (the model's ODE 4 per RK4 step)"}
        optimal = self._optimal(cfg, target, bars) if "optimal" in cfg.grids else None
        surrogate = self._surrogate(cfg, data) if "surrogate" in cfg.grids else None
        grids = {}
        for kind in cfg.grids:
            for N in cfg.steps:
                if kind in ("balanced", "empirical"):
                    nodes = G.build("balanced", N, cfg.delta, cfg.T, stability=st.integral)
                elif kind == "optimal":
                    nodes = optimal["grids"][str(N)]["t"]
                elif kind == "surrogate":
                    nodes = G.build("balanced", N, cfg.delta, cfg.T, stability=self._surrogate_integral)
                else:
                    nodes = G.build(kind, N, cfg.delta, cfg.T)
                nodes = check_nodes(kind, N, nodes)
                grids[f"{kind}/{N}"] = {"nodes": nodes.tolist(),
                                        "Lambda": {} if st is None else {"empirical": st.integral(nodes).tolist()}}
        union = union_of(grids)
        out_info.update(grids=grids, union_nodes=union.tolist(), amp_times=union[:-1].tolist(),
                        amp_Lambda={} if st is None else {"empirical": st.integral(union[:-1]).tolist()})
        if optimal is not None:
            out_info["optimal"] = optimal
            out_info["cost"]["optimal"] = optimal["cost"]
        if surrogate is not None:
            out_info["surrogate"] = surrogate
        return out_info

    def _optimal(self, cfg, target, bars) -> dict:
        """``solver``'s optimal grid for every N against the model's teacher, on one pair of batches (their
        teacher shared by every N); N = 1 is [T, delta]."""
        from ..studies.optimal import optimal_grid

        clock = time.perf_counter()
        batches = target.batches(cfg.delta, cfg.T, train=self.OPTIMAL_TRAIN, test=self.OPTIMAL_TEST, seed=cfg.seed,
                                 progress=bars)
        grids = {}
        for N in cfg.steps:
            if N == 1:
                grids["1"] = {"t": [cfg.T, cfg.delta], **batches.test_error(np.array([cfg.T, cfg.delta]), cfg.solver)}
                continue
            rec = optimal_grid(target, N, cfg.solver, delta=cfg.delta, T=cfg.T, effort=self.OPTIMAL_EFFORT,
                               batches=batches)
            grids[str(N)] = {"t": [float(v) for v in rec["t"]], "rel_mse": rec["rel_mse"],
                             "rel_mse_ci": rec["rel_mse_ci"], "train_rel_mse": rec["train_rel_mse"],
                             "baselines": rec["baselines"], "gits": {k: rec["gits"][k] for k in
                                                                     ("rel_mse", "rel_mse_ci", "t")},
                             "search": {k: rec["search"][k] for k in ("method", "stop", "evaluations")}}
        return {"solver": cfg.solver, "train_samples": self.OPTIMAL_TRAIN, "test_samples": self.OPTIMAL_TEST,
                "effort": self.OPTIMAL_EFFORT, "teacher": {k: batches.teacher[k] for k in
                                                            ("steps", "nfe", "self_convergence")
                                                            if k in batches.teacher},
                "grids": grids,
                "cost": {"model_evaluations": int(batches.counter.samples),
                         "seconds": time.perf_counter() - clock,
                         "what": "the optimal grids' teacher (both batches, its self-convergence) and searches"},
                "what": f"{cfg.solver}'s grid of least relative MSE against the model's own teacher "
                        f"(grid --model --kind optimal: {self.OPTIMAL_TRAIN} training and {self.OPTIMAL_TEST} test "
                        f"trajectories from x_T ~ N(0, I), effort {self.OPTIMAL_EFFORT})"}

    def _surrogate(self, cfg, data) -> dict:
        """A diagonal Gaussian mixture fitted to the training data (K <= ``surrogate_components`` by BIC,
        ``flowcert fit``) and the stability integral of its ``surrogate_bound`` rate."""
        from ..bounds.stability import stability
        from ..numcore.fit import fit
        from ..numcore.mixture import from_spec

        clock = time.perf_counter()
        res = fit(data, max_components=cfg.surrogate_components, covariance_type=self.SURROGATE_COVARIANCE,
                  seed=cfg.seed, name="surrogate")
        mix = from_spec(res["spec"], name="surrogate")
        st = stability(mix, cfg.surrogate_bound, cfg.delta, cfg.T, samples=cfg.empirical_samples, seed=cfg.seed)
        self._surrogate_integral = st.integral
        return {"K": res["K"], "covariance_type": res["covariance_type"], "bic": res["bic_best"], "n": res["n"],
                "rate": cfg.surrogate_bound, "Lambda_T": st.integral.total, "Lambda_T_error": st.integral.error,
                "seconds": time.perf_counter() - clock, "spec": res["spec"],
                "what": f"the balanced grid (uniform in Lambda of the '{cfg.surrogate_bound}' rate) of a "
                        f"{self.SURROGATE_COVARIANCE} Gaussian mixture fitted to the training data (flowcert fit, "
                        "K by BIC)"}

    # ------------------------------------------------------------------ phase 2: the teacher
    def sample_T(self, cfg, n: int, seed: int):
        """x_T ~ N(0, I) (torch float64, (n, d))."""
        from ..models.flow import prior

        return prior(self.model, n, seed)

    def teacher(self, cfg, device: str, union=None):
        from .teacher import NetworkTeacher

        return NetworkTeacher(self.model, delta=cfg.delta, T=cfg.T, steps=cfg.teacher_steps, via=union)

    def teacher_record(self, cfg, teacher, x, traj, union) -> dict:
        """The teacher's cost in model evaluations and its self-convergence: the relative MSE of the end points
        against twice the steps, on the first test trajectories (95% interval)."""
        from ..numcore.distances import relative_mse

        from .teacher import NetworkTeacher

        evals = teacher.evaluations
        k = min(self.SELF_CONVERGENCE, cfg.n_test)
        fine = NetworkTeacher(self.model, delta=cfg.delta, T=cfg.T, steps=2 * cfg.teacher_steps, via=union)
        start = cfg.n_train
        end = fine.flow(traj[start:start + k, 0], cfg.T, cfg.delta)
        e = relative_mse(traj[start:start + k, -1].numpy(), end.numpy())
        return {"model_evaluations": int(evals), "self_convergence_evaluations": int(fine.evaluations),
                "self_convergence": {"rel_mse": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "samples": k,
                                     "against_steps": 2 * cfg.teacher_steps}}

    # ------------------------------------------------------------------ phase 3: Jacobians along trajectories
    def jacobian_path(self, out: Path, part: int | None = None) -> Path:
        return out / "jacobian" / (f"{self.key}.pt" if part is None else f"{self.key}-b{part}.pt")

    def jacobians(self, cfg, info, out: Path, device: str, bar) -> dict:
        """Dense Jacobians of every interval of the union of grid nodes along ``amp_samples`` teacher trajectories
        from x_T ~ N(0, I), by autograd through the teacher's RK4 steps (checkpointed every ``JACOBIAN_BATCH``
        trajectories), reduced to operator norms: ||D Phi_{t->delta}||_op at every union node, and
        ||D Phi_{t_{i-1}->t_i}||_op of every segment of every grid.  The merged file keeps the states (the points
        a job measures its blocks' Lipschitz constants on)."""
        import torch

        from . import runcheck
        from .runfiles import torch_save_atomic

        if self._jac is not None:
            return self._jac
        merged = self.jacobian_path(out)
        union = info["union_nodes"]
        keys = list(info["grids"])
        if merged.exists():
            self._jac = runcheck.load_jacobians(out, merged, cfg, info, self.d, cfg.amp_samples)
            return self._jac
        from ..models.flow import prior

        pos = {t: i for i, t in enumerate(union)}
        x = prior(self.model, cfg.amp_samples, seed_of("trajectory", self.key, cfg.seed))
        teacher = self.teacher(cfg, device, union)
        parts = []
        for part, lo in enumerate(range(0, cfg.amp_samples, self.JACOBIAN_BATCH)):
            hi = min(cfg.amp_samples, lo + self.JACOBIAN_BATCH)
            path = self.jacobian_path(out, part)
            if path.exists():
                parts.append(runcheck.load_jacobians(out, path, cfg, info, self.d, hi - lo))
                bar.update(hi - lo)
                continue
            clock, e0, r0 = time.perf_counter(), teacher.evaluations, teacher.reverse_passes
            states, J = teacher.segment_jacobians(x[lo:hi], union)
            to_delta = torch.ones(hi - lo, len(union), dtype=torch.float64)
            P = torch.eye(self.d, dtype=torch.float64).expand(hi - lo, self.d, self.d)
            for k in range(len(union) - 2, -1, -1):
                P = P @ J[k]
                to_delta[:, k] = torch.linalg.matrix_norm(P, ord=2)
            segments = {}
            for key in keys:
                idx = [pos[t] for t in info["grids"][key]["nodes"]]
                rows = []
                for i0, i1 in zip(idx, idx[1:]):
                    W = J[i0]
                    for k in range(i0 + 1, i1):
                        W = J[k] @ W
                    rows.append(torch.linalg.matrix_norm(W, ord=2))
                segments[key] = torch.stack(rows)
            part_doc = {"states": states, "to_delta": to_delta, "segments": segments,
                        "model_evaluations": int(teacher.evaluations - e0),
                        "reverse_passes": int(teacher.reverse_passes - r0), "seconds": time.perf_counter() - clock}
            torch_save_atomic(path, part_doc)
            parts.append(part_doc)
            bar.update(hi - lo)
        doc = {"states": torch.cat([p["states"] for p in parts]), "to_delta": torch.cat([p["to_delta"] for p in parts]),
               "segments": {k: torch.cat([p["segments"][k] for p in parts], 1) for k in keys},
               "model_evaluations": int(sum(p["model_evaluations"] for p in parts)),
               "reverse_passes": int(sum(p["reverse_passes"] for p in parts)),
               "seconds": float(sum(p["seconds"] for p in parts))}
        torch_save_atomic(merged, doc)
        for part in range(len(parts)):
            self.jacobian_path(out, part).unlink(missing_ok=True)
        self._jac = doc
        return doc

    def amplification(self, cfg, info, out: Path, device: str, bar) -> list[dict]:
        """||D Phi_{t->delta}(x)||_op at every union node t > delta over the teacher's states x there (mean with its
        interval, p99, max): measured, with nothing to hold against (a network has no analytic rate)."""
        from ..numcore.estimators import spread

        jac = self.jacobians(cfg, info, out, device, bar)
        v = jac["to_delta"].numpy()
        return [{"t": float(t), **spread(v[:, k]), "predicted": {}, "holds": {}, "holds_rtol": HOLDS_RTOL,
                 "points": "teacher states at t of trajectories from x_T ~ N(0, I)"}
                for k, t in enumerate(info["union_nodes"][:-1])]

    def trajectory(self, cfg, info, out: Path, bar) -> dict:
        """Per grid the measured ||D Phi||_op of every segment (max, mean with its interval), per node the RMS of
        ||D Phi_{t_i->delta}||_op (the fan estimate's factors), and the one-step map T -> delta: the Lipschitz
        mismatch of one step against many, measured on the teacher's trajectories."""
        from ..numcore.estimators import mean_ci

        jac = self.jacobians(cfg, info, out, self.device, bar)
        to_delta, union = jac["to_delta"].numpy(), info["union_nodes"]
        pos = {t: i for i, t in enumerate(union)}
        grids = {}
        for key, g in info["grids"].items():
            segs = [{"measured_max": float(row.max()), "measured_mean": mean_ci(row)}
                    for row in jac["segments"][key].numpy()]
            q = [float(np.sqrt((to_delta[:, pos[t]] ** 2).mean())) for t in g["nodes"]]
            grids[key] = {"segments": segs, "rms_measured_to_delta": q}
        one = to_delta[:, 0]
        return {"factor": self.factor,
                "one_step": {"measured_max": float(one.max()), "measured_p99": float(np.quantile(one, 0.99)),
                             "measured_mean": mean_ci(one), "n": int(one.size)},
                "grids": grids,
                "cost": {"model_evaluations": jac["model_evaluations"], "reverse_passes": jac["reverse_passes"],
                         "seconds": jac["seconds"],
                         "what": "dense Jacobians of the teacher's RK4 steps by autograd: d reverse passes per "
                                 "evaluation"},
                "what": "||D Phi||_op of the model's own flow (its RK4 teacher) by autograd on teacher trajectories "
                        "from x_T ~ N(0, I): measured, not bounds"}

    @staticmethod
    def fan_factors(trajectory: dict, key: str) -> list[float]:
        return trajectory["grids"][key]["rms_measured_to_delta"]

    # ------------------------------------------------------------------ in a job
    def job_teacher(self, cfg, device: str, union):
        return self.teacher(cfg, device, union)

    def lipschitz_points(self, cfg, job: dict, out: Path, teacher, test_states, nodes, i: int):
        """The first ``lip_samples`` states at t_{i-1} of the Jacobian phase's trajectories, and the teacher's
        ||D Phi_{t_{i-1}->t_i}||_op there (measured in that phase, not recomputed)."""
        import torch

        from . import runcheck

        if self._jac is None:
            self._jac = runcheck.load_jacobians(out, self.jacobian_path(out), cfg, job["info"], self.d,
                                                cfg.amp_samples)
        k = job["info"]["union_nodes"].index(nodes[i])
        n = cfg.lip_samples
        x = self._jac["states"][:n, k].to(torch.float64)
        return x, self._jac["segments"][f"{job['grid']}/{len(nodes) - 1}"][i, :n].numpy()

    def reference(self, cfg, seed: int, n: int):
        """(held-out data pushed to p_delta, directions, what), or None without held-out data."""
        from ..numcore.distances import directions
        from ..studies.targets import push

        if cfg.distance == "none" or not cfg.reference:
            return None
        data = load_data_checked(cfg.reference, cfg.reference_sha256, self.d, "reference", cfg.reference_labels,
                                 cfg.reference_labels_sha256, self.options.get("class_label"))
        ref = push(data, cfg.delta, np.random.default_rng(seed_of("reference", self.key, seed)))
        theta = directions(self.d, MODEL_SW_DIRECTIONS, np.random.default_rng(seed_of("directions", self.key)))
        return ref, theta, f"{data.shape[0]} held-out samples x_0 pushed to p_delta (alpha x_0 + sigma_vp z)"


# ----------------------------------------------------------------------------- helpers
def check_nodes(kind: str, N: int, nodes) -> np.ndarray:
    nodes = np.asarray(nodes, float)
    if np.any(np.diff(nodes) >= 0):
        raise InputError(f"`grids` {kind} with N = {N}: the grid has repeated nodes "
                         f"(stability budget too small to split); use fewer steps")
    return nodes


def union_of(grids: dict) -> np.ndarray:
    """Every grid's nodes, once each, descending."""
    return np.unique(np.concatenate([np.asarray(g["nodes"]) for g in grids.values()]))[::-1]


def targets_of(cfg, device: str = "cpu") -> dict:
    """{key: target} of a configuration: its mixtures, or its model."""
    if cfg.model:
        from ..models.loaders import load  # noqa: F401  (the import error of a missing extra, here)

        probe = load_model(cfg.model, cfg.model_options, device)
        key = target_key(0, probe.name)
        return {key: ModelSweep(key, cfg.model, cfg.model_options, device)}
    out = {}
    for i, spec in enumerate(cfg.specs):
        key = target_key(i, spec.get("name", f"mixture{i}"))
        out[key] = MixtureSweep(key, spec, device)
    return out


def target_of(key: str, context: dict, device: str = "cpu"):
    """The target a job's context names (in any process)."""
    if context["kind"] == "model":
        return ModelSweep(key, context["source"], context.get("options"), device)
    return MixtureSweep(key, context["spec"], device)
