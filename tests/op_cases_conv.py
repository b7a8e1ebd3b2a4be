"""The convolution ops' cases for opcheck and the direct-call tests (tests/op_cases.py), and the conv tests' helpers."""
import contextlib

import torch


@contextlib.contextmanager
def extension_setting(setter, value):
    """The block with minidl._C's test setting `setter` (e.g. "_set_conv_direct") at value, then the old one back."""
    import minidl._C

    set_value = getattr(minidl._C, setter)
    old = set_value(value)
    try:
        yield
    finally:
        set_value(old)


def config_id(c):
    """A test id for (N, C, H, W, O, KH, KW, stride, padding)."""
    return "x".join(map(str, c[:4])) + f"-o{c[4]}-k{c[5]}{c[6]}-s{c[7][0]}{c[7][1]}-p{c[8][0]}{c[8][1]}"


def autograd_reference(x, w, b, gy, stride, padding):
    """torch.nn.functional.conv2d and autograd: (y, grad_weight, grad_bias, grad_input)."""
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    with torch.enable_grad():
        y = torch.nn.functional.conv2d(x, w, b, stride, padding)
        y.backward(gy)
    return y.detach(), w.grad, b.grad, x.grad


def conv_cases(device):
    """conv2d_forward and conv2d_backward in float32 and float64: bias or not, strides, padding, channels-last,
    a shape for Winograd."""
    torch.manual_seed(4)
    cases = []
    for dtype in (torch.float32, torch.float64):
        def randn(*shape):
            return torch.randn(*shape, dtype=dtype, device=device)

        x, w, b = randn(2, 3, 7, 6), randn(4, 3, 3, 2), randn(4)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        gy = randn(2, 4, 5, 5)  # stride 1, no padding
        gy_s = randn(2, 4, 4, 9)  # stride (2, 1), padding (1, 2)
        cases += [
            ("conv2d_forward", (x, w, b, [1, 1], [0, 0])),
            ("conv2d_forward", (x_cl, w, None, [2, 1], [1, 2])),
            ("conv2d_forward", (x, w.contiguous(memory_format=torch.channels_last), b, [1, 1], [0, 0])),
            ("conv2d_backward", (gy, x, w, torch.zeros_like(w), torch.zeros_like(b), [1, 1], [0, 0])),
            ("conv2d_backward", (gy_s, x_cl, w, torch.zeros_like(w), None, [2, 1], [1, 2])),
            ("conv2d_backward", (gy, x, w, torch.zeros_like(w), torch.zeros_like(b), [1, 1], [0, 0], False)),
        ]
        # 3x3, stride 1, 8 channels: Winograd's F(2x2, 3x3) on the CPU
        xw = randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
        ww, gyw = randn(4, 8, 3, 3), randn(2, 4, 4, 4)
        cases += [("conv2d_forward", (xw, ww, randn(4), [1, 1], [0, 0])),
                  ("conv2d_backward", (gyw, xw, ww, torch.zeros_like(ww), None, [1, 1], [0, 0]))]
    return cases
