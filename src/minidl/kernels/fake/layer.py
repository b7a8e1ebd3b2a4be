"""Shape functions of the layer ops (max-pool, batch norm, dropout): outputs in the memory format the
kernels give them."""
import torch

from ..checks.layer import (check_batch_norm_backward, check_batch_norm_forward, check_dropout, check_dropout_backward,
                            check_maxpool2d, check_maxpool2d_backward, is_channels_last)


def _format(input):
    return torch.channels_last if is_channels_last(input) else torch.contiguous_format


@torch.library.register_fake("minidl::maxpool2d_forward")
def _maxpool2d_forward(input, kernel_size, stride):
    shape = check_maxpool2d(input, kernel_size, stride, "minidl.maxpool2d_forward")
    fmt = _format(input)
    return (input.new_empty(shape).contiguous(memory_format=fmt),
            input.new_empty(shape, dtype=torch.int64).contiguous(memory_format=fmt))


@torch.library.register_fake("minidl::maxpool2d_backward")
def _maxpool2d_backward(grad_output, input, indices, kernel_size, stride):
    check_maxpool2d_backward(grad_output, input, indices, kernel_size, stride, "minidl.maxpool2d_backward")
    return torch.empty_like(input, memory_format=_format(input))


@torch.library.register_fake("minidl::batch_norm_forward")
def _batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum, eps):
    check_batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum, eps,
                             "minidl.batch_norm_forward")
    return (torch.empty_like(input, memory_format=_format(input)), input.new_empty(weight.shape),
            input.new_empty(weight.shape))


@torch.library.register_fake("minidl::batch_norm_backward")
def _batch_norm_backward(grad_output, input, weight, mean, invstd, grad_weight, grad_bias, training):
    check_batch_norm_backward(grad_output, input, weight, mean, invstd, grad_weight, grad_bias,
                              "minidl.batch_norm_backward")
    return torch.empty_like(input, memory_format=_format(input))


@torch.library.register_fake("minidl::dropout_forward")
def _dropout_forward(input, p, generator=None):
    check_dropout(input, p, generator, "minidl.dropout_forward")
    return torch.empty_like(input), torch.empty_like(input)


@torch.library.register_fake("minidl::dropout_backward")
def _dropout_backward(grad_output, mask):
    check_dropout_backward(grad_output, mask, "minidl.dropout_backward")
    return grad_output.mul(mask)
