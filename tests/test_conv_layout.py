"""Conv2d computes in channels-last on the CPU: NCHW inputs are restrided or copied, with torch's values."""
import pytest
import torch

import minidl as dl
from minidl.nn.conv import channels_last
from conv_support import F64

CL = torch.channels_last


def is_dense_channels_last(t):
    n, c, h, w = t.shape
    return t.stride() == (h * w * c, 1, w * c, c)


@pytest.mark.parametrize("make, shares", [
    (lambda: torch.randn(4, 3, 5, 6), False),                                  # NCHW: a copy
    (lambda: torch.randn(4, 3, 5, 6)[:, :, 1:4], False),                       # strided: a copy
    (lambda: torch.randn(4, 1, 5, 6), True),                                   # one channel: a restride
    (lambda: torch.randn(4, 6, 1, 1), True),                                   # 1x1 images: a restride
    (lambda: torch.randn(6, 3, 5, 6).contiguous(memory_format=CL)[1:5], True),  # channels-last already
    (lambda: torch.randn(0, 3, 5, 6), True),
])
def test_channels_last_restrides_or_copies(make, shares):
    x = make()
    before = x.clone()
    y = channels_last(x)
    assert is_dense_channels_last(y) and torch.equal(y, x) and torch.equal(x, before)
    assert (y.data_ptr() == x.data_ptr()) == shares or x.numel() == 0


@pytest.mark.parametrize("in_channels", [1, 3])
def test_nchw_input_gives_channels_last_output_and_torchs_values(backend_name, in_channels):
    torch.manual_seed(2)
    conv = dl.Conv2d(in_channels, 5, 3, padding=1, dtype=torch.float64)
    tc = torch.nn.Conv2d(in_channels, 5, 3, padding=1, dtype=torch.float64)
    with torch.no_grad():
        tc.weight.copy_(conv.weight)
        tc.bias.copy_(conv.bias)
    x = torch.randn(4, in_channels, 7, 6, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        y_ref = tc(xr)
    y = conv.forward(x)
    assert is_dense_channels_last(y)
    torch.testing.assert_close(y, y_ref.detach(), **F64)
    gy = torch.randn_like(y_ref)
    y_ref.backward(gy)
    gx = conv.backward(gy)
    assert is_dense_channels_last(gx)
    torch.testing.assert_close(gx, xr.grad, **F64)
    torch.testing.assert_close(conv.grad_weight, tc.weight.grad, **F64)


def test_convnet_on_nchw_equals_convnet_on_channels_last(backend_name):
    """The whole network, forward and backward, gives the same bits from an NCHW batch as from a channels-last one."""
    def net():
        torch.manual_seed(3)
        return dl.Sequential(dl.Conv2d(3, 8, 3, bias=False), dl.MaxPool2d(2), dl.BatchNorm2d(8), dl.ReLU(),
                             dl.Flatten(), dl.Linear(8 * 3 * 3, 4))
    x = torch.randn(6, 3, 8, 8)
    gy = torch.randn(6, 4)
    results = []
    for inp in (x, x.contiguous(memory_format=CL)):
        m = net()
        out = m.forward(inp)
        gx = m.backward(gy)
        results.append([out, gx] + [g for _, g in m.param()])
    for a, b in zip(*results):
        assert torch.equal(a, b)
