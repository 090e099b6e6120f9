"""Battery cases for issue 22, kinds 3, 6, 7, 8 and 9: what the commands compute and print.

3  a network that returns NaN, inf, the wrong shape or dtype, or raises (FILE.py:NAME models)
6  `fit`: empty, corrupt or extreme data, options outside their domain, output formats
7  options that do nothing in the combination given (refused) or whose intent is clear (honoured)
8  reproducibility: every seeded command twice, JSON compared without its timing fields
9  streams and environment: NUMBA_DISABLE_JIT=1, standard output that cannot be written, file names that are
   not UTF-8 under an odd PYTHONIOENCODING

The case format is documented in hostile_battery.py.  Model cases use tiny torch functions (d = 4 or 8) or the
exact mixtures behind `mixture:SPEC`, so each runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# ----------------------------------------------------------------------------- helpers

MODEL = '''\
import math
import torch
import flowcert


def fn(x, s):
{body}


model = flowcert.torch_model(fn, shape=({d},), prediction="sample", name="{name}")
'''


def model_file(body: str, d: int = 4, name: str = "tiny"):
    """setup: a FILE.py:NAME model whose fn(x, s) runs ``body`` (x: (n, d) inputs, s: (n,) sigmas)."""

    def setup(tmp: Path) -> dict:
        (tmp / "m.py").write_text(MODEL.format(body=textwrap.indent(textwrap.dedent(body), "    "), d=d, name=name))
        np_data(tmp, d)
        return {"m": f"{tmp / 'm.py'}:model"}

    return setup


def np_data(tmp: Path, d: int = 4, n: int = 64, name: str = "d.npy", scale: float = 1.0):
    import numpy as np

    np.save(tmp / name, np.random.default_rng(0).normal(size=(n, d)) * scale)
    return str(tmp / name)


def data_setup(d: int = 4, **kw):
    def setup(tmp: Path) -> dict:
        return {"data": np_data(tmp, d, **kw)}

    return setup


def write_setup(name: str, content: bytes):
    def setup(tmp: Path) -> dict:
        (tmp / name).write_bytes(content)
        return {"f": str(tmp / name)}

    return setup


def array_setup(array_fn, name: str = "x.npy"):
    def setup(tmp: Path) -> dict:
        import numpy as np

        np.save(tmp / name, array_fn(np), allow_pickle=True)
        return {"f": str(tmp / name)}

    return setup


def flowcert(argv, tmp, env=None):
    return subprocess.run([sys.executable, "-m", "flowcert.cli", *argv], capture_output=True, cwd=tmp,
                          env=dict(os.environ, **(env or {})), timeout=300)


def drop_timing(obj):
    """The JSON without wall-clock fields (any key naming seconds)."""
    if isinstance(obj, dict):
        return {k: drop_timing(v) for k, v in obj.items() if "second" not in k}
    if isinstance(obj, list):
        return [drop_timing(v) for v in obj]
    return obj


def recorded(setup):
    """setup that also keeps its substitutions in the case folder (for a check that runs the command again)."""

    def run(tmp: Path) -> dict:
        subs = setup(tmp) or {}
        (tmp / ".subs.json").write_text(json.dumps(subs))
        return subs

    return run


def twice(argv, env=None):
    """A reproducibility case: the command runs in the battery, then once more here; both JSON documents must be
    identical but for timing fields."""

    def check(tmp, stdout, stderr):
        subs = {"tmp": str(tmp)}
        if (tmp / ".subs.json").exists():
            subs.update(json.loads((tmp / ".subs.json").read_text()))
        again = flowcert([a.format(**subs) for a in argv], tmp, env)
        if again.returncode != 0:
            return f"second run: exit {again.returncode}: {again.stderr.decode(errors='replace')[-200:]}"
        try:
            a, b = json.loads(stdout), json.loads(again.stdout)
        except ValueError as exc:
            return f"not JSON: {exc}"
        if drop_timing(a) != drop_timing(b):
            diff = [k for k in a if drop_timing(a.get(k)) != drop_timing(b.get(k))]
            return f"the two runs differ in {diff[:6]}"
        return None

    return check


def spec_loads(name: str, env=None):
    """check: the file ``name`` written by fit loads back with `flowcert mixture`."""

    def check(tmp, stdout, stderr):
        path = tmp / name
        if not path.exists():
            return f"{name!r} was not written"
        r = flowcert(["mixture", str(path), "--amp-samples", "0"], tmp, env)
        if r.returncode != 0:
            return f"flowcert mixture {name!r}: exit {r.returncode}: {r.stderr.decode(errors='replace')[-200:]}"
        return None

    return check


def toml_spec(tmp, stdout, stderr):
    import tomllib

    path = tmp / "s.toml"
    if not path.exists():
        return "s.toml was not written"
    try:
        tomllib.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
        return f"s.toml is not TOML: {type(exc).__name__}"
    return spec_loads("s.toml")(tmp, stdout, stderr)


def json_field(**expected):
    """check: the JSON on standard output has these top-level values."""

    def check(tmp, stdout, stderr):
        doc = json.loads(stdout)
        for k, v in expected.items():
            if doc.get(k) != v:
                return f"{k} = {doc.get(k)!r}, expected {v!r}"
        return None

    return check


def tiny_unet(tmp: Path) -> dict:
    import torch
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=4, in_channels=1, out_channels=1, block_out_channels=(8, 8),
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                 norm_num_groups=4, attention_head_dim=4, time_embedding_dim=16)
    sched = diffusers.DDPMScheduler(prediction_type="epsilon", clip_sample=False)
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp / "unet")
    return {"unet": str(tmp / "unet")}


LIP = ["--points", "2", "--empirical", "16", "--threads", "1"]
SMALL_OPT = ["--steps", "2", "--train-samples", "16", "--test-samples", "16", "--teacher-steps", "8", "--threads", "1"]
NOJIT = {"NUMBA_DISABLE_JIT": "1"}
NAN_BELOW = """\
out = 0.5 * x
return torch.where(s[:, None] < {s}, torch.full_like(out, float("{v}")), out)
"""

NAN_BETWEEN = """\
out = 0.5 * x
return torch.where(((s > 1) & (s < 2))[:, None], torch.full_like(out, float("nan")), out)
"""

CASES: list[dict] = []

# ----------------------------------------------------------------------------- kind 3: a network that misbehaves
CASES += [
    dict(kind=3, name="k3-lipschitz-nan-everywhere", setup=model_file('return x * float("nan")'),
         argv=["lipschitz", "--model", "{m}", *LIP], expect="refused"),
    dict(kind=3, name="k3-lipschitz-inf-at-small-sigma", setup=model_file(NAN_BELOW.format(s=0.05, v="inf")),
         argv=["lipschitz", "--model", "{m}", *LIP], expect="refused"),
    dict(kind=3, name="k3-lipschitz-wrong-shape", setup=model_file("return torch.cat([x, x[:, :1]], 1) * 0.5"),
         argv=["lipschitz", "--model", "{m}", *LIP], expect="refused"),
    dict(kind=3, name="k3-lipschitz-ignores-batch", setup=model_file("return 0.5 * x[:1]"),
         argv=["lipschitz", "--model", "{m}", *LIP, "--data", "{tmp}/d.npy"], expect="refused"),
    dict(kind=3, name="k3-lipschitz-integer-dtype", setup=model_file("return (4 * x).round().to(torch.int64)"),
         argv=["lipschitz", "--model", "{m}", *LIP], expect="refused"),
    dict(kind=3, name="k3-lipschitz-raises", setup=model_file('raise RuntimeError("CUDA error: device-side assert")'),
         argv=["lipschitz", "--model", "{m}", *LIP], expect="refused"),
    dict(kind=3, name="k3-lipschitz-returns-none", setup=model_file("return None"),
         argv=["lipschitz", "--model", "{m}", *LIP], expect="refused"),
    dict(kind=3, name="k3-lipschitz-jacobian-overflows", setup=model_file("return x * 1e30"),
         argv=["lipschitz", "--model", "{m}", *LIP, "--data", "{tmp}/d.npy"], expect="refused"),
    dict(kind=3, name="k3-grid-optimal-nan-at-small-sigma", setup=model_file(NAN_BELOW.format(s=0.05, v="nan")),
         argv=["grid", "--model", "{m}", "--kind", "optimal", "--solver", "euler", *SMALL_OPT], expect="refused"),
    dict(kind=3, name="k3-grid-balanced-wrong-shape", setup=model_file("return 0.5 * x.reshape(-1)[: x.shape[0]]"),
         argv=["grid", "--model", "{m}", "--samples", "16", "--threads", "1"], expect="refused"),
    dict(kind=3, name="k3-grid-export-complex", setup=model_file("return (0.5 * x).to(torch.complex64)"),
         argv=["grid", "--model", "{m}", "--for", "k-diffusion", *SMALL_OPT], expect="refused"),
    dict(kind=3, name="k3-solvers-nan-between-1-and-2", setup=model_file(NAN_BETWEEN),
         argv=["solvers", "--model", "{m}", "--steps", "2", "--samples", "16", "--train-samples", "16",
               "--teacher-steps", "8", "--threads", "1"], expect="refused"),
    dict(kind=3, name="k3-solvers-raises-on-large-batch",
         setup=model_file('if x.shape[0] > 8:\n    raise ValueError("batch too large")\nreturn 0.5 * x'),
         argv=["solvers", "--model", "{m}", "--steps", "2", "--samples", "16", "--train-samples", "16",
               "--teacher-steps", "8", "--threads", "1"], expect="refused"),
]

# ----------------------------------------------------------------------------- kind 6: fit
CASES += [
    dict(kind=6, name="k6-zero-rows", setup=array_setup(lambda np: np.zeros((0, 3))),
         argv=["fit", "{f}", "--max-components", "2"], expect="refused"),
    dict(kind=6, name="k6-empty-npy-file", setup=write_setup("x.npy", b""),
         argv=["fit", "{f}", "--max-components", "2"], expect="refused"),
    dict(kind=6, name="k6-header-corrupt-npy",
         setup=write_setup("x.npy", b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f8', 'shape': (3," + b" " * 20 + b"\n"),
         argv=["fit", "{f}", "--max-components", "2"], expect="refused"),
    dict(kind=6, name="k6-header-claims-huge-shape",
         setup=write_setup("x.npy", b"\x93NUMPY\x01\x00\x76\x00"
                           + b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 3), }".ljust(117)
                           + b"\n" + b"\x00" * 64),
         argv=["fit", "{f}", "--max-components", "2"], expect="refused"),
    dict(kind=6, name="k6-object-array-npy", setup=array_setup(lambda np: np.array([[1, "a"], [2, None]], dtype=object)),
         argv=["fit", "{f}", "--max-components", "2"], expect="refused"),
    dict(kind=6, name="k6-huge-values", setup=array_setup(lambda np: np.random.default_rng(0).normal(size=(50, 2)) * 1e300),
         argv=["fit", "{f}", "--max-components", "2"], expect="refused"),
    dict(kind=6, name="k6-huge-spread-unloadable-spec",
         setup=array_setup(lambda np: np.random.default_rng(0).normal(size=(50, 2)) * 1e9),
         argv=["fit", "{f}", "--max-components", "2", "-o", "s.yaml"], expect="refused"),
    dict(kind=6, name="k6-seed-negative", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "2", "--seed", "-1"], expect="refused"),
    dict(kind=6, name="k6-reg-covar-tiny-constant-data", setup=array_setup(lambda np: np.ones((40, 2))),
         argv=["fit", "{f}", "--max-components", "2", "--reg-covar", "1e-12", "-o", "s.yaml"], expect="refused"),
    dict(kind=6, name="k6-reg-covar-huge", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "2", "--reg-covar", "1e30", "-o", "s.yaml"], expect="refused"),
    dict(kind=6, name="k6-max-components-zero", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "0"], expect="refused"),
    dict(kind=6, name="k6-name-300-characters", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "2", "--name", "n" * 300, "-o", "s.yaml"], expect="refused"),
    dict(kind=6, name="k6-unknown-extension", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "2", "-o", "s.txt"], expect="refused"),
    dict(kind=6, name="k6-fifo-data", setup=lambda tmp: (os.mkfifo(tmp / "x.npy"), {"f": str(tmp / "x.npy")})[1],
         argv=["fit", "{f}", "--max-components", "2"], expect="refused"),
    dict(kind=6, name="k6-toml-output-is-toml", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "2", "-o", "s.toml"], expect="ok", check=toml_spec),
    dict(kind=6, name="k6-constant-data-loads-back", setup=array_setup(lambda np: np.ones((40, 3))),
         argv=["fit", "{f}", "--max-components", "2", "-o", "s.json"], expect="ok", check=spec_loads("s.json")),
    dict(kind=6, name="k6-yaml-loads-back", setup=data_setup(3),
         argv=["fit", "{data}", "--max-components", "3", "--covariance", "auto", "-o", "s.yml"], expect="ok",
         check=spec_loads("s.yml")),
]

# ----------------------------------------------------------------------------- kind 7: options that do nothing
CASES += [
    dict(kind=7, name="k7-grid-bound-empirical-for-preset-model", setup=data_setup(1),
         argv=["grid", "--model", "mixture:line2", "--steps", "4", "--bound", "empirical", "--data", "{data}",
               "--for", "k-diffusion", "--samples", "16", "--threads", "1", "--format", "json"],
         expect="ok", check=json_field(kind="balanced", bound="empirical")),
    dict(kind=7, name="k7-grid-bound-sharp-for-preset-mixture",
         argv=["grid", "ring8", "--steps", "4", "--bound", "sharp", "--for", "k-diffusion", "--format", "json"],
         expect="ok", check=json_field(kind="balanced", bound="sharp")),
    dict(kind=7, name="k7-grid-shift-without-preset", argv=["grid", "ring8", "--shift", "3"], expect="refused"),
    dict(kind=7, name="k7-grid-shift-with-euler-preset", argv=["grid", "ring8", "--kind", "logsnr", "--for",
                                                               "k-diffusion", "--shift", "3"], expect="refused"),
    dict(kind=7, name="k7-grid-solver-with-balanced", argv=["grid", "ring8", "--kind", "balanced", "--solver",
                                                            "heun"], expect="refused"),
    dict(kind=7, name="k7-grid-seed-with-tri", argv=["grid", "ring8", "--seed", "3"], expect="refused"),
    dict(kind=7, name="k7-grid-units-with-preset", argv=["grid", "ring8", "--kind", "edm", "--units", "sigma",
                                                         "--for", "k-diffusion"], expect="refused"),
    dict(kind=7, name="k7-grid-model-data-with-closed-form", setup=data_setup(1),
         argv=["grid", "--model", "mixture:line2", "--kind", "edm", "--data", "{data}"], expect="refused"),
    dict(kind=7, name="k7-lipschitz-iters-without-model", argv=["lipschitz", "ring8", "--iters", "5"],
         expect="refused"),
    dict(kind=7, name="k7-lipschitz-bound-with-model",
         argv=["lipschitz", "--model", "mixture:line2", "--bound", "tri", "--points", "2", "--empirical", "16"],
         expect="refused"),
    dict(kind=7, name="k7-lipschitz-latex-with-output", argv=["lipschitz", "ring8", "--latex", "-o", "x.txt"],
         expect="refused"),
    dict(kind=7, name="k7-solvers-data-without-model", setup=data_setup(2),
         argv=["solvers", "ring8", "--data", "{data}", "--steps", "2"], expect="refused"),
    dict(kind=7, name="k7-solvers-teacher-steps-without-model",
         argv=["solvers", "ring8", "--teacher-steps", "8", "--steps", "2"], expect="refused"),
    dict(kind=7, name="k7-solvers-model-random",
         argv=["solvers", "--model", "mixture:line2", "--random", "2", "--steps", "2"], expect="refused"),
    dict(kind=7, name="k7-mixture-seed-without-samples", argv=["mixture", "ring8", "--amp-samples", "0", "--seed",
                                                               "4"], expect="refused"),
    dict(kind=7, name="k7-certify-times-with-fixed-t", argv=["certify", "ring8", "--eps", "1e-2", "--t", "0.5",
                                                             "--times", "3"], expect="refused"),
    dict(kind=7, name="k7-fit-name-without-output", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "2", "--name", "x"], expect="refused"),
    dict(kind=7, name="k7-validate-workers-with-local",
         argv=["validate", "line2", "--executor", "local", "--workers", "2", "--out", "run"], expect="refused"),
]

# ----------------------------------------------------------------------------- kind 8: reproducibility
_REPRO = [
    ("k8-lipschitz-model-modes8d", ["lipschitz", "--model", "mixture:modes8d", "--points", "3", "--empirical", "16",
                                    "--iters", "3", "--seed", "5", "--threads", "1", "--format", "json"], None),
    ("k8-lipschitz-model-unet", ["lipschitz", "--model", "{unet}", "--points", "2", "--empirical", "8", "--iters", "4",
                                 "--seed", "1", "--threads", "1", "--format", "json"], tiny_unet),
    ("k8-grid-balanced-model", ["grid", "--model", "mixture:modes8d", "--steps", "4", "--samples", "16", "--seed", "2",
                                "--threads", "1", "--format", "json"], None),
    ("k8-grid-optimal-model", ["grid", "--model", "mixture:modes8d", "--kind", "optimal", "--solver", "heun",
                               *SMALL_OPT, "--seed", "3", "--format", "json"], None),
    ("k8-grid-export-model", ["grid", "--model", "mixture:modes8d", "--for", "diffusers-euler", *SMALL_OPT,
                              "--format", "json"], None),
    ("k8-solvers-model", ["solvers", "--model", "mixture:modes8d", "--steps", "2", "--samples", "16",
                          "--train-samples", "16", "--teacher-steps", "8", "--threads", "1", "--format", "json"], None),
    ("k8-lipschitz-empirical-mixture", ["lipschitz", "ring8", "--points", "4", "--empirical", "2000", "--seed", "7",
                                        "--format", "json"], None),
    ("k8-mixture-amp-samples", ["mixture", "ring8", "--amp-samples", "16", "--seed", "3", "--format", "json"], None),
    ("k8-certify-verify", ["certify", "ring8", "--eps", "1e-2", "--t", "0.5", "--verify", "2000", "--seed", "2",
                           "--format", "json"], None),
    ("k8-grid-optimal-mixture", ["grid", "ring8", "--kind", "optimal", "--solver", "dpmpp_2m", "--steps", "3",
                                 "--train-samples", "64", "--test-samples", "64", "--seed", "4", "--format", "json"],
     None),
    ("k8-solvers-mixture", ["solvers", "line2", "--steps", "2", "--samples", "64", "--train-samples", "32",
                            "--effort", "0.05", "--seed", "6", "--format", "json"], None),
]
for name, argv, setup in _REPRO:
    CASES.append(dict(kind=8, name=name, setup=recorded(setup) if setup else None, argv=argv, expect="ok",
                      check=twice(argv)))

# ----------------------------------------------------------------------------- kind 9: streams and environment
CASES += [
    dict(kind=9, name="k9-nojit-grid-optimal", env=NOJIT, expect="ok",
         argv=["grid", "ring8", "--kind", "optimal", "--solver", "euler", "--steps", "2", "--train-samples", "16",
               "--test-samples", "16", "--effort", "0.05"]),
    dict(kind=9, name="k9-nojit-lipschitz-empirical", env=NOJIT, expect="ok",
         argv=["lipschitz", "ring8", "--points", "3", "--empirical", "200"]),
    dict(kind=9, name="k9-nojit-mixture-amp-samples", env=NOJIT, expect="ok",
         argv=["mixture", "ring8", "--amp-samples", "4"]),
    dict(kind=9, name="k9-nojit-solvers", env=NOJIT, expect="ok",
         argv=["solvers", "line2", "--steps", "2", "--samples", "32", "--train-samples", "16", "--effort", "0.05"]),
    dict(kind=9, name="k9-nojit-certify-verify", env=NOJIT, expect="ok",
         argv=["certify", "ring8", "--eps", "1e-2", "--t", "0.5", "--verify", "100"]),
    dict(kind=9, name="k9-stdout-dev-full-grid", stdout="/dev/full", expect="refused", argv=["grid", "ring8"]),
    dict(kind=9, name="k9-stdout-dev-full-mixture-json", stdout="/dev/full", expect="refused",
         argv=["mixture", "ring8", "--amp-samples", "0", "--format", "json"]),
    dict(kind=9, name="k9-stdout-dev-full-fit", stdout="/dev/full", expect="refused", setup=data_setup(2),
         argv=["fit", "{data}", "--max-components", "2"]),
    dict(kind=9, name="k9-latin1-strict-non-utf8-output-name", env={"PYTHONIOENCODING": "latin-1:strict"},
         setup=data_setup(2), argv=["fit", "{data}", "--max-components", "2", "-o", "caf\udce9.yaml"], expect="ok",
         check=spec_loads("caf\udce9.yaml")),
    dict(kind=9, name="k9-utf8-strict-non-utf8-output-name", env={"PYTHONIOENCODING": "utf-8:strict"},
         setup=data_setup(2), argv=["fit", "{data}", "--max-components", "2", "-o", "\udcff.json"], expect="ok",
         check=spec_loads("\udcff.json")),
    dict(kind=9, name="k9-ascii-non-utf8-missing-spec", env={"PYTHONIOENCODING": "ascii"},
         argv=["mixture", "caf\udce9.yaml"], expect="refused"),
    dict(kind=9, name="k9-ascii-strict-grid-to-non-utf8-file", env={"PYTHONIOENCODING": "ascii:strict"},
         argv=["grid", "ring8", "-o", "\udcff.json"], expect="ok"),
    dict(kind=9, name="k9-validate-ray-unstartable", env={"RAY_TMPDIR": "/dev/null"}, expect="refused",
         argv=["validate", "line2", "--steps", "1", "--grids", "uniform", "--seeds", "1", "--train-samples", "64",
               "--test-samples", "32", "--iters", "5", "--amp-times", "1", "--amp-samples", "8", "--lip-samples", "4",
               "--executor", "ray", "--quiet", "--out", "run"]),
    dict(kind=9, name="k9-validate-ray-unreachable-address", expect="refused",
         argv=["validate", "line2", "--steps", "1", "--grids", "uniform", "--seeds", "1", "--train-samples", "64",
               "--test-samples", "32", "--iters", "5", "--amp-times", "1", "--amp-samples", "8", "--lip-samples", "4",
               "--executor", "ray", "--ray-address", "127.0.0.1:9", "--quiet",
               "--out", "run"]),
]
