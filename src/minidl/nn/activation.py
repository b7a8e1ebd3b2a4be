"""Elementwise activations: ReLU and Tanh, whose backward needs only the saved output."""
from .. import backend as _backend
from .module import CHECKED, Module, kernel_error


class Activation(Module):
    """An elementwise activation named by `kind`, one of minidl.kernels.ACTIVATIONS; kernels <kind>_forward/_backward."""

    kind = None
    _forward_op = _backward_op = None  # the kernels' names, from kind

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._forward_op, cls._backward_op = cls.kind + "_forward", cls.kind + "_backward"

    def forward_ctx(self, ctx, input):
        try:
            ctx.output = output = getattr(_backend.ops, self._forward_op)(input)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        return output

    def backward_ctx(self, ctx, grad_output):
        try:
            return getattr(_backend.ops, self._backward_op)(grad_output, ctx.output)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None


class ReLU(Activation):
    """y = max(x, 0)."""

    kind = "relu"


class Tanh(Activation):
    """y = tanh(x)."""

    kind = "tanh"
