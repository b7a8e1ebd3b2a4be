"""Conv2d in pure Python: the input's windows as a strided view, then one matrix product each way
(the C++ kernels' algorithm and memory formats, csrc/ops/conv.cpp)."""
from torch import empty

from ..checks import check_not_recorded
from ..checks.conv import channels_last_output, check_conv2d_backward, check_conv2d_forward
from .scratch import scratch


def _padded(input, ph, pw):
    """The input zero-padded, channels-last [N, H', W', C] (a view of the input when there is no padding)."""
    n, c, h, w = input.shape
    if not (ph or pw):
        return input.permute(0, 2, 3, 1)
    padded = empty((n, h + 2 * ph, w + 2 * pw, c), dtype=input.dtype, device=input.device).zero_()
    padded[:, ph:ph + h, pw:pw + w, :] = input.permute(0, 2, 3, 1)
    return padded


def _windows(input, kh, kw, stride, padding):
    """The input's windows as the matrix [N*OH*OW, KH*KW*C] (channel fastest in a row).

    Few channels (a first layer): built tap by tap as its transpose [KH*KW*C, N*OH*OW], each tap and channel
    one plane-shaped copy, since a window row of KH*KW*C elements is too short to copy well; else
    windows of the channels-last input copied row by row."""
    n, c, h, w = input.shape
    (sh, sw), (ph, pw) = stride, padding
    padded = _padded(input, ph, pw)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if c <= _FEW_CHANNELS:
        cols = scratch("windows", (kh, kw, c, n, oh, ow), input.dtype, input.device)
        for i in range(kh):
            for j in range(kw):
                tap = padded[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                cols[i, j].copy_(tap.permute(3, 0, 1, 2))
        return cols.view(kh * kw * c, n * oh * ow).t()
    s_n, s_h, s_w, s_c = padded.stride()
    windows = padded.as_strided((n, oh, ow, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h, s_w, s_c),
                                padded.storage_offset())
    if windows.is_contiguous():  # a 1x1 stride-1 kernel on a channels-last input: the input itself
        return windows.view(n * oh * ow, kh * kw * c)
    cols = scratch("windows", windows.shape, input.dtype, input.device).copy_(windows)
    return cols.view(n * oh * ow, kh * kw * c)


_FEW_CHANNELS = 4  # up to this many input channels, _windows copies tap by tap


def _weight_matrix(weight):
    """The weight as [O, KH*KW*C], channel fastest."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def conv2d_forward(input, weight, bias, stride, padding):
    """Cross-correlation of input [N, C, H, W] with weight [O, C, KH, KW], zero padding; plus bias."""
    check_not_recorded("minidl.conv2d_forward", locals())
    oh, ow = check_conv2d_forward(input, weight, bias, stride, padding)
    n, o = input.shape[0], weight.shape[0]
    cols = _windows(input, weight.shape[2], weight.shape[3], stride, padding)
    rows = cols.mm(_weight_matrix(weight).t()) if bias is None else bias.addmm(cols, _weight_matrix(weight).t())
    output = rows.view(n, oh, ow, o).permute(0, 3, 1, 2)  # channels-last
    return output if channels_last_output(input, weight) else output.contiguous()


def conv2d_backward(grad_output, input, weight, grad_weight, grad_bias, stride, padding, input_grad=True):
    """Add the weight and bias gradients into grad_weight and grad_bias; return grad_input (empty [0] if not input_grad)."""
    check_not_recorded("minidl.conv2d_backward", locals())
    check_conv2d_backward(grad_output, input, weight, grad_weight, grad_bias, stride, padding)
    n, c, h, w = input.shape
    o, _, kh, kw = weight.shape
    rows = grad_output.permute(0, 2, 3, 1).reshape(-1, o)
    cols = _windows(input, kh, kw, stride, padding)
    grad_weight.add_(cols.t().mm(rows).t().view(o, kh, kw, c).permute(0, 3, 1, 2))  # the C++ kernel's product
    if grad_bias is not None:
        grad_bias.add_(rows.sum(0))
    if not input_grad:
        return empty((0,), dtype=weight.dtype, device=weight.device)
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = grad_output.shape[2:]
    # Each tap's window gradients, rows @ weight[:, :, i, j], in one batched product, tap-major: the additions
    # below then read dense slices (slices of the [positions, taps] product are strided, ~4x slower to add).
    tap_weights = _weight_matrix(weight).view(o, kh * kw, c).permute(1, 0, 2)  # [KH*KW, O, C]
    grad_taps = scratch("tap gradients", (kh * kw, n * oh * ow, c), weight.dtype, weight.device)
    grad_taps = grad_taps.baddbmm_(rows.expand(kh * kw, -1, -1), tap_weights, beta=0).view(kh, kw, n, oh, ow, c)
    channels_last = channels_last_output(input, weight)
    returned = channels_last and not (ph or pw)  # then padded is grad_input's memory, else only copied from
    padded_shape = (n, h + 2 * ph, w + 2 * pw, c)
    if returned:
        padded = empty(padded_shape, dtype=weight.dtype, device=weight.device).zero_()
    else:
        padded = scratch("col2im", padded_shape, weight.dtype, weight.device).zero_()
    for i in range(kh):  # each element sums its windows' entries in (kh, kw) order, as the C++ col2im
        for j in range(kw):
            padded[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += grad_taps[i, j]
    if returned:
        return padded.permute(0, 3, 1, 2)
    # A copy into memory of its own (contiguous() would return the scratch buffer itself where it already has
    # grad_input's strides: one image with only rows padded, or one input channel).
    inner = padded[:, ph:ph + h, pw:pw + w, :]
    if channels_last:
        return empty((n, h, w, c), dtype=weight.dtype, device=weight.device).copy_(inner).permute(0, 3, 1, 2)
    return empty((n, c, h, w), dtype=weight.dtype, device=weight.device).copy_(inner.permute(0, 3, 1, 2))
