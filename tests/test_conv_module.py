"""The Conv2d module against torch.nn.Conv2d: values, gradients, parameters, initialisation."""
import math

import pytest
import torch

import minidl as dl
from conv_support import DEVICES, F64


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
