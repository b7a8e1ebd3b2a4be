"""Property tests (hypothesis) of linear, tanh and relu: both backends against each other and torch
(fuzz_support.py says what is drawn and checked)."""
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import require_cpp
from fuzz_support import (BATCH, DTYPES, F32, F64, FUZZ, SHAPES, SIZES, _backends, _eps, _fin, _sub, _tiny, arg,
                          assert_same, assert_ulp, assert_within, check_output, matmul_bound)


def test_cpp_backend_is_fuzzed():
    """Reports (as a skip) when the fuzz tests (test_fuzz_*.py) compare the Python backend only."""
    require_cpp()


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
        if not (name == "cpp" and dtype == F32):  # test_tanh_float32_keeps_negative_zero (test_fuzz_invalid)
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
