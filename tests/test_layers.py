"""Layers import downward only (import-linter contract in pyproject.toml); private names stay private."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("numcore", "bounds", "exports", "models", "studies", "distill", "examples", "examples/digits", "examples/digits_flow")


def test_import_linter_contract_holds():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    r = subprocess.run([exe, "--no-cache", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


def test_the_contract_names_every_module_and_the_layer_order():
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    assert conf["layers"] == ["flowcert.cli", "flowcert.render", "flowcert.api", "flowcert.examples",
                              "flowcert.distill", "flowcert.studies", "flowcert.models", "flowcert.exports",
                              "flowcert.bounds", "flowcert.numcore"]


def modules():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).glob("*.py"))
    yield from (ROOT / n for n in ("__init__.py", "api.py", "cli.py", "render.py"))


def test_no_module_imports_a_private_name_of_another():
    bad = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    generated = "_generated" in (alias.name, (node.module or "").split(".")[-1])
                    if alias.name.startswith("_") and not generated:
                        bad.append(f"{path.relative_to(ROOT)}: from {'.' * node.level}{node.module} import {alias.name}")
    assert bad == []


def test_imports_inside_the_packages_are_relative():
    absolute = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in (
                    *PACKAGES, "flowcert", "cli", "api", "render"):
                absolute.append(f"{path.relative_to(ROOT)}: from {node.module}")
            if isinstance(node, ast.Import):
                absolute += [f"{path.relative_to(ROOT)}: import {a.name}" for a in node.names
                             if a.name.split(".")[0] in (*PACKAGES, "flowcert")]
    assert absolute == []


def test_no_two_modules_share_a_name():
    names = [p.stem for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py") if p.stem != "__init__"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_cli_command_bodies_are_thin():
    """Each command parses, calls one library function and renders: no body over about 40 lines."""
    tree = ast.parse((ROOT / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.endswith("_cmd"):
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
            assert node.end_lineno - body[0].lineno + 1 <= 40, node.name
