"""The CPU direct convolution loops (cpu/conv_direct.cpp, kernels of few taps) against
torch.nn.functional.conv2d + autograd and against the im2col path they replace (minidl._C._set_conv_direct)."""
import contextlib
import itertools

import pytest
import torch

from conftest import assert_within_float32_sum_bound, require_cpp
from op_cases_conv import autograd_reference, config_id, extension_setting

F64 = dict(rtol=1e-12, atol=1e-12)
# (N, C, H, W, O, KH, KW, stride, padding): few taps, so the direct loops take them
CONFIGS = [
    (200, 1, 14, 14, 32, 3, 3, (1, 1), (0, 0)),  # the study's first layers
    (100, 2, 14, 14, 32, 3, 3, (1, 1), (0, 0)),
    (1, 1, 14, 14, 32, 3, 3, (1, 1), (0, 0)),
    (3, 3, 9, 8, 17, 3, 3, (2, 2), (1, 1)),
    (5, 2, 7, 9, 5, 1, 3, (1, 2), (0, 1)),
    (7, 1, 11, 10, 32, 5, 5, (2, 1), (1, 0)),
    (2, 1, 6, 6, 40, 5, 5, (1, 1), (1, 1)),  # a full block of channels and a partial one
    (3, 2, 5, 13, 9, 3, 3, (1, 1), (1, 1)),
    (4, 3, 8, 8, 64, 1, 3, (2, 2), (0, 1)),
]


@pytest.fixture(autouse=True)
def cpp():
    require_cpp()


def direct(enabled):
    return extension_setting("_set_conv_direct", enabled)


@contextlib.contextmanager
def threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def inputs(config, dtype, layout, seed=0):
    n, c, h, w, o, kh, kw, stride, padding = config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    wt = torch.randn(o, c, kh, kw, generator=g, dtype=dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(o, generator=g, dtype=dtype)
    oh, ow = (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1
    gy = torch.randn(n, o, oh, ow, generator=g, dtype=dtype)
    if layout == "channels_last":
        x, gy = x.contiguous(memory_format=torch.channels_last), gy.contiguous(memory_format=torch.channels_last)
    return x, wt, b, gy


def run(x, w, b, gy, stride, padding, input_grad=False):
    """minidl's (y, grad_weight, grad_bias, grad_input or an empty tensor)."""
    y = torch.ops.minidl.conv2d_forward(x, w, b, stride, padding)
    gw, gb = torch.zeros_like(w), torch.zeros_like(b)
    gx = torch.ops.minidl.conv2d_backward(gy, x, w, gw, gb, stride, padding, input_grad)
    return y, gw, gb, gx


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_direct_matches_torch(dtype, layout, config):
    stride, padding = config[7], config[8]
    x, w, b, gy = inputs(config, dtype, layout)
    y, gw, gb, gx = run(x, w, b, gy, stride, padding, input_grad=True)
    assert y.shape == gy.shape and gw.shape == w.shape
    if dtype == torch.float64:
        for got, want in zip((y, gw, gb, gx), autograd_reference(x, w, b, gy, stride, padding)):
            torch.testing.assert_close(got, want, **F64)
        return
    n, c, h, wd, o, kh, kw = config[:7]
    d = [t.double() for t in (x, w, b, gy)]
    want, mags = autograd_reference(*d, stride, padding), autograd_reference(*[t.abs() for t in d], stride, padding)
    positions = gy.shape[0] * gy.shape[2] * gy.shape[3]
    assert_within_float32_sum_bound(y, want[0], mags[0], c * kh * kw + 1, "y")
    assert_within_float32_sum_bound(gw, want[1], mags[1], positions, "grad_weight")
    assert_within_float32_sum_bound(gb, want[2], mags[2], positions, "grad_bias")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_direct_matches_im2col(dtype, config):
    stride, padding = config[7], config[8]
    x, w, b, gy = inputs(config, dtype, "channels_last", seed=1)
    with direct(True):
        got = run(x, w, b, gy, stride, padding)
    with direct(False):
        want = run(x, w, b, gy, stride, padding)
    tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4 * (1 + gy.shape[0]))
    for g, wnt in zip(got[:3], want[:3]):
        torch.testing.assert_close(g, wnt, **tol)
    assert got[3].shape == want[3].shape == (0,)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[3], CONFIGS[5]], ids=config_id)
def test_direct_results_do_not_depend_on_the_thread_count(config):
    stride, padding = config[7], config[8]
    x, w, b, gy = inputs(config, torch.float32, "channels_last", seed=2)
    results = []
    for n in (1, 2):
        with threads(n):
            results.append(run(x, w, b, gy, stride, padding))
    for a, b_ in zip(*results):
        assert torch.equal(a, b_)


def test_direct_accumulates_into_strided_gradients():
    config = CONFIGS[3]
    stride, padding = config[7], config[8]
    x, w, b, gy = inputs(config, torch.float64, "contiguous")
    _, gw_ref, gb_ref, _ = autograd_reference(x, w, b, gy, stride, padding)
    gw = torch.ones(w.shape[0], w.shape[1], w.shape[2], 2 * w.shape[3], dtype=w.dtype)[..., ::2]
    gb = torch.ones(2 * w.shape[0], dtype=w.dtype)[::2]
    torch.ops.minidl.conv2d_backward(gy, x, w, gw, gb, stride, padding, False)
    torch.testing.assert_close(gw, gw_ref + 1, **F64)
    torch.testing.assert_close(gb, gb_ref + 1, **F64)


def test_set_conv_direct_returns_the_old_setting():
    import minidl._C

    assert minidl._C._set_conv_direct(False) is True
    assert minidl._C._set_conv_direct(True) is False
