"""Softmax and PairOuter: the pieces of a head that compares two digits through their class probabilities."""
from .. import backend as _backend
from .module import CHECKED, Module, kernel_error


class Softmax(Module):
    """y = exp(x) / sum(exp(x)) along `dim`, as torch.nn.Softmax(dim); backward from the saved output."""

    def __init__(self, dim):
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise TypeError(f"Softmax: expected dim to be an int, got {dim!r}")
        self.dim = dim

    def forward_ctx(self, ctx, input):
        try:
            ctx.output = output = _backend.ops.softmax_forward(input, self.dim)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        return output

    def backward_ctx(self, ctx, grad_output):
        try:
            return _backend.ops.softmax_backward(grad_output, ctx.output, self.dim)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None

    def __repr__(self):
        return f"Softmax(dim={self.dim})"


class PairOuter(Module):
    """The outer product of the two rows of each [2, K] input: [N, 2, K] -> [N, K * K] (or [N, K, K] with
    flatten=False), out[n, i * K + j] = x[n, 0, i] * x[n, 1, j]: the joint distribution of two independent
    digits from their class probabilities, as `(p[:, 0, :, None] * p[:, 1, None, :]).reshape(n, K * K)`."""

    def __init__(self, flatten=True):
        self.flatten = bool(flatten)

    def forward_ctx(self, ctx, input):
        try:
            output = _backend.ops.pair_outer_forward(input)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        ctx.input = input
        if self.flatten:
            n, k, _ = output.shape
            output = output.view(n, k * k)  # the kernel's output is contiguous: a view
        return output

    def backward_ctx(self, ctx, grad_output):
        n, _, k = ctx.input.shape
        shape = [n, k * k] if self.flatten else [n, k, k]
        if list(getattr(grad_output, "shape", ())) != shape:
            raise ValueError(f"{self!r}.backward: expected grad_output of shape {shape}, "
                             f"got {list(getattr(grad_output, 'shape', ()))}")
        try:
            return _backend.ops.pair_outer_backward(grad_output.reshape(n, k, k), ctx.input)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None

    def __repr__(self):
        return f"PairOuter(flatten={self.flatten})"
