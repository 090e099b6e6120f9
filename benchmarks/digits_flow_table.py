"""The digits-flow table of README: grids for a guided flow-matching model at every guidance scale.

    nice python benchmarks/digits_flow_table.py RUN_DIR [--model FOLDER] [--threads 1] [--effort 0.25]
    python benchmarks/digits_flow_table.py RUN_DIR --readme          # the README tables from RUN_DIR/table.json
    python benchmarks/digits_flow_table.py RUN_DIR --merge DIR...     # join runs of other guidance scales into RUN_DIR

Guidance scales can run in parallel, each in its own RUN_DIR (``--guidance 2``); ``--merge`` joins their rows,
searches and teachers into one RUN_DIR, and a last run there with every scale adds only the missing cells (the
W = 1 optimum reused at W).

For guidance W in {1, 2, 4} (D_W = D_u + W (D_c - D_u), the unconditional branch the null class 10), N in {4, 8}
and Euler and DPM-Solver++(2M), every grid is run from the same test start points x_T ~ N(0, I) and scored by

* the relative MSE to the guided model's own many-step teacher (RK4 in log sigma, 64 steps; 95% interval),
* the sliced W2 (256 directions) between the samples of each class and the held-out digits of that class
  pushed to p_delta, averaged over the ten classes (bootstrap 95% interval, resampling within each class),
* the class accuracy of the samples under the shipped digits classifier (``classifier.npz``, trained on the
  real training digits; Wilson 95% interval),

for the grids: ``optimal`` (searched against the guided model's teacher at that W on other training
trajectories), ``optimal W=1`` (the W = 1 optimum reused at W), ``flow-shift 1`` and ``flow-shift 3`` (linspace
in the flow time s, then the static shift s' = k s / (1 + (k - 1) s)), ``flux-mu`` (the same map with
k = e^mu, mu = diffusers' ``calculate_shift`` of the 8 x 8 latent packed 2 x 2 as Flux packs it: 16 tokens,
mu = 0.459), ``logsnr`` and ``kl-optimal``; every grid spans flowcert's window [delta, T] = [1e-3, 5] (OU time;
s from 0.043 to 0.993), so the grids differ only in where their nodes fall.

Classes: sample i of a batch gets class i mod 10 (every batch is class-balanced; training and test batches
are taken from the start, so a prefix keeps its classes).  The guided model is flowcert's own loader of the
pipeline folder (``flowcert.load_model(folder, cond={"class_labels": ...}, guidance=W)``: the FlowMatch scheduler
read as x_s = y / (1 + sigma), timestep 1000 s, D = x_s - s v; the null class from ``unet/flowcert.json``), called
with one class label per sample.

Resumable: the teachers (``teacher_W*.npz``) and every finished cell (``table.json``) are kept in RUN_DIR and
skipped when the script runs again.  The costs of every search (model evaluations, seconds) and the load are
recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DELTA, T = 1e-3, 5.0
CLASSES = 10
GRIDS = ("optimal", "optimal W=1", "flow-shift 1", "flow-shift 3", "flux-mu", "logsnr", "kl-optimal")
SOLVER_NAMES = {"euler": "Euler", "dpmpp_2m": "DPM++(2M)", "heun": "Heun"}


# ----------------------------------------------------------------------------- flow-time grids (local)
def calculate_shift(seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                    max_shift: float = 1.15) -> float:
    """diffusers' ``calculate_shift`` (the Flux pipeline's mu for an image of ``seq_len`` latent tokens)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return seq_len * m + (base_shift - m * base_seq_len)


FLUX_MU = calculate_shift(16)  # 8 x 8 latent, 2 x 2 packing: 16 tokens


def s_from_t(t):
    sigma = np.sqrt(np.expm1(2.0 * np.asarray(t, float)))
    return sigma / (1.0 + sigma)


def t_from_s(s):
    sigma = np.asarray(s, float) / (1.0 - np.asarray(s, float))
    return 0.5 * np.log1p(sigma * sigma)


def shifted_grid(N: int, shift: float, delta: float = DELTA, T_: float = T) -> np.ndarray:
    """OU times of N + 1 nodes: u linear between the unshifted ends, s = shift u / (1 + (shift - 1) u)."""
    s_hi, s_lo = s_from_t(T_), s_from_t(delta)
    inv = lambda s: s / (shift - (shift - 1.0) * s)  # noqa: E731
    u = np.linspace(inv(s_hi), inv(s_lo), N + 1)
    s = shift * u / (1.0 + (shift - 1.0) * u)
    t = t_from_s(s)
    t[0], t[-1] = T_, delta
    return t


def closed_grids(N: int) -> dict:
    from flowcert.numcore import grids

    return {"flow-shift 1": shifted_grid(N, 1.0), "flow-shift 3": shifted_grid(N, 3.0),
            "flux-mu": shifted_grid(N, math.exp(FLUX_MU)), "logsnr": grids.build("logsnr", N, DELTA, T),
            "kl-optimal": grids.build("kl-optimal", N, DELTA, T)}


# ----------------------------------------------------------------------------- the guided model
def load_guided(folder: str, guidance: float):
    """The guided denoiser of the pipeline at ``folder`` through flowcert's own loader (``flowcert.load_model``: the
    FlowMatch scheduler read as the flow parametrisation, guidance D_u + W (D_c - D_u) with the null class of
    ``unet/flowcert.json``), sample i of every batch of class i mod 10."""
    import flowcert
    from flowcert.models.denoiser import Denoiser

    inner = flowcert.load_model(folder, cond={"class_labels": np.array([0])}, guidance=guidance)

    class ClassCycle(Denoiser):
        """``inner`` with the class labels 0, 1, ..., 9, 0, 1, ... down every batch."""

        def __call__(self, y, sigma, cond=None):
            return inner(y, sigma, {"class_labels": class_cycle(y.shape[0])})

    return ClassCycle(shape=inner.shape, dtype=inner.dtype, device=inner.device, sigma_range=inner.sigma_range,
                      name=f"digits-flow, classes cycled (guidance {guidance:g})", source=inner.source,
                      info=dict(inner.info))


def class_cycle(n: int) -> torch.Tensor:
    return torch.arange(n) % CLASSES


# ----------------------------------------------------------------------------- measures
def wilson(k: int, n: int, z: float = 1.959964) -> list:
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [c - h, c + h]


def class_sw(x, labels, ref, ref_labels, theta, rng, boots: int = 200) -> dict:
    """Mean over classes of SW2(samples of class c, held-out digits of class c), with a bias-corrected bootstrap
    95% interval (both resampled within each class; directions fixed), as numcore.distances does for one pair."""
    from flowcert.numcore.distances import sliced_wasserstein

    groups = [(x[labels == c], ref[ref_labels == c]) for c in range(CLASSES)]
    per_class = [sliced_wasserstein(a, b, theta) for a, b in groups]
    v = float(np.mean(per_class))
    reps = np.array([np.mean([sliced_wasserstein(a[rng.integers(0, len(a), len(a))],
                                                 b[rng.integers(0, len(b), len(b))], theta) for a, b in groups])
                     for _ in range(boots)])
    lo, hi = np.quantile(reps, [0.025, 0.975]) - (reps.mean() - v)
    return {"sw": v, "sw_ci": [float(max(lo, 0.0)), float(hi)], "sw_per_class": [float(p) for p in per_class]}


def accuracy(clf, x_ou, labels, delta: float = DELTA) -> dict:
    from flowcert.examples.digits_flow import classifier

    pred = classifier.predict(clf, x_ou * math.exp(delta))  # VE: x_0 + sigma(delta) z
    k = int(np.sum(pred == labels))
    return {"accuracy": k / len(labels), "accuracy_ci": wilson(k, len(labels))}


def paired_ratio(x_a, x_b, y, rng, boots: int = 1000) -> dict:
    """sum|x_a - y|^2 / sum|x_b - y|^2 over the same trajectories, with a paired bootstrap 95% interval."""
    ea, eb = np.sum((x_a - y) ** 2, 1), np.sum((x_b - y) ** 2, 1)
    idx = rng.integers(0, len(y), (boots, len(y)))
    r = ea[idx].sum(1) / eb[idx].sum(1)
    return {"ratio": float(ea.sum() / eb.sum()), "ratio_ci": [float(v) for v in np.quantile(r, [0.025, 0.975])]}


# ----------------------------------------------------------------------------- the run
def batches_for(model, W: float, a, run: str):
    """ModelBatches of the guided model, from RUN_DIR/teacher_W{W}.npz when computed before."""
    from flowcert.models.flow import Counter
    from flowcert.studies.targets import ModelBatches

    path = os.path.join(run, f"teacher_W{W:g}.npz")
    if os.path.exists(path):
        z = np.load(path, allow_pickle=False)
        b = ModelBatches.__new__(ModelBatches)
        b.model, b.delta, b.T, b.seed, b.teacher_steps = model, DELTA, T, a.seed, a.teacher_steps
        b.counter = Counter(model)
        b.x_test, b.y_test = torch.as_tensor(z["x_test"]), z["y_test"]
        b.x_train, b.y_train = torch.as_tensor(z["x_train"]), z["y_train"]
        b.trajectory = {"y": z["traj_y"], "denoised": z["traj_d"], "sigma": z["traj_sigma"],
                        "nfe": 4 * a.teacher_steps + 1}
        b.teacher = json.loads(str(z["teacher"]))
        b.trajectory.update(json.loads(str(z["trajectory_cost"])))
        b.objective = str(z["objective"])
        return b
    b = ModelBatches(model, DELTA, T, train=a.train, test=a.test, seed=a.seed, teacher_steps=a.teacher_steps, check=64)
    tmp = path + ".tmp.npz"
    np.savez(tmp, x_test=b.x_test.numpy(), y_test=b.y_test, x_train=b.x_train.numpy(), y_train=b.y_train,
             traj_y=b.trajectory["y"], traj_d=b.trajectory["denoised"], traj_sigma=b.trajectory["sigma"],
             teacher=json.dumps(b.teacher), objective=b.objective,
             trajectory_cost=json.dumps({k: b.trajectory[k] for k in ("evaluations", "seconds")}))
    os.replace(tmp, path)
    return b


def save(run: str, doc: dict) -> None:
    from flowcert.numcore.io import write_json

    write_json(os.path.join(run, "table.json"), doc)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--model", default=os.path.join(ROOT, "examples", "digits_flow", "assets"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", type=int, default=128)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher-steps", type=int, default=64)
    ap.add_argument("--effort", type=float, default=0.25)
    ap.add_argument("--guidance", default="1,2,4")
    ap.add_argument("--steps", default="4,8")
    ap.add_argument("--solvers", default="euler,dpmpp_2m")
    ap.add_argument("--readme", action="store_true", help="print the README tables of RUN/table.json")
    ap.add_argument("--merge", nargs="+", default=None, help="join the rows, searches and teachers of these runs")
    a = ap.parse_args(argv)
    if a.merge:
        merge(a.run, a.merge)
        return
    if a.readme:
        readme(json.load(open(os.path.join(a.run, "table.json"))))
        return
    torch.set_num_threads(a.threads)
    os.makedirs(a.run, exist_ok=True)
    from flowcert.examples.digits_flow import classifier
    from flowcert.models.flow import solve
    from flowcert.numcore.distances import directions, relative_mse
    from flowcert.studies.optimal import optimal_grid
    from flowcert.studies.targets import ModelTarget, push

    path = os.path.join(a.run, "table.json")
    doc = json.load(open(path)) if os.path.exists(path) else {"rows": [], "teachers": {}, "searches": {}}
    doc.update(model=os.path.abspath(a.model), train_samples=a.train, test_samples=a.test, seed=a.seed,
               effort=a.effort, threads=a.threads, teacher_steps=a.teacher_steps, delta=DELTA, T=T,
               flux_mu=FLUX_MU, grids=list(GRIDS))
    done = {(r["W"], r["solver"], r["steps"], r["grid"]) for r in doc["rows"]}
    clf = classifier.load(os.path.join(a.model, "classifier.npz"))
    ref = np.load(os.path.join(a.model, "data", "test.npy")).reshape(-1, 64).astype(float)
    ref_labels = np.load(os.path.join(a.model, "data", "test_labels.npy"))
    real_acc = float(np.mean(classifier.predict(clf, ref) == ref_labels))
    doc["classifier_test_accuracy"] = real_acc
    print(f"load before: {os.getloadavg()}; threads {a.threads}; classifier on held-out digits {real_acc:.3f}",
          flush=True)
    opt_t = {(s["W"], s["solver"], s["steps"]): np.asarray(s["t"]) for s in doc["searches"].values()}
    for W in (float(w) for w in a.guidance.split(",")):
        m = load_guided(a.model, W)
        clock = time.perf_counter()
        b = batches_for(m, W, a, a.run)
        labels = class_cycle(len(b.x_test)).numpy()
        rng = np.random.default_rng(a.seed + 1)
        theta = directions(m.d, 256, rng)
        refp = push(ref, DELTA, rng)
        key = f"{W:g}"
        if key not in doc["teachers"]:
            doc["teachers"][key] = {"teacher": b.teacher, "seconds": time.perf_counter() - clock,
                                    "load": os.getloadavg(),
                                    "gits_cost": {k: b.trajectory.get(k) for k in ("evaluations", "seconds")},
                                    **accuracy(clf, b.y_test, labels),
                                    **class_sw(b.y_test, labels, refp, ref_labels, theta, np.random.default_rng(7))}
            save(a.run, doc)
        t = doc["teachers"][key]
        print(f"W={W:g}: teacher {t['teacher']['model_evaluations']:,} evaluations, {t['seconds']:.0f} s, "
              f"self-convergence {t['teacher']['self_convergence']['rel_mse']:.2g}; teacher samples: accuracy "
              f"{t['accuracy']:.3f}, class SW2 {t['sw']:.3f}", flush=True)
        for solver in a.solvers.split(","):
            for N in (int(n) for n in a.steps.split(",")):
                if (W, solver, N) not in opt_t:
                    e0, c0 = b.counter.samples, time.perf_counter()
                    rec = optimal_grid(ModelTarget(m), N, solver, delta=DELTA, T=T, batches=b, effort=a.effort)
                    doc["searches"][f"{W:g}/{solver}/{N}"] = {
                        "W": W, "solver": solver, "steps": N, "t": list(map(float, rec["t"])),
                        "train_rel_mse": rec["train_rel_mse"], "search": rec["search"],
                        "model_evaluations": b.counter.samples - e0, "seconds": time.perf_counter() - c0,
                        "load": os.getloadavg(), "gits": {k: rec["gits"][k] for k in ("t", "rel_mse", "rel_mse_ci")}}
                    opt_t[W, solver, N] = np.asarray(rec["t"])
                    save(a.run, doc)
                    s = doc["searches"][f"{W:g}/{solver}/{N}"]
                    print(f"  search {solver} N={N}: {s['model_evaluations']:,} evaluations, {s['seconds']:.0f} s, "
                          f"{s['search']['stop']}, load {s['load'][0]:.1f}", flush=True)
                grid_t = {"optimal": opt_t[W, solver, N], **closed_grids(N)}
                if W != 1.0 and (1.0, solver, N) in opt_t:
                    grid_t["optimal W=1"] = opt_t[1.0, solver, N]
                x_opt = solve(m, b.x_test, grid_t["optimal"], solver)
                for g in GRIDS:
                    if g not in grid_t or (W, solver, N, g) in done:
                        continue
                    x = x_opt if g == "optimal" else solve(m, b.x_test, grid_t[g], solver)
                    e = relative_mse(x, b.y_test)
                    row = {"W": W, "solver": solver, "steps": N, "grid": g, "t": list(map(float, grid_t[g])),
                           "rel_mse": e.value, "rel_mse_ci": [e.ci_low, e.ci_high],
                           "over_optimal": paired_ratio(x, x_opt, b.y_test, np.random.default_rng(11)),
                           **accuracy(clf, x, labels),
                           **class_sw(x, labels, refp, ref_labels, theta, np.random.default_rng(7))}
                    doc["rows"].append(row)
                    done.add((W, solver, N, g))
                    save(a.run, doc)
                    print(f"  W={W:g} {solver} N={N} {g}: rel MSE {e.value:.3g} [{e.ci_low:.2g}, {e.ci_high:.2g}] "
                          f"(x{row['over_optimal']['ratio']:.2f} optimal), SW2 {row['sw']:.3f}, "
                          f"accuracy {row['accuracy']:.3f}", flush=True)
    doc["load_after"] = os.getloadavg()
    save(a.run, doc)


def merge(run: str, others: list) -> None:
    """Join the table.json rows, searches and teachers (and the teacher files) of ``others`` into ``run``."""
    import shutil

    os.makedirs(run, exist_ok=True)
    path = os.path.join(run, "table.json")
    doc = json.load(open(path)) if os.path.exists(path) else {"rows": [], "teachers": {}, "searches": {}}
    keys = {(r["W"], r["solver"], r["steps"], r["grid"]) for r in doc["rows"]}
    for other in others:
        o = json.load(open(os.path.join(other, "table.json")))
        for k, v in o.items():
            if k not in ("rows", "teachers", "searches") and k not in doc:
                doc[k] = v
        doc["rows"] += [r for r in o["rows"] if (r["W"], r["solver"], r["steps"], r["grid"]) not in keys]
        keys |= {(r["W"], r["solver"], r["steps"], r["grid"]) for r in o["rows"]}
        doc["teachers"] = {**o["teachers"], **doc["teachers"]}
        doc["searches"] = {**o["searches"], **doc["searches"]}
        for f in os.listdir(other):
            if f.startswith("teacher_W") and f.endswith(".npz") and not os.path.exists(os.path.join(run, f)):
                shutil.copy(os.path.join(other, f), os.path.join(run, f))
    save(run, doc)


# ----------------------------------------------------------------------------- README tables
def _cell(r, key, ci, fmt):
    return f"{fmt.format(r[key])} [{fmt.format(r[ci][0])}, {fmt.format(r[ci][1])}]"


def readme(doc: dict) -> None:
    rows = {(r["W"], r["solver"], r["steps"], r["grid"]): r for r in doc["rows"]}
    Ws = sorted({r["W"] for r in doc["rows"]})
    Ns = sorted({r["steps"] for r in doc["rows"]})
    solvers = [s for s in ("euler", "dpmpp_2m", "heun") if any(r["solver"] == s for r in doc["rows"])]
    for key, ci, fmt, what, best_fn in (
            ("rel_mse", "rel_mse_ci", "{:.2g}", "relative MSE to the guided model's own teacher", min),
            ("sw", "sw_ci", "{:.3f}", "class-wise sliced W2 to the held-out digits of each class", min),
            ("accuracy", "accuracy_ci", "{:.3f}", "class accuracy of the samples (digits classifier)", max)):
        for solver in solvers:
            cols = [(W, N) for W in Ws for N in Ns if any((W, solver, N, g) in rows for g in GRIDS)]
            print(f"\n{SOLVER_NAMES[solver]}, {what} [95% CI]:\n")
            print("| grid | " + " | ".join(f"W={W:g} N={N}" for W, N in cols) + " |")
            print("| --- |" + " --- |" * len(cols))
            best = {c: best_fn(rows[c[0], solver, c[1], g][key] for g in GRIDS if (c[0], solver, c[1], g) in rows)
                    for c in cols}
            for g in GRIDS:
                cells = []
                for W, N in cols:
                    r = rows.get((W, solver, N, g))
                    if r is None:
                        cells.append("")
                        continue
                    text = _cell(r, key, ci, fmt)
                    cells.append(f"**{text}**" if r[key] == best[W, N] else text)
                print(f"| {g} | " + " | ".join(cells) + " |")
    print("\nreusing the W = 1 optimum at W (relative MSE over the optimum at W, paired bootstrap 95% CI):\n")
    print("| solver | " + " | ".join(f"W={W:g} N={N}" for W in Ws if W != 1 for N in Ns) + " |")
    print("| --- |" + " --- |" * sum(1 for W in Ws if W != 1 for N in Ns))
    for solver in solvers:
        cells = []
        for W in Ws:
            if W == 1:
                continue
            for N in Ns:
                r = rows.get((W, solver, N, "optimal W=1"))
                cells.append("" if r is None else _cell(r["over_optimal"], "ratio", "ratio_ci", "{:.2f}"))
        print(f"| {SOLVER_NAMES[solver]} | " + " | ".join(cells) + " |")
    print("\noptimal grids (VE sigma, i.e. s / (1 - s)):\n")
    for s in sorted(doc["searches"].values(), key=lambda s: (s["solver"], s["steps"], s["W"])):
        sig = np.sqrt(np.expm1(2.0 * np.asarray(s["t"])))
        print(f"* {SOLVER_NAMES[s['solver']]} N={s['steps']} W={s['W']:g}: " + ", ".join(f"{v:.3g}" for v in sig)
              + f"  ({s['model_evaluations']:,} evaluations, {s['seconds']:.0f} s)")
    for W, t in sorted(doc["teachers"].items()):
        print(f"* teacher W={W}: self-convergence {t['teacher']['self_convergence']['rel_mse']:.2g}, accuracy "
              f"{t['accuracy']:.3f}, class SW2 {t['sw']:.3f}, {t['teacher']['model_evaluations']:,} evaluations, "
              f"{t['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
