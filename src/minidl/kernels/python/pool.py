"""MaxPool2d's kernels in pure Python: windows as views (unfold), the running maximum kept as torch's
max_pool2d keeps it (the first maximum; a NaN replaces it), outputs in the input's memory format."""
from torch import empty

from ..checks import check_not_recorded
from ..checks.layer import check_maxpool2d, check_maxpool2d_backward, is_channels_last


def _empty_like_format(shape, like, dtype, channels_last):
    """A new [N, C, H, W] tensor, channels-last (strides of a permuted NHWC one) or contiguous."""
    if channels_last:
        n, c, h, w = shape
        return empty((n, h, w, c), dtype=dtype, device=like.device).permute(0, 3, 1, 2)
    return empty(shape, dtype=dtype, device=like.device)


def _steps(count, step, device):
    """[0, step, 2 step, ...] of count int64 elements."""
    return empty(count, dtype=_LONG, device=device).fill_(step).cumsum(0).sub_(step)


_LONG = empty(0, dtype=None).long().dtype  # torch.int64, within the course rule


def maxpool2d_forward(input, kernel_size, stride):
    """(output, indices): each window's maximum and its index h * W + w in its plane."""
    check_not_recorded("minidl.maxpool2d_forward", locals())
    shape = check_maxpool2d(input, kernel_size, stride, "minidl.maxpool2d_forward")
    (kh, kw), (sh, sw), width = kernel_size, stride, input.shape[3]
    windows = input.unfold(2, kh, sh).unfold(3, kw, sw)  # [N, C, OH, OW, kh, kw], a view
    first = _steps(shape[2], sh * width, input.device)[:, None] + _steps(shape[3], sw, input.device)[None, :]
    best = windows[..., 0, 0]
    offset = empty(shape, dtype=_LONG, device=input.device).zero_()
    for i in range(kh):
        for j in range(kw):
            if i == 0 and j == 0:
                continue
            v = windows[..., i, j]
            takes = v.gt(best).logical_or_(v.ne(v))
            best = v.where(takes, best)
            offset.masked_fill_(takes, i * width + j)
    channels_last = is_channels_last(input)
    output = _empty_like_format(shape, input, input.dtype, channels_last).copy_(best)
    indices = _empty_like_format(shape, input, _LONG, channels_last).copy_(offset.add_(first))
    return output, indices


def maxpool2d_backward(grad_output, input, indices, kernel_size, stride):
    """grad_input: each grad_output element added at its window's saved index."""
    op = "minidl.maxpool2d_backward"
    check_not_recorded(op, locals())
    check_maxpool2d_backward(grad_output, input, indices, kernel_size, stride, op)
    n, c, h, w = input.shape
    grad_input = _empty_like_format(list(input.shape), input, input.dtype, is_channels_last(input)).zero_()
    if grad_input.numel() == 0:
        return grad_input
    if indices.numel() and (indices.min() < 0 or indices.max() >= h * w):
        raise IndexError(f"{op}: expected indices in [0, {h * w}) for input of shape {list(input.shape)}, "
                         "got one outside")
    grad_input.view(n, c, h * w).scatter_add_(2, indices.reshape(n, c, -1), grad_output.reshape(n, c, -1))
    return grad_input
