"""Chooses the kernel implementation, in one place: `ops` is the module that the Module layer calls."""
import importlib
import os
import warnings

import torch

from .kernels import python as _python

_BUILD_HINT = "build it with `pip install .` from the minidl checkout (`pip install -e .` to work in the checkout)"

ops = _python
_name = "python"
_cpp = None
_cpp_error = None


def _load_cpp():
    """Import the C++ kernels once; remember why if they can't be loaded."""
    global _cpp, _cpp_error
    if _cpp is not None or _cpp_error is not None:
        return _cpp
    try:
        from . import _build_info
    except ImportError:
        _cpp_error = "the C++ extension minidl._C is not built"
        return None
    if _build_info.TORCH_VERSION != torch.__version__:
        _cpp_error = (f"minidl._C was compiled against torch {_build_info.TORCH_VERSION} but torch "
                      f"{torch.__version__} is installed; either `pip install torch=={_build_info.TORCH_VERSION}`, "
                      f"or rebuild minidl against this torch with `pip install setuptools wheel ninja && "
                      f"pip install --no-build-isolation .` from the checkout")
        return None
    try:
        _cpp = importlib.import_module("minidl.kernels.cpp")
    except (ImportError, OSError, RuntimeError) as e:
        _cpp_error = f"minidl._C failed to load: {e}"
    return _cpp


def _hint():
    """Why the extension did not load, and what to do about it."""
    return _cpp_error if "pip install" in _cpp_error else f"{_cpp_error}; {_BUILD_HINT}"


def cpp_available():
    """True when the C++ extension loads."""
    return _load_cpp() is not None


def get_backend():
    """'cpp' or 'python': the kernels the Module layer calls now."""
    return _name


def set_backend(name):
    """Select 'cpp', 'python' or 'auto' (cpp if it loads, else python with a warning)."""
    global ops, _name
    if name not in ("cpp", "python", "auto"):
        raise ValueError(f"minidl.set_backend: expected 'cpp', 'python' or 'auto', got {name!r}")
    if name == "python":
        ops, _name = _python, "python"
        return
    cpp = _load_cpp()
    if cpp is not None:
        ops, _name = cpp, "cpp"
    elif name == "cpp":
        raise RuntimeError(f"minidl: the cpp backend is unavailable: {_hint()}")
    else:
        warnings.warn(f"minidl: using the pure-Python kernels because {_hint()}", stacklevel=3)
        ops, _name = _python, "python"


_env = os.environ.get("MINIDL_BACKEND", "auto") or "auto"
if _env not in ("cpp", "python", "auto"):
    raise ValueError(f"minidl: environment variable MINIDL_BACKEND must be cpp, python or auto, got {_env!r}")
set_backend(_env)
