"""Input checks of the convolution ops: the twin of csrc/ops/conv.cpp's, with the same messages."""
from . import check_dim, check_float, check_like, check_shape
from .memory import check_apart, check_written


MAX_PADDING = 2 ** 31 - 1  # more is no image's: the C++ check keeps h + 2 * padding within int64


def _ints(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def check_conv(input, weight, stride, padding, op):
    """The input, weight, stride and padding of a convolution; returns the output's (height, width)."""
    check_float(weight, op, "weight")
    check_like(input, weight, op, "input", "weight")
    check_dim(input, 4, op, "input")
    check_dim(weight, 4, op, "weight")
    if 0 in weight.shape:
        raise ValueError(f"{op}: expected weight of shape [out_channels, in_channels, kh, kw] with no zero size, "
                         f"got {list(weight.shape)}")
    if input.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: expected input of shape [N, {weight.shape[1]}, H, W] for weight of shape "
                         f"{list(weight.shape)}, got {list(input.shape)}")
    stride, padding = _ints(stride), _ints(padding)
    if not isinstance(stride, list) or len(stride) != 2 or min(stride) < 1:
        raise ValueError(f"{op}: expected stride of two positive ints, got {stride}")
    if not isinstance(padding, list) or len(padding) != 2 or min(padding) < 0:
        raise ValueError(f"{op}: expected padding of two non-negative ints, got {padding}")
    if max(padding) > MAX_PADDING:
        raise ValueError(f"{op}: expected padding of at most {MAX_PADDING}, got {padding}")
    (h, w), (kh, kw) = input.shape[2:], weight.shape[2:]
    if h + 2 * padding[0] < kh or w + 2 * padding[1] < kw:
        raise ValueError(f"{op}: expected input of shape {list(input.shape)} with padding {padding} to be at least "
                         f"the kernel's {kh}x{kw} (weight of shape {list(weight.shape)})")
    return (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1


def check_conv2d_forward(input, weight, bias, stride, padding):
    op = "minidl.conv2d_forward"
    oh, ow = check_conv(input, weight, stride, padding, op)
    if bias is not None:
        check_like(bias, weight, op, "bias", "weight")
        check_shape(bias, [weight.shape[0]], op, "bias")
    return oh, ow


def check_conv2d_backward(grad_output, input, weight, grad_weight, grad_bias, stride, padding):
    op = "minidl.conv2d_backward"
    oh, ow = check_conv(input, weight, stride, padding, op)
    check_like(grad_output, weight, op, "grad_output", "weight")
    check_shape(grad_output, [input.shape[0], weight.shape[0], oh, ow], op, "grad_output")
    check_like(grad_weight, weight, op, "grad_weight", "weight")
    check_shape(grad_weight, weight.shape, op, "grad_weight")
    if grad_bias is not None:
        check_like(grad_bias, weight, op, "grad_bias", "weight")
        check_shape(grad_bias, [weight.shape[0]], op, "grad_bias")
    check_written(grad_weight, op, "grad_weight")
    if grad_bias is not None:
        check_written(grad_bias, op, "grad_bias")
    check_apart([(grad_weight, "grad_weight"), (grad_bias, "grad_bias")],
                [(grad_output, "grad_output"), (input, "input"), (weight, "weight")], op)


def suggests_channels_last(t):
    """Tensor::suggest_memory_format() == ChannelsLast for a 4-d tensor (c10's is_channels_last_strides_2d_s4):
    strides increasing over C, W, H, N, with its tie-breaks for dimensions of size 1."""
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    low = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < low or (d == 0 and low == strides[1]):
            return False
        low = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def channels_last_output(input, weight):
    """Whether the ops' outputs are channels-last: torch's CPU convolution's rule (input or weight suggests it)."""
    return suggests_channels_last(input) or suggests_channels_last(weight)
