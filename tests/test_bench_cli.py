"""python -m minidl.bench checks its --json target before timing anything, and prints no filesystem path."""
import json
import os
import subprocess
import sys

import pytest

import minidl
import minidl.bench as bench

from conftest import PACKAGE_ROOT, subprocess_env

# Tiny sizes, one section: a run that got past the checks would time for a second or two.
FAST = ["--smoke", "--sections", "ceilings", "--repeats", "1", "--target", "0.001"]


def run_bench(*args, cwd=None):
    """python -m minidl.bench (this process's minidl) in a subprocess."""
    env = subprocess_env(MINIDL_BACKEND="python")  # no warning where the extension is not built
    return subprocess.run([sys.executable, "-m", "minidl.bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_refused_before_timing(proc, *words):
    """Exit status 2, one error line naming the target, and nothing printed or timed before it."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == "" and "..." not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m minidl.bench: error: --json "), proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_json_target_that_is_a_folder_is_refused_before_timing(tmp_path):
    proc = run_bench(*FAST, "--json", str(tmp_path))
    assert_refused_before_timing(proc, str(tmp_path), "is a folder")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_json_target_that_cannot_be_created_is_refused_before_timing():
    # /proc takes no new files, for root too (whom permission bits do not stop).
    proc = run_bench(*FAST, "--json", "/proc/minidl-bench.json")
    assert_refused_before_timing(proc, "/proc/minidl-bench.json", "cannot be written")


def test_json_target_in_a_missing_folder_is_refused_before_timing(tmp_path):
    target = tmp_path / "missing" / "bench.json"
    proc = run_bench(*FAST, "--json", str(target))
    assert_refused_before_timing(proc, str(target), f"folder {target.parent} does not exist")


def test_json_check_leaves_no_file_and_changes_none(tmp_path):
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    old.write_text("earlier results")
    for target in (new, old):
        bench.parse_args(["--json", str(target)])
    assert not new.exists() and old.read_text() == "earlier results"


def test_header_names_versions_not_paths(tmp_path):
    out = tmp_path / "b.json"
    proc = run_bench(*FAST, "--json", "b.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.split("\n### ")[0]
    info = json.loads(out.read_text())["machine"]
    assert f"minidl {minidl.__version__}" in head and info["minidl"] == minidl.__version__
    assert f"torch {info['torch']}" in head and info["cpu"] in head and "threads 1" in head
    for place in (str(PACKAGE_ROOT), os.path.dirname(minidl.__file__), str(tmp_path)):
        assert place not in proc.stdout and place not in json.dumps(info), place
    assert proc.stdout.rstrip().endswith("wrote b.json")
