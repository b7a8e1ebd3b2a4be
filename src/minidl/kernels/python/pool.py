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


_MAX_CODED_TAPS = 6  # windows of up to this many taps find their argmax through a table of 4^taps entries
_TABLES = {}  # (taps, width, kw, device) -> that table, made once


def _pick_table(taps, width, kw, device):
    """A table: for each code (bit t: tap t equals the maximum; bit taps + t: tap t is NaN) the window
    offset i * width + j of the tap that max-pooling picks: the last NaN if any, else the first maximum."""
    key = (taps, width, kw, str(device))
    if key not in _TABLES:
        table = empty(1 << (2 * taps), dtype=_LONG, device=device)
        for code in range(len(table)):
            nans = [t for t in range(taps) if code >> (taps + t) & 1]
            hits = [t for t in range(taps) if code >> t & 1]
            t = nans[-1] if nans else hits[0] if hits else 0
            table[code] = (t // kw) * width + t % kw
        _TABLES[key] = table
    return _TABLES[key]


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
    taps = [windows[..., i, j] for i in range(kh) for j in range(kw)]
    best = _empty_like_format(shape, input, input.dtype, channels_last)
    best_m = best.permute(0, 2, 3, 1) if channels_last else best
    best_m.copy_(taps[0])
    for v in taps[1:]:
        best_m.copy_(best_m.maximum(v))  # a NaN propagates; which tap wins is decided below
    offset = _empty_like_format(shape, input, _LONG, channels_last)
    offset_m = offset.permute(0, 2, 3, 1) if channels_last else offset
    if len(taps) <= _MAX_CODED_TAPS:  # the argmax from one code per window: a few cheap passes
        code = empty(offset_m.shape, dtype=_LONG, device=input.device).zero_()
        nans = bool(best.ne(best).any())  # a NaN in a window makes its maximum NaN
        for t, v in enumerate(taps):
            code.add_(v.eq(best_m), alpha=1 << t)
            if nans:
                code.add_(v.ne(v), alpha=1 << (len(taps) + t))
        offset_m.copy_(_pick_table(len(taps), width, kw, input.device).take(code))
    else:  # a running maximum that records where it moves: the last NaN, else the first maximum
        running = taps[0].clone()
        offset_m.zero_()
        for t, v in enumerate(taps[1:], 1):
            takes = v.gt(running).logical_or_(v.ne(v))
            running = v.where(takes, running)
            offset_m.masked_fill_(takes, (t // kw) * width + t % kw)
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
