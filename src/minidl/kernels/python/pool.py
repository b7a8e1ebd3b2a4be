"""MaxPool2d's kernels in pure Python: windows as views (unfold), the running maximum kept as torch's
max_pool2d keeps it (the first maximum; a NaN replaces it), outputs in the input's memory format."""
from torch import empty

from ..checks import check_not_recorded
from ..checks.layer import check_maxpool2d, check_maxpool2d_backward, is_channels_last
from .scratch import scratch


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
_UINT8 = empty(0).byte().dtype  # torch.uint8, likewise


def window_starts(input, shape, stride):
    """Each window's first plane index h * W + w, [OH, OW] (broadcasts over N and C in either layout)."""
    width = input.shape[3]
    return _steps(shape[2], stride[0] * width, input.device)[:, None] + _steps(shape[3], stride[1], input.device)[None, :]


def tap_offsets(input, kernel_size):
    """Each window tap t = i * kw + j as its offset i * W + j from the window's first plane index, int64 [kh * kw]."""
    (kh, kw), width = kernel_size, input.shape[3]
    return (_steps(kh, width, input.device)[:, None] + _steps(kw, 1, input.device)[None, :]).view(-1)


def pool_taps(input, kernel_size, stride, dtype):
    """(maximum, tap): each window's maximum, and the tap t = i * kw + j that max-pooling picks (the first
    maximum; the last NaN if any, as torch's max_pool2d), both [N, C, OH, OW] in the input's memory format.

    A running maximum over the kh * kw taps, each a strided view of the input in memory order (N, H, W, C
    for channels-last) where a tap is one dense slice; the tap moves where one beats the maximum so far.
    Comparisons are made in place in the input's float type (1.0 or 0.0): a comparison into a new bool
    tensor, and selection by where() or masked_fill(), take several times longer on the CPU.
    """
    (kh, kw), (sh, sw) = kernel_size, stride
    channels_last = is_channels_last(input)
    memory = input.permute(0, 2, 3, 1) if channels_last else input
    h_dim, w_dim = (1, 2) if channels_last else (2, 3)
    windows = memory.unfold(h_dim, kh, sh).unfold(w_dim, kw, sw)  # [..., kh, kw] views
    taps = [windows[..., i, j] for i in range(kh) for j in range(kw)]
    best = empty(taps[0].shape, dtype=input.dtype, device=input.device).copy_(taps[0])
    tap = scratch("pool tap", best.shape, input.dtype, input.device).zero_()  # exact in floats up to 2^24 taps
    moves = scratch("pool moves", best.shape, input.dtype, input.device)
    # a NaN somewhere (or an overflowing sum: then only slower); on the meta device no value can be read
    nans = input.is_meta or not bool(input.sum().isfinite())
    for t, v in enumerate(taps[1:], 1):
        moves.copy_(v).gt_(best)  # before best takes v in
        if nans:
            moves.logical_or_(v.ne(v))
        best.clamp_min_(v)  # maximum() in place, bit for bit: a NaN propagates, as in the C++ loop's running maximum
        tap.clamp_min_(moves.mul_(t))  # t where it moves, else unchanged: every earlier tap is below t
    tap = tap.to(dtype)
    if channels_last:
        return best.permute(0, 3, 1, 2), tap.permute(0, 3, 1, 2)
    return best, tap


def maxpool2d_forward(input, kernel_size, stride):
    """(output, indices): each window's maximum and its index h * W + w in its plane."""
    check_not_recorded("minidl.maxpool2d_forward", locals())
    shape = check_maxpool2d(input, kernel_size, stride, "minidl.maxpool2d_forward")
    best, tap = pool_taps(input, kernel_size, stride, _UINT8 if kernel_size[0] * kernel_size[1] <= 256 else _LONG)
    offsets = tap_offsets(input, kernel_size)
    if is_channels_last(input):  # take() gives a contiguous result: take in memory order, then view as NCHW
        offset = offsets.take(tap.permute(0, 2, 3, 1).to(_LONG)).permute(0, 3, 1, 2)
    else:
        offset = offsets.take(tap.to(_LONG))
    return best, offset.add_(window_starts(input, shape, stride))


def maxpool2d_backward(grad_output, input, indices, kernel_size, stride):
    """grad_input: each grad_output element added at its window's saved index."""
    op = "minidl.maxpool2d_backward"
    check_not_recorded(op, locals())
    check_maxpool2d_backward(grad_output, input, indices, kernel_size, stride, op)
    n, c, h, w = input.shape
    grad_input = _empty_like_format(list(input.shape), input, input.dtype, is_channels_last(input)).zero_()
    if grad_input.numel() == 0:
        return grad_input
    if indices.numel() and not indices.is_meta and (indices.min() < 0 or indices.max() >= h * w):
        raise IndexError(f"{op}: expected indices in [0, {h * w}) for input of shape {list(input.shape)}, "
                         "got one outside")
    grad_input.view(n, c, h * w).scatter_add_(2, indices.reshape(n, c, -1), grad_output.reshape(n, c, -1))
    return grad_input
