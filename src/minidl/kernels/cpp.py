"""The kernel interface over the C++/CUDA extension: the ops of torch.ops.minidl.

Called through minidl._C.direct (pybind11 into the dispatcher's typed path), which runs the same
registered kernels as torch.ops.minidl.* without its per-call boxing: see csrc/direct_calls.cpp.
"""
import torch

from minidl._C import direct as _direct  # loading the library also registers the ops

from . import fake  # noqa: F401  (shape functions for opcheck and torch.compile)

linear_forward = _direct.linear_forward
linear_backward = _direct.linear_backward
tanh_forward = _direct.tanh_forward
tanh_backward = _direct.tanh_backward
relu_forward = _direct.relu_forward
relu_backward = _direct.relu_backward
mlp_forward = _direct.mlp_forward
mlp_backward = _direct.mlp_backward
mse_forward = _direct.mse_forward
sgd_step_ = _direct.sgd_step_


def zero_(tensors):
    """Set every tensor to zero (torch._foreach_zero_, which refuses an empty list)."""
    if tensors:
        torch._foreach_zero_(tensors)
