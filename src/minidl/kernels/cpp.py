"""The kernel interface over the C++/CUDA extension: every op of its table (minidl._C._ops).

Each op is called through minidl._C.direct (pybind11 into the dispatcher's typed path), which runs the
same registered kernels as torch.ops.minidl.* without its per-call boxing: see csrc/bindings.cpp.
"""
import torch

from minidl import _C  # loading the library also registers the ops

from . import fake  # noqa: F401  (shape functions for opcheck and torch.compile)

OPS = tuple(name for name, _schema in _C._ops)
globals().update({name: getattr(_C.direct, name) for name in OPS})


def zero_(tensors):
    """Set every tensor to zero (torch._foreach_zero_, which refuses an empty list)."""
    if tensors:
        torch._foreach_zero_(tensors)
