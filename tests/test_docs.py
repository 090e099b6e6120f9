"""The documentation builds (mkdocs --strict: a broken link, anchor or API reference fails), README stays short
and opens with the commands CI runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_is_strict_and_renders_the_api(tmp_path):
    # python -m mkdocs, not the console script: run as a script, mkdocs puts its bin folder first on sys.path,
    # where griffe takes the `flowcert` console script for a namespace package and renders an empty API page
    # (with an editable install, which has no flowcert folder in site-packages)
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    import flowcert

    for name in flowcert.__all__:
        if name != "__version__":
            assert f'id="flowcert.{name}"' in api, name


def test_readme_is_short_and_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    install_demo, tests = (line.split("#")[0].strip() for line in block[:2])
    assert install_demo == "pip install . && flowcert demo"
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), (tests, ci)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_docs_speak_of_the_project_alone(page):
    text = (ROOT / "docs" / page).read_text()
    assert "../shared" not in text and "THEORY.md" not in text
