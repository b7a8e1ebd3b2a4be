"""The CPU's direct convolution (first layers: few values per kernel row) against torch and against the
im2col + GEMM path it replaces there (its unfused twin), and independent of the thread count."""
import contextlib

import pytest
import torch

import minidl

pytestmark = pytest.mark.skipif(not minidl.cpp_available(), reason="the C++ extension is not built")
F64 = torch.float64
# (N, C, H, W, O, kernel, stride, padding): the study's first layers, then odd shapes
SHAPES = [(5, 1, 14, 14, 32, (3, 3), 1, 0), (4, 2, 14, 14, 32, (3, 3), 1, 0), (3, 3, 9, 7, 17, (3, 3), 2, 1),
          (1, 2, 8, 8, 5, (1, 3), 1, 1), (2, 1, 11, 9, 40, (5, 5), 2, 2), (2, 4, 6, 6, 33, (3, 2), 1, 0)]


@contextlib.contextmanager
def direct_limit(values):
    """Run the block with the direct kernels for kw * C <= values (0: the im2col path everywhere)."""
    old = minidl._C._set_conv_direct(values)
    try:
        yield
    finally:
        minidl._C._set_conv_direct(old)


def conv_case(shape, dtype, seed=0):
    n, c, h, w, o, (kh, kw), stride, padding = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    return (torch.empty_like(x, memory_format=torch.channels_last).copy_(x), torch.randn(o, c, kh, kw, generator=g, dtype=dtype),
            torch.randn(o, generator=g, dtype=dtype), [stride] * 2, [padding] * 2)


def run(x, w, b, stride, padding, seed=1):
    """(output, grad_weight, grad_bias) of minidl's ops for a random grad_output."""
    y = torch.ops.minidl.conv2d_forward(x, w, b, stride, padding)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    gw, gb = torch.zeros_like(w), torch.zeros_like(b)
    torch.ops.minidl.conv2d_backward(gy, x, w, gw, gb, stride, padding, False)
    return y, gw, gb, gy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_direct_conv_equals_torch(shape, dtype):
    x, w, b, stride, padding = conv_case(shape, dtype)
    with direct_limit(64):
        y, gw, gb, gy = run(x, w, b, stride, padding)
    wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
    with torch.enable_grad():
        yr = torch.nn.functional.conv2d(x, wr, br, stride=stride, padding=padding)
        yr.backward(gy)
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == F64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y, yr.detach(), **tol)
    torch.testing.assert_close(gw, wr.grad, **tol)
    torch.testing.assert_close(gb, br.grad, **tol)
    assert y.is_contiguous(memory_format=torch.channels_last)  # the layout rule of the im2col path


@pytest.mark.parametrize("shape", SHAPES)
def test_direct_conv_equals_the_im2col_path(shape):
    x, w, b, stride, padding = conv_case(shape, F64, seed=2)
    with direct_limit(64):
        direct = run(x, w, b, stride, padding)
    with direct_limit(0):
        unfused = run(x, w, b, stride, padding)
    for a, u in zip(direct, unfused):
        torch.testing.assert_close(a, u, rtol=1e-12, atol=1e-12)
        assert a.stride() == u.stride()


def test_direct_conv_does_not_depend_on_the_thread_count():
    x, w, b, stride, padding = conv_case((37, 2, 14, 14, 32, (3, 3), 1, 0), torch.float32, seed=3)
    threads = torch.get_num_threads()
    results = []
    try:
        with direct_limit(64):
            for count in (1, 2, 3):
                torch.set_num_threads(count)
                results.append(run(x, w, b, stride, padding))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, u in zip(results[0], other):
            assert torch.equal(a, u)


def test_the_study_first_layers_take_the_direct_path_by_default():
    """The default limit covers 3x3 kernels on 1 or 2 channels, and not the 32-channel second layer."""
    old = minidl._C._set_conv_direct(0)
    minidl._C._set_conv_direct(old)
    assert 6 <= old < 3 * 32
