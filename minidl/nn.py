"""The Module layer: Linear, ReLU, Tanh, Sequential, LossMSE. Each backward sits beside its forward.

Like the kernels' Python fallback, this file imports nothing from torch but `empty`: every tensor
is made by `empty` and filled with tensor methods, and autograd is never used.
"""
import math

from torch import empty

from . import backend as _backend

_CHECKED = (RuntimeError, ValueError, TypeError)


def _fail(module, method, error):
    """Re-raise a kernel's error with the module that called it in front."""
    return type(error)(f"{module!r}.{method}: {error}")


class Module:
    """Base class: forward(*input), backward(*gradwrtoutput), param() -> [(tensor, grad), ...]."""

    def forward(self, *input):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *gradwrtoutput):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def param(self):
        """(parameter, gradient) pairs of equal shape; empty for modules without parameters."""
        return []

    def zero_grad(self):
        """Set every gradient to zero (backward accumulates into them)."""
        for _, grad in self.param():
            grad.zero_()

    def to(self, device=None, dtype=None):
        """Move parameters and gradients in place (optimizers keep seeing the same tensors); returns self."""
        for p, g in self.param():
            p.data = p.data.to(device=device, dtype=dtype)
            g.data = g.data.to(device=device, dtype=dtype)
        return self

    def __call__(self, *input):
        return self.forward(*input)

    def __repr__(self):
        return f"{type(self).__name__}()"

    def _saved(self, tensor):
        if tensor is None:
            raise RuntimeError(f"{self!r}.backward: called before forward")
        return tensor


class Linear(Module):
    """y = x @ weight.T + bias, initialised like torch.nn.Linear: uniform in ±1/sqrt(in_features)."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Linear: expected {name} to be a positive int, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = empty((out_features, in_features), device=device, dtype=dtype).uniform_(-bound, bound)
        self.grad_weight = empty(self.weight.shape, device=device, dtype=dtype).zero_()
        self.bias = self.grad_bias = None
        if bias:
            self.bias = empty((out_features,), device=device, dtype=dtype).uniform_(-bound, bound)
            self.grad_bias = empty(self.bias.shape, device=device, dtype=dtype).zero_()
        self._input = None

    def forward(self, input):
        try:
            output = _backend.ops.linear_forward(input, self.weight, self.bias)
        except _CHECKED as e:
            raise _fail(self, "forward", e) from None
        self._input = input
        return output

    def backward(self, grad_output):
        try:
            return _backend.ops.linear_backward(grad_output, self._saved(self._input), self.weight,
                                                self.grad_weight, self.grad_bias)
        except _CHECKED as e:
            raise _fail(self, "backward", e) from None

    def param(self):
        if self.bias is None:
            return [(self.weight, self.grad_weight)]
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class _Activation(Module):
    """An elementwise activation whose backward needs only its saved output."""

    _forward = _backward = None  # names of the kernels

    def __init__(self):
        self._output = None

    def forward(self, input):
        try:
            self._output = getattr(_backend.ops, self._forward)(input)
        except _CHECKED as e:
            raise _fail(self, "forward", e) from None
        return self._output

    def backward(self, grad_output):
        try:
            return getattr(_backend.ops, self._backward)(grad_output, self._saved(self._output))
        except _CHECKED as e:
            raise _fail(self, "backward", e) from None


class ReLU(_Activation):
    """y = max(x, 0)."""

    _forward, _backward = "relu_forward", "relu_backward"


class Tanh(_Activation):
    """y = tanh(x)."""

    _forward, _backward = "tanh_forward", "tanh_backward"


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse."""

    def __init__(self, *modules):
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: expected minidl Modules, got {type(m).__name__} at position {i}")
        self.modules = list(modules)

    def forward(self, input):
        for m in self.modules:
            input = m.forward(input)
        return input

    def backward(self, grad_output):
        for m in reversed(self.modules):
            grad_output = m.backward(grad_output)
        return grad_output

    def param(self):
        return [pair for m in self.modules for pair in m.param()]

    def __getitem__(self, i):
        return self.modules[i]

    def __len__(self):
        return len(self.modules)

    def __repr__(self):
        return "Sequential(" + ", ".join(repr(m) for m in self.modules) + ")"


class LossMSE(Module):
    """Mean of (output - target)^2 over all elements, as torch.nn.MSELoss(); backward() needs no argument."""

    def __init__(self):
        self._diff = None

    def forward(self, output, target):
        if output.shape != target.shape:
            raise ValueError(f"LossMSE.forward: expected target of shape {list(output.shape)} like output, "
                             f"got {list(target.shape)}")
        if not output.dtype.is_floating_point or target.dtype != output.dtype:
            raise TypeError(f"LossMSE.forward: expected a floating output and a target of the same dtype, "
                            f"got output {output.dtype} and target {target.dtype}")
        if output.device != target.device:
            raise RuntimeError(f"LossMSE.forward: expected target on {output.device} like output, "
                               f"got {target.device}")
        self._diff = output.sub(target)
        return self._diff.square().mean()

    def backward(self, *gradwrtoutput):
        diff = self._saved(self._diff)
        scale = 2.0 / max(diff.numel(), 1)
        grad = diff.mul(scale)
        for g in gradwrtoutput:  # an upstream gradient of the (scalar) loss, if given
            grad.mul_(g)
        return grad
