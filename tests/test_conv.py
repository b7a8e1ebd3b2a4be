"""Conv2d and its ops (conv2d_forward, conv2d_backward) against torch.nn.functional.conv2d + autograd."""
import math

import pytest
import torch

import minidl as dl
from conftest import assert_within_float32_sum_bound, require_cpp
from op_cases_conv import config_id

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
F64 = dict(rtol=1e-10, atol=1e-10)
# (N, C, H, W, O, KH, KW, stride, padding)
CONFIGS = [
    (2, 3, 7, 6, 4, 3, 3, (1, 1), (0, 0)),
    (1, 1, 5, 5, 1, 1, 1, (1, 1), (0, 0)),
    (3, 2, 9, 8, 5, 3, 2, (2, 2), (1, 1)),
    (2, 4, 8, 11, 3, 2, 3, (2, 1), (1, 2)),
    (1, 3, 4, 3, 2, 4, 3, (1, 1), (0, 0)),  # the kernel covers the whole input
    (2, 2, 3, 3, 3, 5, 4, (1, 2), (1, 1)),  # a kernel larger than the input, not than the padded input
    (3, 1, 7, 9, 4, 3, 3, (1, 1), (1, 1)),  # one channel, 3x3: the C++ im2col's compiled run of 3
    (2, 2, 6, 5, 3, 3, 3, (2, 1), (1, 0)),  # two channels, 3x3: its run of 6, with padding
    (5, 2, 14, 14, 32, 3, 3, (1, 1), (0, 0)),  # the study's first layer
    (4, 32, 6, 6, 64, 3, 3, (1, 1), (0, 0)),  # and its second
]
LAYOUTS = ["contiguous", "channels_last", "strided", "weight_channels_last"]


def reference(x, w, b, gy, stride, padding):
    """torch.nn.functional.conv2d and autograd: (y, grad x, grad w, grad b or None)."""
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    with torch.enable_grad():
        y = torch.nn.functional.conv2d(x, w, b, stride, padding)
        y.backward(gy)
    return y.detach(), x.grad, w.grad, (None if b is None else b.grad)


def make_inputs(config, dtype, device, layout, bias=True, seed=0):
    n, c, h, w, o, kh, kw, stride, padding = config
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).to(device)

    x, wt, b = randn(n, c, h, w), randn(o, c, kh, kw), (randn(o) if bias else None)
    oh, ow = (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1
    gy = randn(n, o, oh, ow)
    if layout == "channels_last":
        x, gy = x.contiguous(memory_format=torch.channels_last), gy.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # every other column of a wider tensor: neither memory format
        x = _strided(x)
        gy = _strided(gy)
    elif layout == "weight_channels_last":
        wt = wt.contiguous(memory_format=torch.channels_last)
    return x, wt, b, gy


def _strided(t):
    """t's values in every other column of a wider tensor: a view that is neither contiguous nor channels-last."""
    wide = torch.zeros(*t.shape[:3], 2 * t.shape[3], dtype=t.dtype, device=t.device)
    view = wide[..., ::2]
    view.copy_(t)
    return view


def expected_channels_last(x, w):
    """torch's CPU rule, which the ops follow: channels-last output if the input or the weight suggests it."""
    return any(t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
               for t in (x, w))


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


def torch_conv(conv):
    """A torch.nn.Conv2d with a minidl Conv2d's weights (and its dtype and device)."""
    tc = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         bias=conv.bias is not None, dtype=conv.weight.dtype, device=conv.weight.device)
    with torch.no_grad():
        tc.weight.copy_(conv.weight)
        if conv.bias is not None:
            tc.bias.copy_(conv.bias)
    return tc


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("args", [dict(in_channels=2, out_channels=32, kernel_size=3, bias=False),
                                  dict(in_channels=3, out_channels=5, kernel_size=(3, 2), stride=(2, 1),
                                       padding=(1, 2)),
                                  dict(in_channels=1, out_channels=4, kernel_size=2, stride=2, padding=1)])
def test_module_matches_torch_nn(backend_name, device, args):
    torch.manual_seed(6)
    conv = dl.Conv2d(**args, device=device, dtype=torch.float64)
    tc = torch_conv(conv)
    x = torch.randn(3, args["in_channels"], 9, 8, dtype=torch.float64, device=device)
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        y_ref = tc(xr)
    y = conv.forward(x)
    torch.testing.assert_close(y, y_ref.detach(), **F64)
    gy = torch.randn_like(y_ref)
    y_ref.backward(gy)
    torch.testing.assert_close(conv.backward(gy), xr.grad, **F64)
    params = conv.param()
    torch_params = [tc.weight, tc.bias] if conv.bias is not None else [tc.weight]
    assert len(params) == len(torch_params)
    for (p, g), tp in zip(params, torch_params):
        assert p is not None and p.shape == tp.shape
        torch.testing.assert_close(g, tp.grad, **F64)
    assert [n for n, _, _ in conv.named_param()] == [n for n, _ in tc.named_parameters()]
    conv.forward(x)
    assert conv.backward(gy, input_grad=False) is None
    torch.testing.assert_close(conv.grad_weight, 2 * tc.weight.grad, **F64)
    assert repr(conv) == repr(tc)


def test_module_initialisation_follows_torch():
    """Weight and bias uniform in ±1/sqrt(in_channels * kh * kw), as torch.nn.Conv2d's kaiming_uniform(a=sqrt(5))."""
    torch.manual_seed(7)
    conv = dl.Conv2d(8, 64, (3, 2))
    bound = 1 / math.sqrt(8 * 3 * 2)
    ref = torch.nn.Conv2d(8, 64, (3, 2))
    for mine, theirs in ((conv.weight, ref.weight), (conv.bias, ref.bias)):
        assert mine.abs().max() <= bound and mine.abs().max() > 0.9 * bound
        assert theirs.abs().max() <= bound
        # a uniform on [-bound, bound] has standard deviation bound / sqrt(3)
        assert abs(mine.std().item() - bound / math.sqrt(3)) < 0.1 * bound
    assert conv.weight.shape == (64, 8, 3, 2) and conv.bias.shape == (64,)
    assert torch.equal(conv.grad_weight, torch.zeros(64, 8, 3, 2)) and torch.equal(conv.grad_bias, torch.zeros(64))
    assert conv.stride == (1, 1) and conv.padding == (0, 0) and conv.kernel_size == (3, 2)
    no_bias = dl.Conv2d(1, 2, 3, bias=False, dtype=torch.float64)
    assert no_bias.bias is None and no_bias.grad_bias is None and no_bias.weight.dtype == torch.float64
    assert len(no_bias.param()) == 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=0, out_channels=2, kernel_size=3), "in_channels"),
    (dict(in_channels=1, out_channels=2, kernel_size=0), "kernel_size"),
    (dict(in_channels=1, out_channels=2, kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, stride=0), "stride"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, padding=-1), "padding"),
])
def test_module_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"Conv2d: expected {match}"):
        dl.Conv2d(**kwargs)
    with pytest.raises(TypeError, match="Conv2d: expected dtype"):
        dl.Conv2d(1, 2, 3, dtype=torch.int64)


def _bad_calls():
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    return [
        ((torch.randn(3, 5, 5), w, None, [1, 1], [0, 0]), ValueError, r"expected input with 4 dimensions, got shape \[3, 5, 5\]"),
        ((x, torch.randn(4, 3, 3), None, [1, 1], [0, 0]), ValueError, r"expected weight with 4 dimensions"),
        ((torch.randn(2, 2, 5, 5), w, None, [1, 1], [0, 0]), ValueError,
         r"expected input of shape \[N, 3, H, W\] for weight of shape \[4, 3, 3, 3\], got \[2, 2, 5, 5\]"),
        ((x.double(), w, None, [1, 1], [0, 0]), TypeError, r"expected input of dtype .*[Ff]loat.* like weight, got .*[Dd]ouble|float64"),
        ((x.long(), w.long(), None, [1, 1], [0, 0]), TypeError, r"expected weight to be float32 or float64"),
        ((torch.randn(2, 3, 2, 2), w, None, [1, 1], [0, 0]), ValueError,
         r"expected input of shape \[2, 3, 2, 2\] with padding \[0, 0\] to be at least the kernel's 3x3"),
        ((x, w, torch.randn(5), [1, 1], [0, 0]), ValueError, r"expected bias of shape \[4\], got \[5\]"),
        ((x, w, None, [0, 1], [0, 0]), ValueError, r"expected stride of two positive ints, got \[0, 1\]"),
        ((x, w, None, [1, 1], [0]), ValueError, r"expected padding of two non-negative ints, got \[0\]"),
        ((x.to("meta"), w, None, [1, 1], [0, 0]), RuntimeError, r"expected input on cpu like weight, got meta"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_input_raises_naming_the_op(ops, index):
    args, kind, match = _bad_calls()[index]
    with pytest.raises(kind, match=r"^minidl.conv2d_forward: " + match):
        ops.conv2d_forward(*args)
    x, w, b, s, p = args
    if x.dim() == 4 and w.dim() == 4 and b is None and x.device == w.device:
        with pytest.raises(kind, match=r"^minidl.conv2d_backward: " + match):
            ops.conv2d_backward(torch.zeros(2, 4, 3, 3), x, w, torch.zeros_like(w), None, s, p)


def test_backward_checks_gradients_before_writing(ops):
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    gw = torch.zeros_like(w)
    with pytest.raises(ValueError, match=r"minidl.conv2d_backward: expected grad_output of shape \[2, 4, 3, 3\], "
                                         r"got \[2, 4, 3, 4\]"):
        ops.conv2d_backward(torch.zeros(2, 4, 3, 4), x, w, gw, None, [1, 1], [0, 0])
    with pytest.raises(ValueError, match=r"minidl.conv2d_backward: expected grad_weight of shape \[4, 3, 3, 3\]"):
        ops.conv2d_backward(torch.zeros(2, 4, 3, 3), x, w, torch.zeros(4, 3, 3, 2), None, [1, 1], [0, 0])
    with pytest.raises(ValueError, match=r"minidl.conv2d_backward: expected grad_bias of shape \[4\], got \[3\]"):
        ops.conv2d_backward(torch.ones(2, 4, 3, 3), x, w, gw, torch.zeros(3), [1, 1], [0, 0])
    assert torch.equal(gw, torch.zeros_like(w))  # the bad calls changed nothing


def test_module_errors_name_the_module(backend_name):
    conv = dl.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"^Conv2d\(3, 4, kernel_size=\(3, 3\), stride=\(1, 1\)\)\.forward: "
                                         r"minidl.conv2d_forward: expected input of shape \[N, 3, H, W\]"):
        conv.forward(torch.randn(2, 2, 5, 5))
    with pytest.raises(TypeError, match=r"Conv2d.*\.forward: minidl.conv2d_forward: expected input of dtype"):
        conv.forward(torch.randn(2, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\.forward: minidl.conv2d_forward: expected input of shape \[2, 3, 2, 2\] "
                                         r"with padding \[0, 0\] to be at least the kernel's 3x3"):
        conv.forward(torch.randn(2, 3, 2, 2))
    conv.forward(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"Conv2d.*\.backward: minidl.conv2d_backward: expected grad_output of shape"):
        conv.backward(torch.randn(2, 4, 5, 5))


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

