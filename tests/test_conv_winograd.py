"""Winograd's F(2x2, 3x3), the CPU's path for 3x3 stride-1 convolutions without padding and with an even output
size (csrc/cpu/winograd.cpp, csrc/ops/conv_winograd.cpp), against torch.nn.functional.conv2d + autograd and
against im2col + GEMM, the path it replaces there (minidl._C._set_conv_winograd)."""
import pytest
import torch

from conftest import assert_within_float32_sum_bound, require_cpp
from conv_support import LAYOUTS, expected_channels_last, make_inputs, reference
from op_cases_conv import config_id, extension_setting

F64 = dict(rtol=1e-12, atol=1e-12)
# (N, C, H, W, O, KH, KW, stride, padding): each past the direct loops' taps (C > 3) and fitting Winograd
CONFIGS = [
    (4, 32, 6, 6, 64, 3, 3, (1, 1), (0, 0)),  # the study's second layer: 2 x 2 tiles per image
    (3, 5, 6, 8, 7, 3, 3, (1, 1), (0, 0)),  # 2 x 3 tiles; channels short of a block of 16 on both sides
    (2, 40, 10, 6, 19, 3, 3, (1, 1), (0, 0)),  # 4 x 2 tiles, blocks of 16 with a tail
    (1, 17, 4, 4, 33, 3, 3, (1, 1), (0, 0)),  # a single tile
]
# Shapes Winograd does not fit, which keep im2col: odd output, stride 2, padding, a 5x5 or 2x3 kernel.
OTHERS = [
    (2, 8, 7, 7, 4, 3, 3, (1, 1), (0, 0)),
    (2, 8, 9, 9, 4, 3, 3, (2, 2), (0, 0)),
    (2, 8, 6, 6, 4, 3, 3, (1, 1), (1, 1)),
    (2, 8, 9, 9, 4, 5, 5, (1, 1), (0, 0)),
    (2, 8, 6, 7, 4, 2, 3, (1, 1), (0, 0)),
]
ALGORITHMS = {"winograd": True, "im2col": False}


@pytest.fixture(autouse=True)
def cpp():
    require_cpp()


def run(config, dtype, layout, bias, winograd, input_grad=True, seed=0):
    """(inputs, (y, grad_weight, grad_bias, grad_input)) of minidl's CPU kernels, Winograd allowed or not."""
    stride, padding = config[7], config[8]
    x, w, b, gy = make_inputs(config, dtype, "cpu", layout, bias, seed)
    with extension_setting("_set_conv_winograd", winograd):
        y = torch.ops.minidl.conv2d_forward(x, w, b, stride, padding)
        gw, gb = torch.zeros_like(w), (torch.zeros_like(b) if bias else None)
        gx = torch.ops.minidl.conv2d_backward(gy, x, w, gw, gb, stride, padding, input_grad)
    return (x, w, b, gy), (y, gw, gb, gx)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_float64_matches_autograd(config, layout, bias, algorithm):
    (x, w, b, gy), got = run(config, torch.float64, layout, bias, ALGORITHMS[algorithm])
    y_ref, gx_ref, gw_ref, gb_ref = reference(x, w, b, gy, config[7], config[8])
    fmt = torch.channels_last if expected_channels_last(x, w) else torch.contiguous_format
    assert got[0].is_contiguous(memory_format=fmt) and got[3].is_contiguous(memory_format=fmt)
    for what, g, want in zip(("y", "grad_weight", "grad_bias", "grad_input"), got, (y_ref, gw_ref, gb_ref, gx_ref)):
        if want is not None:
            torch.testing.assert_close(g, want, **F64, msg=lambda m: f"{what}: {m}")


# F(2x2, 3x3)'s transforms: V = B'dB, U = GgG', Y = A'MA.
BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)


def winograd_magnitudes(x, w, gy):
    """(y, grad_input, grad_weight) of Winograd's algorithm run on |x|, |w|, |gy| with the transforms' absolute
    values: the sum of the absolute values of every term it adds, the magnitude in its rounding bound (Higham,
    3.1, as for a direct sum)."""
    bt, g, at = BT.abs(), G.abs(), AT.abs()
    n, c, h, wd = x.shape
    tiles = x.abs().unfold(2, 4, 2).unfold(3, 4, 2)  # [N, C, TH, TW, 4, 4]
    v = torch.einsum("ai,nctuij,bj->nctuab", bt, tiles, bt)
    u = torch.einsum("ai,ocij,bj->ocab", g, w.abs(), g)
    y = torch.einsum("ai,notuij,bj->notuab", at, torch.einsum("nctuab,ocab->notuab", v, u), at)
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(gy.shape)
    e = gy.abs().unflatten(2, (-1, 2)).unflatten(4, (-1, 2)).permute(0, 1, 2, 4, 3, 5)  # [N, O, TH, TW, 2, 2]
    dm = torch.einsum("ia,notuij,jb->notuab", at, e, at)
    dd = torch.einsum("ia,nctuij,jb->nctuab", bt, torch.einsum("notuab,ocab->nctuab", dm, u), bt)
    gx = torch.zeros(n, c, h, wd, dtype=torch.float64)
    for th in range(dd.shape[2]):
        for tw in range(dd.shape[3]):
            gx[:, :, 2 * th:2 * th + 4, 2 * tw:2 * tw + 4] += dd[:, :, th, tw]
    gw = torch.einsum("ia,ocij,jb->ocab", g, torch.einsum("nctuab,notuab->ocab", v, dm), g)
    return y, gx, gw


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_float32_stays_within_its_rounding_bound(config, layout, algorithm):
    """Against float64, each result within the worst-case rounding error of the sums its algorithm computes
    (conftest): im2col's direct sums, or Winograd's, whose terms pass through the transforms too (at most 2
    roundings in B'dB and in A dY A', 4 in GgG', 5 in A'MA with the bias, 4 in B dV B' plus 3 where tiles
    overlap, 5 in G'dU G with the accumulation)."""
    (x, w, b, gy), (y, gw, gb, gx) = run(config, torch.float32, layout, True, ALGORITHMS[algorithm], seed=1)
    n, c, h, wd, o, kh, kw, stride, padding = config
    d = [t.double() for t in (x, w, b, gy)]
    y64, gx64, gw64, gb64 = reference(*d, stride, padding)
    mags = reference(*[t.abs() for t in d], stride, padding)
    positions = gy.shape[0] * gy.shape[2] * gy.shape[3]
    assert_within_float32_sum_bound(gb, gb64, mags[3], positions, "grad_bias")
    if algorithm == "im2col":
        assert_within_float32_sum_bound(y, y64, mags[0], c * kh * kw + 1, "y")
        assert_within_float32_sum_bound(gx, gx64, mags[1], o * kh * kw, "grad_input")
        assert_within_float32_sum_bound(gw, gw64, mags[2], positions, "grad_weight")
        return
    wy, wgx, wgw = winograd_magnitudes(*d[:2], d[3])
    tiles = positions // 4
    assert_within_float32_sum_bound(y, y64, wy + d[2].abs().view(1, -1, 1, 1), c + 12, "y")
    assert_within_float32_sum_bound(gx, gx64, wgx, o + 16, "grad_input")
    assert_within_float32_sum_bound(gw, gw64, wgw, tiles + 12, "grad_weight")


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_winograd_runs_where_it_fits(config):
    """Its float32 results differ from im2col's by rounding somewhere: the switch does select it."""
    _, fast = run(config, torch.float32, "channels_last", True, True)
    _, slow = run(config, torch.float32, "channels_last", True, False)
    assert not torch.equal(fast[0], slow[0]) and not torch.equal(fast[3], slow[3])


@pytest.mark.parametrize("config", OTHERS, ids=config_id)
def test_other_shapes_keep_im2col(config):
    _, allowed = run(config, torch.float32, "channels_last", True, True)
    _, off = run(config, torch.float32, "channels_last", True, False)
    for a, c in zip(allowed, off):
        assert torch.equal(a, c)


@pytest.mark.parametrize("config", CONFIGS[:2], ids=config_id)
def test_without_the_input_gradient_the_weight_gradients_are_the_same(config):
    _, full = run(config, torch.float32, "channels_last", True, True)
    _, weights_only = run(config, torch.float32, "channels_last", True, True, input_grad=False)
    assert torch.equal(full[1], weights_only[1]) and torch.equal(full[2], weights_only[2])
    assert weights_only[3].shape == (0,)


@pytest.mark.parametrize("chunk_images", [1, 3])
def test_chunks_of_images_match_the_whole_batch(chunk_images):
    """Tiles in chunks of images (chunk_bytes, as im2col's): the same outputs and input gradients, the weight
    gradient summed over the chunks in order."""
    config = (7, 32, 6, 6, 64, 3, 3, (1, 1), (0, 0))
    per_image = 16 * 4 * 64 * 8  # [16, tiles, max(C, O)] float64 values of one image
    with extension_setting("_set_conv_chunk_bytes", chunk_images * per_image):
        (x, w, b, gy), parts = run(config, torch.float64, "channels_last", True, True)
    with extension_setting("_set_conv_chunk_bytes", 0):
        _, whole = run(config, torch.float64, "channels_last", True, True)
    torch.testing.assert_close(parts[0], whole[0], rtol=0, atol=0)
    torch.testing.assert_close(parts[3], whole[3], rtol=0, atol=0)
    y_ref, gx_ref, gw_ref, gb_ref = reference(x, w, b, gy, config[7], config[8])
    torch.testing.assert_close(parts[1], gw_ref, **F64)
    torch.testing.assert_close(parts[2], gb_ref, **F64)


def test_an_empty_batch():
    x, w = torch.randn(0, 8, 6, 6), torch.randn(4, 8, 3, 3)
    y = torch.ops.minidl.conv2d_forward(x, w, None, [1, 1], [0, 0])
    gw = torch.zeros_like(w)
    gx = torch.ops.minidl.conv2d_backward(y, x, w, gw, None, [1, 1], [0, 0], True)
    assert y.shape == (0, 4, 4, 4) and gx.shape == x.shape and not gw.any()
