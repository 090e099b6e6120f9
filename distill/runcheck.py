"""What a resumed run reads back from its folder, checked as strictly as the command line.

A run folder is written atomically, but it can still be damaged by hand (an edited
``config.json``), by a full disk before the run gave up, or by copying: every file a run reads
back is parsed and checked here -- the configuration with the same checks as the options of a
new run, the caches and checkpoints against the configuration -- and a bad file raises
:class:`~numcore.checks.InputError` naming the file and saying how to recover (delete it, or the
job's folder, and resume: that part is redone; or start a new run).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from ..numcore.checks import InputError

from .runfiles import read_json

CHECKSUM_KEY = "sha256"


# ----------------------------------------------------------------------------- messages
def _resume_hint(out) -> str:
    return f"flowcert validate --resume {os.fspath(out)}"


def damaged(path, problem: str, remedy: str) -> InputError:
    """One line: the file, what is wrong with it, how to recover."""
    return InputError(f"run file {os.fspath(path)!r} {problem}: {remedy}")


def redo_file(out) -> str:
    return f"delete it and run {_resume_hint(out)} again (it is recomputed)"


def redo_job(out, job_dir) -> str:
    return f"delete the folder {os.fspath(job_dir)!r} and run {_resume_hint(out)} again (that job is redone)"


def restart() -> str:
    return "restore it, or start a new run in another --out folder"


def _json(path, remedy: str):
    """read_json with the way to recover added to its error."""
    try:
        return read_json(path)
    except InputError as exc:
        raise InputError(f"{exc}: {remedy}") from None


def _plain(message: str) -> str:
    """A nested InputError's text without backquotes (they would be shown as this command's flags)."""
    return message.replace("`", "")


# ----------------------------------------------------------------------------- values
class _Bad(Exception):
    """A value of the wrong type or shape (its position in the file, in words)."""


def num(value, where: str, *, finite: bool = False, low: float | None = None) -> float:
    """A JSON number (null stands for a non-finite number written as null) as a float."""
    if value is None and not finite:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{where} is not a number")
    value = float(value)
    if finite and not math.isfinite(value):
        raise _Bad(f"{where} is not a finite number")
    if low is not None and not value >= low:
        raise _Bad(f"{where} is below {low:g}")
    return value


def nums(value, where: str, length: int | None = None, **kw) -> list[float]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise _Bad(f"{where} is not a list of {length if length is not None else 'some'} numbers")
    return [num(v, f"{where}[{i}]", **kw) for i, v in enumerate(value)]


def mapping(value, where: str, keys=()) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{where} is not a mapping")
    for k in keys:
        if k not in value:
            raise _Bad(f"{where} lacks {k!r}")
    return value


def close(a: list[float], b: list[float], rtol: float = 1e-12) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rtol * max(abs(x), abs(y), 1e-300) for x, y in zip(a, b))


def decreasing(values: list[float]) -> bool:
    return all(b < a for a, b in zip(values, values[1:]))


# ----------------------------------------------------------------------------- config.json
def config_checksum(data: dict) -> str:
    """sha256 of the configuration's canonical JSON (without the checksum itself)."""
    body = {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def with_checksum(data: dict) -> dict:
    return {**data, CHECKSUM_KEY: config_checksum(data)}


def load_config(out: Path):
    """The run's configuration, re-checked like the options of a new run."""
    from ..numcore.mixture import from_spec

    from .config import ValidateConfig, check_config

    path = out / "config.json"
    data = _json(path, restart())
    if not isinstance(data, dict):
        raise damaged(path, "is not a JSON object", restart())
    if CHECKSUM_KEY in data and data[CHECKSUM_KEY] != config_checksum(data):
        raise damaged(path, "was edited after the run started (its checksum does not match)", restart())
    try:
        specs = data.get("specs")
        if not isinstance(specs, list) or not specs:
            raise InputError("specs is missing or empty")
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise InputError(f"specs[{i}] is not a mapping")
            from_spec(spec, name=f"mixture{i}")
        if not isinstance(data.get("mixtures", []), list):
            raise InputError("mixtures is not a list")
        cfg = check_config(ValidateConfig.from_dict(data))
    except InputError as exc:
        raise damaged(path, f"is not a valid configuration ({_plain(str(exc))})", restart()) from None
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise damaged(path, f"is not a valid configuration ({type(exc).__name__})", restart()) from None
    return cfg


# ----------------------------------------------------------------------------- grids.json
RATES = ("tri", "sharp", "onesided")


def load_grids(out: Path, cfg, mixes) -> dict:
    """grids.json: per mixture, every (grid, N) of the configuration with its nodes and Lambda."""
    path = out / "grids.json"
    data = _json(path, redo_file(out))
    try:
        mapping(data, "the document", tuple(mixes))
        for mk, mix in mixes.items():
            info = mapping(data[mk], mk, ("describe", "grids", "union_nodes", "amp_times", "amp_Lambda",
                                          "Lambda_T"))
            mapping(info["describe"], f"{mk}.describe", ("name",))
            union = nums(info["union_nodes"], f"{mk}.union_nodes", finite=True)
            if not decreasing(union):
                raise _Bad(f"{mk}.union_nodes is not decreasing")
            for kind in cfg.grids:
                for N in cfg.steps:
                    key = f"{kind}/{N}"
                    g = mapping(mapping(info["grids"], f"{mk}.grids", (key,))[key], f"{mk}.grids.{key}",
                                ("nodes", "Lambda"))
                    nodes = nums(g["nodes"], f"{mk}.grids.{key}.nodes", N + 1, finite=True)
                    if not decreasing(nodes) or not close([nodes[0], nodes[-1]], [cfg.T, cfg.delta], 1e-9):
                        raise _Bad(f"{mk}.grids.{key}.nodes do not run from T = {cfg.T:g} down to delta = "
                                   f"{cfg.delta:g}")
                    if not set(nodes) <= set(union):
                        raise _Bad(f"{mk}.grids.{key}.nodes are not among the union nodes")
                    lam = mapping(g["Lambda"], f"{mk}.grids.{key}.Lambda", RATES)
                    for r in RATES:
                        nums(lam[r], f"{mk}.grids.{key}.Lambda.{r}", N + 1, finite=True)
            amp_t = nums(info["amp_times"], f"{mk}.amp_times", cfg.amp_times, finite=True, low=cfg.delta)
            amp_l = mapping(info["amp_Lambda"], f"{mk}.amp_Lambda", RATES)
            for r in RATES:
                nums(amp_l[r], f"{mk}.amp_Lambda.{r}", len(amp_t), finite=True)
    except _Bad as exc:
        raise damaged(path, f"is damaged ({exc})", redo_file(out)) from None
    return data


# ----------------------------------------------------------------------------- amplification.json
def load_amplification(out: Path, cfg, mixes) -> dict:
    path = out / "amplification.json"
    data = _json(path, redo_file(out))
    try:
        mapping(data, "the document", tuple(mixes))
        for mk in mixes:
            rows = data[mk]
            if not isinstance(rows, list) or len(rows) != cfg.amp_times:
                raise _Bad(f"{mk} does not hold {cfg.amp_times} rows")
            for j, row in enumerate(rows):
                where = f"{mk}[{j}]"
                mapping(row, where, ("t", "mean", "p99", "max", "predicted", "holds"))
                num(row["t"], f"{where}.t", finite=True, low=0.0)
                num(row["max"], f"{where}.max")
                for part in ("mean", "p99"):
                    est = mapping(row[part], f"{where}.{part}", ("value", "ci_low", "ci_high"))
                    for k in ("value", "ci_low", "ci_high"):
                        est[k] = num(est[k], f"{where}.{part}.{k}")
                pred = mapping(row["predicted"], f"{where}.predicted", RATES)
                for r in RATES:
                    pred[r] = num(pred[r], f"{where}.predicted.{r}")
                holds = mapping(row["holds"], f"{where}.holds", RATES)
                if not all(isinstance(holds[r], bool) for r in RATES):
                    raise _Bad(f"{where}.holds is not true/false")
    except _Bad as exc:
        raise damaged(path, f"is damaged ({exc})", redo_file(out)) from None
    return data


def load_trajectory(out: Path, info: dict, mixes) -> dict:
    """trajectory.json (per-trajectory factors along the grid nodes), checked against the grids it serves."""
    path = out / "trajectory.json"
    data = _json(path, redo_file(out))
    try:
        mapping(data, "the document", tuple(mixes))
        for mk in mixes:
            entry = mapping(data[mk], mk, ("one_step", "grids"))
            one = mapping(entry["one_step"], f"{mk}.one_step",
                          ("certified_max", "certified_p99", "estimate_max", "measured_max", "measured_p99", "holds", "n"))
            for k in ("certified_max", "certified_p99", "estimate_max", "measured_max", "measured_p99"):
                num(one[k], f"{mk}.one_step.{k}", low=0.0)
            grids = mapping(entry["grids"], f"{mk}.grids", tuple(info[mk]["grids"]))
            for key, g in info[mk]["grids"].items():
                where = f"{mk}.grids.{key}"
                gg = mapping(grids[key], where, ("segments", "rms_certified_to_delta"))
                N = len(g["nodes"]) - 1
                nums(gg["rms_certified_to_delta"], f"{where}.rms_certified_to_delta", N + 1, low=0.0)
                if not isinstance(gg["segments"], list) or len(gg["segments"]) != N:
                    raise _Bad(f"{where} does not hold {N} segments")
                for i, seg in enumerate(gg["segments"]):
                    seg = mapping(seg, f"{where}.segments[{i}]", ("certified_max", "estimate_max", "measured_max", "holds"))
                    for k in ("certified_max", "estimate_max", "measured_max"):
                        num(seg[k], f"{where}.segments[{i}].{k}", low=0.0)
    except _Bad as exc:
        raise damaged(path, f"is damaged ({exc})", redo_file(out)) from None
    return data


# ----------------------------------------------------------------------------- torch files
def _torch_load(path, remedy):
    from .runfiles import torch_load_safe

    try:
        return torch_load_safe(path)
    except ValueError as exc:
        raise damaged(path, str(exc), remedy) from None


def _tensor(value, where, shape, dtype=None):
    import torch

    if not isinstance(value, torch.Tensor):
        raise _Bad(f"{where} is not a tensor")
    if value.layout != torch.strided or value.is_quantized:
        raise _Bad(f"{where} is not a dense tensor")
    if tuple(value.shape) != tuple(shape):
        raise _Bad(f"{where} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None and value.dtype != dtype:
        raise _Bad(f"{where} has dtype {value.dtype}, expected {dtype}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise _Bad(f"{where} holds non-finite numbers")
    return value


def load_teacher(out: Path, path, cfg, union: list[float], d: int) -> dict:
    """Teacher trajectories: nodes equal to the union nodes, (n, U, d) float64 train and test states."""
    import torch

    remedy = redo_file(out)
    data = _torch_load(path, remedy)
    U = len(union)
    try:
        mapping(data, "the checkpoint", ("nodes", "train", "test"))
        nodes = _tensor(data["nodes"], "nodes", (U,), torch.float64)
        if not close(nodes.tolist(), list(union)):
            raise _Bad("nodes differ from the grids' union nodes")
        _tensor(data["train"], "train", (cfg.n_train, U, d), torch.float64)
        _tensor(data["test"], "test", (cfg.n_test, U, d), torch.float64)
    except _Bad as exc:
        raise damaged(path, f"is damaged ({exc})", remedy) from None
    return data


def load_blocks(out: Path, path, job_dir, B: int, d: int, width: int, depth: int, loss_shape, dtype=None) -> dict:
    """A group (or fine-tuning) checkpoint: the state of B blocks of the configured shape, in the run's ``dtype``
    (a torch dtype; an int8 or float16 tensor is refused, never cast), every number finite."""
    remedy = redo_job(out, job_dir)
    data = _torch_load(path, remedy)
    try:
        mapping(data, "the checkpoint", ("state", "loss", "seconds"))
        state = mapping(data["state"], "state", ("weights", "biases", "stats"))
        sizes = [d] + [width] * depth + [d]
        if not isinstance(state["weights"], list) or len(state["weights"]) != depth + 1 or \
                not isinstance(state["biases"], list) or len(state["biases"]) != depth + 1:
            raise _Bad(f"state has the wrong number of layers (expected {depth + 1})")
        for li, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
            _tensor(state["weights"][li], f"weights[{li}]", (B, fi, fo), dtype)
            _tensor(state["biases"][li], f"biases[{li}]", (B, 1, fo), dtype)
        if not isinstance(state["stats"], list) or len(state["stats"]) != 4:
            raise _Bad("state.stats is not 4 tensors")
        for i, st in enumerate(state["stats"]):
            _tensor(st, f"stats[{i}]", (B, 1, d), dtype)
        if loss_shape is None:
            num(data["loss"], "loss")
        else:
            import torch

            _tensor(data["loss"], "loss", loss_shape, torch.float64)
        num(data["seconds"], "seconds", finite=True, low=0.0)
    except _Bad as exc:
        raise damaged(path, f"is damaged ({exc})", remedy) from None
    return data


# ----------------------------------------------------------------------------- result.json
def load_result(out: Path, path, job: dict, nodes: list[float]) -> dict:
    """A job's result: the job it claims to be, and every number the report reads."""
    job_dir = Path(path).parent
    remedy = redo_job(out, job_dir)
    data = _json(path, remedy)
    N = job["N"]
    try:
        mapping(data, "the document", ("mixture", "mkey", "grid", "N", "seed", "nodes", "rel_mse", "fan",
                                       "lipschitz", "local_error_chain", "params_total"))
        for k in ("mkey", "grid", "N", "seed"):
            if data[k] != job[k]:
                raise _Bad(f"its {k} belongs to another job (expected {job[k]!r})")
        if not close(nums(data["nodes"], "nodes", N + 1, finite=True), list(nodes)):
            raise _Bad("nodes differ from the grid of this job")
        rel = mapping(data["rel_mse"], "rel_mse", ("value", "ci_low", "ci_high"))
        for k in ("value", "ci_low", "ci_high"):
            rel[k] = num(rel[k], f"rel_mse.{k}")
        fan = mapping(data["fan"], "fan", RATES)
        for r in RATES:
            f = mapping(fan[r], f"fan.{r}", ("holds", "slack", "measured_rms", "bound"))
            if not isinstance(f["holds"], bool):
                raise _Bad(f"fan.{r}.holds is not true/false")
            for k in ("slack", "measured_rms", "bound"):
                f[k] = num(f[k], f"fan.{r}.{k}")
        for name, keys in (("lipschitz", ("block_max", "teacher_max")), ("local_error_chain", ("value",))):
            rows = data[name]
            if not isinstance(rows, list) or len(rows) != N:
                raise _Bad(f"{name} does not hold {N} rows")
            for i, row in enumerate(rows):
                mapping(row, f"{name}[{i}]", keys)
                for k in keys:
                    row[k] = num(row[k], f"{name}[{i}].{k}")
        if isinstance(data["params_total"], bool) or not isinstance(data["params_total"], int):
            raise _Bad("params_total is not an integer")
    except _Bad as exc:
        raise damaged(path, f"is damaged ({exc})", remedy) from None
    return data
