"""The installed package: one name in site-packages, a small public API, torch optional, editable installs."""

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import flowcert

ROOT = Path(__file__).resolve().parents[1]
API = ["load_mixture", "describe", "lipschitz", "lipschitz_report", "stability", "grid", "export", "certify",
       "solvers", "validate", "load_model", "torch_model", "model_lipschitz", "model_grid", "model_solvers", "fit",
       "train_example", "InputError"]


def run_python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, **kw)


def test_api_is_documented_and_cheap_to_import():
    assert sorted(set(API) - set(flowcert.__all__)) == []
    for name in API:
        obj = getattr(flowcert, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 40, name
        if callable(obj) and name != "InputError":
            assert "Raises" in obj.__doc__ or "raise" in obj.__doc__.lower(), name
    r = run_python("import sys, flowcert; heavy = [m for m in ('torch', 'numba', 'sympy', 'diffusers', 'matplotlib') "
                   "if m in sys.modules]; print(heavy)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert flowcert.__version__ == version("flowcert")
    r = subprocess.run([sys.executable, "-m", "flowcert.cli", "--version"], capture_output=True, text=True)
    assert r.stdout.strip().endswith(flowcert.__version__)


def test_the_wheel_holds_only_flowcert(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob("flowcert-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"flowcert"}
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("flowcert/__init__.py", "flowcert/api.py", "flowcert/cli.py", "flowcert/numcore/kernels.py",
                   "flowcert/bounds/_generated.py", "flowcert/distill/teacher.py"):
        assert module in names
    assert not any(n.startswith(("flowcert/tests/", "flowcert/benchmarks/", "flowcert/docs/")) for n in names)
    for shipped in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                    "scheduler/scheduler_config.json", "data/train.npy", "data/test.npy"):
        assert f"flowcert/examples/digits/assets/{shipped}" in names, shipped
    for shipped in ("model_index.json", "training.json", "classifier.npz", "unet/config.json", "unet/flowcert.json",
                    "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json", "data/train.npy",
                    "data/test.npy", "data/train_labels.npy", "data/test_labels.npy"):
        assert f"flowcert/examples/digits_flow/assets/{shipped}" in names, shipped
    assert not any(n.endswith("checkpoint.pt") for n in names)


def test_an_editable_install_imports_the_source_tree(tmp_path):
    """pip install -e maps flowcert to the repository root (its finder is put first, ahead of the
    regular install this test run uses)."""
    prefix = tmp_path / "prefix"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--ignore-installed", "-e",
                    str(ROOT), "--prefix", str(prefix)], check=True, capture_output=True, timeout=300)
    sitedir, = prefix.glob("lib/python*/site-packages")
    code = (f"import site, sys; before = list(sys.meta_path); site.addsitedir({str(sitedir)!r}); "
            "new = [f for f in sys.meta_path if f not in before]; "
            "[sys.meta_path.remove(f) for f in new]; sys.meta_path[:0] = new; "
            "import flowcert, flowcert.numcore.mixture, flowcert.cli; "
            "print(flowcert.__file__); print(flowcert.numcore.mixture.__file__); "
            "print(flowcert.grid('ring8', 2)['t'][1])")
    r = run_python(code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    init, mixture, node = r.stdout.split()
    assert Path(init) == ROOT / "__init__.py" and Path(mixture) == ROOT / "numcore" / "mixture.py"
    assert float(node) == pytest.approx(flowcert.grid("ring8", 2)["t"][1], rel=1e-15)


def test_api_matches_the_cli_json():
    import json

    from click.testing import CliRunner

    from flowcert.cli import main

    r = CliRunner().invoke(main, ["grid", "ring8", "--steps", "6", "--units", "sigma", "--format", "json"])
    cli = json.loads(r.output)
    g = flowcert.grid("ring8", 6, units=("t", "sigma"))
    np.testing.assert_array_equal(cli["t"], g["t"])
    np.testing.assert_array_equal(cli["sigma"], g["sigma"])
    ex = flowcert.export(g["t"], "k-diffusion")
    assert ex.values[-1] == 0.0 and ex.values.size == 8
    rep = flowcert.lipschitz_report("ring8", bounds=["tri", "sharp"], points=7)
    np.testing.assert_array_equal(flowcert.lipschitz("ring8", rep["t"].reshape(7, 1), "sharp").ravel(), rep["sharp"])
    assert flowcert.stability("ring8", "tri").integral.total == pytest.approx(cli["lambda_T"], rel=1e-14)


def test_api_errors_name_the_parameter():
    for call, name in ((lambda: flowcert.grid("ring8", 0), "`steps`"),
                       (lambda: flowcert.grid("ring8", 4, delta=2.0, T=1.0), "`delta`"),
                       (lambda: flowcert.lipschitz("ring8", [0.1], bound="loose"), "`bound`"),
                       (lambda: flowcert.export([1.0, 0.5], "nope"), "`preset`"),
                       (lambda: flowcert.certify("ring8", 0.0, t=0.1), "`eps`")):
        with pytest.raises(flowcert.InputError) as info:
            call()
        assert str(info.value).startswith(name) and info.value.param == name.strip("`")


# torch made unimportable (an import hook, so that libraries probing sys.modules for torch see no torch at all)
NO_TORCH = ("import sys, importlib.abc\n"
            "class NoTorch(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('No module named torch')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from flowcert.cli import main\n")


def test_without_torch_the_torch_commands_say_what_to_install():
    r = run_python(NO_TORCH + "main(['validate', 'ring8', '--steps', '4'])")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'flowcert[torch]'" in lines[0], r.stderr
    for args in (["lipschitz", "--model", "digits"], ["grid", "--model", "mixture:ring8"],
                 ["train-example", "digits", "--steps", "1"]):
        r = run_python(NO_TORCH + f"main({args!r})")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'flowcert[torch]'" in lines[0], r.stderr
    r = run_python("import sys; sys.modules['sklearn'] = None\nfrom flowcert.cli import main\n"
                   "main(['fit', 'x.npy'])")
    assert r.returncode == 2 and "pip install scikit-learn" in r.stderr, r.stderr
    r = run_python(NO_TORCH + "main(['solvers', 'line2', '--steps', '2', '--samples', '64', '--train-samples', '32'])")
    assert r.returncode == 0, r.stderr  # the solver study needs no torch
    r = run_python(NO_TORCH + "main(['grid', 'ring8', '--steps', '4', '--for', 'k-diffusion', '--train-samples', '256'])")
    assert r.returncode == 0, r.stderr  # nor the winning export
