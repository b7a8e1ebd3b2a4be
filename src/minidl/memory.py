"""The C++ kernels' cache of freed CPU blocks (outputs of 256 KiB or more): inspect, limit, empty.

glibc returns blocks over 32 MiB to the operating system on free, and trims the freed top of its
heap once a few MiB are free, so fresh outputs (a training step's activations among them) would be
page-faulted and zeroed again and again; the cache keeps up to `MINIDL_CPU_CACHE_MB` (default 256)
MiB of freed blocks for reuse. The Python kernels allocate their outputs through torch, not through this
cache, and keep their largest temporaries in scratch buffers of their own (kernels/python/scratch.py: a few,
per thread, each up to 32 MiB), which empty_cpu_cache() releases too.
"""
from collections import namedtuple

from . import backend as _backend
from .kernels.python.scratch import empty_scratch

CacheInfo = namedtuple("CacheInfo", "cached_bytes limit_bytes hits misses")


def _ext():
    if not _backend.cpp_available():
        return None
    import minidl._C as ext
    return ext


def cpu_cache_info():
    """CacheInfo(cached_bytes, limit_bytes, hits, misses); all zero without the C++ extension."""
    ext = _ext()
    return CacheInfo(*ext._cpu_cache_info()) if ext else CacheInfo(0, 0, 0, 0)


def empty_cpu_cache():
    """Return every cached block, and the Python kernels' scratch buffers, to the operating system (tensors in use
    are untouched)."""
    empty_scratch()
    ext = _ext()
    if ext:
        ext._empty_cpu_cache()


def set_cpu_cache_limit(nbytes):
    """Keep at most `nbytes` of freed blocks; 0 turns the cache off."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"minidl.set_cpu_cache_limit: expected a whole number of bytes >= 0, got {nbytes!r}")
    ext = _ext()
    if ext:
        ext._set_cpu_cache_limit(nbytes)
