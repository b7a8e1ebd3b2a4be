"""Shared by the op tests: a reference built by torch autograd, and one call of every minidl op."""
import torch

from minidl.kernels import python as python_kernels


def linear_reference(x, w, b, gy):
    """torch.nn.functional.linear and autograd: (y, grad x, grad w, grad b or None)."""
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    with torch.enable_grad():
        y = torch.nn.functional.linear(x, w, b)
        y.backward(gy)
    return y, x.grad, w.grad, (None if b is None else b.grad)


def torch_linear(lin):
    """A torch.nn.Linear with a minidl Linear's weights (and its dtype and device)."""
    tl = torch.nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None, dtype=lin.weight.dtype,
                         device=lin.weight.device)
    with torch.no_grad():
        tl.weight.copy_(lin.weight)
        if lin.bias is not None:
            tl.bias.copy_(lin.bias)
    return tl


def autograd_reference(fn, x, gy):
    """fn(x) and its gradient with respect to x for the upstream gradient gy (None for a scalar), by torch autograd."""
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        y = fn(xr)
        y.backward(gy)
    return y.detach(), xr.grad


def op_cases(device):
    """(op name, args): every op, float32 and float64, the arguments opcheck and the direct-call tests run."""
    return dense_cases(device) + [case for family in FAMILIES for case in family(device)]


def dense_cases(device):
    """The cases of the dense ops: linear, activations, mlp, mse, sgd."""
    torch.manual_seed(3)
    cases = []
    for dtype in (torch.float32, torch.float64):
        x, w, b = (torch.randn(5, 3, dtype=dtype, device=device), torch.randn(4, 3, dtype=dtype, device=device),
                   torch.randn(4, dtype=dtype, device=device))
        gy = torch.randn(5, 4, dtype=dtype, device=device)
        cases += [
            ("linear_forward", (x, w, b)),
            ("linear_forward", (x.t().contiguous().t(), w, None)),
            ("linear_backward", (gy, x, w, torch.zeros_like(w), torch.zeros_like(b))),
            ("linear_backward", (gy, x, w, torch.zeros_like(w), None)),
        ]
        for name in ("tanh", "relu"):
            cases.append((f"{name}_forward", (x.t(),)))
            cases.append((f"{name}_backward", (gy, torch.randn_like(gy))))
        w2, b2 = torch.randn(2, 4, dtype=dtype, device=device), torch.randn(2, dtype=dtype, device=device)
        outs = python_kernels.mlp_forward(x, [w, w2], [b, b2], [2, 1])
        gws, gbs = [torch.zeros_like(w), torch.zeros_like(w2)], [torch.zeros_like(b), torch.zeros_like(b2)]
        cases += [
            ("mlp_forward", (x, [w, w2], [b, b2], [2, 1])),
            ("mlp_backward", (torch.randn_like(outs[1]), x, outs, [w, w2], gws, gbs, [2, 1], torch.empty_like(x))),
            ("mlp_backward", (torch.randn_like(outs[1]), x, outs, [w, w2], gws, gbs, [2, 1], None)),
            ("mlp_backward", (torch.randn_like(outs[1]), x, outs, [w, w2], gws, gbs, [2, 0], None)),
            ("mse_forward", (gy, torch.randn_like(gy))),
            ("sgd_step_", ([w.clone(), b.clone()], [w, b], [torch.zeros_like(w), torch.zeros_like(b)], 0.1, 0.9, 0.01)),
            ("sgd_step_", ([w.clone(), b.clone()], [w, b], [], 0.1, 0.0, 0.0)),
            ("sgd_step_", ([w.clone(), b.clone()], [w.clone(), b.clone()], [torch.zeros_like(w), torch.zeros_like(b)],
                           0.1, 0.9, 0.01, True)),
        ]
    return cases


# The cases of the op families in files of their own (tests/op_cases_<family>.py), one entry each.
from op_cases_adam import adam_cases  # noqa: E402
from op_cases_block import block_cases  # noqa: E402
from op_cases_classify import classify_cases  # noqa: E402
from op_cases_conv import conv_cases  # noqa: E402
from op_cases_layer import layer_cases  # noqa: E402

FAMILIES = [conv_cases, layer_cases, block_cases, classify_cases, adam_cases]
