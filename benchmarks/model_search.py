"""The cost of a trained model's optimal grid (`grid --model digits --kind optimal`), before and after issue 20.

    python benchmarks/model_search.py OUT.json [--solvers euler,dpmpp_2m,heun] [--steps 4,8,16] [--threads 1]
        [--fresh 512] [--fresh-seed 100] [--fresh-cache FILE.npz] [--batches-cache FILE.pkl]
        [--gradients] [--compare BEFORE.json[,MORE.json]]
    python benchmarks/model_search.py AFTER.json --report --compare BEFORE.json[,MORE.json]

For every solver and N, the work of `flowcert grid --model digits --kind optimal --solver S --steps N` with the
command's own defaults (read from `flowcert.model_grid`'s signature, so the same script measures any version of
flowcert on the path): the teacher of the test and training batches, the GITS-style start, the search, and the
test-batch measurements of the optimal grid, the closed forms and the GITS-style grid.  The batches do not depend
on the solver or N, so they are built once and their cost is charged to every row (as each command pays it).

Model evaluations (one network forward pass on one sample, counted by ModelBatches.counter; reverse passes
through the network, where gradients take them, counted apart) and seconds (wall and CPU, torch threads as given)
are split into

    training side   the training batch's teacher (its nodes) + the search          ("to find the grid")
    test side       the test batch's teacher + its self-convergence check + the test-batch measurements

and every grid found is measured on a fresh held-out batch (--fresh trajectories x_T ~ N(0, I) with seed
--fresh-seed, the model's 64-step RK4 teacher; computed once, or read from --fresh-cache, and not counted):
relative MSE against the teacher with its 95% interval; with --compare (an earlier run's JSON) also the paired
ratio of this run's error to that run's on the same fresh trajectories, with its 95% interval.  Prints the sizes,
the load average and one row per (solver, N); --report prints the before/after table of two runs' JSON files.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import pickle
import time

import numpy as np
import torch

DELTA, T = 1e-3, 5.0


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def clock():
    return time.perf_counter(), time.process_time()


def since(c):
    return time.perf_counter() - c[0], time.process_time() - c[1]


def fresh_batch(model, n: int, seed: int, cache: str | None):
    """(x_T, teacher end points) of n fresh trajectories (64 RK4 steps, the model's default teacher)."""
    from flowcert.models.flow import prior, teacher

    if cache and os.path.exists(cache):
        z = np.load(cache)
        if z["x"].shape[0] == n and int(z["seed"]) == seed:
            return z["x"], z["y"]
    x = prior(model, n, seed)
    y = teacher(model, x, T, DELTA, 64, check=0)["x"]
    if cache:
        np.savez(cache, x=x.numpy(), y=y, seed=seed)
    return x.numpy(), y


def paired_ratio(e_a: np.ndarray, e_b: np.ndarray) -> tuple[float, list]:
    """mean(e_a) / mean(e_b) of per-trajectory squared errors on the same trajectories, 95% delta-method interval."""
    from scipy.special import ndtri

    r = e_a.mean() / e_b.mean()
    se = np.std(e_a / e_a.mean() - e_b / e_b.mean(), ddof=1) / np.sqrt(e_a.size)
    z = float(ndtri(0.975))
    return float(r), [float(r * math.exp(-z * se)), float(r * math.exp(z * se))]


def read_before(files: str | None) -> dict:
    """{(solver, N): row} of earlier runs' JSON files (comma-separated; a later file's row wins)."""
    out = {}
    for name in (files or "").split(","):
        if name:
            with open(name) as fh:
                out.update({(r["solver"], r["steps"]): r for r in json.load(fh)["rows"]})
    return out


def report(after: list, before: dict) -> None:
    """The before/after table: model evaluations of the training side (training teacher + search; the search's
    reverse passes in brackets), of the test side and in all, CPU seconds of the search and of the whole training
    side (nan where the teacher came from a cache of unknown CPU time), the fresh batch's relative MSE and the
    paired ratio."""
    def ev(r, k):
        return f"{r[k]:,}" if r else ""

    def cpu(r):
        return f"{r['search_seconds'][1]:.0f} / {r['training_seconds'][1]:.0f}" if r else ""

    def fresh(r):
        return f"{r['fresh_rel_mse']:.4g} [{r['fresh_rel_mse_ci'][0]:.3g}, {r['fresh_rel_mse_ci'][1]:.3g}]" if r else ""

    print("| solver | N | training evals before / after (reverse passes) | test evals before / after | "
          "total before / after | CPU s before: search / training side | after | fresh rel MSE before [95%] | "
          "after [95%] | after / before [95%] |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in after:
        o = before.get((r["solver"], r["steps"]))
        ratio = ""
        if o is not None:
            q, ci = paired_ratio(np.asarray(r["per_trajectory"]), np.asarray(o["per_trajectory"]))
            ratio = f"{q:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        print(f"| {r['solver']} | {r['steps']} | {ev(o, 'training_evaluations')} / {ev(r, 'training_evaluations')} "
              f"({r['reverse_passes']:,}) | {ev(o, 'test_evaluations')} / {ev(r, 'test_evaluations')} | "
              f"{ev(o, 'total_evaluations')} / {ev(r, 'total_evaluations')} | {cpu(o)} | {cpu(r)} | {fresh(o)} | "
              f"{fresh(r)} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--solvers", default="euler,dpmpp_2m,heun")
    ap.add_argument("--steps", default="4,8,16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fresh", type=int, default=512)
    ap.add_argument("--fresh-seed", type=int, default=100)
    ap.add_argument("--fresh-cache", default=None)
    ap.add_argument("--compare", default=None, help="earlier runs' JSON files (comma-separated): paired ratios "
                    "against their grids")
    ap.add_argument("--batches-cache", default=None, help="a pickle of the training and test batches (the "
                    "command's defaults): read if it exists (the teacher is not rerun; its CPU seconds are then "
                    "unknown), else written")
    ap.add_argument("--gradients", action="store_true", help="the search with exact gradients through the network "
                    "(ModelBatches.GRADIENTS = True; flowcert versions with it)")
    ap.add_argument("--report", action="store_true", help="no run: print the before/after table of OUT.json "
                    "against --compare")
    a = ap.parse_args()
    if a.report:
        with open(a.out) as fh:
            after = json.load(fh)["rows"]
        report(after, read_before(a.compare))
        return
    torch.set_num_threads(a.threads)

    import flowcert
    from flowcert.models.flow import solve
    from flowcert.numcore.distances import relative_mse
    from flowcert.studies.optimal import optimal_grid
    from flowcert.studies.targets import ModelBatches, ModelTarget

    defaults = {k: v.default for k, v in inspect.signature(flowcert.model_grid).parameters.items()}
    check = inspect.signature(ModelBatches).parameters["check"].default
    cfg = {k: defaults[k] for k in ("train_samples", "test_samples", "teacher_steps", "effort", "seed")}
    cfg["check"] = check
    model = flowcert.load_model("digits")
    print(f"flowcert {os.path.dirname(flowcert.__file__)}; load {load()}; torch threads {a.threads}; "
          f"command defaults {cfg}; fresh batch {a.fresh} trajectories (seed {a.fresh_seed})", flush=True)

    c = clock()
    fx, fy = fresh_batch(model, a.fresh, a.fresh_seed, a.fresh_cache)
    print(f"fresh batch ready ({since(c)[0]:.0f} s wall)", flush=True)
    before = read_before(a.compare) if a.compare else None

    # test-batch measurements: counted and timed apart from the search
    spent = {"evaluations": 0, "wall": 0.0, "cpu": 0.0}
    plain_test_error = ModelBatches.test_error

    def test_error(self, t, solver):
        e0, c0 = self.counter.samples, clock()
        try:
            return plain_test_error(self, t, solver)
        finally:
            w, cp = since(c0)
            spent["evaluations"] += self.counter.samples - e0
            spent["wall"] += w
            spent["cpu"] += cp

    ModelBatches.test_error = test_error

    if a.gradients:
        ModelBatches.GRADIENTS = True
    target = ModelTarget(model, teacher_steps=cfg["teacher_steps"])
    c = clock()
    if a.batches_cache and os.path.exists(a.batches_cache):  # the same batches, built by an earlier run
        from flowcert.models.flow import Counter

        with open(a.batches_cache, "rb") as fh:
            state = pickle.load(fh)
        b = object.__new__(ModelBatches)
        b.__dict__.update(state)
        teach_cpu = state.pop("teacher_cpu", float("nan"))  # the run that built them (older caches: unknown)
        b.__dict__.pop("teacher_cpu", None)
        b.model, b.counter, b.gradients = model, Counter(model), ModelBatches.__dict__.get("GRADIENTS", False)
        b.split = b.gradients and getattr(model, "sigma_differentiable", False)  # the split search (issue 20)
        teach_wall = float(b.teacher["seconds"])  # the earlier run's wall
    else:
        b = ModelBatches(model, DELTA, T, train=cfg["train_samples"], test=cfg["test_samples"], seed=cfg["seed"],
                         teacher_steps=cfg["teacher_steps"], check=cfg["check"])
        teach_wall, teach_cpu = since(c)
        if a.batches_cache:
            with open(a.batches_cache, "wb") as fh:
                pickle.dump({**{k: v for k, v in b.__dict__.items() if k not in ("model", "counter")},
                             "teacher_cpu": teach_cpu}, fh)
    train_teacher = int(b.trajectory["evaluations"])
    test_teacher = int(b.teacher["model_evaluations"]) - train_teacher
    share = train_teacher / max(1, b.teacher["model_evaluations"])  # seconds split in proportion to evaluations
    print(f"batches: {len(b.x_train)} training, {len(b.x_test)} test trajectories, teacher {cfg['teacher_steps']} "
          f"RK4 steps, self-convergence on {cfg['check']}: training teacher {train_teacher:,}, test teacher + check "
          f"{test_teacher:,} evaluations, {teach_wall:.1f} s wall, {teach_cpu:.1f} s CPU; load {load()}", flush=True)
    print("\n| solver | N | training evals (teacher + search) | reverse passes | test evals | total | "
          "training s (wall / CPU) | test s (wall / CPU) | stop | fresh rel MSE [95%] | vs before [95%] |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for solver in a.solvers.split(","):
        for N in (int(n) for n in a.steps.split(",")):
            for k in spent:
                spent[k] = 0
            e0, bw0, c = b.counter.samples, getattr(b.counter, "backward", 0), clock()
            rec = optimal_grid(target, N, solver, delta=DELTA, T=T, batches=b, effort=cfg["effort"])
            wall, cpu = since(c)
            search = b.counter.samples - e0 - spent["evaluations"]
            backward = getattr(b.counter, "backward", 0) - bw0
            train = train_teacher + search
            test = test_teacher + spent["evaluations"]
            x = solve(model, fx, rec["t"], solver)
            e = relative_mse(x, fy)
            per = np.sum((x - fy) ** 2, axis=1)
            row = {"solver": solver, "steps": N, "t": list(map(float, rec["t"])),
                   "training_evaluations": train, "training_teacher": train_teacher, "search_evaluations": search,
                   "reverse_passes": backward, "test_evaluations": test, "test_teacher": test_teacher,
                   "test_measurements": spent["evaluations"], "total_evaluations": train + test,
                   "training_seconds": [teach_wall * share + wall - spent["wall"],
                                        teach_cpu * share + cpu - spent["cpu"]],
                   "test_seconds": [teach_wall * (1 - share) + spent["wall"], teach_cpu * (1 - share) + spent["cpu"]],
                   "search_seconds": [wall - spent["wall"], cpu - spent["cpu"]],
                   "stop": rec["search"]["stop"], "method": rec["search"]["method"],
                   "objective_evaluations": rec["search"]["evaluations"], "train_rel_mse": rec["train_rel_mse"],
                   "test_rel_mse": rec["rel_mse"], "test_rel_mse_ci": rec["rel_mse_ci"],
                   "fresh_rel_mse": e.value, "fresh_rel_mse_ci": [e.ci_low, e.ci_high],
                   "per_trajectory": per.tolist(), "load": os.getloadavg()[0]}
            vs = ""
            if before is not None and (solver, N) in before:
                r, ci = paired_ratio(per, np.asarray(before[solver, N]["per_trajectory"]))
                row["vs_before"], row["vs_before_ci"] = r, ci
                vs = f"{r:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
            rows.append(row)
            print(f"| {solver} | {N} | {train:,} ({train_teacher:,} + {search:,}) | {backward:,} | {test:,} | "
                  f"{train + test:,} | {row['training_seconds'][0]:.0f} / {row['training_seconds'][1]:.0f} | "
                  f"{row['test_seconds'][0]:.0f} / {row['test_seconds'][1]:.0f} | {row['stop'][:50]} | "
                  f"{e.value:.3g} [{e.ci_low:.2g}, {e.ci_high:.2g}] | {vs} |", flush=True)
            with open(a.out, "w") as fh:
                json.dump({"config": cfg, "threads": a.threads, "fresh": a.fresh, "fresh_seed": a.fresh_seed,
                           "teacher_seconds": [teach_wall, teach_cpu], "rows": rows, "load_end": load()}, fh)
    print(f"load {load()}")


if __name__ == "__main__":
    main()
