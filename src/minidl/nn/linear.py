"""Linear: y = x @ weight.T + bias."""
import math

from torch import empty

from .. import backend as _backend
from .module import CHECKED, FLOAT_DTYPES, Module, kernel_error


class Linear(Module):
    """y = x @ weight.T + bias, initialised like torch.nn.Linear: uniform in ±1/sqrt(in_features)."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Linear: expected {name} to be a positive int, got {value!r}")
        if dtype is not None and str(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"Linear: expected dtype float32 or float64 (what the kernels take), got {dtype!r}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        try:
            self.weight = empty((out_features, in_features), device=device, dtype=dtype).uniform_(-bound, bound)
        except (RuntimeError, TypeError, AssertionError) as e:  # torch asserts when built without CUDA
            kind = TypeError if isinstance(e, TypeError) else RuntimeError
            raise kind(f"Linear: cannot make parameters with device={device!r}, dtype={dtype!r}: {e}") from None
        self.grad_weight = empty(self.weight.shape, device=device, dtype=dtype).zero_()
        self.bias = self.grad_bias = None
        if bias:
            self.bias = empty((out_features,), device=device, dtype=dtype).uniform_(-bound, bound)
            self.grad_bias = empty(self.bias.shape, device=device, dtype=dtype).zero_()

    def forward_ctx(self, ctx, input):
        weight = self.weight
        try:
            output = _backend.ops.linear_forward(input, weight, self.bias)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        ctx.input, ctx.weight = input, weight
        return output

    def backward_ctx(self, ctx, grad_output):
        try:
            return _backend.ops.linear_backward(grad_output, ctx.input, ctx.weight, self.grad_weight, self.grad_bias)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None

    def param(self):
        if self.bias is None:
            return [(self.weight, self.grad_weight)]
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]

    def named_param(self):
        return [(name, p, g) for name, (p, g) in zip(("weight", "bias"), self.param())]

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"
