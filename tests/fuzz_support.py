"""Property tests (hypothesis) of every kernel: C++ and Python backends against each other and torch.

Random shapes (0-sized dimensions, batch 1), layouts (transposed, sliced with steps, storage
offsets, expanded/broadcast views), dtypes (float32, float64) and values (tiny, huge, +-inf, NaN,
-0.0, subnormals). Each op must

* agree with a torch reference computed in float64 from the same inputs, within a bound derived
  from the float error analysis of the op (|x| @ |w|.T for a matrix product, a few ulp for tanh),
  and with NaN and inf in exactly the positions where the reference has them;
* agree across backends (bit for bit where both run the same ATen calls);
* leave read-only inputs untouched, write the mutable ones in place (including non-contiguous
  views) and nothing outside those views;
* return contiguous tensors from the C++ kernels;
* reject invalid input (integer, half or complex dtypes, mismatched dtypes and shapes, bad list
  lengths and activation codes) with the same exception class on both backends and the op's name
  in the message.

Examples per test: 60 by default (the "ci" profile); HYPOTHESIS_PROFILE=big (2000) or
MINIDL_FUZZ_EXAMPLES=N choose more. `pytest --hypothesis-show-statistics` reports them.

This module holds what the property tests share (the hypothesis profiles, FUZZ, the backends, the
tensor builders and the comparisons); the tests are in test_fuzz_layers.py (linear, tanh, relu),
test_fuzz_stack.py (the fused stack, MSE, SGD) and test_fuzz_invalid.py (invalid input, regressions).
"""
import math
import os

import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from conftest import require_cpp
from minidl import backend
from minidl.kernels import python as python_kernels

# --- profiles ----------------------------------------------------------------------------------
# No "explain" phase: it reruns a failure hundreds of times for little more than the shrunk example.
_COMMON = dict(deadline=None, print_blob=True, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=60, **_COMMON)
settings.register_profile("big", max_examples=2000, **_COMMON)
if os.environ.get("MINIDL_FUZZ_EXAMPLES"):
    settings.register_profile("env", max_examples=int(os.environ["MINIDL_FUZZ_EXAMPLES"]), **_COMMON)
    _PROFILE = "env"
else:
    _PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    if _PROFILE not in ("ci", "big"):
        _PROFILE = "ci"
# Applied per test (not load_profile) so that other test files keep their own settings.
FUZZ = settings(settings.get_profile(_PROFILE))

F32, F64 = torch.float32, torch.float64
DTYPES = st.sampled_from([F32, F64])


def _backends():
    """[(name, kernels)]: python always, cpp when the extension loads (a failure under MINIDL_REQUIRE_EXT=1)."""
    if backend.cpp_available():
        from minidl.kernels import cpp
        return [("cpp", cpp), ("python", python_kernels)]
    if os.environ.get("MINIDL_REQUIRE_EXT") == "1":
        require_cpp()
    return [("python", python_kernels)]


# --- tensors -----------------------------------------------------------------------------------
def _huge(dtype):
    # Large enough to exercise the exponent range, small enough that no sum of products in these
    # tests overflows (which would make inf/NaN depend on summation order).
    return 1e15 if dtype == F32 else 1e100


def _tiny(dtype):
    return 1e-25 if dtype == F32 else 1e-200


def _specials(dtype, with_max):
    fi = torch.finfo(dtype)
    sub = fi.tiny * fi.eps  # smallest subnormal
    vals = [math.nan, math.inf, -math.inf, 0.0, -0.0, sub, -sub, fi.tiny / 3, -fi.tiny, 1.0, -1.0, fi.tiny]
    if with_max:
        vals += [fi.max, -fi.max]
    return vals


class Buf:
    """A tensor argument `t`, a view into `base` (whose other elements hold NaN), and a snapshot."""

    def __init__(self, t, base, inside):
        self.t, self.base, self.inside = t, base, inside
        self.before = base.clone()

    def clone(self):
        """The same values in the same layout (strides, offset) over a copy of the storage."""
        base = self.base.clone()
        return Buf(base.as_strided(self.t.shape, self.t.stride(), self.t.storage_offset()), base, self.inside)

    def untouched(self):
        return _bits_equal(self.base, self.before)

    def outside_untouched(self):
        return _bits_equal(self.base[~self.inside], self.before[~self.inside])


def _bits_equal(a, b):
    if a.numel() == 0:
        return a.shape == b.shape
    ints = {F32: torch.int32, F64: torch.int64}
    if a.dtype in ints:
        return torch.equal(a.contiguous().view(ints[a.dtype]), b.contiguous().view(ints[b.dtype]))
    return torch.equal(a, b)


def values(data, shape, dtype, *, scale=None, specials=True, with_max=False, max_abs=None):
    """A contiguous tensor of random values (seeded from hypothesis), with special values injected."""
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    if scale is None:
        scale = data.draw(st.sampled_from([_tiny(dtype), 1e-3, 1.0, 1e3, _huge(dtype)]), label="scale")
    kind = data.draw(st.sampled_from(["normal", "integers", "constant"]), label="kind")
    gen = torch.Generator().manual_seed(seed)
    if kind == "normal":
        v = torch.randn(shape, generator=gen, dtype=F64) * scale
    elif kind == "integers":  # exact arithmetic: sums of products of small integers
        v = torch.randint(-4, 5, shape, generator=gen).to(F64) * (scale if scale >= 1 else 1.0)
    else:
        v = torch.full(shape, scale * (1 if seed % 2 else -1), dtype=F64)
    if max_abs is not None:
        v = v.clamp(-max_abs, max_abs)
    v = v.to(dtype)
    n = v.numel()
    if specials and n > 0:
        picks = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(_specials(dtype, with_max))),
                                   max_size=3), label="specials")
        flat = v.view(-1)
        for i, s in picks:
            flat[i] = s
    return v


LAYOUTS = ["contiguous", "transposed", "strided", "offset", "expanded"]


def arg(data, shape, dtype, *, writable=False, layouts=None, **value_args):
    """A Buf for a tensor argument of `shape`: values as in `values`, in a random memory layout."""
    shape = tuple(shape)
    v = values(data, shape, dtype, **value_args)
    choices = [l for l in (layouts or LAYOUTS) if not (writable and l == "expanded")]
    layout = data.draw(st.sampled_from(choices), label="layout")
    if layout == "transposed" and len(shape) >= 2:
        perm = tuple(reversed(range(len(shape))))
        base = v.permute(perm).contiguous()
        return Buf(base.permute(perm), base, torch.ones(base.shape, dtype=torch.bool))
    if layout == "strided" and len(shape) >= 1:
        steps = [data.draw(st.integers(1, 3), label="step") for _ in shape]
        offs = [data.draw(st.integers(0, 2), label="offset") for _ in shape]
        if all(s == 1 for s in steps):
            steps[-1] = 2
        base = torch.full([s * k + o for s, k, o in zip(shape, steps, offs)], math.nan, dtype=dtype)
        index = tuple(slice(o, o + s * k, k) for s, k, o in zip(shape, steps, offs))
        base[index] = v
        inside = torch.zeros(base.shape, dtype=torch.bool)
        inside[index] = True
        return Buf(base[index], base, inside)
    if layout == "offset":
        k = data.draw(st.integers(1, 3), label="storage offset")
        base = torch.full((v.numel() + k + 1,), math.nan, dtype=dtype)
        base[k:k + v.numel()] = v.reshape(-1)
        inside = torch.zeros(base.shape, dtype=torch.bool)
        inside[k:k + v.numel()] = True
        return Buf(base[k:k + v.numel()].view(shape), base, inside)
    if layout == "expanded" and any(s > 0 for s in shape):
        dims = [d for d, s in enumerate(shape) if s > 0]
        d = data.draw(st.sampled_from(dims), label="expanded dim")
        base = v.narrow(d, 0, 1).clone()
        return Buf(base.expand(shape), base, torch.ones(base.shape, dtype=torch.bool))
    base = v.clone()
    return Buf(base, base, torch.ones(base.shape, dtype=torch.bool))


# --- comparisons -------------------------------------------------------------------------------
def _eps(dtype):
    return torch.finfo(dtype).eps


def _sub(dtype):
    fi = torch.finfo(dtype)
    return fi.tiny * fi.eps


def _fin(t):
    """A magnitude for error bounds: NaN (from inf * 0) counts as unbounded."""
    return torch.nan_to_num(t, nan=math.inf)


def assert_within(actual, expected, bound, what):
    """`actual` (any float dtype) against `expected` (float64, rounded here to actual's dtype):
    NaN exactly where expected has NaN, the same infinities, and |actual - expected| <= bound elsewhere."""
    assert tuple(actual.shape) == tuple(expected.shape), (what, actual.shape, expected.shape)
    a = actual.detach().double()
    e = expected.to(actual.dtype).double()
    bound = torch.broadcast_to(torch.as_tensor(bound, dtype=F64), e.shape) + _eps(actual.dtype) * _fin(e.abs())
    nan_a, nan_e = a.isnan(), e.isnan()
    inf = (a.isinf() | e.isinf()) & ~nan_a & ~nan_e
    bad = (nan_a != nan_e) | (inf & (a != e))
    finite = ~(nan_a | nan_e | inf)
    bad |= finite & ((a - e).abs() > bound)
    if bad.any():
        i = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.numel()} elements differ; first at {list(i)}: "
                             f"got {a[i].item()!r}, expected {e[i].item()!r} (bound {bound[i].item()!r})")


def assert_same(a, b, what):
    """Equal values (NaN where NaN; -0.0 == 0.0), shapes and dtypes."""
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")


def assert_ulp(actual, expected, ulps, what):
    """|actual - expected| <= ulps units in the last place of expected (in actual's dtype)."""
    e = expected.to(actual.dtype)
    spacing = (torch.nextafter(e.abs(), torch.tensor(math.inf, dtype=e.dtype)) - e.abs()).double()
    assert_within(actual, expected.double(), ulps * spacing, what)


def check_output(name, out):
    if name == "cpp":
        assert out.is_contiguous(), f"cpp output not contiguous: strides {out.stride()}"


def matmul_bound(absprod, terms, dtype):
    """Error bound of a float dot product of `terms` products: 2 (terms + 2) eps sum|x_i w_i| plus underflow."""
    return 2 * (terms + 2) * _eps(dtype) * _fin(absprod) + (terms + 2) * _sub(dtype)


SIZES = st.sampled_from([0, 1, 1, 2, 3, 5, 8, 17])
BATCH = st.sampled_from([0, 1, 1, 2, 3, 7, 16, 40])


# One shape in twenty above the kernels' parallel grain (32768 elements: csrc/cpu/runtime/grain.h).
SHAPES = st.integers(0, 19).flatmap(
    lambda i: st.sampled_from([(40000,), (257, 129)]) if i == 0
    else st.lists(st.sampled_from([0, 1, 1, 2, 3, 5, 17]), min_size=0, max_size=3).map(tuple))
