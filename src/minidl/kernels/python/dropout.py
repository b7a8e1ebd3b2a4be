"""Dropout's kernels in pure Python: the mask drawn by bernoulli_ on a tensor laid out as torch's dropout
draws it, so that one generator state gives the same mask as the C++ kernels and torch."""
from torch import empty

from ..checks import check_not_recorded
from ..checks.layer import check_dropout, check_dropout_backward, is_channels_last
from ..checks.memory import dense


def _empty_strided_like(x):
    """An uninitialised tensor of the dense x's shape and strides (they span x.numel() elements)."""
    return empty(x.numel(), dtype=x.dtype, device=x.device).as_strided(x.shape, x.stride())


def dropout_forward(input, p, generator=None):
    """(output, mask): mask = bernoulli(1 - p) / (1 - p), output = input * mask."""
    op = "minidl.dropout_forward"
    check_not_recorded(op, locals())
    check_dropout(input, p, generator, op)
    if dense(input):
        x = input
    elif is_channels_last(input):
        x = input.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    else:
        x = input.contiguous()
    mask = _empty_strided_like(x)
    if p == 0:
        mask.fill_(1)  # torch draws nothing for p = 0 or 1
    elif p == 1:
        mask.zero_()
    else:
        mask.bernoulli_(1 - p, generator=generator).div_(1 - p)
    return x.mul(mask), mask


def dropout_backward(grad_output, mask):
    """grad_output * mask."""
    op = "minidl.dropout_backward"
    check_not_recorded(op, locals())
    check_dropout_backward(grad_output, mask, op)
    return grad_output.mul(mask)
