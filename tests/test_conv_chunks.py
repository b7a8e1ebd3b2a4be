"""The CPU convolution's im2col in chunks of images (csrc/ops/conv.cpp, chunk_bytes) against the whole
batch in one window matrix and against torch.nn.functional.conv2d + autograd (minidl._C._set_conv_chunk_bytes)."""

import pytest
import torch

from conftest import assert_within_float32_sum_bound, require_cpp
from op_cases_conv import autograd_reference, config_id, extension_setting

F64 = dict(rtol=1e-12, atol=1e-12)
# (N, C, H, W, O, KH, KW, stride, padding)
CONFIGS = [
    (13, 32, 6, 6, 64, 3, 3, (1, 1), (0, 0)),  # the study's second layers: taps > O
    (7, 4, 9, 8, 40, 3, 3, (2, 2), (1, 1)),  # taps < O: the tap-major product
    (9, 1, 8, 8, 32, 3, 3, (1, 1), (0, 0)),  # few taps: direct loops, chunked input gradient only
]
# Window-matrix bytes per chunk, in images of each config: whole batch, one image, uneven chunks.
CHUNKS = {"whole": lambda per_image: 0, "one": lambda per_image: 1, "three": lambda per_image: 3 * per_image + 1}


@pytest.fixture(autouse=True)
def cpp():
    require_cpp()


def chunk_bytes(n):
    return extension_setting("_set_conv_chunk_bytes", n)


def inputs(config, dtype, layout, seed=0):
    n, c, h, w, o, kh, kw, stride, padding = config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    wt = torch.randn(o, c, kh, kw, generator=g, dtype=dtype)
    b = torch.randn(o, generator=g, dtype=dtype)
    oh, ow = (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1
    gy = torch.randn(n, o, oh, ow, generator=g, dtype=dtype)
    if layout == "channels_last":
        x, wt, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, wt, gy))
    return x, wt, b, gy


def per_image_bytes(config, dtype):
    n, c, h, w, o, kh, kw, stride, padding = config
    oh, ow = (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1
    return oh * ow * kh * kw * c * torch.empty(0, dtype=dtype).element_size()


def run(x, w, b, gy, stride, padding, bytes_):
    """minidl's (y, grad_weight, grad_bias, grad_input) with `bytes_` per chunk, im2col where Winograd would run
    (test_conv_winograd.py chunks that); gradients added to ones."""
    with chunk_bytes(bytes_), extension_setting("_set_conv_winograd", False):
        y = torch.ops.minidl.conv2d_forward(x, w, b, stride, padding)
        gw, gb = torch.ones_like(w), torch.ones_like(b)
        gx = torch.ops.minidl.conv2d_backward(gy, x, w, gw, gb, stride, padding, True)
    return y, gw - 1, gb - 1, gx


@pytest.mark.parametrize("chunks", list(CHUNKS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_chunks_match_autograd_float64(config, layout, chunks):
    stride, padding = config[7], config[8]
    x, w, b, gy = inputs(config, torch.float64, layout)
    got = run(x, w, b, gy, stride, padding, CHUNKS[chunks](per_image_bytes(config, torch.float64)))
    for what, g, want in zip(("y", "grad_weight", "grad_bias", "grad_input"), got, autograd_reference(x, w, b, gy, stride,
                                                                                              padding)):
        torch.testing.assert_close(g, want, **F64, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("chunks", ["one", "three"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_chunks_match_the_whole_batch_float32(config, chunks):
    stride, padding = config[7], config[8]
    n, c, h, wd, o, kh, kw = config[:7]
    x, w, b, gy = inputs(config, torch.float32, "channels_last", seed=1)
    got = run(x, w, b, gy, stride, padding, CHUNKS[chunks](per_image_bytes(config, torch.float32)))
    whole = run(x, w, b, gy, stride, padding, 0)
    torch.testing.assert_close(got[0], whole[0], rtol=0, atol=0)  # a row's product does not see the chunks
    d = [t.double() for t in (x, w, b, gy)]
    want, mags = autograd_reference(*d, stride, padding), autograd_reference(*[t.abs() for t in d], stride, padding)
    positions = gy.shape[0] * gy.shape[2] * gy.shape[3]
    assert_within_float32_sum_bound(got[1], want[1], mags[1], positions, "grad_weight")
    assert_within_float32_sum_bound(got[3], want[3], mags[3], o * kh * kw, "grad_input")


def test_set_conv_chunk_bytes_returns_the_old_value_and_refuses_negatives():
    import minidl._C

    old = minidl._C._set_conv_chunk_bytes(12345)
    try:
        assert old == 1 << 20
        assert minidl._C._set_conv_chunk_bytes(0) == 12345
        with pytest.raises(ValueError, match="bytes >= 0"):
            minidl._C._set_conv_chunk_bytes(-1)
    finally:
        minidl._C._set_conv_chunk_bytes(old)


@pytest.mark.parametrize("padding", [(0, 0), (1, 1)], ids=["winograd", "im2col"])
@pytest.mark.parametrize("o", [1, 3])
def test_bias_gradient_does_not_depend_on_the_thread_count(padding, o):
    """Summed in fixed chunks of rows, added in order (ATen's sum over 57,600 rows of one column split it by
    thread: another float32 rounding at 2 threads)."""
    x, w, b, gy = inputs((64, 4, 32, 32, o, 3, 3, (1, 1), padding), torch.float32, "channels_last", seed=5)
    sums = []
    for n in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            gb = torch.zeros(o)
            torch.ops.minidl.conv2d_backward(gy, x, w, torch.zeros_like(w), gb, [1, 1], list(padding), False)
        finally:
            torch.set_num_threads(old)
        sums.append(gb)
    assert torch.equal(*sums)
    want = gy.double().sum((0, 2, 3))
    assert_within_float32_sum_bound(sums[0], want, gy.double().abs().sum((0, 2, 3)), gy[:, 0].numel(), "grad_bias")
