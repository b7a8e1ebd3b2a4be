"""The package's layout: every package ships, and the Module layer's files stay small."""
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"


def test_pyproject_lists_every_package():
    """A package missing from pyproject.toml would be left out of `pip install .` (but not of `pip install -e .`)."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = [".".join(p.parent.relative_to(SOURCE).parts) for p in (SOURCE / "minidl").rglob("__init__.py")]
    assert sorted(listed) == sorted(found)


@pytest.mark.parametrize("folder", ["nn", "optim"])
def test_module_layer_files_are_small(folder):
    for path in (SOURCE / "minidl" / folder).glob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 300, f"{path.relative_to(ROOT)} has {lines} lines"
