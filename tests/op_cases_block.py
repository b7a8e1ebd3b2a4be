"""Op cases of the pool -> batch norm -> ReLU block, for opcheck and the direct-call tests."""
import torch

from minidl.kernels import python as python_kernels


def _channels_last(t):
    return t.contiguous(memory_format=torch.channels_last)


def block_cases(device):
    """(op name, args): float32 and float64, NCHW and channels-last, training and evaluation, tiling and
    overlapping windows; the backward's saved tensors from the Python forward (a CPU one for meta)."""
    torch.manual_seed(13)
    cases = []
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 3, 7, 6, dtype=dtype)
        for layout in (lambda t: t, _channels_last):
            xl = layout(x)
            for kernel, stride in (([2, 2], [2, 2]), ([3, 2], [1, 2])):
                for training in (True, False):
                    w, b, rm, rv = torch.randn(3, dtype=dtype), torch.randn(3, dtype=dtype), \
                        torch.randn(3, dtype=dtype), torch.rand(3, dtype=dtype) + 0.5
                    forward = (xl, kernel, stride, w, b, rm, rv, training, 0.1, 1e-5)
                    output, pooled, argmax, mean, invstd = python_kernels.pool_norm_relu_forward(
                        xl, kernel, stride, w, b, rm.clone(), rv.clone(), training, 0.1, 1e-5)
                    backward = (layout(torch.randn(*output.shape, dtype=dtype)), xl, output, pooled, argmax, kernel,
                                stride, w, mean, invstd, torch.zeros_like(w), torch.zeros_like(b), training)
                    cases += [("pool_norm_relu_forward", _to(forward, device)),
                              ("pool_norm_relu_backward", _to(backward, device))]
    return cases


def _to(args, device):
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
