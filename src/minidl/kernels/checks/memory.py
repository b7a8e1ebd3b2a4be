"""Checks of the memory an op writes, the twin of those in csrc/checks.h (same messages): a tensor written through
a stride 0, or sharing memory with one the op reads, would give a silently wrong answer."""


def expanded(t):
    """Whether elements of t share memory: a stride 0 over more than one element (at::has_internal_overlap's YES)."""
    return any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape))


def dense(t):
    """Whether t's elements fill a block of memory exactly (at::Tensor::is_non_overlapping_and_dense)."""
    expected = 1
    for stride, size in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def check_written(t, op, name):
    """A tensor the op writes into: an expanded one (stride 0) would take several values in one element."""
    if expanded(t):
        raise ValueError(f"{op}: expected {name} whose elements have memory of their own (the op writes it), "
                         f"got strides {list(t.stride())}")


def _span(t):
    """The bytes of t's storage from its first element to its last, as a range."""
    last = sum((n - 1) * st for n, st in zip(t.shape, t.stride()))
    first = t.storage_offset() * t.element_size()
    return first, first + (last + 1) * t.element_size()


def _byte_slices(t, lo):
    """Slices of a byte map starting at byte lo of t's storage that cover t's bytes: one per byte of an element
    and line of t's largest dimension (the dimensions of size 1 or stride 0 left out: they add no byte)."""
    k = t.element_size()
    dims = sorted(((n, st * k) for n, st in zip(t.shape, t.stride()) if n > 1 and st != 0), reverse=True)
    count, step = dims[0] if dims else (1, k)
    starts = [t.storage_offset() * k - lo]
    for n, st in dims[1:]:
        starts = [s + i * st for s in starts for i in range(n)]
    return [slice(s + j, s + j + step * (count - 1) + 1, step) for s in starts for j in range(k)]


def shares_memory(a, b):
    """Whether a and b share a byte of memory. Only tensors of one storage whose spans (first to last byte) meet
    can (two storages over one memory, as from_numpy twice makes, are not seen); dense ones then do, strided ones
    are compared on a byte map of where their spans meet (offsets only: any device)."""
    if a.untyped_storage()._cdata != b.untyped_storage()._cdata or a.numel() == 0 or b.numel() == 0:
        return False
    (a0, a1), (b0, b1) = _span(a), _span(b)
    if a1 <= b0 or b1 <= a0:
        return False
    if dense(a) and dense(b):
        return True
    lo = min(a0, b0)
    mask = bytearray(max(a1, b1) - lo)
    for part in _byte_slices(a, lo):
        mask[part] = b"\1" * len(range(part.start, part.stop, part.step))
    return any(b"\1" in mask[part] for part in _byte_slices(b, lo))


def overlapping_pair(tensors):
    """The names of two of the (tensor, name) pairs that share memory (also one tensor listed twice), else None.
    Spans sorted per storage: tensors apart in memory (views of a flat buffer) cost no comparison."""
    by_storage = {}
    for t, name in tensors:
        if t.numel() > 0:
            by_storage.setdefault(t.untyped_storage()._cdata, []).append((_span(t), t, name))
    for group in by_storage.values():
        group.sort(key=lambda entry: entry[0][0])
        for i, ((_, a1), a, a_name) in enumerate(group):
            for (b0, _), b, b_name in group[i + 1:]:
                if b0 >= a1:
                    break
                if shares_memory(a, b):
                    return a_name, b_name
    return None


def check_apart(written, read, op):
    """What an op writes ((tensor, name) pairs; None for an absent tensor) shares no memory with what it reads (a
    gradient that is the weight would change the weight before its last read), nor with another of `written`."""
    written = [(t, name) for t, name in written if t is not None]
    read = [(t, name) for t, name in read if t is not None]
    storages = [t.untyped_storage()._cdata for t, _ in written]
    if len(set(storages)) == len(storages) and {t.untyped_storage()._cdata for t, _ in read}.isdisjoint(storages):
        return  # no storage in common: the common case, decided without spans
    for i, (w, w_name) in enumerate(written):
        for r, r_name in read:
            if shares_memory(w, r):
                raise ValueError(f"{op}: expected {w_name} to share no memory with {r_name} "
                                 f"(the op writes {w_name} while it reads {r_name})")
        for o, o_name in written[i + 1:]:
            if shares_memory(w, o):
                raise ValueError(f"{op}: expected {w_name} and {o_name} to share no memory (the op writes both)")
