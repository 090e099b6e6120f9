"""Battery cases of issue 22, kinds 1, 2, 4, 5 and 10: the files a command reads (model folders and their configs,
weights and run-folder checkpoints, ``FILE.py:NAME``, outputs onto inputs, duplicate keys and control characters).

The format is hostile_battery.py's.  Model folders are copies of one tiny diffusers model built once per battery
run (a ``UNet2DModel`` of 8 x 8 one-channel images with a ``DDPMScheduler``), damaged by each case's setup; the
validate run folder is one tiny finished run, built once with the tree under test and copied per case.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

_CACHE: dict[str, Path] = {}
_ROOT = Path(tempfile.mkdtemp(prefix="flowcert-battery-files-"))
TINY = ["--steps", "1", "--grids", "uniform", "--seeds", "1", "--train-samples", "32", "--test-samples", "32", "--iters", "3",
        "--width", "4", "--amp-times", "2", "--amp-samples", "2", "--lip-samples", "4",
        "--delta", "0.01", "--T", "1", "--no-plots", "--quiet"]  # a validate run of seconds
FAST = ["--kind", "uniform", "--steps", "4", "--threads", "1"]  # a grid that loads the model and nothing more


# ----------------------------------------------------------------------------- templates
def _template(layout: str) -> Path:
    """A tiny diffusers model: ``model`` (config.json, weights and scheduler_config.json in one folder) or
    ``pipeline`` (model_index.json, unet/, scheduler/)."""
    if layout in _CACHE:
        return _CACHE[layout]
    import diffusers
    import torch

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    sched = diffusers.DDPMScheduler()
    folder = _ROOT / layout
    if layout == "pipeline":
        diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(folder)
    else:
        unet.save_pretrained(folder)
        sched.save_config(folder)
    _CACHE[layout] = folder
    return folder


def _run_template() -> Path:
    """A finished tiny validate run (one job per grid and N), made with the tree under test."""
    if "run" in _CACHE:
        return _CACHE["run"]
    folder = _ROOT / "runs"
    folder.mkdir()
    (folder / "one.json").write_text(json.dumps({"means": [[0.5, 0.0]], "variance": 0.05}))
    args = ["validate", "one.json", "--steps", "1,2", "--grids", "uniform,balanced", "--seeds", "1",
            "--train-samples", "32", "--test-samples", "32", "--iters", "3", "--width", "4", "--amp-times", "2",
            "--amp-samples", "2", "--lip-samples", "4", "--delta", "0.01", "--T", "1",
            "--no-plots", "--quiet", "--out", "run"]
    subprocess.run([sys.executable, "-m", "flowcert.cli", *args], cwd=folder, check=True, capture_output=True)
    (folder / "run" / "results.json").unlink()
    _CACHE["run"] = folder / "run"
    return _CACHE["run"]


def model(tmp: Path, layout: str = "model", name: str = "m") -> Path:
    dest = tmp / name
    shutil.copytree(_template(layout), dest)
    return dest


def run_folder(tmp: Path) -> Path:
    dest = tmp / "run"
    shutil.copytree(_run_template(), dest)
    return dest


JOB = "jobs/0-one_uniform_N1_s0"


def _edit_json(path: Path, **changes) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def _replace_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))


def _weights(folder: Path) -> Path:
    return folder / "diffusion_pytorch_model.safetensors"


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(_weights(folder))
    edit(sd)
    save_file(sd, _weights(folder))


# ----------------------------------------------------------------------------- setups: kind 1
def cfg_field(field: str, value_text: str, file: str = "config.json", layout: str = "model"):
    """A model whose config file has ``field`` set to the raw JSON text ``value_text`` (NaN, Infinity, "8", ...)."""

    def setup(tmp):
        m = model(tmp, layout)
        path = m / file
        cfg = json.loads(path.read_text())
        cfg[field] = "@@VALUE@@"
        path.write_text(json.dumps(cfg).replace('"@@VALUE@@"', value_text))
        return {"m": str(m)}

    return setup


def fifo_config(file: str):
    def setup(tmp):
        m = model(tmp)
        (m / file).unlink()
        os.mkfifo(m / file)
        return {"m": str(m)}

    return setup


def devzero_config(file: str):
    def setup(tmp):
        m = model(tmp)
        (m / file).unlink()
        os.symlink("/dev/zero", m / file)
        return {"m": str(m)}

    return setup


def huge_config(tmp):
    """config.json a sparse 256 MiB file (zeros after the JSON object)."""
    m = model(tmp)
    with open(m / "config.json", "r+b") as fh:
        fh.truncate(2**28)
    return {"m": str(m)}


def deep_config(tmp):
    m = model(tmp)
    _replace_text(m / "config.json", '"act_fn": "silu"', '"act_fn": ' + "[" * 50000 + "]" * 50000)
    return {"m": str(m)}


def index_component_string(tmp):
    m = model(tmp, "pipeline")
    _edit_json(m / "model_index.json", unet="UNet2DModel")
    return {"m": str(m)}


# ----------------------------------------------------------------------------- setups: kind 2
def weights_edit(edit):
    def setup(tmp):
        m = model(tmp)
        _edit_weights(m, edit)
        return {"m": str(m)}

    return setup


def _drop_key(sd):
    sd.pop("conv_in.bias")


def _extra_key(sd):
    import torch

    sd["planted.weight"] = torch.zeros(3)


def _wrong_shape(sd):
    import torch

    sd["conv_in.bias"] = torch.zeros(sd["conv_in.bias"].numel() + 1)


def _int8(sd):
    sd["conv_in.weight"] = sd["conv_in.weight"].to(__import__("torch").int8)


def _nan(sd):
    sd["conv_in.weight"][0] = float("nan")


def _inf(sd):
    sd["conv_out.bias"][:] = float("inf")


def bin_only(payload: bool):
    """Weights as a pickle (.bin) only; with ``payload`` the pickle would create a marker file when unpickled."""

    def setup(tmp):
        import pickle

        import torch
        from safetensors.torch import load_file

        m = model(tmp)
        sd = load_file(_weights(m))
        _weights(m).unlink()
        if payload:
            class Payload:
                def __reduce__(self):
                    return (os.system, (f"touch {tmp}/ran",))

            (m / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"conv_in.bias": Payload()}))
        else:
            torch.save(sd, m / "diffusion_pytorch_model.bin")
        return {"m": str(m)}

    return setup


def weights_bytes(make):
    def setup(tmp):
        m = model(tmp)
        data = _weights(m).read_bytes()
        _weights(m).write_bytes(make(data))
        return {"m": str(m)}

    return setup


def fifo_weights(tmp):
    m = model(tmp)
    _weights(m).unlink()
    os.mkfifo(_weights(m))
    return {"m": str(m)}


def devzero_weights(tmp):
    m = model(tmp)
    _weights(m).unlink()
    os.symlink("/dev/zero", _weights(m))
    return {"m": str(m)}


def header_lies(data: bytes) -> bytes:
    """A safetensors header whose length field claims 2^40 bytes."""
    return struct.pack("<Q", 2**40) + data[8:]


def run_damage(damage):
    def setup(tmp):
        run = run_folder(tmp)
        damage(run)
        return {"run": str(run)}

    return setup


def _torch_save(path, obj):
    import torch

    torch.save(obj, path)


def _teacher(run):
    (run / JOB / "result.json").unlink()
    return run / "teacher" / "0-one-s0.pt"


def _nan_teacher(run):
    import torch

    path = _teacher(run)
    data = torch.load(path, weights_only=True)
    data["train"][0, 0, 0] = float("nan")
    _torch_save(path, data)


def _pickle_group(run):
    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {run}/ran",))

    (run / JOB / "result.json").unlink()
    _torch_save(run / JOB / "group0.pt", {"state": Planted(), "loss": 0.0, "seconds": 1.0})


def _int8_group(run):
    import torch

    (run / JOB / "result.json").unlink()
    path = run / JOB / "group0.pt"
    data = torch.load(path, weights_only=True)
    data["state"]["weights"] = [w.to(torch.int8) for w in data["state"]["weights"]]
    _torch_save(path, data)


def _fifo_group(run):
    (run / JOB / "result.json").unlink()
    (run / JOB / "group0.pt").unlink()
    os.mkfifo(run / JOB / "group0.pt")


def _nan_result(run):
    path = run / JOB / "result.json"
    _replace_text(path, '"value": ', '"value": NaN, "x": ')


def _junk_teacher(run):
    _teacher(run).write_bytes(os.urandom(4096))


def _truncated_group(run):
    (run / JOB / "result.json").unlink()
    path = run / JOB / "group0.pt"
    path.write_bytes(path.read_bytes()[:200])


# ----------------------------------------------------------------------------- setups: kind 4
GOOD = ("import flowcert\n"
        "MODEL = flowcert.torch_model(lambda x, s, *a, **k: 0 * x, shape=(2,), prediction='sample')\n")


def pyfile(body: str, name: str = "MODEL"):
    def setup(tmp):
        (tmp / "f.py").write_text(body)
        return {"f": f"{tmp}/f.py:{name}"}

    return setup


def help_says_file_runs(tmp, stdout, stderr):
    text = " ".join(stdout.split()).lower()
    if "file.py:name" not in text or not any(w in text for w in ("runs the file", "executes", "runs it", "runs its")):
        return "--help does not say that FILE.py:NAME runs the file"
    return None


# ----------------------------------------------------------------------------- setups: kind 5
def model_out(path_of):
    def setup(tmp):
        m = model(tmp, "pipeline" if "pipeline" in path_of.__name__ else "model")
        return {"m": str(m), "out": str(path_of(tmp, m))}

    return setup


def _own_config(tmp, m):
    return m / "config.json"


def _own_weights(tmp, m):
    return _weights(m)


def _own_scheduler(tmp, m):
    return m / "scheduler_config.json"


def _pipeline_scheduler(tmp, m):
    return m / "scheduler" / "scheduler_config.json"


def _pipeline_index(tmp, m):
    return m / "model_index.json"


def _link_to_config(tmp, m):
    os.symlink(m / "config.json", tmp / "link.json")
    return tmp / "link.json"


def _hardlink_to_weights(tmp, m):
    os.link(_weights(m), tmp / "w.json")
    return tmp / "w.json"


def pyfile_out(tmp):
    (tmp / "f.py").write_text(GOOD)
    return {"f": f"{tmp}/f.py:MODEL", "out": str(tmp / "f.py")}


def spec_model_out(tmp):
    (tmp / "s.json").write_text(json.dumps({"means": [[0.0, 0.0], [2.0, 0.0]], "variance": 0.1}))
    return {"s": str(tmp / "s.json")}


def validate_onto_spec(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "config.json").write_text(json.dumps({"means": [[0.5, 0.0]], "variance": 0.05}))
    return {}


def data_out(tmp):
    import numpy as np

    m = model(tmp)
    np.save(tmp / "d.npy", np.zeros((16, 1, 8, 8), dtype=np.float32))
    return {"m": str(m)}


# ----------------------------------------------------------------------------- setups: kind 10
def spec_text(text: str, name: str = "s.json"):
    def setup(tmp):
        (tmp / name).write_text(text)
        return {"s": str(tmp / name)}

    return setup


def spec_named(name_value: str):
    return spec_text(json.dumps({"name": name_value, "means": [[0.0, 0.0], [2.0, 0.0]], "variance": 0.1}))


def spec_file_named(tmp):
    path = tmp / "a\nforged line.json"
    path.write_text(json.dumps({"means": [[0.0, 0.0], [2.0, 0.0]], "variance": 0.1}))
    return {"s": str(path)}


def no_forged_line(tmp, stdout, stderr):
    for line in (stdout + "\n" + stderr).splitlines():
        if line.startswith("forged"):
            return f"a name forged the output line {line[:60]!r}"
    if "\x1b" in stdout or "\x1b" in stderr:
        return "an escape character reached the terminal"
    return None


def model_named(tmp):
    m = model(tmp, name="m\nforged line")
    return {"m": str(m)}


def dup_model_key(tmp):
    m = model(tmp)
    _replace_text(m / "scheduler_config.json", '"prediction_type": "epsilon"',
                  '"prediction_type": "epsilon", "prediction_type": "v_prediction"')
    return {"m": str(m)}


def dup_scheduler_config(tmp):
    (tmp / "sc.json").write_text('{"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", '
                                 '"beta_schedule": "linear"}')
    return {"sc": str(tmp / "sc.json")}


def fit_data(tmp):
    import numpy as np

    np.save(tmp / "d.npy", np.random.default_rng(0).normal(size=(200, 2)))
    return {}


def fit_stem_loads_back(tmp, stdout, stderr):
    files = [p for p in tmp.iterdir() if p.suffix == ".yaml"]
    if len(files) != 1:
        return "no spec written"
    r = subprocess.run([sys.executable, "-m", "flowcert.cli", "mixture", str(files[0]), "--amp-samples", "0"],
                       capture_output=True, text=True, cwd=tmp)
    if r.returncode != 0:
        return "the written spec does not load back: " + r.stderr.strip()[:120]
    return no_forged_line(tmp, r.stdout, r.stderr)


def dup_run_config(run):
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text.replace('"seeds": 1', '"seeds": 1, "seeds": 1', 1))


def huge_sample(tmp):
    m = model(tmp)
    _edit_json(m / "config.json", sample_size=4096, in_channels=4096)
    return {"m": str(m)}


def config_list(tmp):
    m = model(tmp)
    (m / "config.json").write_text("[1, 2]")
    return {"m": str(m)}


def _float16_group(run):
    import torch

    (run / JOB / "result.json").unlink()
    path = run / JOB / "group0.pt"
    data = torch.load(path, weights_only=True)
    data["state"]["biases"] = [b.to(torch.float16) for b in data["state"]["biases"]]
    _torch_save(path, data)


def _dup_grids(run):
    (run / JOB / "result.json").unlink()
    text = (run / "grids.json").read_text()
    (run / "grids.json").write_text(text.replace('"Lambda_T": ', '"Lambda_T": 0, "Lambda_T": ', 1))


def reference_out(tmp):
    import numpy as np

    (tmp / "s.json").write_text(json.dumps({"means": [[0.0, 0.0], [2.0, 0.0]], "variance": 0.1}))
    np.save(tmp / "d.npy", np.zeros((16, 2)))
    return {"s": str(tmp / "s.json")}


# ----------------------------------------------------------------------------- the cases
M = "{m}"
CASES = [
    # kind 1: model folders and configs
    dict(kind=1, name="config-sample-size-nan", setup=cfg_field("sample_size", "NaN"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-sample-size-string", setup=cfg_field("sample_size", '"8"'), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-sample-size-float", setup=cfg_field("sample_size", "8.5"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-sample-size-huge", setup=cfg_field("sample_size", "1e300"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-in-channels-bool", setup=cfg_field("in_channels", "true"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-in-channels-negative", setup=cfg_field("in_channels", "-1"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-norm-groups-zero", setup=cfg_field("norm_num_groups", "0"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-unknown-key", setup=cfg_field("planted_key", "1"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-deep-nesting", setup=deep_config, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-fifo", setup=fifo_config("config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-dev-zero", setup=devzero_config("config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-huge-file", setup=huge_config, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-timesteps-inf", setup=cfg_field("num_train_timesteps", "Infinity", "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-timesteps-float", setup=cfg_field("num_train_timesteps", "999.5", "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-timesteps-huge", setup=cfg_field("num_train_timesteps", "10000000000", "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-beta-start-nan", setup=cfg_field("beta_start", "NaN", "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-beta-end-above-one", setup=cfg_field("beta_end", "2.0", "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-beta-start-string", setup=cfg_field("beta_start", '"0.0001"', "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-trained-betas-nan", setup=cfg_field("trained_betas", "[0.1, NaN, 0.2]", "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-trained-betas-strings", setup=cfg_field("trained_betas", '["a", "b"]', "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-schedule-name", setup=cfg_field("beta_schedule", '"cosine-ish"', "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-spacing", setup=cfg_field("timestep_spacing", '"sideways"', "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-prediction-type", setup=cfg_field("prediction_type", '"x0"', "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-unknown-key", setup=cfg_field("planted_key", '"x"', "scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="sched-fifo", setup=fifo_config("scheduler_config.json"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="index-nan", setup=cfg_field("scheduler", "NaN", "model_index.json", "pipeline"), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="index-component-string", setup=index_component_string, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-huge-sample", setup=huge_sample, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="config-not-an-object", setup=config_list, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=1, name="valid-model-folder", setup=lambda tmp: {"m": str(model(tmp))}, argv=["grid", "--model", M, *FAST], expect="ok"),
    dict(kind=1, name="valid-pipeline-folder", setup=lambda tmp: {"m": str(model(tmp, "pipeline"))}, argv=["grid", "--model", M, *FAST], expect="ok"),

    # kind 2: weights and checkpoints
    dict(kind=2, name="weights-missing-key", setup=weights_edit(_drop_key), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-extra-key", setup=weights_edit(_extra_key), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-wrong-shape", setup=weights_edit(_wrong_shape), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-int8", setup=weights_edit(_int8), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-nan", setup=weights_edit(_nan), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-inf", setup=weights_edit(_inf), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-bin-only", setup=bin_only(False), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-bin-pickle-payload", setup=bin_only(True), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-truncated", setup=weights_bytes(lambda b: b[: len(b) // 2]), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-junk", setup=weights_bytes(lambda b: os.urandom(len(b))), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-empty", setup=weights_bytes(lambda b: b""), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-header-lies", setup=weights_bytes(header_lies), argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="weights-fifo", setup=fifo_weights, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="run-nan-teacher", setup=run_damage(_nan_teacher), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=2, name="run-junk-teacher", setup=run_damage(_junk_teacher), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=2, name="run-pickle-group", setup=run_damage(_pickle_group), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=2, name="run-int8-group", setup=run_damage(_int8_group), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=2, name="run-truncated-group", setup=run_damage(_truncated_group), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=2, name="run-fifo-group", setup=run_damage(_fifo_group), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=2, name="run-float16-group", setup=run_damage(_float16_group), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=2, name="weights-dev-zero", setup=devzero_weights, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=2, name="run-nan-result", setup=run_damage(_nan_result), argv=["validate", "--resume", "{run}"], expect="refused"),

    # kind 4: FILE.py:NAME runs the file
    dict(kind=4, name="pyfile-sys-exit-0", setup=pyfile("import sys\nsys.exit(0)\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-os-exit-0", setup=pyfile("import os\nos._exit(0)\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-keyboard-interrupt", setup=pyfile("raise KeyboardInterrupt\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-system-exit-text", setup=pyfile("raise SystemExit('bye')\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-sleeps", setup=pyfile("import time\ntime.sleep(3600)\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused", env={"FLOWCERT_IMPORT_TIMEOUT": "20"}),
    dict(kind=4, name="pyfile-name-calls-exit", setup=pyfile("import sys\ndef MODEL():\n    sys.exit(0)\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-name-os-exit", setup=pyfile("import os\ndef MODEL():\n    os._exit(0)\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-name-interrupt", setup=pyfile("def MODEL():\n    raise KeyboardInterrupt\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-generator-exit", setup=pyfile("raise GeneratorExit\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-os-exit-3", setup=pyfile(GOOD + "import os\nos._exit(3)\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-exit-builtin", setup=pyfile("exit()\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-reads-stdin", setup=pyfile("input()\n"), argv=["grid", "--model", "{f}", *FAST], expect="refused"),
    dict(kind=4, name="pyfile-help-says-it-runs", argv=["grid", "--help"], expect="ok", check=help_says_file_runs),
    dict(kind=4, name="pyfile-valid", setup=pyfile(GOOD), argv=["grid", "--model", "{f}", *FAST], expect="ok"),

    # kind 5: outputs that destroy inputs
    dict(kind=5, name="out-onto-model-config", setup=model_out(_own_config), argv=["grid", "--model", M, *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="out-onto-weights", setup=model_out(_own_weights), argv=["grid", "--model", M, *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="out-onto-scheduler-config", setup=model_out(_own_scheduler), argv=["grid", "--model", M, *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="out-onto-pipeline-scheduler", setup=model_out(_pipeline_scheduler), argv=["grid", "--model", M, *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="out-onto-pipeline-index", setup=model_out(_pipeline_index), argv=["grid", "--model", M, *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="out-link-to-model-config", setup=model_out(_link_to_config), argv=["grid", "--model", M, *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="out-hardlink-to-weights", setup=model_out(_hardlink_to_weights), argv=["grid", "--model", M, *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="out-onto-pyfile", setup=pyfile_out, argv=["grid", "--model", "{f}", *FAST, "-o", "{out}"], expect="refused"),
    dict(kind=5, name="plot-onto-model-config", setup=model_out(_own_config), argv=["lipschitz", "--model", M, "--points", "2", "--empirical", "16", "--iters", "2", "--threads", "1", "--plot", "{out}"], expect="refused"),
    dict(kind=5, name="out-onto-mixture-model-spec", setup=spec_model_out, argv=["grid", "--model", "mixture:{s}", *FAST, "-o", "{s}"], expect="refused"),
    dict(kind=5, name="out-onto-data", setup=data_out, argv=["grid", "--model", M, "--data", "{tmp}/d.npy", *FAST, "-o", "{tmp}/d.npy"], expect="refused"),
    dict(kind=5, name="plot-onto-reference", setup=reference_out, argv=["solvers", "--model", "mixture:{s}", "--reference", "{tmp}/d.npy", "--steps", "4", "--plot", "{tmp}/d.npy"], expect="refused"),
    dict(kind=5, name="validate-out-onto-spec", setup=validate_onto_spec, argv=["validate", "{tmp}/out/config.json", *TINY, "--out", "{tmp}/out"], expect="refused"),

    # kind 10: duplicate keys and control characters
    dict(kind=10, name="spec-json-duplicate-key", setup=spec_text('{"means": [[0, 0], [2, 0]], "variance": 0.1, "variance": 5}'), argv=["mixture", "{s}", "--amp-samples", "0"], expect="refused"),
    dict(kind=10, name="spec-yaml-duplicate-key", setup=spec_text("means: [[0, 0], [2, 0]]\nvariance: 0.1\nvariance: 5\n", "s.yaml"), argv=["mixture", "{s}", "--amp-samples", "0"], expect="refused"),
    dict(kind=10, name="spec-toml-duplicate-key", setup=spec_text("means = [[0, 0], [2, 0]]\nvariance = 0.1\nvariance = 5\n", "s.toml"), argv=["mixture", "{s}", "--amp-samples", "0"], expect="refused"),
    dict(kind=10, name="spec-name-newline", setup=spec_named("ring\nforged line"), argv=["mixture", "{s}", "--amp-samples", "0"], expect="refused"),
    dict(kind=10, name="spec-name-escape", setup=spec_named("ring\x1b[2J"), argv=["mixture", "{s}", "--amp-samples", "0"], expect="refused"),
    dict(kind=10, name="spec-name-bidi", setup=spec_named("ring\u202egpj.exe"), argv=["mixture", "{s}", "--amp-samples", "0"], expect="refused"),
    dict(kind=10, name="spec-file-name-newline", setup=spec_file_named, argv=["mixture", "{s}", "--amp-samples", "0"], expect="ok", check=no_forged_line),
    dict(kind=10, name="model-folder-name-newline", setup=model_named, argv=["grid", "--model", M, *FAST], expect="ok", check=no_forged_line),
    dict(kind=10, name="model-config-duplicate-key", setup=dup_model_key, argv=["grid", "--model", M, *FAST], expect="refused"),
    dict(kind=10, name="scheduler-config-duplicate-key", setup=dup_scheduler_config, argv=["grid", "ring8", "--for", "diffusers-euler", "--kind", "uniform", "--scheduler-config", "{sc}"], expect="refused"),
    dict(kind=10, name="fit-name-newline", setup=fit_data, argv=["fit", "{tmp}/d.npy", "--max-components", "2", "--name", "x\nforged line", "-o", "{tmp}/s.yaml"], expect="refused"),
    dict(kind=10, name="fit-stem-newline", setup=fit_data, argv=["fit", "{tmp}/d.npy", "--max-components", "2", "-o", "{tmp}/a\nforged line.yaml"], expect="ok", check=fit_stem_loads_back),
    dict(kind=10, name="spec-yaml-name-escape", setup=spec_text('name: "ring\\e[31mred"\nmeans: [[0, 0], [2, 0]]\nvariance: 0.1\n', "s.yaml"), argv=["mixture", "{s}", "--amp-samples", "0"], expect="refused"),
    dict(kind=10, name="run-grids-duplicate-key", setup=run_damage(_dup_grids), argv=["validate", "--resume", "{run}"], expect="refused"),
    dict(kind=10, name="run-config-duplicate-key", setup=run_damage(dup_run_config), argv=["validate", "--resume", "{run}"], expect="refused"),
]
