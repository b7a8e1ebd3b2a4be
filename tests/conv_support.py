"""What the conv tests share (test_conv_ops.py, test_conv_module.py, test_conv_winograd.py): devices,
configurations and layouts, the inputs and the torch reference."""
import pytest
import torch

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
