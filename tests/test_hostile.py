"""The hostile-input battery: bad input over every command ends with one `Error:` line and exit
status 2, or gives a correct, honest result; faults (full disk, kills, planted links, damaged run
folders, a second process) leave nothing wrong behind.

Every input quoted in the issue that led to this battery is here, one case each, next to cases of
the same kind.  The whole file runs in well under a minute on a warm numba cache.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from flowcert.cli import main

SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(r, *words):
    """Exit status 2 and exactly one line `Error: ...` on stderr containing ``words``."""
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, (r.exit_code, r.stderr, r.stdout[-300:])
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "internal error" not in lines[0], lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def strict_json(text):
    """json.loads that rejects NaN and Infinity (what strict parsers do)."""
    def bad(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spec_file(folder, name, spec) -> str:
    path = folder / name
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return str(path)


# ============================================================================= 1, 3, 5: reading input
def test_fifo_spec_is_refused_without_blocking(here):
    os.mkfifo("spec.yaml")
    refused(cli("mixture", "spec.yaml"), "spec.yaml", "FIFO")


def test_link_to_dev_zero_is_refused(here):
    os.symlink("/dev/zero", "zero.json")
    refused(cli("mixture", "zero.json"), "zero.json", "device")


def yaml_bomb(levels: int = 9, fan: int = 10) -> str:
    """Nested anchors in `means`: &b0 [1, 1, ...], then [*b0, *b0, ...] nine levels deep."""
    inner = "&b0 [" + ", ".join(["1"] * fan) + "]"
    for i in range(1, levels):
        inner = f"&b{i} [{inner}" + f", *b{i - 1}" * (fan - 1) + "]"
    return f"means: [{inner}" + f", *b{levels - 1}" * (fan - 1) + "]\nvariance: 1\n"


def test_yaml_alias_bomb_is_refused_before_any_array(here):
    import tracemalloc

    path = spec_file(here, "bomb.yaml", yaml_bomb())
    assert os.path.getsize(path) < 600
    tracemalloc.start()
    line = refused(cli("mixture", path), "bomb.yaml", "expands to more than")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20, peak  # the 1e9-entry list was never built
    assert "1e9" not in line


def test_recursive_yaml_alias_is_refused(here):
    refused(cli("mixture", spec_file(here, "rec.yaml", "means: &a [*a]\nvariance: 1\n")), "recursive")


def test_file_over_the_size_limit_is_refused_after_limit_plus_one_bytes(here):
    from flowcert.numcore.mixture import MAX_FILE_BYTES

    with open("big.json", "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 10)
    refused(cli("mixture", "big.json"), "big.json", f"larger than {MAX_FILE_BYTES} bytes")


def test_read_bounded_reads_at_most_limit_plus_one(here, monkeypatch):
    from flowcert.numcore import io as fio

    (here / "f.json").write_bytes(b"x" * 1000)
    asked = []
    real_read = os.read
    monkeypatch.setattr(fio.os, "read", lambda fd, n: asked.append(n) or real_read(fd, n))
    with pytest.raises(fio.InputError, match="larger than 100 bytes"):
        fio.read_bounded("f.json", "file", 100)
    assert sum(asked) <= 101


@pytest.mark.parametrize("spec, words", [
    ({"means": [[True, False], [False, True]], "variance": 0.1}, ("means[0][0]", "boolean")),
    ({"means": "[[1, 0], [0, 1]]", "variance": 0.1}, ("means is a string",)),
    ({"means": [["1", "0"], ["0", "1"]], "variance": 0.1}, ("means[0][0]", "string")),
    ({"means": [[1, 0], [0, 1]], "variance": "0.1"}, ("variance is a string",)),
    ({"means": [[1, 0], [0, None]], "variance": 0.1}, ("means[1][1]", "null")),
    ({"means": [[1, 0], [0]], "variance": 0.1}, ("rectangular",)),
    ({"means": [[1, 0], [0, 1]], "weights": [True, 0.5], "variance": 0.1}, ("weights[0]", "boolean")),
    ({"means": [[1, 0], [0, 1]], "cov": [[1, 0], [0, "1"]]}, ("cov[1][1]", "string")),
    ({"means": [[1, 0], [0, 1]], "variance": 0.1, "name": [1, 2]}, ("name is a list",)),
], ids=["bools", "json-string", "string-entries", "string-variance", "null", "ragged", "bool-weight",
        "string-cov", "name-list"])
def test_spec_fields_hold_numbers_only(here, spec, words):
    refused(cli("mixture", spec_file(here, "m.json", spec)), *words)


def test_integer_beyond_float64_and_nan_are_refused(here):
    refused(cli("mixture", spec_file(here, "i.json", '{"means": [[1' + "0" * 400 + ', 0]], "variance": 1}')),
            "float64")
    refused(cli("mixture", spec_file(here, "n.json", '{"means": [[NaN, 0], [0, 1]], "variance": 1}')), "finite")


@pytest.mark.parametrize("name, text", [
    ("secret.json", f"API_KEY={SECRET}\npassword=hunter2\n"),
    ("secret.yaml", f"API_KEY: [{SECRET}\npassword: hunter2\n"),
    ("secret2.yaml", f"{SECRET} hunter2\n"),
    ("secret.toml", f"key = {SECRET} hunter2\n"),
    ("secret3.yaml", f"{SECRET}: 1\nmeans: [[0]]\nvariance: 1\n"),
    ("secret4.json", json.dumps({"means": SECRET, "variance": 1})),
    ("secret5.yaml", f"means: *{SECRET}\n"),
])
def test_errors_never_echo_file_content(here, name, text):
    line = refused(cli("mixture", spec_file(here, name, text)), name)
    assert SECRET[:10] not in line and "hunter2" not in line


# ============================================================================= 2: values that overflow later
@pytest.mark.parametrize("spec, command", [
    ({"means": [[1e154, 0], [0, 1]], "variance": 0.01}, "mixture"),
    ({"means": [[1e300, 0], [0, 1]], "variance": 0.01}, "grid"),
    ({"means": [[0, 0], [0, 1]], "variance": 1e300}, "solvers"),
    ({"means": [[0, 0], [0, 1]], "cov": [[1e300, 0], [0, 1]]}, "lipschitz"),
], ids=["means-1e154", "means-1e300", "variance-1e300", "cov-1e300"])
def test_values_that_would_overflow_are_refused_at_load(here, spec, command):
    refused(cli(command, spec_file(here, "big.json", spec)), "magnitude", "expected at most")


LIMITS = [
    {"means": [[1e12, -1e12], [-1e12, 1e12]], "variance": 1e-8},
    {"means": [[1e12, 0], [-1e12, 1]], "variance": 1e12},
    {"means": [[0, 0], [3, 0]], "cov": [[1e12, 0], [0, 1e-8]]},
    {"weights": [1e-300, 1], "means": [[0, 0], [3, 0]], "variance": 0.1},
]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("spec", LIMITS, ids=["tiny-variance", "huge-variance", "anisotropic", "tiny-weight"])
def test_largest_accepted_values_run_without_warnings(here, spec):
    path = spec_file(here, "lim.json", spec)
    for args in (("mixture", path), ("lipschitz", path, "--points", 4, "--empirical", 64),
                 ("grid", path, "--kind", "edm", "--units", "sigma,logsnr", "--format", "json")):
        r = cli(*args)
        assert r.exit_code == 0 and "Warning" not in r.stderr, (args, r.stderr)


# ============================================================================= 4: options
@pytest.mark.parametrize("args, words", [
    (("grid", "ring8", "--seed", -1), ("--seed = -1", ">= 0")),
    (("grid", "ring8", "--bound", "empirical", "--seed", -1), ("--seed",)),
    (("lipschitz", "ring8", "--seed", -1), ("--seed",)),
    (("lipschitz", "ring8", "--empirical", 10, "--seed", -1), ("--seed",)),
    (("certify", "ring8", "--eps", 1e-2, "--t", 0.1, "--seed", -1), ("--seed",)),
    (("solvers", "ring8", "--seed", -1), ("--seed",)),
    (("grid", "ring8", "--seed", 2**70), ("--seed", "<=")),
    (("certify", "ring8", "--eps", 1e-2, "--t", 0.1, "--sweep", "eps=1e-300:1e300"), ("--sweep", "601 values")),
    (("certify", "ring8", "--eps", 1e-2, "--t", 0.1, "--sweep", "eps=1e-3:1e-5:0"), ("--sweep",)),
    (("solvers", "ring8", "--delta", 1e-300), ("--delta = 1e-300", ">= 1e-10")),
    (("validate", "ring8", "--delta", 1e-300), ("--delta",)),
    (("mixture", "ring8", "--T", 1e300), ("--T",)),
    (("certify", "ring8", "--eps", 1e-2, "--t", 0.1, "--verify", 1), ("--verify = 1",)),
    (("certify", "ring8", "--eps", 1e-2, "--t", 0.1, "--p", 65), ("--p",)),
    (("certify", "ring8", "--eps", 1e-300, "--t", 0.1), ("--eps", "float64 does not resolve")),
    (("lipschitz", "ring8", "--points", 1), ("--points",)),
    (("lipschitz", "ring8", "--ball-mass", 1.0), ("--ball-mass",)),
    (("grid", "ring8", "--steps", 0), ("--steps",)),
    (("grid", "ring8", "--bound", "empirical", "--samples", 10**9), ("--samples",)),
    (("solvers", "ring8", "--steps", "4,x"), ("--steps",)),
    (("validate", "ring8", "--seed", -1), ("--seed",)),
    (("validate", "ring8", "--workers", 0, "--executor", "process"), ("--workers",)),
    (("validate", "ring8", "--steps", "0,-5"), ("--steps",)),
])
def test_option_domains_checked_before_work(here, args, words):
    refused(cli(*args), *words)


def test_every_option_domain_lives_in_one_table():
    from flowcert.numcore.checks import OPTIONS, InputError, option

    for key, domain in OPTIONS.items():
        name = key.rsplit(".", 1)[-1]
        if domain.low is not None:
            bad = domain.low - 1 if domain.kind == "integer" else \
                domain.low if domain.low_open else domain.low - abs(domain.low) - 1
            with pytest.raises(InputError, match=f"`{name}`"):
                option(key, bad)
        if domain.high is not None:
            with pytest.raises(InputError, match=f"`{name}`"):
                option(key, domain.high + max(1.0, abs(domain.high) * 1e-9))  # beyond it also at float32's max
        with pytest.raises(InputError, match=f"`{name}`"):
            option(key, True)


# ============================================================================= 6: sizes and memory
def wide_spec(folder, K, d, name):
    means = np.random.default_rng(0).normal(size=(K, d)).round(3)
    return spec_file(folder, name, {"means": means.tolist(), "variance": 0.5})


def test_solvers_at_d1024_refused_with_estimate(here):
    line = refused(cli("solvers", wide_spec(here, 2, 1024, "w.json"), "--samples", 1000000),
                   "--samples = 1000000", "GiB", "FLOWCERT_MEMORY_GB", "expected at most")
    assert float(line.split("needs about ")[1].split(" GiB")[0]) > 4


def test_validate_at_d1024_refused_with_estimate(here):
    refused(cli("validate", wide_spec(here, 2, 1024, "w.json"), "--out", "v"), "GiB", "budget")


def test_memory_budget_is_configurable(here, monkeypatch):
    monkeypatch.setenv("FLOWCERT_MEMORY_GB", "lots")
    refused(cli("solvers", "ring8", "--samples", 100), "FLOWCERT_MEMORY_GB")


@pytest.fixture(scope="module")
def spec1024(tmp_path_factory):
    return wide_spec(tmp_path_factory.mktemp("k1024"), 1024, 1024, "k1024.json")


def test_certify_at_K_d_1024_sizes_in_bounded_memory_and_network_refused(spec1024):
    import tracemalloc

    tracemalloc.start()
    line = refused(cli("certify", spec1024, "--eps", 1e-2, "--t", 0.5, "--verify", 10),
                   "--verify", "building the network", "GiB")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**30, peak  # was K x d x d = 8 GiB of matrices before the refusal
    assert "params" in line


def test_brute_force_statistics_are_chunked(monkeypatch):
    """jacobian_stats in chunks equals the numpy oracle on the same draws, and its memory does not
    grow with n."""
    import tracemalloc

    from flowcert.numcore import empirical
    from flowcert.numcore.marginal import jacobian_spectrum, sample
    from flowcert.numcore.mixture import builtin

    mix = builtin("ring8")
    monkeypatch.setattr(empirical, "CHUNK_FLOATS", 64)  # 32 points of d = 2 per chunk
    got = empirical.jacobian_stats(mix, 0.1, 3000, 5, per_segment=9)
    rng = np.random.default_rng(5)
    x = np.concatenate([sample(mix, 0.1, min(32, 3000 - i), rng) for i in range(0, 3000, 32)])
    nrm = np.abs(jacobian_spectrum(mix, x, 0.1)).max(1)
    assert got.mean == pytest.approx(nrm.mean(), rel=1e-12)
    assert got.mean_se == pytest.approx(nrm.std(ddof=1) / np.sqrt(nrm.size), rel=1e-9)
    assert got.sup >= nrm.max()
    n = 200_000
    tracemalloc.start()
    monkeypatch.setattr(empirical, "CHUNK_FLOATS", 2**12)
    empirical.jacobian_stats(mix, 0.1, n, 1, per_segment=9)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2 * n / 2, peak  # half of one (n, d) array: the chunks are 2^12 floats


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_huge_empirical_requests_stay_in_bounded_memory(here):
    """lipschitz --empirical 10000000 at d = 1024 and ring8 --empirical 100000000: watched for a few
    seconds of work, their memory stays flat (it grew past 5 GB in 40 s before)."""
    path = wide_spec(here, 2, 1024, "w.json")
    cmds = [[sys.executable, "-m", "flowcert.cli", "lipschitz", path, "--empirical", "10000000", "--points", "2"],
            [sys.executable, "-m", "flowcert.cli", "lipschitz", "ring8", "--empirical", "100000000"]]
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    peak = [0.0, 0.0]
    try:
        end = time.time() + 6
        while time.time() < end:
            for i, p in enumerate(procs):
                assert p.poll() is None, p.stderr.read().decode()[-500:]
                peak[i] = max(peak[i], rss_mb(p.pid))
            time.sleep(0.2)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert max(peak) < 1500, peak


# ============================================================================= 7: writing output
def test_plot_into_missing_folder_fails_before_the_work(here):
    refused(cli("lipschitz", "ring8", "--empirical", 10**8, "--plot", "missing/lt.png"), "--plot", "does not exist")
    refused(cli("certify", "ring8", "--eps", 1e-3, "--plot", "missing/c.png"), "--plot")
    refused(cli("solvers", "ring8", "--plot", "missing/s.png"), "--plot")
    refused(cli("grid", "ring8", "-o", "missing/g.json"), "--output")
    refused(cli("certify", "ring8", "--eps", 1e-3, "--t", 0.1, "--export", "missing/n.npz"), "--export")


def test_unwritable_out_folders_fail_before_the_work(here):
    (here / "file").write_text("x")
    refused(cli("validate", "ring8", "--preset", "quick", "--out", "file/run"), "--out", "cannot be written")
    refused(cli("demo", "--out", "file/demo"), "--out", "cannot be written")


def test_input_spec_is_never_the_output(here):
    path = spec_file(here, "spec.json", {"means": [[0, 0], [1, 1]], "variance": 0.1})
    before = (here / "spec.json").read_bytes()
    refused(cli("grid", path, "-o", path), "--output", "input")
    refused(cli("lipschitz", path, "--plot", path), "--plot", "input")
    refused(cli("certify", path, "--eps", 1e-2, "--t", 0.1, "--export", path), "--export", "input")
    os.link(path, "hardlink.json")
    refused(cli("grid", path, "-o", "hardlink.json"), "input")
    assert (here / "spec.json").read_bytes() == before


def test_special_files_and_folders_are_never_replaced(here):
    refused(cli("grid", "ring8", "-o", "/dev/null"), "not a regular file")
    refused(cli("lipschitz", "ring8", "--plot", "/dev/null"), "not a regular file")
    os.mkdir("d.npz")
    refused(cli("certify", "ring8", "--eps", 1e-2, "--t", 0.1, "--export", "d.npz"), "directory")
    refused(cli("lipschitz", "ring8", "-o", "x.png", "--plot", "x.png"), "same file")


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EACCES])
def test_write_failure_names_the_file_and_leaves_no_temporary(here, monkeypatch, errno_):
    from flowcert.numcore import io as fio

    def fail(fd):
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(fio.os, "fsync", fail)
    line = refused(cli("grid", "ring8", "-o", "g.json"), "g.json", os.strerror(errno_))
    assert "internal" not in line and os.listdir(".") == []


def test_interrupted_write_leaves_no_temporary(here, monkeypatch):
    from flowcert.numcore import io as fio

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fio.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fio.write_atomic("x.json", "{}")
    assert os.listdir(".") == []


def test_temporary_names_are_hidden_and_removed(here, monkeypatch):
    from flowcert.numcore import io as fio

    seen = []

    def fail(src, dst):
        seen.append(os.path.basename(src))
        assert os.path.exists(src)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fio.os, "replace", fail)
    with pytest.raises(fio.InputError, match="'x.png' cannot be written: I/O error"):
        fio.write_atomic("x.png", b"png")
    assert seen[0].startswith(".x.png.") and seen[0] != ".x.png.tmp" and os.listdir(".") == []


def test_full_disk_during_a_run_names_the_file_and_leaves_no_temporary(damaged, monkeypatch):
    from flowcert.numcore import io as fio

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fio.os, "fsync", full)
    refused(cli("validate", "--resume", damaged), "results.json", "No space left on device")
    assert not [p for p in damaged.rglob("*") if p.name.endswith(".tmp")]


def test_sigterm_runs_cleanup(here):
    """A SIGTERM during a long command ends it through Python's exception path (exit 143), so every
    `finally` runs; nothing is left in the folder."""
    p = subprocess.Popen([sys.executable, "-m", "flowcert.cli", "lipschitz", "ring8", "--empirical", "100000000",
                          "-o", "out.json"], stderr=subprocess.PIPE)
    end = time.time() + 60
    while time.time() < end and "numba" not in open(f"/proc/{p.pid}/maps").read():  # inside the command
        time.sleep(0.1)
    time.sleep(0.5)
    p.terminate()
    assert p.wait(30) == 143
    assert os.listdir(".") == []


def test_planted_links_at_old_temporary_names_are_not_followed(here):
    victim = here / "victim.txt"
    victim.write_text("precious")
    pid = os.getpid()
    for name in (f".out.json.{pid}.tmp", "lt.png.tmp.png", ".out.json.tmp"):
        os.symlink(victim, name)
    assert cli("grid", "ring8", "-o", "out.json").exit_code == 0
    assert cli("lipschitz", "ring8", "--points", 3, "--plot", "lt.png").exit_code == 0
    assert victim.read_text() == "precious"
    assert json.loads((here / "out.json").read_text())["steps"] == 8


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_exported_files_follow_the_umask(here, mask, mode):
    old = os.umask(mask)
    try:
        assert cli("certify", "ring8", "--eps", 1e-2, "--t", 0.1, "--export", "n.npz").exit_code == 0
        assert cli("grid", "ring8", "-o", "g.json").exit_code == 0
    finally:
        os.umask(old)
    for f in ("n.npz", "g.json"):
        assert stat.S_IMODE(os.stat(f).st_mode) == mode


# ============================================================================= 8: runs that resume
VALIDATE = ["--steps", "1,2", "--grids", "uniform,balanced", "--seeds", "1", "--train-samples", "32",
            "--test-samples", "32", "--iters", "3", "--width", "4", "--amp-times", "2", "--amp-samples", "2",
            "--lip-samples", "4", "--delta", "0.01", "--T", "1", "--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny run on a one-component mixture (--amp-samples 2: the issue's inputs)."""
    folder = tmp_path_factory.mktemp("runs")
    spec = spec_file(folder, "one.json", {"means": [[0.5, 0.0]], "variance": 0.05})
    r = cli("validate", spec, *VALIDATE, "--out", folder / "run")
    assert r.exit_code == 0, r.output
    return folder / "run"


@pytest.fixture
def damaged(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "results.json").unlink()
    return copy


JOB = "jobs/0-one_uniform_N1_s0"


def truncate(path, n):
    data = path.read_bytes()
    path.write_bytes(data[:n])


def edit_config(folder, keep_checksum):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["steps"] = [0, -5]
    if not keep_checksum:
        cfg.pop("sha256")
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("damage, words", [
    (lambda f: (f / JOB / "result.json").write_text("{not json"), ("result.json", "not valid JSON", "delete the folder")),
    (lambda f: (f / "grids.json").write_text(""), ("grids.json", "delete it")),
    (lambda f: ((f / JOB / "result.json").unlink(), truncate(f / JOB / "group0.pt", 300)),
     ("group0.pt", "cannot be loaded", "delete the folder")),
    (lambda f: edit_config(f, False), ("config.json", "steps = 0", "start a new run")),
    (lambda f: edit_config(f, True), ("config.json", "edited")),
    (lambda f: ([p.unlink() for p in f.glob("jobs/*/result.json")], truncate(f / "teacher/0-one-s0.pt", 500)),
     ("0-one-s0.pt", "delete it")),
    (lambda f: (f / "amplification.json").write_text("[1, 2]"), ("amplification.json", "damaged")),
    (lambda f: (f / JOB / "result.json").write_text(
        (f / "jobs/0-one_uniform_N2_s0/result.json").read_text()), ("result.json", "another job")),
], ids=["result-not-json", "empty-grids", "truncated-checkpoint", "edited-config", "edited-config-checksum",
        "truncated-teacher", "amplification-list", "result-of-another-job"])
def test_resume_names_the_damaged_file_and_the_way_back(damaged, damage, words):
    damage(damaged)
    refused(cli("validate", "--resume", damaged), "run file", *words)


def test_following_the_advice_recovers_the_run(damaged, run_dir):
    (damaged / JOB / "result.json").write_text("{not json")
    line = refused(cli("validate", "--resume", damaged))
    folder = line.split("delete the folder '")[1].split("'")[0]
    shutil.rmtree(folder)
    r = cli("validate", "--resume", damaged, "--format", "json")
    assert r.exit_code == 0, r.output
    again = json.loads((damaged / "results.json").read_text())
    first = json.loads((run_dir / "results.json").read_text())
    assert [j["rel_mse"]["value"] for j in again["jobs"]] == [j["rel_mse"]["value"] for j in first["jobs"]]


def test_second_process_on_a_run_folder_is_refused(damaged):
    from flowcert.distill.runfiles import RunLock

    with RunLock(damaged):
        refused(cli("validate", "--resume", damaged), "in use by another flowcert process", str(os.getpid()))
    assert cli("validate", "--resume", damaged).exit_code == 0  # released: a stale lock file is no obstacle


# ============================================================================= 9: pool workers
POOL_SCRIPT = """
import os, sys, time
from flowcert.distill.executors import run_process

def job(ctx, payload):
    print("worker", os.getpid(), flush=True)
    time.sleep(ctx)
    return ctx

if __name__ == "__main__":
    run_process(job, [(120, None), (120, None)], lambda i, r: None, 2)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="re-parenting as on Linux")
def test_pool_workers_exit_when_the_parent_is_killed(here):
    (here / "pool.py").write_text(POOL_SCRIPT)
    p = subprocess.Popen([sys.executable, "pool.py"], stdout=subprocess.PIPE, text=True)
    workers = [int(p.stdout.readline().split()[1]) for _ in range(2)]
    p.kill()
    p.wait()
    end = time.time() + 10
    while time.time() < end and any(os.path.exists(f"/proc/{w}") and "Z" not in
                                     open(f"/proc/{w}/stat").read().split()[2] for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if os.path.exists(f"/proc/{w}") and "Z" not in open(f"/proc/{w}/stat").read().split()[2]]
    assert not alive


# ============================================================================= 10: installations
def test_numba_falls_back_to_a_private_cache_with_one_note(monkeypatch, capsys):
    import numba

    from flowcert.numcore import io as fio
    from flowcert.numcore import jitcache

    answers = iter([False, True])
    monkeypatch.setattr(jitcache, "_DECISION", None)
    monkeypatch.setattr(jitcache, "_probe", lambda: next(answers))
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    assert jitcache.enabled() and jitcache.enabled()
    folder = numba.config.CACHE_DIR
    assert folder == fio.private_folder("flowcert-numba")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700 and os.stat(folder).st_uid == os.getuid()
    assert capsys.readouterr().err.count("note:") == 1


def test_numba_runs_uncached_when_nothing_is_writable(monkeypatch, capsys):
    import numba

    from flowcert.numcore import jitcache

    monkeypatch.setattr(jitcache, "_DECISION", None)
    monkeypatch.setattr(jitcache, "_probe", lambda: False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    assert jitcache.enabled() is False
    assert "compiled in each run" in capsys.readouterr().err


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare to mount the install read-only")
def test_read_only_install_and_no_home(here):
    """The issue's setting: site-packages (here: the checkout and the venv) read-only, HOME=/nonexistent."""
    import flowcert

    pkg = os.path.dirname(os.path.abspath(flowcert.__file__))
    env_root = os.path.dirname(os.path.dirname(sys.executable))
    script = (f"mount --bind -o ro {pkg} {pkg} && mount --bind -o ro {env_root} {env_root} && "
              f"HOME=/proc/nonexistent {sys.executable} -m flowcert.cli lipschitz ring8 --points 3 --empirical 10")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "no locator" not in r.stderr and r.stderr.count("note:") == 1, r.stderr


def test_a_planted_cache_folder_of_another_owner_is_not_used(tmp_path, monkeypatch):
    from flowcert.numcore import io as fio

    monkeypatch.setattr(fio.tempfile, "gettempdir", lambda: str(tmp_path))
    os.symlink(tmp_path, tmp_path / f"flowcert-numba-{os.getuid()}")
    assert fio.private_folder("flowcert-numba") is None
    os.mkdir(tmp_path / f"flowcert-mpl-{os.getuid()}", 0o777)
    os.chmod(tmp_path / f"flowcert-mpl-{os.getuid()}", 0o777)
    assert fio.private_folder("flowcert-mpl") is None


# ============================================================================= 11-15: numbers
def lp_oracle(err_norms, p):
    """(mean e^p)^(1/p) in log space (no under- or overflow)."""
    logs = p * np.log(err_norms)
    m = logs.max()
    return math.exp((m + math.log(np.exp(logs - m).mean())) / p)


def test_p64_verification_does_not_underflow():
    from flowcert.numcore import marginal
    from flowcert.numcore.mixture import builtin

    r = cli("certify", "ring8", "--eps", 1e-6, "--t", 0.05, "--p", 64, "--verify", 2000, "--format", "json")
    assert r.exit_code == 0, r.output
    out = strict_json(r.stdout)
    assert out["mc_error"] > 0 and out["ci_high"] > out["mc_error"] > out["ci_low"] > 0
    from flowcert.bounds.certificate import certify

    mix = builtin("ring8")
    net = certify(mix, 0.05, 1e-6, 64.0, floor=False).build()
    x = marginal.sample(mix, 0.05, 2000, np.random.default_rng(0))
    e = np.sqrt(((net(x) - marginal.score(mix, x, 0.05)) ** 2).sum(1))
    assert out["mc_error"] == pytest.approx(lp_oracle(e, 64.0), rel=1e-9)


@pytest.mark.parametrize("scale, p", [(1e-8, 64.0), (1e8, 64.0), (1e-200, 2.0), (1.0, 1.0)])
def test_scaled_lp_sums_match_the_log_space_oracle(scale, p):
    from scipy.stats import t as student_t

    from flowcert.numcore.lp import lp_error

    rng = np.random.default_rng(3)
    a = rng.normal(size=(5000, 3)) * scale
    est = lp_error(a, np.zeros_like(a), p)
    big = np.abs(a).max(1)
    nrm = big * np.sqrt(((a / big[:, None]) ** 2).sum(1))  # no underflow of the squares
    assert est.value == pytest.approx(lp_oracle(nrm, p), rel=1e-9)
    u = (nrm / nrm.max()) ** p
    half = student_t.ppf(0.975, u.size - 1) * u.std(ddof=1) / math.sqrt(u.size)
    assert est.ci_high == pytest.approx(nrm.max() * (u.mean() + half) ** (1 / p), rel=1e-6)


def test_quantile_interval_covers_at_its_sample_size():
    """Monte-Carlo coverage of the 99th-percentile interval of N(0, 1) samples: >= 95% where both ends
    exist (n >= 368), the lower end alone >= 97.5% where the upper end is undefined."""
    from scipy.stats import norm

    from flowcert.distill.measure import quantile_ci

    q99 = norm.ppf(0.99)
    rng = np.random.default_rng(0)
    for n, reps in ((2, 1500), (50, 1500), (400, 1500)):
        cover = low_cover = 0
        for _ in range(reps):
            ci = quantile_ci(rng.normal(size=n), 0.99)
            assert (ci["ci_high"] is None) == (n < 368)
            assert ci["ci_low"] <= ci["value"] and (ci["ci_high"] is None or ci["value"] <= ci["ci_high"])
            low_cover += ci["ci_low"] <= q99
            cover += ci["ci_low"] <= q99 <= (ci["ci_high"] if ci["ci_high"] is not None else np.inf)
        tol = 3 * math.sqrt(0.05 * 0.95 / reps)
        assert low_cover / reps >= 0.975 - tol
        assert cover / reps >= 0.95 - tol


def test_validate_with_two_amplification_samples_states_what_is_undefined(run_dir):
    doc = strict_json((run_dir / "results.json").read_text())
    for row in doc["amplification"]["0-one"]:
        q = row["p99"]
        assert q["ci_high"] is None and q["ci_low"] <= q["value"]
    assert "undefined" in (run_dir / "summary.md").read_text()


def test_fan_bound_holds_for_one_component(run_dir):
    """One component: the one-sided rate is negative, and with N = 1 the bound is met with equality."""
    doc = strict_json((run_dir / "results.json").read_text())
    assert all(doc["fan_bound_holds_everywhere"].values())
    assert "onesided: yes" in (run_dir / "summary.md").read_text()
    for job in doc["jobs"]:
        f = job["fan"]["onesided"]
        assert f["holds"] and f["holds_rtol"] > 0
        assert f["bound"] >= f["bound_end"]


def test_fan_bound_is_a_bound_for_every_sign_of_the_rate():
    """The start form sum eps_i exp(max(Lambda(t_{i-1}), Lambda(t_i))) is at least the end form (the
    bound itself), whatever the sign of the rate; for a rate >= 0 it is the t_{i-1} form."""
    from flowcert.distill.measure import fan_bound

    rng = np.random.default_rng(1)
    for _ in range(200):
        N = int(rng.integers(1, 9))
        eps = rng.exponential(size=N)
        lam = np.cumsum(rng.normal(size=N + 1))[::-1]
        assert fan_bound(eps, lam, "start") >= fan_bound(eps, lam, "end") * (1 - 1e-12)
        up = np.sort(rng.exponential(size=N + 1))[::-1]  # Lambda decreasing along the grid: rate >= 0
        assert fan_bound(eps, up, "start") == pytest.approx(float(np.sum(eps * np.exp(up[:-1] - up[-1]))))


def test_onesided_check_is_tolerant_for_negative_bounds(here):
    """Coincident means: the one-sided rate is negative and the brute force meets it to round-off; the
    check widens the bound by its tolerance for either sign (it narrowed negative bounds and warned)."""
    path = spec_file(here, "co.json", {"means": [[0, 0], [0, 0]], "variance": 0.05})
    r = cli("lipschitz", path, "--points", 5, "--empirical", 200, "--format", "json")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr
    out = strict_json(r.stdout)
    assert max(out["onesided"]) < 0 and out["tightness"]["onesided"]["holds_at_all_points"]
    assert np.allclose(out["empirical_growth_sup"], out["onesided"], rtol=1e-9)


@pytest.mark.parametrize("spec, eps", [("ring8", 1e-12), ("modes8d", 1e-11)])
def test_eps_below_the_float64_floor_is_refused_with_a_supported_value(spec, eps):
    line = refused(cli("certify", spec, "--eps", eps, "--t", 0.05, "--verify", 1000),
                   "--eps", "below what float64 supports", "round-off")
    supported = float(line.split("expected eps >= ")[1].replace("about ", "").split(" ")[0])
    r = cli("certify", spec, "--eps", supported * 1.01, "--t", 0.05, "--verify", 1000, "--format", "json")
    assert r.exit_code == 0, r.output
    out = strict_json(r.stdout)
    assert out["float64"]["holds"] and out["verification"]["passed"]


def test_every_json_written_is_strict(here):
    r = cli("lipschitz", "ring8", "--points", 3, "--empirical", 1, "--format", "json")
    assert r.exit_code == 0
    assert strict_json(r.stdout)["empirical_mean_se"] == [None, None, None]
    from flowcert.distill.runfiles import write_json

    write_json(here / "r.json", {"a": float("nan"), "b": [float("inf"), 1.0]})
    assert strict_json((here / "r.json").read_text()) == {"a": None, "b": [None, 1.0]}


# ----------------------------------------------------------------------------- kind 0: no code runs from a file
class _Payload:
    """Unpickling this writes a marker file: what a planted checkpoint would do if it were unpickled fully."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_a_planted_checkpoint_never_runs_code(runner, tmp_path, container):
    torch = pytest.importorskip("torch")
    import pickle

    from flowcert.cli import main

    out, marker = tmp_path / "run", tmp_path / "ran"
    out.mkdir()
    payload = {"config": _Payload(str(marker)), "step": 1}
    if container == "torch":
        torch.save(payload, out / "checkpoint.pt")
    else:
        (out / "checkpoint.pt").write_bytes(pickle.dumps(payload))
    r = runner.invoke(main, ["train-example", "digits", "--out", str(out), "--steps", "2", "--batch", "4",
                             "--threads", "1"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "checkpoint.pt" in lines[0], r.output
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None])
def test_a_garbage_or_foreign_checkpoint_is_refused_in_one_line(runner, tmp_path, content):
    torch = pytest.importorskip("torch")
    from flowcert.cli import main

    out = tmp_path / "run"
    out.mkdir()
    if content is None:
        torch.save({"weights": torch.zeros(3)}, out / "checkpoint.pt")  # a checkpoint, but not of train-example
    else:
        (out / "checkpoint.pt").write_bytes(content)
    r = runner.invoke(main, ["train-example", "digits", "--out", str(out), "--steps", "2", "--batch", "4"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "checkpoint.pt" in r.output, r.output


def test_two_trainings_into_one_folder_do_not_clobber_each_other(tmp_path):
    pytest.importorskip("torch")
    from flowcert.distill.runfiles import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):  # another run holds the folder
        import flowcert

        with pytest.raises(flowcert.InputError, match="in use by another flowcert process"):
            flowcert.train_example("digits", str(out), steps=2, batch=4, threads=1)


# ---- kind 3: a network that returns NaN, inf, the wrong shape or dtype, or raises
def _misbehaving(body):
    """fn(x, s) of a 4-dimensional sample-predicting model; x: (n, 4) inputs, s: (n,) sigmas."""
    import torch  # noqa: F401  (the bodies use it)

    scope = {}
    exec("import torch\ndef fn(x, s):\n" + "".join(f"    {line}\n" for line in body.splitlines()), scope)
    return scope["fn"]


MISBEHAVING = {
    "nan": ('return x * float("nan")', "returned NaN"),
    "inf-at-small-sigma": ('out = 0.5 * x\nreturn torch.where(s[:, None] < 0.05, out / 0, out)', "returned inf"),
    "extra-column": ("return torch.cat([x, x[:, :1]], 1)", "returned shape"),
    "ignores-the-batch": ("return 0.5 * x[:1]", "returned shape (1, 4)"),
    "flat": ("return 0.5 * x.reshape(-1)[: x.shape[0]]", "returned shape"),
    "integer": ("return (4 * x).round().long()", "dtype int64"),
    "complex": ("return (0.5 * x).to(torch.complex64)", "dtype complex64"),
    "boolean": ("return x > 0", "dtype bool"),
    "none": ("return None", "returned NoneType"),
    "raises": ('raise RuntimeError("CUDA error: device-side assert")', "raised RuntimeError"),
    "raises-keyerror": ('return {"sample": x}["out"]', "raised KeyError"),
}


@pytest.mark.parametrize("case", list(MISBEHAVING))
def test_a_misbehaving_network_is_refused_at_its_first_evaluation(case):
    torch = pytest.importorskip("torch")
    import flowcert

    body, words = MISBEHAVING[case]
    m = flowcert.torch_model(_misbehaving(body), shape=(4,), name="bad-net")
    for call in (lambda: flowcert.model_lipschitz(m, points=2, samples=16, threads=1),
                 lambda: flowcert.model_grid(m, 2, kind="optimal", solver="euler", train_samples=16, test_samples=16,
                                             teacher_steps=4, threads=1),
                 lambda: flowcert.model_solvers(m, [2], samples=16, train_samples=16, teacher_steps=4, threads=1)):
        with pytest.raises(flowcert.InputError) as err:
            call()
        text = str(err.value)
        assert "'bad-net'" in text and "sigma = " in text and "OU time t = " in text and words in text, text
        assert "\n" not in text
    del torch


def test_a_network_that_fails_only_inside_the_window_is_caught_where_it_fails():
    """NaN for 1 < sigma < 2 only: the probe at the window's ends and middle passes, the run meets it and names the
    noise level; nothing is reported."""
    pytest.importorskip("torch")
    import flowcert

    m = flowcert.torch_model(_misbehaving('out = 0.5 * x\nreturn torch.where(((s > 1) & (s < 2))[:, None], out * '
                                          'float("nan"), out)'), shape=(4,), name="band")
    with pytest.raises(flowcert.InputError, match=r"'band' returned NaN at sigma = 1\.[0-9]+ "):
        flowcert.model_solvers(m, [2], samples=16, train_samples=16, teacher_steps=8, threads=1)


def test_a_jacobian_that_overflows_is_refused_not_reported():
    """Finite outputs, but J^T J overflows float32: the statistic is refused with the time, never printed as inf."""
    pytest.importorskip("torch")
    import flowcert

    m = flowcert.torch_model(_misbehaving("return x * 1e30"), shape=(4,), name="steep")
    data = np.random.default_rng(0).normal(size=(32, 4))
    with pytest.raises(flowcert.InputError, match="'steep': J\\^T J u is NaN or inf at sigma = "):
        flowcert.model_lipschitz(m, points=2, samples=16, data=data, threads=1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_every_statistic_is_checked_before_it_is_reported(monkeypatch):
    """Whatever produced it, a NaN in the Jacobian table, the teacher's end points or a solver row is refused."""
    torch = pytest.importorskip("torch")
    import flowcert
    from flowcert.models import jacobian
    from flowcert.studies import targets

    m = flowcert.load_model("mixture:line2")
    table = jacobian.table

    def nan_table(*a, **k):
        out = table(*a, **k)
        out["empirical_mean"][0] = np.nan
        return out

    monkeypatch.setattr(jacobian, "table", nan_table)
    with pytest.raises(flowcert.InputError, match="E\\|\\|J\\|\\|_op .* is nan"):
        flowcert.model_lipschitz(m, points=2, samples=16, threads=1)
    monkeypatch.undo()
    from flowcert.models import flow

    solve = flow.solve
    monkeypatch.setattr(flow, "solve", lambda *a, **k: solve(*a, **k) * np.inf)
    with pytest.raises(flowcert.InputError, match="relative MSE"):
        flowcert.model_solvers(m, [2], samples=16, train_samples=16, teacher_steps=4, threads=1)
    del torch, targets


def test_one_line_naming_the_model_on_the_command_line(here):
    """Through FILE.py:NAME: one line, exit status 2, for lipschitz, grid and solvers."""
    pytest.importorskip("torch")
    (here / "m.py").write_text("import torch, flowcert\n"
                               "def fn(x, s):\n    return torch.where(s[:, None] < 0.05, x / 0, x)\n"
                               "model = flowcert.torch_model(fn, shape=(4,), name='m')\n")
    small = ["--threads", "1"]
    for args in (["lipschitz", "--points", "2", "--empirical", "16"],
                 ["grid", "--kind", "optimal", "--solver", "euler", "--steps", "2", "--train-samples", "16",
                  "--test-samples", "16", "--teacher-steps", "4"],
                 ["grid", "--steps", "2", "--samples", "16"],
                 ["solvers", "--steps", "2", "--samples", "16", "--train-samples", "16", "--teacher-steps", "4"]):
        refused(cli(*args, "--model", "m.py:model", *small), "--model 'm' returned inf at sigma = 0.04474")


def test_every_denoiser_subclass_gets_the_boundary_checks():
    torch = pytest.importorskip("torch")
    from flowcert.models.denoiser import Denoiser, InputError

    class Zeros(Denoiser):
        def __call__(self, y, sigma, cond=None):
            return torch.zeros(y.shape[0], self.d + 1)

    with pytest.raises(InputError, match="'zeros' returned shape \\(3, 3\\)"):
        Zeros(shape=(2,), name="zeros")(torch.zeros(3, 2), 0.5)


# ---- kind 8: a fixed seed fixes every number
def drop_timing(obj):
    """A JSON document without its wall-clock fields (every key that names seconds)."""
    if isinstance(obj, dict):
        return {k: drop_timing(v) for k, v in obj.items() if "second" not in k}
    if isinstance(obj, list):
        return [drop_timing(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory):
    """A diffusers pipeline folder with a 4 x 4 UNet (d = 16, attention included) and a DDPM scheduler."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=4, in_channels=1, out_channels=1, block_out_channels=(8, 8),
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                 norm_num_groups=4, attention_head_dim=4, time_embedding_dim=16)
    folder = tmp_path_factory.mktemp("unet") / "tiny"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(clip_sample=False)).save_pretrained(folder)
    return str(folder)


SMALL_TEACHER = ["--steps", "2", "--train-samples", "16", "--test-samples", "16", "--teacher-steps", "4",
                 "--threads", "1"]
MODEL_COMMANDS = {
    "lipschitz": ["lipschitz", "--points", "2", "--empirical", "8", "--iters", "4", "--seed", "3"],
    "grid-balanced": ["grid", "--steps", "2", "--samples", "16", "--teacher-steps", "4", "--seed", "1"],
    "grid-optimal": ["grid", "--kind", "optimal", "--solver", "heun", *SMALL_TEACHER, "--seed", "2"],
    "export": ["grid", "--for", "diffusers-euler", *SMALL_TEACHER],
    "solvers": ["solvers", "--steps", "2", "--samples", "16", "--train-samples", "16", "--teacher-steps", "4",
                "--effort", "0.05"],
}


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_every_seeded_model_command_repeats_bit_for_bit(tiny_unet, command):
    """Each model command twice on a tiny UNet (d = 16, so Lanczos stops before its Krylov space is full and
    its random start matters), torch's global generator reseeded in between: the same JSON but for timings."""
    import torch

    args = [*MODEL_COMMANDS[command], "--model", tiny_unet, "--format", "json"]
    args += [] if "--threads" in args else ["--threads", "1"]
    docs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        r = cli(*args)
        assert r.exit_code == 0, r.output
        docs.append(drop_timing(strict_json(r.stdout)))
    assert docs[0] == docs[1]


def test_lipschitz_model_repeats_across_processes(tiny_unet, here):
    """The instance of the issue: two processes (torch seeds its global generator differently in each)."""
    args = [sys.executable, "-m", "flowcert.cli", "lipschitz", "--model", tiny_unet, "--points", "2", "--empirical",
            "8", "--iters", "3", "--seed", "5", "--threads", "1", "--format", "json"]
    runs = [subprocess.run(args, capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    a, b = (drop_timing(strict_json(r.stdout)) for r in runs)
    assert a == b and a["iterations_max"][0] < 16  # Lanczos stopped early: its start vector mattered


def test_opnorm_never_draws_from_the_global_generator():
    torch = pytest.importorskip("torch")
    from flowcert.models.exact import exact_model
    from flowcert.models.jacobian import opnorm

    m = exact_model(flowcert_mixture("modes8d"))
    x = torch.randn(4, m.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = torch.get_rng_state()
    a = opnorm(m, x, 0.3, iters=2)["norm"]
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(123)
    assert torch.equal(a, opnorm(m, x, 0.3, iters=2)["norm"])


def flowcert_mixture(name):
    from flowcert.numcore.mixture import load

    return load(name)


# ---- kind 9: streams and environment
NOJIT_COMMANDS = {
    "grid-optimal": ["grid", "ring8", "--kind", "optimal", "--solver", "euler", "--steps", "2", "--train-samples", "16",
                     "--test-samples", "16", "--effort", "0.05"],
    "lipschitz-empirical": ["lipschitz", "ring8", "--points", "3", "--empirical", "200"],
    "mixture-amp-samples": ["mixture", "ring8", "--amp-samples", "4"],
    "solvers": ["solvers", "line2", "--steps", "2", "--samples", "32", "--train-samples", "16", "--effort", "0.05"],
    "certify-verify": ["certify", "ring8", "--eps", "1e-2", "--t", "0.5", "--verify", "100"],
    "certify-time-input": ["certify", "line2", "--eps", "3e-2", "--verify", "20", "--times", "2"],
}


@pytest.mark.parametrize("command", list(NOJIT_COMMANDS))
def test_every_command_that_loads_the_kernels_runs_without_the_jit(here, command):
    """NUMBA_DISABLE_JIT=1 (a debugging switch numba documents): njit returns plain functions, which have no
    py_func; every command that loads numcore.kernels still runs (a regression: it broke all of them)."""
    r = subprocess.run([sys.executable, "-m", "flowcert.cli", *NOJIT_COMMANDS[command]], capture_output=True, text=True,
                       env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-500:]


# ---- kind 6: fit
def _npy_header(shape, descr="<f8") -> bytes:
    head = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    head = head.ljust(118 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head


BAD_DATA = {
    "zero-rows": (lambda p: np.save(p, np.zeros((0, 3))), "0 sample(s)"),
    "one-row": (lambda p: np.save(p, np.zeros((1, 3))), "1 sample(s)"),
    "no-columns": (lambda p: np.save(p, np.zeros((5, 0))), "at least one number per sample"),
    "one-dimensional": (lambda p: np.save(p, np.zeros(5)), "expected (n, d)"),
    "empty-file": (lambda p: p.write_bytes(b""), "is empty"),
    "not-npy": (lambda p: p.write_bytes(b"means: [[0]]\n"), "header does not parse"),
    "header-corrupt": (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f8', 'shape': (3," + b" " * 9),
                       "header does not parse"),
    "header-claims-huge-shape": (lambda p: p.write_bytes(_npy_header((10**11, 3)) + b"\0" * 64), "promises shape"),
    "truncated": (lambda p: p.write_bytes(_npy_header((10, 3)) + b"\0" * 100), "promises shape"),
    "object-array": (lambda p: np.save(p, np.array([[1, "a"], [2, None]], dtype=object), allow_pickle=True),
                     "Python objects"),
    "strings": (lambda p: np.save(p, np.array([["1", "2"], ["3", "4"]])), "expected numbers only"),
    "complex": (lambda p: np.save(p, np.ones((4, 2), complex)), "expected numbers only"),
    "nan": (lambda p: np.save(p, np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]])), "nan"),
    "huge-values": (lambda p: np.save(p, np.random.default_rng(0).normal(size=(50, 2)) * 1e300), "magnitude"),
    "fifo": (lambda p: os.mkfifo(p), "FIFO"),
    "dev-zero": (lambda p: os.symlink("/dev/zero", p), "device"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_fit_refuses_bad_data_in_one_line(here, case):
    make, words = BAD_DATA[case]
    make(here / "x.npy")
    refused(cli("fit", "x.npy", "--max-components", "2"), "x.npy", words)


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], "--seed = -1"),
    (["--seed", str(2**32)], "--seed"),
    (["--reg-covar", "1e-12"], "--reg-covar = 1e-12: expected a number >= 1e-08"),
    (["--reg-covar", "1e30"], "--reg-covar = 1e+30: expected a number <= 1e+12"),
    (["--reg-covar", "nan"], "--reg-covar"),
    (["--max-components", "0"], "--max-components = 0"),
    (["--max-components", "2000"], "--max-components = 2000"),
    (["--max-components", "41"], "expected an integer <= 40"),  # more components than samples
    (["--name", "n" * 300, "-o", "s.yaml"], "--name is a string of 300 characters"),
    (["-o", "s.txt"], "extension '.txt'"),
    (["-o", "spec"], "extension '(none)'"),
])
def test_fit_options_have_one_domain(here, args, words):
    np.save("d.npy", np.random.default_rng(0).normal(size=(40, 2)))
    refused(cli("fit", "d.npy", *args), words)
    assert sorted(os.listdir(".")) == ["d.npy"]  # nothing written


def test_fit_domains_are_the_spec_loaders():
    from flowcert.numcore import mixture
    from flowcert.numcore.checks import OPTIONS

    assert (OPTIONS["reg_covar"].low, OPTIONS["reg_covar"].high) == (mixture.MIN_VARIANCE, mixture.MAX_VARIANCE)


def test_fit_never_writes_a_spec_that_does_not_load(here):
    """Data whose fitted variance exceeds a spec's range: refused (before, exit 0 and a spec flowcert refuses)."""
    np.save("d.npy", np.random.default_rng(0).normal(size=(50, 2)) * 1e9)
    refused(cli("fit", "d.npy", "--max-components", "2", "-o", "s.yaml"), "not a valid spec", "rescale the data")
    assert not os.path.exists("s.yaml")


@pytest.mark.parametrize("ext", [".json", ".yaml", ".yml", ".toml"])
@pytest.mark.parametrize("data", ["normal", "constant"])
def test_fit_writes_the_format_its_extension_promises_and_it_loads_back(here, ext, data):
    import tomllib

    import yaml

    x = np.random.default_rng(1).normal(size=(60, 3)) if data == "normal" else np.ones((30, 3))
    np.save("d.npy", x)
    name = 'a "quoted" back\\slash name'
    r = cli("fit", "d.npy", "--max-components", "3", "--covariance", "auto", "--name", name, "-o", f"s{ext}")
    assert r.exit_code == 0, r.output
    text = open(f"s{ext}").read()
    parsed = {".json": strict_json, ".toml": tomllib.loads}.get(ext, yaml.safe_load)(text)
    assert parsed["name"] == name and set(parsed) >= {"weights", "means"}
    m = cli("mixture", f"s{ext}", "--amp-samples", "0", "--format", "json")
    assert m.exit_code == 0, m.output
    assert strict_json(m.stdout)["K"] == len(parsed["means"])


def test_fit_api_returns_a_spec_every_command_takes():
    import flowcert

    res = flowcert.fit(np.ones((20, 2)), max_components=2, reg_covar=1e-8)
    assert flowcert.load_mixture(res["spec"]).K >= 1
    with pytest.raises(flowcert.InputError, match="`seed` = -1"):
        flowcert.fit(np.ones((20, 2)), seed=-1)


def test_model_data_is_read_the_same_safe_way(here):
    """--data of the model commands goes through the same reader: a pickle is refused, never loaded."""
    pytest.importorskip("torch")
    np.save("x.npy", np.array([[1, "a"], [2, None]], dtype=object), allow_pickle=True)
    refused(cli("lipschitz", "--model", "mixture:line2", "--data", "x.npy", "--points", "2", "--empirical", "16"),
            "x.npy", "Python objects")


# ---- kind 7: options that do nothing in a combination
def test_every_parameter_of_every_command_is_classified():
    """The table of which option applies when lists every parameter of every command: a new option must say."""
    from flowcert.cli import APPLIES, main

    for name, command in main.commands.items():
        params = {p.name for p in command.params} - {"help"}
        assert set(APPLIES[name]) == params, (name, params ^ set(APPLIES[name]))


def test_the_documented_table_lists_every_conditional_option():
    """docs/commands.md's table of which option acts when has a row for each option that acts only sometimes."""
    from pathlib import Path

    from flowcert.cli import APPLIES, flag_names, main

    doc = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].strip("`") in APPLIES:
            rows.setdefault(cells[0].strip("`"), set()).update(f.strip("` ") for f in cells[1].split(","))
    for name, table in APPLIES.items():
        flags = flag_names(main.commands[name])
        conditional = {flags[p] for p, rule in table.items() if rule is not None}
        assert conditional == rows.get(name, set()), (name, conditional ^ rows.get(name, set()))


IGNORED = [
    (["grid", "ring8", "--shift", "3"], "--shift = 3.0", "diffusers-flowmatch"),
    (["grid", "ring8", "--kind", "logsnr", "--for", "k-diffusion", "--shift", "3"], "--shift", "flowmatch"),
    (["grid", "ring8", "--kind", "balanced", "--solver", "heun"], "--solver", "--kind optimal"),
    (["grid", "ring8", "--seed", "3"], "--seed = 3", "empirical"),
    (["grid", "ring8", "--samples", "100"], "--samples = 100", "empirical"),
    (["grid", "ring8", "--train-samples", "100"], "--train-samples", "--kind optimal"),
    (["grid", "ring8", "--kind", "edm", "--effort", "2"], "--effort", "--kind optimal"),
    (["grid", "ring8", "--teacher-steps", "8"], "--teacher-steps", "--model"),
    (["grid", "ring8", "--threads", "1"], "--threads", "--model"),
    (["grid", "ring8", "--kind", "edm", "--units", "sigma", "--for", "k-diffusion"], "--units", "--for"),
    (["grid", "ring8", "--beta-schedule", "scaled_linear"], "--beta-schedule", "ddpm"),
    (["grid", "ring8", "--clip"], "--clip = True", "ddpm"),
    (["grid", "ring8", "--kind", "edm", "--for", "k-diffusion", "--beta-schedule", "linear"], "--beta-schedule", ""),
    (["grid", "--model", "mixture:line2", "--kind", "edm", "--bound", "empirical"], "--bound", "rate"),
    (["grid", "--model", "mixture:line2", "--kind", "edm", "--samples", "16"], "--samples", "empirical"),
    (["grid", "--model", "mixture:line2", "--kind", "edm", "--teacher-steps", "8"], "--teacher-steps", "teacher"),
    (["lipschitz", "ring8", "--iters", "5"], "--iters = 5", "--model"),
    (["lipschitz", "ring8", "--tol", "0.1"], "--tol", "--model"),
    (["lipschitz", "ring8", "--threads", "1"], "--threads", "--model"),
    (["lipschitz", "ring8", "--seed", "2"], "--seed", "--empirical"),
    (["lipschitz", "--model", "mixture:line2", "--bound", "tri"], "--bound", "without --model"),
    (["lipschitz", "--model", "mixture:line2", "--ball-mass", "0.5"], "--ball-mass", "without --model"),
    (["lipschitz", "--model", "mixture:line2", "--latex"], "--latex", "without --model"),
    (["lipschitz", "ring8", "--latex", "-o", "x.txt"], "--output", "--latex"),
    (["lipschitz", "ring8", "--latex", "--points", "5"], "--points", "--latex"),
    (["lipschitz", "ring8", "--latex", "--format", "json"], "--format", "--latex"),
    (["solvers", "ring8", "--teacher-steps", "8"], "--teacher-steps", "--model"),
    (["solvers", "ring8", "--threads", "2"], "--threads", "--model"),
    (["solvers", "--model", "mixture:line2", "--random", "2"], "--random", "without --model"),
    (["mixture", "ring8", "--amp-samples", "0", "--seed", "4"], "--seed", "--amp-samples"),
    (["certify", "ring8", "--eps", "1e-2", "--t", "0.5", "--times", "3"], "--times", "--verify"),
    (["certify", "ring8", "--eps", "1e-2", "--t", "0.5", "--delta", "0.01"], "--delta", "without --t"),
    (["certify", "ring8", "--eps", "1e-2", "--seed", "3"], "--seed", "--verify"),
    (["validate", "line2", "--workers", "2"], "--workers", "--executor process"),
    (["validate", "line2", "--executor", "process", "--ray-address", "auto"], "--ray-address", "--executor ray"),
    (["validate", "line2", "--grids", "uniform", "--solver", "heun"], "--solver", "--grids optimal"),
    (["validate", "line2", "--grids", "uniform", "--bound", "sharp"], "--bound", "--grids balanced"),
    (["validate", "line2", "--total-params", "1000"], "--total-params", "--budget total"),
    (["validate", "line2", "--empirical-samples", "64"], "--empirical-samples", "empirical"),
    (["validate", "line2", "--preset", "quick", "--budget", "total", "--total-params", "900", "--width", "8"],
     "--width", "per-block"),
]


@pytest.mark.parametrize("args, flag, words", IGNORED, ids=[" ".join(a[0][:1] + a[0][2:]) for a in IGNORED])
def test_an_option_that_does_nothing_is_refused(here, args, flag, words):
    line = refused(cli(*args), flag, "does nothing")
    assert words in line


def test_with_data_and_samples_data_only_for_the_model(here):
    np.save("d.npy", np.zeros((10, 2)))
    for args in (["solvers", "ring8", "--data", "d.npy"], ["solvers", "ring8", "--reference", "d.npy"],
                 ["lipschitz", "ring8", "--data", "d.npy"], ["grid", "ring8", "--data", "d.npy"]):
        refused(cli(*args, "--points" if args[0] == "lipschitz" else "--steps", "2"), "--model", "does nothing")
    refused(cli("fit", "d.npy", "--name", "x"), "--name", "--output")


def test_bound_with_a_preset_exports_the_balanced_grid_it_names(here):
    """docs/models.md's command (grid --bound empirical --data ... --for PRESET) exported the optimal grid and
    ignored both options; the intent is clear, so it exports the grid balanced on that rate."""
    pytest.importorskip("torch")
    np.save("d.npy", np.random.default_rng(0).normal(size=(64, 1)))
    r = cli("grid", "--model", "mixture:line2", "--steps", "4", "--bound", "empirical", "--data", "d.npy", "--for",
            "diffusers-euler", "--samples", "16", "--threads", "1", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = strict_json(r.stdout)
    assert doc["kind"] == "balanced" and doc["bound"] == "empirical" and "selection" not in doc
    g = cli("grid", "--model", "mixture:line2", "--steps", "4", "--data", "d.npy", "--samples", "16", "--threads",
            "1", "--format", "json")
    assert np.allclose(doc["t"], strict_json(g.stdout)["t"], rtol=1e-6)  # the same grid the plain command builds
    for bound in ("tri", "sharp", "empirical"):
        r = cli("grid", "ring8", "--steps", "4", "--bound", bound, "--for", "k-diffusion", "--format", "json",
                *(["--samples", "256"] if bound == "empirical" else []))
        doc = strict_json(r.stdout)
        assert (doc["kind"], doc["bound"]) == ("balanced", bound)


@pytest.mark.parametrize("args", [
    ["grid", "ring8", "--bound", "empirical", "--samples", "256", "--seed", "2", "--steps", "4"],
    ["grid", "ring8", "--kind", "optimal", "--solver", "euler", "--steps", "2", "--seed", "3", "--train-samples",
     "16", "--test-samples", "16", "--effort", "0.05", "--bound", "sharp"],
    ["grid", "ring8", "--steps", "4", "--for", "diffusers-euler", "--solver", "heun", "--seed", "1",
     "--train-samples", "16", "--test-samples", "16", "--effort", "0.05", "--beta-schedule", "linear", "--clip"],
    ["grid", "ring8", "--steps", "4", "--units", "ddpm", "--beta-schedule", "scaled_linear", "--clip"],
    ["grid", "ring8", "--steps", "4", "--kind", "logsnr", "--for", "diffusers-flowmatch", "--shift", "3"],
    ["lipschitz", "ring8", "--points", "3", "--empirical", "100", "--seed", "3", "--ball-mass", "0.9"],
    ["lipschitz", "ring8", "--latex", "--bound", "sharp", "--ball-mass", "0.9"],
    ["mixture", "ring8", "--amp-samples", "4", "--seed", "2"],
    ["certify", "ring8", "--eps", "1e-2", "--t", "0.5", "--verify", "100", "--seed", "1"],
])
def test_options_that_act_are_accepted(here, args):
    r = cli(*args)
    assert r.exit_code == 0, r.output


# ---- kind 9 (continued): standard output full, closed or gone; odd encodings; full disks; Ray
def _flowcert(*args, env=None, **kw):
    kw = {"capture_output": True, **kw} if "stdout" not in kw else kw
    return subprocess.run([sys.executable, "-m", "flowcert.cli", *args], env={**os.environ, **(env or {})},
                          timeout=300, **kw)


def _one_line(r, status, *words):
    err = r.stderr.decode(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == status and "Traceback" not in err and "Exception ignored" not in err, (r.returncode, err)
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("args", [["grid", "ring8"], ["mixture", "ring8", "--amp-samples", "0", "--format", "json"],
                                  ["lipschitz", "ring8", "--points", "20000"], ["--help"], ["grid", "--help"]])
def test_a_full_standard_output_gets_one_line(here, args):
    with open("/dev/full", "wb") as full:
        r = _flowcert(*args, stdout=full, stderr=subprocess.PIPE)
    _one_line(r, 2, "standard output", "No space left on device")


def test_a_closed_standard_output_gets_one_line_and_no_file_takes_its_place(here):
    """`>&-`: before, the table vanished with exit status 0; now one line.  The free descriptor 1 is held by
    /dev/null, so the spec written by -o cannot be opened as descriptor 1 and receive stray output."""
    np.save("d.npy", np.random.default_rng(0).normal(size=(30, 2)))
    for args in (["grid", "ring8"], ["fit", "d.npy", "--max-components", "2", "-o", "s.json"]):
        r = subprocess.run([sys.executable, "-m", "flowcert.cli", *args], stderr=subprocess.PIPE,
                           preexec_fn=lambda: os.close(1), timeout=300)
        _one_line(r, 2, "standard output", "closed")
    assert strict_json(open("s.json").read())["means"]  # the file -o names is whole


def test_a_reader_that_goes_away_gets_one_line_and_status_1(here):
    p = subprocess.Popen([sys.executable, "-m", "flowcert.cli", "lipschitz", "ring8", "--points", "100000",
                          "--format", "csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(100)
    p.stdout.close()  # like `| head -c 100`
    err = p.stderr.read().decode()
    assert p.wait(120) == 1 and "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "broken pipe" in lines[0], lines


@pytest.mark.parametrize("encoding", ["ascii", "ascii:strict", "latin-1:strict", "utf-8:strict"])
def test_file_names_that_are_not_utf8_under_any_output_encoding(here, encoding):
    """A name with bytes that are not UTF-8 (caf\\xe9): written, echoed escaped, loaded back; a missing one
    is named in one line.  Before: UnicodeEncodeError as an internal error after the file was written."""
    np.save("d.npy", np.random.default_rng(0).normal(size=(30, 2)))
    env = {"PYTHONIOENCODING": encoding}
    name = os.fsdecode(b"caf\xe9.yaml")
    r = _flowcert("fit", "d.npy", "--max-components", "2", "-o", name, env=env)
    # the path is echoed escaped (numcore.checks.printable: a surrogate for a byte that is not UTF-8 as \udce9)
    assert r.returncode == 0 and b"wrote caf\\udce9.yaml" in r.stdout, (r.stdout, r.stderr)
    assert b"caf\xe9.yaml" in os.listdir(b".")
    m = _flowcert("mixture", name, "--amp-samples", "0", env=env)
    assert m.returncode == 0 and m.stdout.startswith(b"mixture caf"), m.stderr
    g = _flowcert("grid", "ring8", "-o", os.fsdecode(b"\xff.json"), env=env)
    assert g.returncode == 0 and strict_json(open(b"\xff.json").read())["t"]
    _one_line(_flowcert("mixture", os.fsdecode(b"nope\xff.yaml"), env=env), 2, "nope")


def test_full_disk_at_the_run_folders_lock_names_the_folder(here, monkeypatch):
    pytest.importorskip("torch")
    from flowcert.distill import runfiles

    def full(*a):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runfiles.os, "pwrite", full)
    refused(cli("validate", "line2", "--preset", "quick", "--out", "run"), "run", "lock file", "No space left")


def test_full_disk_in_the_middle_of_a_validate_run_leaves_no_partial_file(here, monkeypatch):
    """The third file of a new run cannot be written (ENOSPC from the atomic writer's fsync): one line naming it
    and the way back; no temporary file is left; what was written before is whole."""
    pytest.importorskip("torch")
    from flowcert.numcore import io as fio

    calls = {"n": 0}
    fsync = os.fsync

    def fill(fd):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(fio.os, "fsync", fill)
    r = cli("validate", "line2", "--steps", "1", "--grids", "uniform", "--seeds", "1", "--train-samples", "64",
            "--test-samples", "32", "--iters", "5", "--amp-times", "1", "--amp-samples", "8", "--lip-samples", "4",
            "--out", "run", "--quiet")
    refused(r, "No space left on device", "resume")
    files = [p for p in (here / "run").rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")]
    for p in files:
        if p.suffix == ".json":
            strict_json(p.read_text())


def _tmpfs(size: str):
    return shutil.which("unshare") and os.geteuid() == 0 and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _tmpfs("1"), reason="needs root and unshare to mount a private tmpfs")
def test_validate_on_a_really_full_disk(here):
    """A 300 KiB tmpfs (mounted in a private namespace): the run stops with one line, no temporary file left."""
    script = (f"mount -t tmpfs -o size=300k tmpfs {here} && cd {here} && "
              f"{sys.executable} -m flowcert.cli validate line2 --steps 1,2 --grids uniform,balanced --seeds 1 "
              "--train-samples 64 --test-samples 32 --iters 5 --amp-times 1 --amp-samples 8 --lip-samples 4 "
              "--out run --quiet; echo status=$?; find . -name '*.tmp' | wc -l")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "status=2" in r.stdout and r.stdout.strip().endswith("0"), (r.stdout, r.stderr)
    assert len(lines) == 1 and "No space left on device" in lines[0], lines


def test_ray_that_cannot_start_gets_one_line(here):
    pytest.importorskip("ray")
    args = ["validate", "line2", "--steps", "1", "--grids", "uniform", "--seeds", "1", "--train-samples", "64",
            "--test-samples", "32", "--iters", "5", "--amp-times", "1", "--amp-samples", "8", "--lip-samples", "4",
            "--executor", "ray", "--quiet"]
    _one_line(_flowcert(*args, "--out", "a", env={"RAY_TMPDIR": "/dev/null"}), 2, "Ray did not start", "resume")
    clock = time.time()
    _one_line(_flowcert(*args, "--out", "b", "--ray-address", "127.0.0.1:9"), 2, "no Ray head answers")
    assert time.time() - clock < 60 and not os.path.exists("b")  # refused before any work
    _one_line(_flowcert(*args, "--out", "c", "--ray-address", "nonsense"), 2, "HOST:PORT")


# ---- kind 11: defaults that hurt on a busy machine
def test_model_functions_use_the_measured_thread_default_and_restore_the_callers():
    torch = pytest.importorskip("torch")
    import flowcert
    from flowcert.numcore.checks import OPTIONS

    seen = []

    def fn(x, s):
        seen.append(torch.get_num_threads())
        return 0.5 * x

    m = flowcert.torch_model(fn, shape=(2,))
    before = torch.get_num_threads()
    flowcert.model_lipschitz(m, points=2, samples=16)
    assert set(seen) == {OPTIONS["threads"].default} and torch.get_num_threads() == before
    seen.clear()
    flowcert.model_lipschitz(m, points=2, samples=16, threads=2)
    assert set(seen) == {2} and torch.get_num_threads() == before


def test_long_model_commands_print_a_start_line_when_not_on_a_terminal(here, monkeypatch):
    pytest.importorskip("torch")
    from flowcert import cli as fcli

    small = cli("lipschitz", "--model", "mixture:line2", "--points", "2", "--empirical", "16")
    assert small.exit_code == 0 and small.stderr == ""  # a short run prints nothing
    monkeypatch.setattr(fcli, "LONG_RUN_EVALUATIONS", 0)
    r = cli("lipschitz", "--model", "mixture:line2", "--points", "2", "--empirical", "16", "--iters", "3")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 0 and len(lines) == 1, r.stderr
    assert lines[0].startswith("flowcert lipschitz --model 'mixture:line2': starting: E||J|| at 2 times x 16 samples")
    assert "Lanczos <= 3 iterations; 1 torch thread: about 4,320 model evaluations" in lines[0]  # 2x16x7 + 16x256
    for args in (["grid", "--kind", "optimal", "--solver", "euler", "--steps", "2", "--train-samples", "16",
                  "--test-samples", "16", "--teacher-steps", "4"],
                 ["solvers", "--steps", "2", "--samples", "16", "--train-samples", "16", "--teacher-steps", "4"]):
        r = cli(*args, "--model", "mixture:line2")
        assert r.exit_code == 0 and "starting: its teacher (4 RK4 steps) on 16 test and 16 training" in r.stderr
    r = cli("grid", "--model", "mixture:line2", "--kind", "edm")
    assert r.exit_code == 0 and r.stderr == ""  # a closed form evaluates nothing


# ----------------------------------------------------------------------------- shared: tiny diffusers folders
FAST = ["--kind", "uniform", "--steps", "4", "--threads", "1"]  # a grid command that loads the model, nothing more


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """{layout: folder} of one tiny UNet2DModel (8 x 8, one channel) with a DDPMScheduler: ``model`` (config.json,
    weights and scheduler_config.json in one folder) and ``pipeline`` (model_index.json, unet/, scheduler/)."""
    diffusers = pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    sched = diffusers.DDPMScheduler()
    unet.save_pretrained(root / "model")
    sched.save_config(root / "model")
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(root / "pipeline")
    return {"model": root / "model", "pipeline": root / "pipeline"}


def model_copy(tiny_models, tmp_path, layout="model", name="m"):
    dest = tmp_path / name
    shutil.copytree(tiny_models[layout], dest)
    return dest


def set_field(path, field, raw):
    """``field`` of the JSON file ``path`` set to the raw JSON text ``raw`` (NaN, Infinity, "8", ...)."""
    cfg = json.loads(path.read_text())
    cfg[field] = "@@"
    path.write_text(json.dumps(cfg).replace('"@@"', raw))


def cli_process(*args, env=None, cwd=None, timeout=300):
    """The real command in a fresh process (library log lines reach its stderr there, unlike CliRunner's)."""
    return subprocess.run([sys.executable, "-m", "flowcert.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


# ----------------------------------------------------------------------------- kind 1: model folders and configs
@pytest.mark.parametrize("file, field, raw, words", [
    ("config.json", "sample_size", "NaN", ("sample_size = nan", "expected an integer")),
    ("config.json", "sample_size", '"8"', ("sample_size = '8'",)),
    ("config.json", "sample_size", "8.5", ("sample_size = 8.5",)),
    ("config.json", "sample_size", "1e300", ("sample_size", "4096")),
    ("config.json", "in_channels", "true", ("in_channels = True",)),
    ("config.json", "in_channels", "-1", ("in_channels = -1",)),
    ("config.json", "block_out_channels", "[8, Infinity]", ("block_out_channels[1] = inf",)),
    ("config.json", "norm_num_groups", "0", ("norm_num_groups = 0",)),
    ("config.json", "planted_key", "1", ("unknown key 'planted_key'",)),
    ("config.json", "quantization_config", '{"bits": 4}', ("unknown key",)),
    ("config.json", "_class_name", "NaN", ("_class_name = nan", "expected a string")),
    ("scheduler_config.json", "num_train_timesteps", "Infinity", ("num_train_timesteps = inf",)),
    ("scheduler_config.json", "num_train_timesteps", "999.5", ("num_train_timesteps = 999.5",)),
    ("scheduler_config.json", "num_train_timesteps", "10000000000", ("num_train_timesteps",)),
    ("scheduler_config.json", "beta_start", "NaN", ("beta_start = nan",)),
    ("scheduler_config.json", "beta_end", "2.0", ("beta_end = 2",)),
    ("scheduler_config.json", "beta_start", '"0.0001"', ("beta_start = '0.0001'",)),
    ("scheduler_config.json", "trained_betas", "[0.1, NaN, 0.2]", ("trained_betas[1] = nan",)),
    ("scheduler_config.json", "trained_betas", '["a", "b"]', ("trained_betas[0] = 'a'",)),
    ("scheduler_config.json", "beta_schedule", '"cosine-ish"', ("beta_schedule = 'cosine-ish'", "linear")),
    ("scheduler_config.json", "timestep_spacing", '"sideways"', ("timestep_spacing = 'sideways'",)),
    ("scheduler_config.json", "prediction_type", '"x0"', ("prediction_type = 'x0'",)),
    ("scheduler_config.json", "clip_sample", '"yes"', ("clip_sample = 'yes'", "true or false")),
    ("scheduler_config.json", "planted_key", '"x"', ("unknown key 'planted_key'",)),
    ("scheduler_config.json", "_class_name", '"UNet2DModel"', ("_class_name = 'UNet2DModel'", "scheduler")),
])
def test_every_config_field_is_checked_with_file_field_and_value(tiny_models, tmp_path, file, field, raw, words):
    m = model_copy(tiny_models, tmp_path)
    set_field(m / file, field, raw)
    line = refused(cli("grid", "--model", m, *FAST), file, *words)
    assert line.count(str(m)) >= 1  # the file is named in full


def test_a_config_that_is_not_an_object_or_too_large_a_sample_is_refused(tiny_models, tmp_path):
    m = model_copy(tiny_models, tmp_path)
    (m / "config.json").write_text("[1, 2]")
    refused(cli("grid", "--model", m, *FAST), "config.json", "is a list: expected a JSON object")
    m = model_copy(tiny_models, tmp_path, name="big")
    set_field(m / "config.json", "sample_size", "4096")
    set_field(m / "config.json", "in_channels", "4096")  # every size in its domain, the sample 2^36 numbers
    refused(cli("grid", "--model", m, *FAST), "samples of shape (4096, 4096, 4096)", "at most 16777216")


@pytest.mark.parametrize("field, raw, words", [
    ("scheduler", "NaN", ("model_index.json", "scheduler = nan")),
    ("unet", '"UNet2DModel"', ("model_index.json", "unet = 'UNet2DModel'")),
    ("unet", '["diffusers", "UNet2DModel", "x"]', ("model_index.json", "unet has 3 entries")),
])
def test_pipeline_index_is_checked(tiny_models, tmp_path, field, raw, words):
    m = model_copy(tiny_models, tmp_path, "pipeline")
    set_field(m / "model_index.json", field, raw)
    refused(cli("grid", "--model", m, *FAST), *words)


@pytest.mark.parametrize("file", ["config.json", "scheduler_config.json"])
@pytest.mark.parametrize("special", ["fifo", "dev-zero", "folder"])
def test_special_files_in_a_model_folder_are_refused_before_reading(tiny_models, tmp_path, file, special):
    m = model_copy(tiny_models, tmp_path)
    (m / file).unlink()
    if special == "fifo":
        os.mkfifo(m / file)
    elif special == "dev-zero":
        os.symlink("/dev/zero", m / file)
    else:
        (m / file).mkdir()
    clock = time.time()
    refused(cli("grid", "--model", m, *FAST), file, {"fifo": "FIFO", "dev-zero": "device", "folder": "folder"}[special])
    assert time.time() - clock < 60


def test_huge_config_is_refused_after_its_limit(tiny_models, tmp_path):
    from flowcert.numcore.checks import CONFIG_BYTES

    m = model_copy(tiny_models, tmp_path)
    with open(m / "config.json", "r+b") as fh:
        fh.truncate(2**31)  # sparse: 2 GiB of zeros after the JSON object
    refused(cli("grid", "--model", m, *FAST), "config.json", f"larger than {CONFIG_BYTES} bytes")


def test_deeply_nested_config_is_refused(tiny_models, tmp_path):
    for depth, words in ((50000, ("nested too deeply",)), (40, ("nested more than 32",))):
        m = model_copy(tiny_models, tmp_path, name=f"m{depth}")
        set_field(m / "config.json", "act_fn", "[" * depth + "]" * depth)
        refused(cli("grid", "--model", m, *FAST), "config.json", *words)


def test_a_refused_model_prints_one_line_and_a_valid_one_none(tiny_models, tmp_path):
    """In a real process (where diffusers' logger writes): a config field diffusers would warn about is refused in
    one line, and a valid folder with a field of another scheduler (which diffusers logs as ignored) prints
    nothing on stderr."""
    m = model_copy(tiny_models, tmp_path)
    set_field(m / "scheduler_config.json", "planted_key", "1")
    r = cli_process("grid", "--model", m, *FAST)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    good = model_copy(tiny_models, tmp_path, name="good")
    set_field(good / "scheduler_config.json", "use_karras_sigmas", "false")  # an Euler field, not DDPM's
    r = cli_process("grid", "--model", good, *FAST)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_valid_folders_load_with_identical_numbers(tiny_models, tmp_path):
    """The checked loader gives the network diffusers' from_pretrained gives (bit for bit, with the same plain
    attention processor flowcert sets for double backward)."""
    torch = pytest.importorskip("torch")
    import diffusers

    import flowcert
    from flowcert.models.families import classic_attention as _classic_attention

    for layout, sub in (("model", ""), ("pipeline", "unet")):
        m = flowcert.load_model(str(tiny_models[layout]))
        ref = diffusers.UNet2DModel.from_pretrained(tiny_models[layout] / sub).eval()
        assert _classic_attention(ref) == m.describe()["attention_layers"] == 1
        x, ts = torch.randn(3, 1, 8, 8), torch.tensor([10.0, 500.0, 990.0])
        assert torch.equal(m.fn(x, ts), ref(x, ts).sample.detach())


def test_scheduler_config_dicts_and_files_share_the_one_schema(here):
    import flowcert

    with pytest.raises(flowcert.InputError, match="num_train_timesteps = inf"):
        flowcert.export_grid("ring8", 4, "diffusers-euler", kind="uniform",
                             scheduler_config={"_class_name": "EulerDiscreteScheduler",
                                               "num_train_timesteps": float("inf")})
    (here / "sc.json").write_text('{"_class_name": "EulerDiscreteScheduler", "beta_end": NaN}')
    refused(cli("grid", "ring8", "--for", "diffusers-euler", "--kind", "uniform", "--scheduler-config", "sc.json"),
            "--scheduler-config 'sc.json'", "beta_end = nan")
    os.mkfifo(here / "fifo.json")
    refused(cli("grid", "ring8", "--for", "diffusers-euler", "--kind", "uniform", "--scheduler-config", "fifo.json"),
            "FIFO")


# ----------------------------------------------------------------------------- kind 2: weights and checkpoints
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _edit_weights(folder, edit):
    from safetensors.torch import load_file, save_file

    sd = load_file(folder / WEIGHTS)
    edit(sd)
    save_file(sd, folder / WEIGHTS)


@pytest.mark.parametrize("edit, words", [
    (lambda sd: sd.pop("conv_in.bias"), ("lack 1 tensor", "'conv_in.bias'")),
    (lambda sd: sd.__setitem__("planted.weight", sd["conv_in.bias"].clone()), ("hold 1 tensor", "'planted.weight'")),
    (lambda sd: sd.__setitem__("conv_in.bias", sd["conv_in.bias"][:-1].clone()), ("'conv_in.bias' has shape (7,)",)),
    (lambda sd: sd.__setitem__("conv_in.weight", sd["conv_in.weight"].to(__import__("torch").int8)),
     ("'conv_in.weight' has dtype I8", "floating-point")),
    (lambda sd: sd["conv_in.weight"].view(-1).__setitem__(0, float("nan")), ("'conv_in.weight' holds NaN",)),
    (lambda sd: sd["conv_out.bias"].fill_(float("inf")), ("'conv_out.bias' holds NaN or infinite",)),
], ids=["missing", "extra", "shape", "int8", "nan", "inf"])
def test_weights_must_match_the_config_exactly(tiny_models, tmp_path, edit, words):
    m = model_copy(tiny_models, tmp_path)
    _edit_weights(m, edit)
    refused(cli("grid", "--model", m, *FAST), WEIGHTS, *words)


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[: len(b) // 2], ("truncated",)),
    (lambda b: b"", ("0 bytes long",)),
    (lambda b: os.urandom(len(b)), ("header",)),
    (lambda b: (2**40).to_bytes(8, "little") + b[8:], ("declares a header of 1099511627776 bytes",)),
    (lambda b: b + b"\0" * 64, ("padded",)),
    (lambda b: b[:8] + b[8:].replace(b'"F32"', b'"F99"', 1), ("unknown dtype",)),
], ids=["truncated", "empty", "junk", "header-length", "padded", "dtype"])
def test_damaged_safetensors_are_refused_from_the_header(tiny_models, tmp_path, damage, words):
    m = model_copy(tiny_models, tmp_path)
    (m / WEIGHTS).write_bytes(damage((m / WEIGHTS).read_bytes()))
    refused(cli("grid", "--model", m, *FAST), WEIGHTS, *words)


def test_pickled_weights_are_never_unpickled(tiny_models, tmp_path):
    import pickle

    m = model_copy(tiny_models, tmp_path)
    (m / WEIGHTS).unlink()
    marker = tmp_path / "ran"
    (m / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": _Payload(str(marker))}))
    refused(cli("grid", "--model", m, *FAST), "diffusion_pytorch_model.bin", "pickle", "never loads")
    assert not marker.exists()
    os.mkfifo(m / WEIGHTS)
    refused(cli("grid", "--model", m, *FAST), WEIGHTS, "FIFO")


def test_sharded_safetensors_load(tiny_models, tmp_path):
    """diffusers' sharded layout (an index naming the shards) loads, and its index is checked."""
    from safetensors.torch import load_file, save_file

    m = model_copy(tiny_models, tmp_path)
    sd = load_file(m / WEIGHTS)
    (m / WEIGHTS).unlink()
    keys = sorted(sd)
    shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, m / name)
    index = {"metadata": {}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (m / (WEIGHTS + ".index.json")).write_text(json.dumps(index))
    assert cli("grid", "--model", m, *FAST).exit_code == 0
    index["weight_map"][keys[0]] = "../outside.safetensors"
    (m / (WEIGHTS + ".index.json")).write_text(json.dumps(index))
    refused(cli("grid", "--model", m, *FAST), "weight_map")


def _teacher_of(run):
    (run / JOB / "result.json").unlink()
    return run / "teacher" / "0-one-s0.pt"


def _nan_teacher(run):
    import torch

    path = _teacher_of(run)
    data = torch.load(path, weights_only=True)
    data["train"][0, 0, 0] = float("nan")
    torch.save(data, path)


def _int8_group(run):
    import torch

    (run / JOB / "result.json").unlink()
    data = torch.load(run / JOB / "group0.pt", weights_only=True)
    data["state"]["weights"] = [w.to(torch.int8) for w in data["state"]["weights"]]
    torch.save(data, run / JOB / "group0.pt")


def _float16_group(run):
    import torch

    (run / JOB / "result.json").unlink()
    data = torch.load(run / JOB / "group0.pt", weights_only=True)
    data["state"]["biases"] = [b.to(torch.float16) for b in data["state"]["biases"]]
    torch.save(data, run / JOB / "group0.pt")


def _fifo(path):
    def damage(run):
        (run / JOB / "result.json").unlink() if path != "result.json" else None
        (run / JOB / path).unlink()
        os.mkfifo(run / JOB / path)

    return damage


@pytest.mark.parametrize("damage, words", [
    (_nan_teacher, ("0-one-s0.pt", "non-finite", "delete it")),
    (lambda f: _teacher_of(f).write_bytes(os.urandom(4096)), ("0-one-s0.pt", "cannot be loaded")),
    (_int8_group, ("group0.pt", "dtype torch.int8", "delete the folder")),
    (_float16_group, ("group0.pt", "dtype torch.float16")),
    (_fifo("group0.pt"), ("group0.pt", "not a regular file")),
    (_fifo("result.json"), ("result.json", "FIFO")),
    (lambda f: (f / JOB / "result.json").write_text(
        (f / JOB / "result.json").read_text().replace('"value": ', '"value": NaN, "x": ', 1)),
     ("result.json", "constant NaN", "delete the folder")),
    (lambda f: (f / JOB / "result.json").write_text(
        (f / JOB / "result.json").read_text().replace('"N": 1', '"N": 1, "N": 1', 1)), ("result.json", "'N' twice")),
], ids=["nan-teacher", "junk-teacher", "int8-group", "float16-group", "fifo-group", "fifo-result", "nan-result",
        "duplicate-key-result"])
def test_resume_refuses_damaged_checkpoints_and_results(damaged, damage, words):
    damage(damaged)
    clock = time.time()
    refused(cli("validate", "--resume", damaged), "run file", *words)
    assert time.time() - clock < 60


def test_a_pickle_planted_in_a_run_folder_never_runs(damaged, tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "ran"
    (damaged / JOB / "result.json").unlink()
    torch.save({"state": _Payload(str(marker)), "loss": 0.0, "seconds": 1.0}, damaged / JOB / "group0.pt")
    refused(cli("validate", "--resume", damaged), "group0.pt", "never run")
    assert not marker.exists()


# ----------------------------------------------------------------------------- kind 4: FILE.py:NAME runs the file
GOOD_MODEL = ("import flowcert\n"
              "MODEL = flowcert.torch_model(lambda x, s, *a, **k: 0 * x, shape=(2,), prediction='sample')\n")


@pytest.mark.parametrize("body, words", [
    ("import sys\nsys.exit(0)\n", ("called sys.exit(0)",)),
    ("import os\nos._exit(0)\n", ("ended the process (exit status 0)",)),
    (GOOD_MODEL + "import os\nos._exit(3)\n", ("ended the process (exit status 3)",)),
    ("raise KeyboardInterrupt\n", ("KeyboardInterrupt",)),
    ("raise SystemExit('bye')\n", ("sys.exit('bye')",)),
    ("raise GeneratorExit\n", ("GeneratorExit",)),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", ("signal 9",)),
    ("import sys\ndef MODEL():\n    sys.exit(0)\n", ("calling MODEL()", "sys.exit(0)")),
    ("import os\ndef MODEL():\n    os._exit(0)\n", ("ended the process",)),
    ("def MODEL():\n    raise KeyboardInterrupt\n", ("calling MODEL()", "KeyboardInterrupt")),
    ("import time\ntime.sleep(3600)\n", ("took more than 3 s", "FLOWCERT_IMPORT_TIMEOUT")),
    ("import time\ndef MODEL():\n    time.sleep(3600)\n", ("took more than 3 s",)),
], ids=["sys-exit", "os-exit", "os-exit-3", "keyboard-interrupt", "system-exit-text", "generator-exit", "sigkill",
        "name-sys-exit", "name-os-exit", "name-interrupt", "sleeps", "name-sleeps"])
def test_a_model_file_that_exits_raises_or_hangs_is_refused(here, monkeypatch, body, words):
    pytest.importorskip("torch")
    monkeypatch.setenv("FLOWCERT_IMPORT_TIMEOUT", "3")
    (here / "f.py").write_text(body)
    clock = time.time()
    refused(cli("grid", "--model", "f.py:MODEL", *FAST), "f.py", *words)
    assert time.time() - clock < 60


def test_a_model_file_is_named_as_code_in_help_and_runs(here, monkeypatch):
    pytest.importorskip("torch")
    text = " ".join(cli("grid", "--help").stdout.split())
    assert "FILE.py:NAME (runs the file FILE.py as Python code" in text and "FLOWCERT_IMPORT_TIMEOUT" in text
    (here / "f.py").write_text(GOOD_MODEL + "open('runs.txt', 'a').write('x')\n")
    r = cli("grid", "--model", "f.py:MODEL", *FAST)
    assert r.exit_code == 0, r.output
    assert (here / "runs.txt").read_text() == "xx"  # once in the checking child, once here (documented)
    monkeypatch.setenv("FLOWCERT_IMPORT_TIMEOUT", "-1")
    refused(cli("grid", "--model", "f.py:MODEL", *FAST), "FLOWCERT_IMPORT_TIMEOUT")


def test_a_model_file_that_exits_in_a_real_process_is_not_success(here):
    """os._exit(0) at import, run as the real command: exit status 2 and one line (it was 0 with no output)."""
    pytest.importorskip("torch")
    (here / "f.py").write_text("import os\nos._exit(0)\n")
    r = cli_process("grid", "--model", "f.py:MODEL", *FAST, cwd=here)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "ended the process" in r.stderr


# ----------------------------------------------------------------------------- kind 5: outputs that destroy inputs
def _outputs(kind, m, tmp_path):
    return {"config": m / "config.json", "weights": m / WEIGHTS, "scheduler": m / "scheduler_config.json",
            "link": tmp_path / "link.json", "hardlink": tmp_path / "hard.json"}[kind]


@pytest.mark.parametrize("kind", ["config", "weights", "scheduler", "link", "hardlink"])
@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_outputs_onto_the_models_own_files_are_refused(tiny_models, tmp_path, kind, option):
    m = model_copy(tiny_models, tmp_path)
    if kind == "link":
        os.symlink(m / "config.json", tmp_path / "link.json")
    if kind == "hardlink":
        os.link(m / WEIGHTS, tmp_path / "hard.json")
    target = _outputs(kind, m, tmp_path)
    before = target.read_bytes()
    args = (["grid", "--model", m, *FAST] if option == "-o" else
            ["lipschitz", "--model", m, "--points", "2", "--empirical", "16", "--iters", "2", "--threads", "1"])
    refused(cli(*args, option, target), "is an input of this command")
    assert target.read_bytes() == before


@pytest.mark.parametrize("file", ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json"])
def test_outputs_onto_a_pipelines_files_are_refused(tiny_models, tmp_path, file):
    m = model_copy(tiny_models, tmp_path, "pipeline")
    refused(cli("grid", "--model", m, *FAST, "-o", m / file), "is an input of this command")


def test_outputs_onto_a_model_file_a_spec_or_data_are_refused(here):
    pytest.importorskip("torch")
    (here / "f.py").write_text(GOOD_MODEL)
    refused(cli("grid", "--model", "f.py:MODEL", *FAST, "-o", "f.py"), "is an input of this command")
    assert (here / "f.py").read_text() == GOOD_MODEL
    spec_file(here, "s.json", {"means": [[0.0, 0.0], [2.0, 0.0]], "variance": 0.1})
    refused(cli("grid", "--model", "mixture:s.json", *FAST, "-o", "s.json"), "is an input of this command")
    np.save(here / "d.npy", np.zeros((16, 2)))
    refused(cli("solvers", "--model", "mixture:s.json", "--reference", "d.npy", "--steps", "4", "--plot", "d.npy"),
            "is an input of this command")


def test_validate_never_writes_over_its_spec(here):
    (here / "out").mkdir()
    spec = spec_file(here / "out", "config.json", {"means": [[0.5, 0.0]], "variance": 0.05})
    before = (here / "out" / "config.json").read_text()
    refused(cli("validate", spec, *VALIDATE, "--out", "out"), "config.json", "would be overwritten")
    assert (here / "out" / "config.json").read_text() == before
    os.symlink(here / "out" / "config.json", here / "spec.json")  # through a link, too
    refused(cli("validate", "spec.json", *VALIDATE, "--out", "out"), "would be overwritten")


# ----------------------------------------------------------------------------- kind 10: duplicate keys, control characters
@pytest.mark.parametrize("name, text", [
    ("d.json", '{"means": [[0, 0], [2, 0]], "variance": 0.1, "variance": 5}'),
    ("d.yaml", "means: [[0, 0], [2, 0]]\nvariance: 0.1\nvariance: 5\n"),
    ("d.toml", "means = [[0, 0], [2, 0]]\nvariance = 0.1\nvariance = 5\n"),
    ("n.json", '{"means": [[0, 0], [2, 0]], "cov": {"a": 1, "a": 2}}'),
])
def test_a_key_given_twice_is_refused_in_every_format(here, name, text):
    line = refused(cli("mixture", spec_file(here, name, text)), name)
    assert "twice" in line or "overwrite" in line


def test_duplicate_keys_in_configs_and_run_files_are_refused(tiny_models, tmp_path, damaged):
    m = model_copy(tiny_models, tmp_path)
    text = (m / "scheduler_config.json").read_text()
    (m / "scheduler_config.json").write_text(text.replace('"prediction_type": "epsilon"',
                                                          '"prediction_type": "epsilon", "prediction_type": "sample"'))
    refused(cli("grid", "--model", m, *FAST), "scheduler_config.json", "'prediction_type' twice")
    cfg = (damaged / "config.json").read_text()
    (damaged / "config.json").write_text(cfg.replace('"seeds": 1', '"seeds": 1, "seeds": 1', 1))
    refused(cli("validate", "--resume", damaged), "config.json", "'seeds' twice")


@pytest.mark.parametrize("name", ["ring\nforged line", "ring\x1b[2J", "ring\u202egpj.exe", "a\rb", "\u2028", "x\x00"])
def test_names_with_control_characters_are_refused_and_never_shown(here, name):
    line = refused(cli("mixture", spec_file(here, "s.json", {"name": name, "means": [[0, 0]], "variance": 1})),
                   "name holds the control character U+")
    assert name not in line and "forged" not in line


def test_names_flowcert_derives_are_escaped(here, tiny_models):
    spec = spec_file(here, "a\nforged line.json", {"means": [[0, 0], [2, 0]], "variance": 0.1})
    r = cli("mixture", spec, "--amp-samples", "0")
    assert r.exit_code == 0 and r.stdout.startswith("mixture a\\nforged line:"), r.stdout[:80]
    assert not any(ln.startswith("forged") for ln in r.stdout.splitlines())
    m = model_copy(tiny_models, here, name="m\nforged\x1b[31m")
    r = cli("grid", "--model", m, *FAST, "--format", "table")
    assert r.exit_code == 0 and "\x1b" not in r.stdout, r.output
    assert not any(ln.startswith("forged") for ln in r.stdout.splitlines())


def test_fit_writes_only_names_the_reader_accepts(here):
    np.save(here / "d.npy", np.random.default_rng(0).normal(size=(200, 2)))
    refused(cli("fit", "d.npy", "--max-components", "2", "--name", "x\nforged", "-o", "s.yaml"), "name", "U+000A")
    assert not (here / "s.yaml").exists()
    r = cli("fit", "d.npy", "--max-components", "2", "-o", "a\nforged.yaml")
    assert r.exit_code == 0, r.output
    assert "wrote a\\nforged.yaml" in r.stdout and not any(ln.startswith("forged") for ln in r.stdout.splitlines())
    r = cli("mixture", "a\nforged.yaml", "--amp-samples", "0")
    assert r.exit_code == 0 and r.stdout.startswith("mixture a\\nforged:"), r.output


def test_the_name_rule_and_escaping():
    from flowcert.numcore.checks import InputError, name, printable

    assert name("name", "ring8 (fitted, ü)") == "ring8 (fitted, ü)"
    assert printable("a\nb\x1b\u202ec\udcff") == "a\\nb\\x1b\\u202ec\\udcff"
    assert printable("x" * 300) == "x" * 197 + "..."
    for bad in ("", "x" * 201, 5, "a\tb", "a\x7fb", "\u200b"):
        with pytest.raises(InputError):
            name("name", bad)
    import flowcert

    pytest.importorskip("torch")
    with pytest.raises(InputError, match="`name` holds the control character"):
        flowcert.torch_model(lambda x, s: x, shape=(2,), name="m\nforged")


def test_keys_with_control_characters_and_deep_documents_are_refused(here):
    line = refused(cli("mixture", spec_file(here, "k.json", json.dumps({"means": [[0]], "variance": 1, "a\nb": 1}))),
                   "control character U+000A")
    assert "a\nb" not in line
    refused(cli("mixture", spec_file(here, "deep.yaml", "means: [[0]]\nvariance: 1\nx: " + "[" * 40 + "]" * 40)),
            "nested more than 32")


def test_a_foreign_pickle_protocol_is_refused_without_a_warning_line(tmp_path):
    """A junk run file that starts like a pickle of an unknown protocol made torch print a UserWarning on stderr
    before flowcert's one line (battery case run-junk-teacher, when the random bytes began with 0x80)."""
    import warnings

    from flowcert.distill.runfiles import torch_load_safe

    path = tmp_path / "teacher.pt"
    path.write_bytes(b"\x80\x09" + bytes(range(256)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            torch_load_safe(path)
    assert not caught
