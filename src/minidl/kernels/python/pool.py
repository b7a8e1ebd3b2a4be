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
    channels_last = is_channels_last(input)
    # Work in the memory's own order (N, H, W, C for channels-last), where each window tap is a dense slice.
    memory = input.permute(0, 2, 3, 1) if channels_last else input
    h_dim, w_dim = (1, 2) if channels_last else (2, 3)
    windows = memory.unfold(h_dim, kh, sh).unfold(w_dim, kw, sw)  # [..., kh, kw] views
    best = _empty_like_format(shape, input, input.dtype, channels_last)
    offset = _empty_like_format(shape, input, _LONG, channels_last)
    best_m, offset_m = (best.permute(0, 2, 3, 1), offset.permute(0, 2, 3, 1)) if channels_last else (best, offset)
    best_m.copy_(windows[..., 0, 0])
    offset_m.zero_()
    for i in range(kh):
        for j in range(kw):
            if i == 0 and j == 0:
                continue
            v = windows[..., i, j]
            takes = v.gt(best_m).logical_or_(v.ne(v))
            best_m.copy_(v.where(takes, best_m))
            offset_m.masked_fill_(takes, i * width + j)
    first = _steps(shape[2], sh * width, input.device)[:, None] + _steps(shape[3], sw, input.device)[None, :]
    offset.add_(first)  # [OH, OW] broadcast over N and C, in either layout
    return best, offset


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
