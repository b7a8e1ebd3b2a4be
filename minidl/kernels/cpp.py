"""The kernel interface over the C++/CUDA extension: thin wrappers of torch.ops.minidl."""
import torch

import minidl._C  # noqa: F401  (loading the library registers the ops)

from . import fake  # noqa: F401  (shape functions for opcheck and torch.compile)

_ops = torch.ops.minidl
# Resolving the overload once skips torch.ops' per-call lookup.
linear_forward = _ops.linear_forward.default
linear_backward = _ops.linear_backward.default
tanh_forward = _ops.tanh_forward.default
tanh_backward = _ops.tanh_backward.default
relu_forward = _ops.relu_forward.default
relu_backward = _ops.relu_backward.default
mlp_forward = _ops.mlp_forward.default
mlp_backward = _ops.mlp_backward.default
mse_forward = _ops.mse_forward.default
sgd_step_ = _ops.sgd_step_.default
zero_ = torch._foreach_zero_
