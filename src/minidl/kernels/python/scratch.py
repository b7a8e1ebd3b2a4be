"""Scratch memory for the Python kernels' CPU temporaries that never leave a call (im2col's windows, col2im's
tap gradients), one buffer per use and thread, kept across calls.

glibc hands large freed blocks back to the operating system, so a temporary allocated afresh every training
step is page-faulted and zeroed afresh every step (docs/performance.md); the C++ kernels keep freed blocks in a
cache of their own (minidl.memory), and these buffers do the same for the fallback's largest temporaries."""
import threading
import weakref

from torch import empty

from ..checks.layer import is_channels_last

MAX_BYTES = 32 << 20  # larger requests are allocated per call: a buffer is held until empty_scratch()

_local = threading.local()
_all = weakref.WeakSet()  # every thread's buffers, for empty_scratch()


class _Buffers:
    """One thread's buffers, {(use, dtype): flat tensor}."""

    def __init__(self):
        self.by_use = {}


def scratch(use, shape, dtype, device):
    """An uninitialised tensor of shape, the same memory as the last call's for this use (CPU, up to MAX_BYTES)."""
    numel = 1
    for size in shape:
        numel *= size
    if device.type != "cpu" or numel * dtype.itemsize > MAX_BYTES:
        return empty(shape, dtype=dtype, device=device)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = _Buffers()
        _all.add(buffers)
    buffer = buffers.by_use.get((use, dtype))
    if buffer is None or buffer.numel() < numel:
        buffer = buffers.by_use[(use, dtype)] = empty(numel, dtype=dtype, device=device)
    return buffer[:numel].view(shape)


def scratch_like(use, t, dtype=None):
    """scratch() of t's shape in t's memory format (channels-last stays channels-last)."""
    if is_channels_last(t):
        n, c, h, w = t.shape
        return scratch(use, (n, h, w, c), dtype or t.dtype, t.device).permute(0, 3, 1, 2)
    return scratch(use, t.shape, dtype or t.dtype, t.device)


def empty_scratch():
    """Drop every thread's buffers (a call in progress keeps the one it holds until it returns)."""
    for buffers in list(_all):
        buffers.by_use.clear()
