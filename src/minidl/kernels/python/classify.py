"""Cross-entropy, softmax and the pairwise outer product in pure Python (tensor methods only)."""
from torch import empty

from ..checks import check_not_recorded
from ..checks.classify import (check_cross_entropy, check_pair_input, check_pair_outer_backward, check_softmax,
                               check_softmax_backward, check_targets_in_range)


def cross_entropy_forward(logits, target):
    """(mean over rows of -log softmax(logits)[target], its gradient (softmax - onehot) / N); int64 targets."""
    check_not_recorded("minidl.cross_entropy_forward", locals())
    check_cross_entropy(logits, target)
    n, classes = logits.shape
    check_targets_in_range(target, classes)
    shifted = logits.sub(logits.amax(1, keepdim=True)) if n and classes else logits.clone()
    exps = shifted.exp()
    sums = exps.sum(1, keepdim=True)
    column = target.unsqueeze(1)
    nll = shifted.gather(1, column).sub_(sums.log()).neg_()  # -((x_t - max) - log(sum)), as the C++ kernel
    loss = nll.double().sum().div_(n)  # in double, as the C++ kernel; the mean of no rows is NaN
    inv_n = 1.0 / max(n, 1)
    minus_one = empty((n, 1), dtype=exps.dtype, device=exps.device).fill_(-1.0)
    grad = exps.div_(sums).scatter_add_(1, column, minus_one).mul_(inv_n).contiguous()
    return loss.to(logits.dtype), grad


def softmax_forward(input, dim):
    """exp(input - max) / sum along dim."""
    check_not_recorded("minidl.softmax_forward", locals())
    dim = check_softmax(input, dim)
    if input.numel() == 0:
        return empty(input.shape, dtype=input.dtype, device=input.device)
    exps = input.sub(input.amax(dim, keepdim=True)).exp_()
    return exps.div_(exps.sum(dim, keepdim=True)).contiguous()


def softmax_backward(grad_output, output, dim):
    """From the saved output y: y * (grad_output - sum(grad_output * y, dim))."""
    check_not_recorded("minidl.softmax_backward", locals())
    dim = check_softmax_backward(grad_output, output, dim)
    dot = grad_output.mul(output).sum(dim, keepdim=True)
    return grad_output.sub(dot).mul_(output).contiguous()


def pair_outer_forward(input):
    """input [N, 2, K] -> [N, K, K]: out[n, i, j] = input[n, 0, i] * input[n, 1, j]."""
    check_not_recorded("minidl.pair_outer_forward", locals())
    check_pair_input(input, "minidl.pair_outer_forward")
    return input[:, 0, :, None].mul(input[:, 1, None, :]).contiguous()


def pair_outer_backward(grad_output, input):
    """grad_output [N, K, K] -> [N, 2, K]: sums over j of g[n, i, j] input[n, 1, j], over i of g[n, i, j] input[n, 0, i]."""
    check_not_recorded("minidl.pair_outer_backward", locals())
    check_pair_outer_backward(grad_output, input)
    out = empty(input.shape, dtype=input.dtype, device=input.device)
    out[:, 0] = grad_output.mul(input[:, 1, None, :]).sum(2)
    out[:, 1] = grad_output.mul(input[:, 0, :, None]).sum(1)
    return out

