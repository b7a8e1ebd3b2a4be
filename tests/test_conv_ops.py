"""The conv ops (conv2d_forward, conv2d_backward) against torch.nn.functional.conv2d + autograd, gradcheck,
and each other on both backends."""
import pytest
import torch

import minidl as dl
from conftest import assert_within_float32_sum_bound, require_cpp
from conv_support import CONFIGS, DEVICES, F64, LAYOUTS, expected_channels_last, make_inputs, reference
from op_cases_conv import config_id


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False])
def test_ops_match_autograd(ops, device, dtype, config, layout, bias):
    stride, padding = config[7], config[8]
    x, w, b, gy = make_inputs(config, dtype, device, layout, bias)
    y = ops.conv2d_forward(x, w, b, stride, padding)
    gw0 = torch.randn(w.shape, dtype=dtype, device=device)  # the op adds into the given gradients
    gb0 = torch.randn(b.shape, dtype=dtype, device=device) if bias else None
    gw, gb = gw0.clone(), (gb0.clone() if bias else None)
    gx = ops.conv2d_backward(gy, x, w, gw, gb, stride, padding)
    fmt = torch.channels_last if expected_channels_last(x, w) else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt) and gx.is_contiguous(memory_format=fmt) and gx.shape == x.shape
    if dtype == torch.float64:
        y_ref, gx_ref, gw_ref, gb_ref = reference(x, w, b, gy, stride, padding)
        torch.testing.assert_close(y, y_ref, **F64)
        torch.testing.assert_close(gx, gx_ref, **F64)
        torch.testing.assert_close(gw - gw0, gw_ref, **F64)
        if bias:
            torch.testing.assert_close(gb - gb0, gb_ref, **F64)
        return
    # float32: against float64, within the rounding bound of each sum (conftest), in any summation order
    n, c, h, wd, o, kh, kw = config[:7]
    d = [None if t is None else t.double() for t in (x, w, b, gy)]
    y64, gx64, gw64, gb64 = reference(*d, stride, padding)
    mags = reference(*[None if t is None else t.abs() for t in d], stride, padding)
    positions = gy.shape[0] * gy.shape[2] * gy.shape[3]
    assert_within_float32_sum_bound(y, y64, mags[0], c * kh * kw + bias, "y")
    assert_within_float32_sum_bound(gx, gx64, mags[1], o * kh * kw, "grad_input")
    assert_within_float32_sum_bound(gw, gw0.double() + gw64, gw0.double().abs() + mags[2], positions + 1,
                                    "grad_weight")
    if bias:
        assert_within_float32_sum_bound(gb, gb0.double() + gb64, gb0.double().abs() + mags[3], positions + 1,
                                        "grad_bias")


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_accumulate_over_backwards(ops, device):
    config = CONFIGS[2]
    x, w, b, gy = make_inputs(config, torch.float64, device, "contiguous")
    _, _, gw_ref, gb_ref = reference(x, w, b, gy, config[7], config[8])
    gw, gb = torch.zeros_like(w), torch.zeros_like(b)
    for _ in range(2):
        ops.conv2d_backward(gy, x, w, gw, gb, config[7], config[8])
    torch.testing.assert_close(gw, 2 * gw_ref, **F64)
    torch.testing.assert_close(gb, 2 * gb_ref, **F64)


@pytest.mark.parametrize("device", DEVICES)
def test_input_grad_false_skips_the_input_gradient(ops, device):
    config = CONFIGS[3]
    x, w, b, gy = make_inputs(config, torch.float64, device, "channels_last")
    _, _, gw_ref, gb_ref = reference(x, w, b, gy, config[7], config[8])
    gw, gb = torch.zeros_like(w), torch.zeros_like(b)
    skipped = ops.conv2d_backward(gy, x, w, gw, gb, config[7], config[8], False)
    assert skipped.shape == (0,) and skipped.dtype == w.dtype and skipped.device == w.device
    torch.testing.assert_close(gw, gw_ref, **F64)
    torch.testing.assert_close(gb, gb_ref, **F64)


class _Conv(torch.autograd.Function):
    """A minidl forward/backward pair as an autograd Function, for gradcheck."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.padding = stride, padding
        return dl.backend.ops.conv2d_forward(x.detach(), w.detach(), b.detach(), stride, padding)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        gw, gb = torch.zeros_like(w), torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        gx = dl.backend.ops.conv2d_backward(gy.contiguous(), x.detach(), w.detach(), gw, gb, ctx.stride,
                                            ctx.padding)
        return gx, gw, gb, None, None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stride,padding", [((1, 1), (0, 0)), ((2, 1), (1, 2))])
def test_gradcheck(ops, device, stride, padding):
    g = torch.Generator().manual_seed(5)
    x, w, b = [torch.randn(*s, generator=g, dtype=torch.float64).to(device).requires_grad_()
               for s in ((2, 2, 5, 4), (3, 2, 3, 2), (3,))]
    assert torch.autograd.gradcheck(lambda x, w, b: _Conv.apply(x, w, b, stride, padding), (x, w, b))


def test_empty_batch(ops):
    x, w = torch.randn(0, 3, 5, 5), torch.randn(4, 3, 3, 3)
    y = ops.conv2d_forward(x, w, torch.randn(4), [1, 1], [0, 0])
    assert y.shape == (0, 4, 3, 3)
    gw, gb = torch.zeros_like(w), torch.zeros(4)
    gx = ops.conv2d_backward(y, x, w, gw, gb, [1, 1], [0, 0])
    assert gx.shape == x.shape and not gw.any() and not gb.any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cpp_and_python_agree(dtype, layout):
    """Both backends compute the same products in the same order: equal up to BLAS's blocking."""
    require_cpp()
    from minidl.kernels import cpp, python

    config = CONFIGS[3]
    x, w, b, gy = make_inputs(config, dtype, "cpu", layout)
    results = []
    for k in (cpp, python):
        gw, gb = torch.zeros_like(w), torch.zeros_like(b)
        y = k.conv2d_forward(x, w, b, config[7], config[8])
        gx = k.conv2d_backward(gy, x, w, gw, gb, config[7], config[8])
        results.append((y, gx, gw, gb))
    eps = torch.finfo(dtype).eps
    for a, c in zip(*results):
        assert a.stride() == c.stride()
        torch.testing.assert_close(a, c, rtol=16 * eps, atol=16 * eps * a.abs().max().item())
