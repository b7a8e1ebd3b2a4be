"""MaxPool2d: the maximum of each window; backward sends each gradient to its window's maximum."""
from .. import backend as _backend
from .module import CHECKED, Module, kernel_error


def _pair(value, module, name):
    """(a, b) from an int or a pair of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (list, tuple)) else None
    if pair is None or len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"{module}: expected {name} to be a positive int or a pair of them, got {value!r}")
    return pair


class MaxPool2d(Module):
    """Max-pooling over [N, C, H, W] windows of kernel_size, moved by stride (kernel_size by default), no padding."""

    def __init__(self, kernel_size, stride=None):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self._window = (list(_pair(kernel_size, "MaxPool2d", "kernel_size")),
                        list(_pair(self.stride, "MaxPool2d", "stride")))

    @property
    def window(self):
        """([kh, kw], [sh, sw]): the kernels' kernel_size and stride."""
        return self._window

    def forward_ctx(self, ctx, input):
        kernel_size, stride = self._window
        try:
            output, indices = _backend.ops.maxpool2d_forward(input, kernel_size, stride)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        ctx.input, ctx.indices, ctx.window = input, indices, self._window
        return output

    def backward_ctx(self, ctx, grad_output):
        try:
            return _backend.ops.maxpool2d_backward(grad_output, ctx.input, ctx.indices, *ctx.window)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None

    def __repr__(self):
        return f"MaxPool2d(kernel_size={self.kernel_size}, stride={self.stride})"
