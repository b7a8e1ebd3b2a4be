"""The Python kernels' scratch buffers: reused across calls, never an output's memory, one set per thread,
released by minidl.empty_cpu_cache()."""
import threading
import weakref

import pytest
import torch

import minidl
from minidl.kernels import python as py
from minidl.kernels.python.scratch import MAX_BYTES, scratch


def channels_last(t):
    return t.contiguous(memory_format=torch.channels_last)


def conv_calls(layout, padding, n=3, c=5):
    """conv2d_forward and conv2d_backward's outputs for one seed (the study's second layer's shape, small),
    PADDING (ph, pw)."""
    ph, pw = padding

    def call(seed):
        g = torch.Generator().manual_seed(seed)
        x, w = torch.randn(n, c, 6, 6, generator=g), torch.randn(4, c, 3, 3, generator=g)
        gy = torch.randn(n, 4, 4 + 2 * ph, 4 + 2 * pw, generator=g)
        if layout == "channels_last":
            x, gy = channels_last(x), channels_last(gy)
        y = py.conv2d_forward(x, w, None, [1, 1], [ph, pw])
        gw = torch.zeros_like(w)
        gx = py.conv2d_backward(gy, x, w, gw, None, [1, 1], [ph, pw])
        return [y, gx, gw]
    return call


def few_channel_conv_call(seed):
    """The first layer's shape (one channel: windows built tap by tap)."""
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(4, 1, 8, 8, generator=g), torch.randn(6, 1, 3, 3, generator=g)
    return [py.conv2d_forward(x, w, None, [1, 1], [0, 0])]


def block_call(layout):
    """pool_norm_relu_forward's and pool_norm_relu_backward's outputs for one seed."""
    def call(seed):
        g = torch.Generator().manual_seed(seed)
        x, gy = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 4, 4, generator=g)
        if layout == "channels_last":
            x, gy = channels_last(x), channels_last(gy)
        w, b = torch.rand(3, generator=g) + 0.5, torch.randn(3, generator=g)
        rm, rv = torch.zeros(3), torch.ones(3)
        y, pooled, argmax, mean, invstd = py.pool_norm_relu_forward(x, [2, 2], [2, 2], w, b, rm, rv, True, 0.1, 1e-5)
        gw, gb = torch.zeros(3), torch.zeros(3)
        gx = py.pool_norm_relu_backward(gy, x, y, pooled, argmax, [2, 2], [2, 2], w, mean, invstd, gw, gb, True)
        maxpooled, indices = py.maxpool2d_forward(x, [2, 2], [2, 2])
        return [y, pooled, argmax, mean, invstd, gx, gw, gb, maxpooled, indices]
    return call


def norm_call(seed):
    """batch_norm_forward's and batch_norm_backward's outputs for one seed (its float64 copies are scratch)."""
    g = torch.Generator().manual_seed(seed)
    x, gy = channels_last(torch.randn(4, 3, 5, 5, generator=g)), torch.randn(4, 3, 5, 5, generator=g)
    w, b, rm, rv = torch.rand(3, generator=g) + 0.5, torch.randn(3, generator=g), torch.zeros(3), torch.ones(3)
    y, mean, invstd = py.batch_norm_forward(x, w, b, rm, rv, True, 0.1, 1e-5)
    gw, gb = torch.zeros(3), torch.zeros(3)
    return [y, mean, invstd, rm, rv, py.batch_norm_backward(gy, x, w, mean, invstd, gw, gb, True), gw, gb]


CALLS = {
    "conv": conv_calls("contiguous", (0, 0)),
    "conv, channels-last": conv_calls("channels_last", (0, 0)),  # grad_input is col2im's own buffer
    "conv, channels-last, padded": conv_calls("channels_last", (1, 1)),
    "conv, padded": conv_calls("contiguous", (1, 1)),
    # the inner part of col2im's buffer is already grad_input's shape and strides: still a copy
    "conv, one input channel": conv_calls("contiguous", (0, 0), c=1),
    "conv, channels-last, one image, rows padded": conv_calls("channels_last", (1, 0), n=1),
    "conv, one channel": few_channel_conv_call,
    "batch norm": norm_call,
    "block": block_call("contiguous"),
    "block, channels-last": block_call("channels_last"),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_outputs_outlive_the_next_call(name):
    """A second call (other values, same shapes) reuses the scratch buffers and leaves the first call's outputs
    as they were; its own outputs equal those of a call made with no scratch buffer held."""
    call = CALLS[name]
    first = call(0)
    kept = [t.clone() for t in first]
    second = call(1)
    for got, want in zip(first, kept):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    minidl.empty_cpu_cache()
    for got, want in zip(second, call(1)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_use_keeps_its_memory_across_calls_and_grows():
    a = scratch("test", (4, 5), torch.float32, torch.device("cpu"))
    b = scratch("test", (2, 3), torch.float32, torch.device("cpu"))
    assert b.data_ptr() == a.data_ptr()
    assert scratch("test", (2, 3), torch.float64, torch.device("cpu")).data_ptr() != a.data_ptr()
    assert scratch("other test", (2, 3), torch.float32, torch.device("cpu")).data_ptr() != a.data_ptr()
    grown = scratch("test", (100, 100), torch.float32, torch.device("cpu"))
    assert grown.shape == (100, 100) and grown.is_contiguous()
    assert scratch("test", (7,), torch.float32, torch.device("cpu")).data_ptr() == grown.data_ptr()


def test_each_thread_has_its_own_buffers():
    mine = scratch("test", (8,), torch.float32, torch.device("cpu")).data_ptr()
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(
        scratch("test", (8,), torch.float32, torch.device("cpu")).data_ptr()))
    thread.start()
    thread.join()
    assert theirs and theirs[0] != mine
    assert scratch("test", (8,), torch.float32, torch.device("cpu")).data_ptr() == mine


def test_empty_cpu_cache_releases_the_buffers():
    view = scratch("test", (64,), torch.float32, torch.device("cpu"))
    buffer = weakref.ref(view._base)
    del view
    assert buffer() is not None
    minidl.empty_cpu_cache()
    assert buffer() is None


def test_requests_over_the_limit_are_not_kept():
    big = scratch("test", (MAX_BYTES // 4 + 1,), torch.float32, torch.device("cpu"))
    assert big._base is None  # a tensor of its own, freed with it
