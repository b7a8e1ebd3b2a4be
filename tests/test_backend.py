"""Backend selection, the MINIDL_BACKEND variable, and the course's import rule for the fallback."""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minidl
from minidl import backend

PACKAGE = Path(minidl.__file__).parent


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd="/")


def test_set_backend_switches_the_kernels_the_modules_call(backend_name):
    assert minidl.get_backend() == backend_name
    assert backend.ops.__name__ == f"minidl.kernels.{backend_name}"


def test_environment_variable_selects_python():
    out = _run("import minidl; print(minidl.get_backend())", MINIDL_BACKEND="python")
    assert out.returncode == 0 and out.stdout.strip() == "python"


def test_environment_variable_rejects_unknown_names():
    out = _run("import minidl", MINIDL_BACKEND="fortran")
    assert out.returncode != 0 and "MINIDL_BACKEND" in out.stderr and "'fortran'" in out.stderr


def test_auto_prefers_cpp_when_built():
    out = _run("import minidl; print(minidl.get_backend(), minidl.cpp_available())", MINIDL_BACKEND="auto")
    assert out.returncode == 0
    assert out.stdout.split() == (["cpp", "True"] if backend.cpp_available() else ["python", "False"])


def test_missing_extension_explains_how_to_build(monkeypatch):
    monkeypatch.setattr(backend, "_cpp", None)
    monkeypatch.setattr(backend, "_cpp_error", "the C++ extension minidl._C is not built")
    previous = minidl.get_backend()
    try:
        with pytest.raises(RuntimeError, match=r"cpp backend is unavailable: .*not built.*pip install"):
            minidl.set_backend("cpp")
        with pytest.warns(UserWarning, match=r"pure-Python kernels because .*not built"):
            minidl.set_backend("auto")
        assert minidl.get_backend() == "python"
    finally:
        monkeypatch.undo()
        minidl.set_backend(previous)


def test_torch_mismatch_names_both_fixes(monkeypatch):
    info = pytest.importorskip("minidl._build_info")
    monkeypatch.setattr(info, "TORCH_VERSION", "0.0.1")
    monkeypatch.setattr(backend, "_cpp", None)
    monkeypatch.setattr(backend, "_cpp_error", None)
    previous = minidl.get_backend()
    try:
        with pytest.raises(RuntimeError, match=r"compiled against torch 0\.0\.1 but torch .* is installed; either "
                           r"`pip install torch==0\.0\.1`, or rebuild .*pip install --no-build-isolation \.`"):
            minidl.set_backend("cpp")
    finally:
        monkeypatch.undo()
        minidl.set_backend(previous)


def test_installed_package_requires_the_torch_it_was_built_against():
    """pip must not pair the extension with another torch: the runtime requirement is the build's torch."""
    info = pytest.importorskip("minidl._build_info")
    requires = importlib.metadata.requires("minidl") or []
    assert f"torch=={info.TORCH_VERSION}" in [r.replace(" ", "") for r in requires], requires


def _imports(path):
    """(module, names) for every import statement in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
    return found


LAYER = ("nn", "optim")
COURSE_FILES = sorted(str(p.relative_to(PACKAGE)) for folder in LAYER + ("kernels/python", "kernels/checks")
                      for p in (PACKAGE / folder).glob("*.py"))


def test_course_files_are_the_module_layer_and_the_fallback():
    for expected in ("nn/module.py", "nn/linear.py", "optim/sgd.py", "kernels/python/__init__.py",
                     "kernels/checks/__init__.py"):
        assert expected in COURSE_FILES


@pytest.mark.parametrize("relative", COURSE_FILES)
def test_course_import_rule(relative):
    """The fallback and the Module layer import from torch only `empty`; otherwise the stdlib or minidl."""
    # The Module layer's files may import from anywhere in minidl; kernels/: the package's ACTIVATIONS (".."), the checks, and modules of their own package (".", ".name")
    allowed_local = {"kernels/python": r"\.\.|\.\.checks(\.\w+)?|\.\w*",
                     "kernels/checks": r"\.\.|\.\w*"}.get(relative.rsplit("/", 1)[0])
    for module, names in _imports(PACKAGE / relative):
        if module == "torch":
            assert names == ["empty"], f"{relative}: from torch import {names}"
        elif module.startswith("."):
            ok = allowed_local is None or re.fullmatch(allowed_local, module)
            assert ok, f"{relative}: unexpected local import {module}"
        else:
            assert module.split(".")[0] in sys.stdlib_module_names, f"{relative}: imports {module}"


FACTORIES = re.compile(r"new_(empty|empty_strided|zeros|ones|full|tensor)"
                       r"|(zeros|ones|full|rand|randn|randint|empty|empty_strided)_like")


@pytest.mark.parametrize("relative", COURSE_FILES)
def test_course_rule_no_tensor_factory_but_empty(relative):
    """Nor do they make tensors by a method factory (x.new_full, x.new_empty_strided, zeros_like...)."""
    for node in ast.walk(ast.parse((PACKAGE / relative).read_text())):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            assert not FACTORIES.fullmatch(name), f"{relative}:{node.lineno}: {name}"


def test_fallback_kernels_run_without_the_extension():
    code = ("import sys, torch, minidl; torch.set_grad_enabled(False); net = minidl.Sequential(minidl.Linear(2, 3), "
            "minidl.Tanh()); y = net(torch.zeros(4, 2)); net.backward(torch.ones_like(y)); "
            "print(minidl.get_backend(), 'minidl._C' in sys.modules, tuple(y.shape))")
    out = _run(code, MINIDL_BACKEND="python")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", "False", "(4,", "3)"]
