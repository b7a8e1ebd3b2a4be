"""The package's layout: every package ships with `pip install .`, and source files stay small."""
import importlib.metadata
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"


def _editable():
    direct_url = importlib.metadata.distribution("minidl").read_text("direct_url.json")
    return bool(direct_url) and json.loads(direct_url).get("dir_info", {}).get("editable", False)


def test_every_package_ships():
    """A package left out of the wheel would be missing after `pip install .` (not after `pip install -e .`)."""
    if _editable():
        pytest.skip("an editable install imports the source tree itself")
    shipped = {str(f) for f in importlib.metadata.files("minidl")}
    for init in (SOURCE / "minidl").rglob("__init__.py"):
        assert str(init.relative_to(SOURCE)) in shipped, f"{init.relative_to(ROOT)} is not installed"


@pytest.mark.parametrize("pattern", ["src/minidl/**/*.py", "csrc/**/*.cpp", "csrc/**/*.h", "csrc/**/*.cu"])
def test_source_files_are_small(pattern):
    for path in ROOT.glob(pattern):
        lines = len(path.read_text().splitlines())
        assert lines <= 300, f"{path.relative_to(ROOT)} has {lines} lines"
