"""Conv2d: a 2-d cross-correlation over [N, C, H, W] inputs, with zero padding."""
import math

from torch import empty

from .. import backend as _backend
from .module import _TENSOR, CHECKED, Module, check_dtype, check_sizes, kernel_error, new_param


def _pair(value, name, low):
    """(a, b) from an int or a pair of ints, each at least `low`."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in pair):
        raise ValueError(f"Conv2d: expected {name} to be an int or a pair of ints, each >= {low}, got {value!r}")
    return pair


def channels_last(x):
    """The [N, C, H, W] tensor x with channels-last strides: x itself, a restride where its memory is already in
    that order (one channel, a 1x1 image), else a copy."""
    n, c, h, w = x.shape
    strides = (h * w * c, 1, w * c, c)
    if x.stride() == strides:
        return x
    if x.numel() == 0 or all(size == 1 or a == b for size, a, b in zip(x.shape, x.stride(), strides)):
        return x.as_strided(x.shape, strides)
    return empty((n, h, w, c), dtype=x.dtype, device=x.device).permute(0, 3, 1, 2).copy_(x)


class Conv2d(Module):
    """torch.nn.Conv2d's layer and initialisation (weight and bias uniform in ±1/sqrt(in_channels * kh * kw)).

    It computes in channels-last, the layout its CPU kernels and the pooling and batch norm after it are fastest
    in (2-3x a convnet's step in NCHW): an NCHW input is restrided where its memory is already in that order
    (one channel), else copied, so the output and the input's gradient are channels-last, with torch's values."""

    input_grad_optional = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, device=None,
                 dtype=None):
        check_sizes("Conv2d", in_channels=in_channels, out_channels=out_channels)
        check_dtype("Conv2d", dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
        bound = 1.0 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        self.weight, self.grad_weight = new_param("Conv2d", (out_channels, in_channels, *self.kernel_size), device, dtype)
        self.weight.uniform_(-bound, bound)
        self.bias = self.grad_bias = None
        if bias:
            self.bias, self.grad_bias = new_param("Conv2d", (out_channels,), device, dtype)
            self.bias.uniform_(-bound, bound)

    def forward_ctx(self, ctx, input):
        weight = self.weight
        if isinstance(input, _TENSOR) and input.dim() == 4:
            input = channels_last(input)
        try:
            output = _backend.ops.conv2d_forward(input, weight, self.bias, self.stride, self.padding)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        ctx.input, ctx.weight = input, weight
        return output

    def backward(self, grad_output, input_grad=True):
        """The input's gradient, or None with input_grad=False (a network's first layer), which skips computing it."""
        return self.backward_ctx(self.take_ctx(), grad_output, input_grad)

    def backward_ctx(self, ctx, grad_output, input_grad=True):
        try:
            grad_input = _backend.ops.conv2d_backward(grad_output, ctx.input, ctx.weight, self.grad_weight,
                                                      self.grad_bias, self.stride, self.padding, input_grad)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None
        return grad_input if input_grad else None

    def param(self):
        if self.bias is None:
            return [(self.weight, self.grad_weight)]
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]

    def named_param(self):
        return [(name, p, g) for name, (p, g) in zip(("weight", "bias"), self.param())]

    def __repr__(self):
        extra = "" if self.padding == (0, 0) else f", padding={self.padding}"
        extra += "" if self.bias is not None else ", bias=False"
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}{extra})")
