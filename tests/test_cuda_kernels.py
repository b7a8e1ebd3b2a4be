"""The CUDA kernels of every op against the CPU extension and the Python fallback, on special values and
in every layout (non-contiguous, misaligned, empty, large).

The helpers, and the skip of the whole module without a GPU or CUDA kernels: cuda_support.py.
"""
import pytest
import torch

from minidl.kernels import python as py_ops

from conftest import assert_within_float32_sum_bound
from cuda_support import (BACKWARD, CUDA, DTYPES, EXACT, SIZES, TOL, UNARY, assert_like_cpu, check_output,
                          cuda_kernels, mdl, randn, saved_output, with_specials)  # noqa: F401 (cuda_kernels: the skip)
from op_cases import linear_reference


# ---- every op: CUDA vs the CPU extension vs the Python fallback ---------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", UNARY)
def test_forward_matches_cpu_and_python(name, size, dtype):
    torch.manual_seed(0)
    x_cpu = with_specials(randn(size, dtype, "cpu"))
    x = x_cpu.to(CUDA)
    y = mdl(name)(x)
    check_output(y, x)
    assert_like_cpu(name, y, mdl(name)(x_cpu), dtype)
    assert_like_cpu(name, y, getattr(py_ops, name)(x), dtype)
    torch.testing.assert_close(x.cpu(), x_cpu, **EXACT)  # the input is left alone


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", BACKWARD)
def test_backward_matches_cpu_and_python(name, size, dtype):
    torch.manual_seed(1)
    y_cpu = saved_output(name, with_specials(randn(size, dtype, "cpu")))
    g_cpu = randn(size, dtype, "cpu")
    g, y = g_cpu.to(CUDA), y_cpu.to(CUDA)
    out = mdl(name)(g, y)
    check_output(out, y)
    assert_like_cpu(name, out, mdl(name)(g_cpu, y_cpu), dtype)
    # The kernel rounds g * (1 - y*y) step by step (no FMA), as the Python fallback's mul/neg/add/mul:
    # bit for bit equal on the same device.
    torch.testing.assert_close(out, getattr(py_ops, name)(g, y), **EXACT)


def test_relu_nan_and_signed_zero_semantics():
    x = torch.tensor([float("nan"), -0.0, 0.0, -1.0, 2.0], device=CUDA)
    y = mdl("relu_forward")(x)
    torch.testing.assert_close(y, torch.tensor([float("nan"), 0.0, 0.0, 0.0, 2.0], device=CUDA), **EXACT)
    g = torch.full((5,), 7.0, device=CUDA)
    # y <= 0 ? 0 : g: where the output is NaN the gradient passes, as torch's threshold_backward.
    torch.testing.assert_close(mdl("relu_backward")(g, y), torch.tensor([7.0, 0.0, 0.0, 0.0, 7.0], device=CUDA),
                               **EXACT)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_cpu_and_python(dtype, bias):
    torch.manual_seed(2)
    x, w, gy = randn((37, 19), dtype, "cpu"), randn((23, 19), dtype, "cpu"), randn((37, 23), dtype, "cpu")
    b = randn((23,), dtype, "cpu") if bias else None
    results = {}
    for where, ops in (("cpu", torch.ops.minidl), ("cuda", torch.ops.minidl), ("python", py_ops)):
        dev = "cpu" if where == "cpu" else CUDA
        gw = torch.ones(23, 19, dtype=dtype, device=dev)
        gb = torch.ones(23, dtype=dtype, device=dev) if bias else None
        bd = b.to(dev) if bias else None
        fwd = ops.linear_forward if ops is py_ops else ops.linear_forward.default
        bwd = ops.linear_backward if ops is py_ops else ops.linear_backward.default
        y = fwd(x.to(dev), w.to(dev), bd)
        gx = bwd(gy.to(dev), x.to(dev), w.to(dev), gw, gb)
        results[where] = [t.cpu() for t in (y, gx, gw) + ((gb,) if bias else ())]
    if dtype == torch.float64:
        for where in ("cuda", "python"):
            for got, want in zip(results[where], results["cpu"]):
                torch.testing.assert_close(got, want, **TOL[dtype])
        return
    # float32: the three sum in different orders; each must stay within the rounding bound of its sums.
    x64, w64, gy64, b64 = x.double(), w.double(), gy.double(), b.double() if bias else None
    y64, gx64, gw64, gb64 = linear_reference(x64, w64, b64, gy64)  # the gradients start at 1 above
    want = [y64, gx64, 1 + gw64] + ([1 + gb64] if bias else [])
    ym, gxm, gwm, gbm = linear_reference(x64.abs(), w64.abs(), b64.abs() if bias else None, gy64.abs())
    magnitude = [ym, gxm, 1 + gwm] + ([1 + gbm] if bias else [])
    (n, fin), fout = x.shape, w.shape[0]
    terms = [fin + bias, fout, n + 1, n + 1]  # the bias and the accumulated-into 1 are one term more
    for where in ("cpu", "cuda", "python"):
        for name, got, ref, mag, k in zip(("y", "grad_input", "grad_weight", "grad_bias"), results[where], want,
                                          magnitude, terms):
            assert_within_float32_sum_bound(got, ref, mag, k, f"{where} {name}")


# ---- layouts: non-contiguous, misaligned, empty, large ----------------------------------------


SHAPE = (37, 29)


def _layouts(dtype, fill=lambda t: t):
    """(description, view) pairs: views of shape SHAPE, in the layouts the kernels must handle, of
    fresh CUDA tensors whose storage holds fill(random values)."""
    rows, cols = SHAPE
    n = rows * cols

    def base(*shape):
        return fill(randn(shape, dtype))

    views = [
        ("contiguous", base(rows, cols)),
        ("transposed", base(cols, rows).t()),
        ("every other column", base(rows, 2 * cols)[:, ::2]),
        ("expanded row", base(1, cols).expand(rows, cols)),
    ]
    # Contiguous views whose data pointer is 4, 8 or 12 bytes past 16-byte alignment (float32),
    # or 8 bytes (float64), then aligned again.
    for k in (1, 2, 3, 4):
        views.append((f"offset {k} element(s)", base(n + k)[k:].view(rows, cols)))
    for what, v in views:
        assert v.shape == SHAPE, what
    return views


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_forward_layouts(name, dtype):
    torch.manual_seed(3)
    for what, x in _layouts(dtype):
        y = mdl(name)(x)
        check_output(y, x)
        try:
            assert_like_cpu(name, y, getattr(py_ops, name)(x), dtype)
            assert_like_cpu(name, y, mdl(name)(x.cpu()), dtype)
        except AssertionError as e:
            raise AssertionError(f"input {what}: {e}") from None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BACKWARD)
def test_backward_layouts(name, dtype):
    """Every pairing of layouts, so that the vector path is taken only when all three pointers align."""
    torch.manual_seed(4)
    grads = _layouts(dtype)
    saveds = _layouts(dtype, fill=lambda t: saved_output(name, t))
    for gwhat, g in grads:
        for ywhat, y in saveds:
            out = mdl(name)(g, y)
            check_output(out, y)
            try:
                torch.testing.assert_close(out, getattr(py_ops, name)(g, y), **EXACT)
                assert_like_cpu(name, out, mdl(name)(g.cpu(), y.cpu()), dtype)
            except AssertionError as e:
                raise AssertionError(f"grad_output {gwhat}, output {ywhat}: {e}") from None


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 5, 2)])
@pytest.mark.parametrize("name", UNARY + BACKWARD)
def test_empty(name, shape):
    x = torch.empty(shape, device=CUDA)
    out = mdl(name)(x) if name in UNARY else mdl(name)(x, x)
    check_output(out, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_tensor(dtype):
    """2^24 + 3 elements: many passes of the grid-stride loop (the grid is capped), and a tail."""
    torch.manual_seed(5)
    n = (1 << 24) + 3
    x = randn((n,), dtype)
    g = randn((n,), dtype)
    for name in UNARY:
        y = mdl(name)(x)
        check_output(y, x)
        assert_like_cpu(name, y, getattr(py_ops, name)(x), dtype)
    for name in BACKWARD:
        y = saved_output(name, x)
        torch.testing.assert_close(mdl(name)(g, y), getattr(py_ops, name)(g, y), **EXACT)
    # and misaligned, which takes the scalar kernel over the whole tensor
    xm = x[1:]
    torch.testing.assert_close(mdl("relu_forward")(xm), torch.relu(xm), **EXACT)
