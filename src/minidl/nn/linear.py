"""Linear: y = x @ weight.T + bias, on inputs of shape [*, in_features] as torch.nn.Linear."""
import math

from .. import backend as _backend
from .module import _TENSOR, CHECKED, Module, check_dtype, check_sizes, kernel_error, new_param


def as_rows(module, input, features):
    """(input as a [rows, features] matrix, its leading dimensions) for an input of shape [*, features]: a view
    where the strides allow one, else a copy. A matrix (or a non-tensor, for the kernels to refuse) comes back
    as it is, with None."""
    if not isinstance(input, _TENSOR) or input.dim() == 2:
        return input, None
    if input.dim() == 0 or input.shape[-1] != features:
        raise ValueError(f"{module!r}.forward: expected input of shape [*, {features}], got {list(input.shape)}")
    return input.reshape(-1, features), input.shape[:-1]


def grad_rows(module, grad_output, lead, features):
    """grad_output of shape [*lead, features] as a [rows, features] matrix (lead None: a matrix already)."""
    if lead is None:
        return grad_output
    shape = [*lead, features]
    if list(getattr(grad_output, "shape", ())) != shape:
        raise ValueError(f"{module!r}.backward: expected grad_output of shape {shape}, "
                         f"got {list(getattr(grad_output, 'shape', ()))}")
    return grad_output.reshape(-1, features)


class Linear(Module):
    """y = x @ weight.T + bias, initialised like torch.nn.Linear: uniform in ±1/sqrt(in_features). Inputs of shape
    [*, in_features] run as one matrix of their rows; the output has shape [*, out_features]."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        check_sizes("Linear", in_features=in_features, out_features=out_features)
        check_dtype("Linear", dtype)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight, self.grad_weight = new_param("Linear", (out_features, in_features), device, dtype)
        self.weight.uniform_(-bound, bound)
        self.bias = self.grad_bias = None
        if bias:
            self.bias, self.grad_bias = new_param("Linear", (out_features,), device, dtype)
            self.bias.uniform_(-bound, bound)

    def forward_ctx(self, ctx, input):
        weight = self.weight
        input, lead = as_rows(self, input, weight.shape[1])
        try:
            output = _backend.ops.linear_forward(input, weight, self.bias)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        ctx.input, ctx.weight, ctx.lead = input, weight, lead
        return output if lead is None else output.view(*lead, weight.shape[0])

    def backward_ctx(self, ctx, grad_output):
        lead, weight = ctx.lead, ctx.weight
        grad_output = grad_rows(self, grad_output, lead, weight.shape[0])
        try:
            grad_input = _backend.ops.linear_backward(grad_output, ctx.input, weight, self.grad_weight, self.grad_bias)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None
        return grad_input if lead is None else grad_input.view(*lead, weight.shape[1])

    def param(self):
        if self.bias is None:
            return [(self.weight, self.grad_weight)]
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]

    def named_param(self):
        return [(name, p, g) for name, (p, g) in zip(("weight", "bias"), self.param())]

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"
