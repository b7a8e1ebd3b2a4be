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
"""
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, Phase, event, note, settings
from hypothesis import given
from hypothesis import strategies as st

from conftest import require_cpp
from torch.optim.sgd import sgd as _torch_sgd  # torch.optim.SGD's arithmetic, as a function
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


def test_cpp_backend_is_fuzzed():
    """Reports (as a skip) when the fuzz tests below compare the Python backend only."""
    require_cpp()


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


# --- linear ------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_linear_forward(data):
    dtype = data.draw(DTYPES, label="dtype")
    n, fin, fout = data.draw(BATCH, label="N"), data.draw(SIZES, label="in"), data.draw(SIZES, label="out")
    x, w = arg(data, (n, fin), dtype), arg(data, (fout, fin), dtype)
    b = arg(data, (fout,), dtype) if data.draw(st.booleans(), label="bias") else None
    X, W = x.t.double(), w.t.double()
    B = b.t.double() if b else torch.zeros(fout, dtype=F64)
    ref = torch.addmm(B, X, W.t())
    bound = matmul_bound(B.abs() + X.abs() @ W.abs().t(), fin, dtype)
    results = {}
    for name, k in _backends():
        y = k.linear_forward(x.t, w.t, b.t if b else None)
        check_output(name, y)
        assert y.dtype == dtype
        assert_within(y, ref, bound, f"{name} linear_forward")
        results[name] = y
        assert x.untouched() and w.untouched() and (b is None or b.untouched())
    if "cpp" in results:  # both call ATen's addmm / mm: the same bits
        assert_same(results["cpp"], results["python"], "cpp vs python linear_forward")


@FUZZ
@given(data=st.data())
def test_linear_backward(data):
    dtype = data.draw(DTYPES, label="dtype")
    n, fin, fout = data.draw(BATCH, label="N"), data.draw(SIZES, label="in"), data.draw(SIZES, label="out")
    x, w, gy = arg(data, (n, fin), dtype), arg(data, (fout, fin), dtype), arg(data, (n, fout), dtype)
    # Accumulators: drawn once, cloned per backend in the same layout (addmm_ into other strides
    # rounds differently, which is no disagreement).
    gw_buf = arg(data, (fout, fin), dtype, writable=True)
    gb_buf = arg(data, (fout,), dtype, writable=True) if data.draw(st.booleans(), label="grad_bias") else None
    gw0, gb0 = gw_buf.t.clone(), gb_buf.t.clone() if gb_buf else torch.zeros(fout, dtype=dtype)
    X, W, G = x.t.double(), w.t.double(), gy.t.double()
    gx_ref = G @ W
    gw_ref = gw0.double() + G.t() @ X
    gb_ref = gb0.double() + G.sum(0)
    gx_bound = matmul_bound(G.abs() @ W.abs(), fout, dtype)
    gw_bound = matmul_bound(gw0.double().abs() + G.abs().t() @ X.abs(), n, dtype)
    gb_bound = matmul_bound(gb0.double().abs() + G.abs().sum(0), n, dtype)
    results = {}
    for name, k in _backends():
        gw, gb = gw_buf.clone(), gb_buf.clone() if gb_buf else None
        gw_t, gb_t = gw.t, (gb.t if gb else None)
        gx = k.linear_backward(gy.t, x.t, w.t, gw_t, gb_t)
        check_output(name, gx)
        assert_within(gx, gx_ref, gx_bound, f"{name} linear_backward grad_input")
        # In place: the very tensors passed, updated through their (possibly strided) views only.
        assert_within(gw.t, gw_ref, gw_bound, f"{name} linear_backward grad_weight")
        assert gw.outside_untouched(), f"{name} linear_backward wrote outside grad_weight's view"
        if gb:
            assert_within(gb.t, gb_ref, gb_bound, f"{name} linear_backward grad_bias")
            assert gb.outside_untouched(), f"{name} linear_backward wrote outside grad_bias's view"
        assert x.untouched() and w.untouched() and gy.untouched(), f"{name} linear_backward modified an input"
        results[name] = (gx, gw.t.clone(), gb.t.clone() if gb else None)
    if "cpp" in results:
        for what, c, p in zip(("grad_input", "grad_weight", "grad_bias"), results["cpp"], results["python"]):
            if c is not None:
                assert_same(c, p, f"cpp vs python linear_backward {what}")


# --- tanh and relu -----------------------------------------------------------------------------
# One shape in twenty above the kernels' parallel grain (32768 elements: csrc/cpu/runtime/grain.h).
SHAPES = st.integers(0, 19).flatmap(
    lambda i: st.sampled_from([(40000,), (257, 129)]) if i == 0
    else st.lists(st.sampled_from([0, 1, 1, 2, 3, 5, 17]), min_size=0, max_size=3).map(tuple))


def _elementwise_args(data, dtype, shape):
    return arg(data, shape, dtype, with_max=True,
               scale=data.draw(st.sampled_from([_tiny(dtype), 1e-3, 0.5, 1.0, 3.0, 20.0, 1e30 if dtype == F32 else 1e300]),
                               label="scale"))


@FUZZ
@given(data=st.data())
def test_tanh_forward(data):
    dtype, shape = data.draw(DTYPES, label="dtype"), data.draw(SHAPES, label="shape")
    x = _elementwise_args(data, dtype, shape)
    ref = torch.tanh(x.t)  # torch in the same dtype
    results = {}
    for name, k in _backends():
        y = k.tanh_forward(x.t)
        check_output(name, y)
        # The bound covers both backends: the C++ float32 tanh is hand-written (1 ulp, checked on a
        # dense sweep in test_ops), the Python one is torch.tanh; float64 calls std::tanh.
        assert_ulp(y, ref, 4 if dtype == F32 else 2, f"{name} tanh_forward")
        assert_ulp(y, torch.tanh(x.t.double()), 4 if dtype == F32 else 2, f"{name} tanh_forward vs float64")
        # Where tanh(x) rounds to x (tiny, subnormal, +-0.0), the sign of zero included.
        small = x.t.abs() < (1e-5 if dtype == F32 else 1e-9)
        assert torch.equal(y[small], x.t[small])
        if not (name == "cpp" and dtype == F32):  # test_tanh_float32_keeps_negative_zero below
            assert torch.equal(y[small].signbit(), x.t[small].signbit())
        assert x.untouched()
        results[name] = y
    if "cpp" in results:
        assert_ulp(results["cpp"], results["python"], 4 if dtype == F32 else 2, "cpp vs python tanh_forward")


@FUZZ
@given(data=st.data())
def test_tanh_backward(data):
    dtype, shape = data.draw(DTYPES, label="dtype"), data.draw(SHAPES, label="shape")
    g = _elementwise_args(data, dtype, shape)
    y = arg(data, shape, dtype, with_max=True, scale=data.draw(st.sampled_from([0.5, 1.0, 1e3]), label="y scale"),
            max_abs=data.draw(st.sampled_from([None, 1.0]), label="y clamp"))
    G, Y = g.t.double(), y.t.double()
    # y^2 rounded in the dtype (inf where it overflows there: g * -inf is then NaN, or -inf), the rest exact.
    ref = G * (1 - (y.t * y.t).double())
    # 1 - y^2 in the dtype: error <= 2 eps (1 + y^2); times g, one more rounding (added by assert_within).
    bound = 2 * _eps(dtype) * _fin(G.abs() * (1 + Y * Y)) + 2 * _sub(dtype)
    aten = torch.ops.aten.tanh_backward(g.t, y.t)
    results = {}
    for name, k in _backends():
        gx = k.tanh_backward(g.t, y.t)
        check_output(name, gx)
        assert_within(gx, ref, bound, f"{name} tanh_backward")
        assert_within(gx, aten.double(), 2 * bound, f"{name} tanh_backward vs aten")
        assert g.untouched() and y.untouched()
        results[name] = gx
    if "cpp" in results:  # g * (1 - y*y) on both, no fused multiply-add: the same bits
        assert_same(results["cpp"], results["python"], "cpp vs python tanh_backward")


@FUZZ
@given(data=st.data())
def test_relu_forward(data):
    dtype, shape = data.draw(DTYPES, label="dtype"), data.draw(SHAPES, label="shape")
    x = _elementwise_args(data, dtype, shape)
    ref = torch.relu(x.t)
    for name, k in _backends():
        y = k.relu_forward(x.t)
        check_output(name, y)
        assert_same(y, ref, f"{name} relu_forward")  # exact, NaN propagates
        assert x.untouched()


@FUZZ
@given(data=st.data())
def test_relu_backward(data):
    dtype, shape = data.draw(DTYPES, label="dtype"), data.draw(SHAPES, label="shape")
    g = _elementwise_args(data, dtype, shape)
    y = arg(data, shape, dtype, with_max=True)  # any saved output: negative, -0.0, NaN included
    ref = torch.ops.aten.threshold_backward(g.t, y.t, 0)
    for name, k in _backends():
        gx = k.relu_backward(g.t, y.t)
        check_output(name, gx)
        assert_same(gx, ref, f"{name} relu_backward")
        assert g.untouched() and y.untouched()


# --- the fused stack ---------------------------------------------------------------------------
STACK_SIZES = st.sampled_from([0, 1, 2, 3, 5, 8, 17, 33])


def _act64(z, a):
    return torch.relu(z) if a == 1 else torch.tanh(z) if a == 2 else z


def _stack(data, dtype):
    layers = data.draw(st.integers(1, 3), label="layers")
    sizes = [data.draw(STACK_SIZES, label="size") for _ in range(layers + 1)]
    acts = [data.draw(st.sampled_from([0, 1, 2]), label="activation") for _ in range(layers)]
    n = data.draw(BATCH, label="N")
    ws = [arg(data, (o, i), dtype, scale=data.draw(st.sampled_from([_tiny(dtype), 1e-3, 0.3, 1.0, 30.0]), label="w scale"))
          for i, o in zip(sizes, sizes[1:])]
    bs = [arg(data, (o,), dtype, scale=data.draw(st.sampled_from([1e-3, 1.0, 1e3]), label="b scale")) for o in sizes[1:]]
    x = arg(data, (n, sizes[0]), dtype, scale=data.draw(st.sampled_from([_tiny(dtype), 1e-3, 1.0, 1e3, 1e8]), label="x scale"))
    note(f"mlp sizes {sizes} activations {acts} batch {n}")
    return n, sizes, acts, x, ws, bs


@FUZZ
@given(data=st.data())
def test_mlp_forward(data):
    dtype = data.draw(DTYPES, label="dtype")
    n, sizes, acts, x, ws, bs = _stack(data, dtype)
    results = {}
    for name, k in _backends():
        outs = k.mlp_forward(x.t, [w.t for w in ws], [b.t for b in bs], acts)
        assert len(outs) == len(ws)
        prev = x.t
        for i, (y, w, b, a) in enumerate(zip(outs, ws, bs, acts)):
            check_output(name, y)
            assert y.dtype == dtype
            # Each layer from the kernel's own previous output: the error bound of one layer.
            X, W, B = prev.double(), w.t.double(), b.t.double()
            ref = _act64(torch.addmm(B, X, W.t()), a)
            bound = matmul_bound(B.abs() + X.abs() @ W.abs().t(), sizes[i], dtype)
            if a == 2:
                bound = bound + 4 * _eps(dtype) * ref.abs()
            assert_within(y, ref, bound, f"{name} mlp_forward layer {i}")
            prev = y
        assert x.untouched() and all(w.untouched() for w in ws) and all(b.untouched() for b in bs)
        results[name] = outs
    if "cpp" in results:  # other loops than Python's addmm (small layers): NaN and inf in the same places
        for i, (c, p) in enumerate(zip(results["cpp"], results["python"])):
            assert torch.equal(c.isnan(), p.isnan()) and torch.equal(c.isinf(), p.isinf()), f"layer {i}"


@FUZZ
@given(data=st.data())
def test_mlp_backward(data):
    dtype = data.draw(DTYPES, label="dtype")
    n, sizes, acts, x, ws, bs = _stack(data, dtype)
    layers = len(ws)
    # Saved outputs: any values (the op is a function of them); tanh outputs of moderate size.
    outs = [arg(data, (n, o), dtype, scale=data.draw(st.sampled_from([0.5, 1.0, 1e3]), label="y scale"),
                max_abs=1.5 if a == 2 else None)
            for o, a in zip(sizes[1:], acts)]
    gy = arg(data, (n, sizes[-1]), dtype, scale=data.draw(st.sampled_from([_tiny(dtype), 1e-3, 1.0, 1e3]), label="g scale"))
    gw_bufs = [arg(data, tuple(w.t.shape), dtype, writable=True) for w in ws]
    gb_bufs = [arg(data, tuple(b.t.shape), dtype, writable=True) for b in bs]
    gw0, gb0 = [g.t.clone() for g in gw_bufs], [g.t.clone() for g in gb_bufs]
    gx_buf = arg(data, tuple(x.t.shape), dtype, writable=True) if data.draw(st.booleans(), label="grad_input") else None
    want_gx = gx_buf is not None

    # Reference chain: the gradient g in the dtype (so that it underflows to 0, and 0 * inf is NaN,
    # where the kernels' does), each product with it in float64, and a float64 magnitude bound
    # alongside (|g| through |act'| and |W|).
    eps, tiny = _eps(dtype), torch.finfo(dtype).tiny
    G = gy.t.clone()
    Gabs = G.double().abs()
    refs = [None] * layers
    terms = n + sum(sizes) + 3 * layers
    for k in reversed(range(layers)):
        y = outs[k].t
        if acts[k] == 1:
            mask = y <= 0
            G, Gabs = G.masked_fill(mask, 0), Gabs.masked_fill(mask, 0)
        elif acts[k] == 2:
            Y = y.double()
            G, Gabs = G * (1 - y * y), _fin(Gabs * (1 + Y * Y))
        Gabs = _fin(Gabs + tiny)
        X = (outs[k - 1].t if k > 0 else x.t).double()
        G64 = G.double()
        gw = (gw0[k].double() + G64.t() @ X, gw0[k].double().abs() + _fin(Gabs.t() @ X.abs()))
        gb = (gb0[k].double() + G64.sum(0), gb0[k].double().abs() + _fin(Gabs.sum(0)))
        refs[k] = (gw, gb)
        W = ws[k].t
        G, Gabs = G @ W, _fin(Gabs @ W.double().abs())
    G = G.double()
    gx_ref = G, Gabs

    def bound(mag):
        return 2 * (terms + 2) * eps * mag + (terms + 2) * _sub(dtype)

    results = {}
    for name, k in _backends():
        gws, gbs = [g.clone() for g in gw_bufs], [g.clone() for g in gb_bufs]
        gx = gx_buf.clone() if want_gx else None
        ret = k.mlp_backward(gy.t, x.t, [o.t for o in outs], [w.t for w in ws], [g.t for g in gws],
                             [g.t for g in gbs], acts, gx.t if gx else None)
        assert ret is None
        for i in range(layers):
            (gw_ref, gw_mag), (gb_ref, gb_mag) = refs[i]
            assert_within(gws[i].t, gw_ref, bound(gw_mag), f"{name} mlp_backward grad_weight {i}")
            assert_within(gbs[i].t, gb_ref, bound(gb_mag), f"{name} mlp_backward grad_bias {i}")
        for buf in gws + gbs:
            assert buf.outside_untouched(), f"{name} mlp_backward wrote outside a gradient's view"
        if gx:  # overwritten, not accumulated
            assert_within(gx.t, gx_ref[0], bound(gx_ref[1]), f"{name} mlp_backward grad_input")
            assert gx.outside_untouched(), f"{name} mlp_backward wrote outside grad_input's view"
        for buf in [x, gy] + outs + ws:
            assert buf.untouched(), f"{name} mlp_backward modified a read-only input"
        results[name] = [g.t.clone() for g in gws + gbs] + ([gx.t.clone()] if gx else [])
    if "cpp" in results:  # NaN and inf in the same places (values: each within bound of the reference)
        for c, p in zip(results["cpp"], results["python"]):
            assert torch.equal(c.isnan(), p.isnan()) and torch.equal(c.isinf(), p.isinf())


# --- loss and optimizer ------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_mse_forward(data):
    dtype, shape = data.draw(DTYPES, label="dtype"), data.draw(SHAPES, label="shape")
    # No finfo.max here: float32 sums of squares that overflow differ between the backends
    # (test_mse_float32_overflow_agrees below).
    o, t = arg(data, shape, dtype), arg(data, shape, dtype)
    n = o.t.numel()
    D = (o.t - t.t).double()  # the difference rounded in the dtype, as both backends compute it
    loss_ref = (D * D).mean() if n else torch.tensor(math.nan, dtype=F64)
    grad_ref = D * (2.0 / max(n, 1))
    loss_bound = 2 * (n + 4) * _eps(dtype) * _fin((D * D).mean() if n else torch.tensor(0.0, dtype=F64)) + 4 * _sub(dtype)
    results = {}
    for name, k in _backends():
        loss, grad = k.mse_forward(o.t, t.t)
        check_output(name, grad)
        assert loss.shape == () and loss.dtype == dtype and grad.dtype == dtype
        assert_within(loss, loss_ref, loss_bound, f"{name} mse_forward loss")
        assert_within(grad, grad_ref, 2 * _eps(dtype) * grad_ref.abs() + 2 * _sub(dtype), f"{name} mse_forward grad")
        assert o.untouched() and t.untouched()
        results[name] = loss, grad
    if n:
        ref = torch.nn.functional.mse_loss(o.t, t.t)
        assert_within(results["python"][0], ref.double(), loss_bound, "python mse vs torch mse_loss")
    if "cpp" in results:
        assert_same(results["cpp"][1], results["python"][1], "cpp vs python mse_forward grad")
        assert_within(results["cpp"][0], results["python"][0].double(), 2 * loss_bound, "cpp vs python mse loss")


@FUZZ
@given(data=st.data())
def test_sgd_step(data):
    dtype = data.draw(DTYPES, label="dtype")
    count = data.draw(st.integers(1, 3), label="params")  # none: test_sgd_step_without_params below
    shapes = [data.draw(SHAPES, label="shape") for _ in range(count)]
    lr = data.draw(st.sampled_from([0.0, 1e-3, 0.1, 1.0, 10.0]), label="lr")
    momentum = data.draw(st.sampled_from([0.0, 0.5, 0.9]), label="momentum")
    wd = data.draw(st.sampled_from([0.0, 1e-4, 0.1]), label="weight_decay")
    p_bufs = [arg(data, s, dtype, writable=True, with_max=True) for s in shapes]
    grads = [arg(data, s, dtype, with_max=True) for s in shapes]
    v_bufs = [arg(data, s, dtype, writable=True) for s in shapes]
    p0, v0 = [p.t.clone() for p in p_bufs], [v.t.clone() for v in v_bufs]
    pass_buffers = momentum != 0 or data.draw(st.booleans(), label="buffers without momentum")

    # torch.optim's own arithmetic (buffers given, so not its first-step clone).
    p_ref, v_ref = [p.clone() for p in p0], [v.clone() for v in v0]
    _torch_sgd(p_ref, [g.t for g in grads], v_ref if momentum else [None] * count, foreach=False,
               weight_decay=wd, momentum=momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False)
    for name, k in _backends():
        ps, vs = [p.clone() for p in p_bufs], [v.clone() for v in v_bufs]
        ret = k.sgd_step_([p.t for p in ps], [g.t for g in grads], [v.t for v in vs] if pass_buffers else [],
                          lr, momentum, wd)
        assert ret is None
        for i in range(count):
            # Documented: torch.optim.SGD's arithmetic, bit for bit.
            assert_same(ps[i].t, p_ref[i], f"{name} sgd_step_ param {i}")
            assert_same(vs[i].t, v_ref[i] if momentum else v0[i], f"{name} sgd_step_ momentum_buffer {i}")
            assert ps[i].outside_untouched() and vs[i].outside_untouched(), f"{name} sgd_step_ wrote outside a view"
            assert grads[i].untouched(), f"{name} sgd_step_ modified a grad"


# --- invalid input -----------------------------------------------------------------------------
BAD_DTYPES = [torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.bool, torch.complex64]


def _valid_call(data, op, dtype):
    """(args, names of tensor positions): a valid call of `op`, built from small contiguous tensors."""
    r = lambda *s: torch.randn(*s, dtype=dtype)  # noqa: E731
    n, i, o = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    if op == "linear_forward":
        return [r(n, i), r(o, i), r(o)]
    if op == "linear_backward":
        return [r(n, o), r(n, i), r(o, i), torch.zeros(o, i, dtype=dtype), torch.zeros(o, dtype=dtype)]
    if op in ("tanh_forward", "relu_forward"):
        return [r(n, i)]
    if op in ("tanh_backward", "relu_backward", "mse_forward"):
        return [r(n, i), r(n, i)]
    if op == "mlp_forward":
        return [r(n, i), [r(o, i), r(2, o)], [r(o), r(2)], [1, 2]]
    if op == "mlp_backward":
        return [r(n, 2), r(n, i), [r(n, o), r(n, 2)], [r(o, i), r(2, o)],
                [torch.zeros(o, i, dtype=dtype), torch.zeros(2, o, dtype=dtype)],
                [torch.zeros(o, dtype=dtype), torch.zeros(2, dtype=dtype)], [2, 0], torch.zeros(n, i, dtype=dtype)]
    if op == "sgd_step_":
        return [[r(o, i), r(o)], [r(o, i), r(o)], [torch.zeros(o, i, dtype=dtype), torch.zeros(o, dtype=dtype)],
                0.1, 0.9, 0.01]
    raise AssertionError(op)


def _tensor_slots(args):
    """Paths (i,) or (i, j) of every tensor in args."""
    slots = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            slots.append((i,))
        elif isinstance(a, list):
            slots += [(i, j) for j, t in enumerate(a) if isinstance(t, torch.Tensor)]
    return slots


def _get(args, slot):
    return args[slot[0]] if len(slot) == 1 else args[slot[0]][slot[1]]


def _set(args, slot, value):
    if len(slot) == 1:
        args[slot[0]] = value
    else:
        args[slot[0]][slot[1]] = value


def _corrupt(data, op, args, dtype):
    """Make one thing wrong: a dtype, a shape, a list length or an activation code."""
    slots = _tensor_slots(args)
    lists = [i for i, a in enumerate(args) if isinstance(a, list) and a and isinstance(a[0], torch.Tensor)]
    codes = [i for i, a in enumerate(args) if isinstance(a, list) and a and isinstance(a[0], int)]
    kinds = ["dtype", "other float", "shape", "rank"] + (["list length"] if lists else []) + (["code"] if codes else [])
    kind = data.draw(st.sampled_from(kinds), label="corruption")
    if kind in ("dtype", "other float", "shape", "rank"):
        slot = data.draw(st.sampled_from(slots), label="argument")
        t = _get(args, slot)
        if kind == "dtype":
            _set(args, slot, t.to(data.draw(st.sampled_from(BAD_DTYPES), label="bad dtype")))
        elif kind == "other float":
            _set(args, slot, t.to(F64 if dtype == F32 else F32))
        elif kind == "shape":
            if t.dim() == 0:
                _set(args, slot, t.reshape(1).expand(2).clone())
            else:
                d = data.draw(st.integers(0, t.dim() - 1), label="dim")
                shape = list(t.shape)
                shape[d] += data.draw(st.sampled_from([-1, 1, 3]), label="delta")
                _set(args, slot, torch.zeros([max(s, 0) for s in shape], dtype=t.dtype))
        else:
            extra = data.draw(st.booleans(), label="add a dimension")
            _set(args, slot, t.unsqueeze(0) if extra or t.dim() == 0 else t.reshape(-1) if t.dim() > 1 else t[0])
    elif kind == "list length":
        i = data.draw(st.sampled_from(lists), label="list")
        args[i] = args[i][:-1] if data.draw(st.booleans(), label="shorter") else args[i] + [args[i][-1].clone()]
    else:
        i = codes[0]
        j = data.draw(st.integers(0, len(args[i]) - 1), label="position")
        args[i] = list(args[i])
        args[i][j] = data.draw(st.sampled_from([-1, 3, 7]), label="code")
    return kind


def _copy(args):
    return [[t.clone() if isinstance(t, torch.Tensor) else t for t in a] if isinstance(a, list)
            else a.clone() if isinstance(a, torch.Tensor) else a for a in args]


def _same_state(a, b):
    sa, sb = _tensor_slots(a), _tensor_slots(b)
    return sa == sb and all(_bits_equal(_get(a, s).view(-1), _get(b, s).view(-1)) if _get(a, s).dtype in (F32, F64)
                            else torch.equal(_get(a, s), _get(b, s)) for s in sa)


OPS = ["linear_forward", "linear_backward", "tanh_forward", "tanh_backward", "relu_forward", "relu_backward",
       "mlp_forward", "mlp_backward", "mse_forward", "sgd_step_"]


@pytest.mark.parametrize("op", OPS)
@FUZZ
@given(data=st.data())
def test_invalid_input_is_rejected_alike(op, data):
    dtype = data.draw(DTYPES, label="dtype")
    args = _valid_call(data, op, dtype)
    kind = _corrupt(data, op, args, dtype)
    raised = {}
    for name, k in _backends():
        call_args = _copy(args)
        try:
            getattr(k, op)(*call_args)
        except (TypeError, ValueError, RuntimeError) as e:
            raised[name] = type(e)
            message = str(e)
            assert f"minidl.{op}" in message, (name, message)
            # Nothing changed before the error: every kernel checks all its arguments first.
            assert _same_state(call_args, args), f"{name} {op} modified its arguments, then raised"
        else:
            raised[name] = None
    # Some corruptions leave a valid call (another batch size, any shape for tanh): then both must
    # accept it. Otherwise both raise, the same class.
    assert len(set(raised.values())) == 1, (kind, raised)
    event(f"{kind}: {'accepted' if None in raised.values() else 'rejected'}")


# --- regressions: what the fuzzer found in the C++ kernels, fixed since ---
def test_mse_float32_overflow_agrees():
    require_cpp()
    from minidl.kernels import cpp
    o, t = torch.tensor([2e19, 0.0]), torch.zeros(2)  # (2e19)^2 = 4e38 > float32 max; the mean 2e38 is not
    assert_same(cpp.mse_forward(o, t)[0], python_kernels.mse_forward(o, t)[0], "mse loss")


def test_linear_backward_invalid_grad_bias_leaves_grad_weight():
    require_cpp()
    from minidl.kernels import cpp
    gw = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="grad_bias"):
        cpp.linear_backward(torch.ones(4, 2), torch.ones(4, 3), torch.ones(2, 3), gw, torch.zeros(5))
    assert gw.abs().sum() == 0, gw


def test_sgd_step_invalid_param_leaves_the_others():
    require_cpp()
    from minidl.kernels import cpp
    p = [torch.ones(3), torch.ones(2)]
    with pytest.raises(TypeError, match="parameter 1"):
        cpp.sgd_step_(p, [torch.ones(3), torch.ones(2, dtype=F64)], [], 0.1, 0.0, 0.0)
    assert torch.equal(p[0], torch.ones(3)), p[0]


def test_sgd_step_without_params():
    """A model without parameters (Sequential(ReLU())) steps as a no-op on both backends."""
    require_cpp()
    from minidl.kernels import cpp
    python_kernels.sgd_step_([], [], [], 0.1, 0.9, 0.0)
    cpp.sgd_step_([], [], [], 0.1, 0.9, 0.0)


def test_tanh_float32_keeps_negative_zero():
    require_cpp()
    from minidl.kernels import cpp
    assert cpp.tanh_forward(torch.tensor([-0.0])).signbit().item()
