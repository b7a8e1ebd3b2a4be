"""Shape functions of the pool -> batch norm -> ReLU block ops: outputs in the input's memory format."""
import torch

from ..checks.block import check_pool_norm_relu_backward, check_pool_norm_relu_forward
from ..checks.layer import is_channels_last


def _format(input):
    return torch.channels_last if is_channels_last(input) else torch.contiguous_format


@torch.library.register_fake("minidl::pool_norm_relu_forward")
def _pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var, training, momentum,
                            eps):
    shape = check_pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var,
                                         training, momentum, eps, "minidl.pool_norm_relu_forward")
    fmt = _format(input)
    output, pooled = (input.new_empty(shape).contiguous(memory_format=fmt) for _ in range(2))
    argmax = input.new_empty(shape, dtype=torch.uint8).contiguous(memory_format=fmt)
    return output, pooled, argmax, input.new_empty(weight.shape), input.new_empty(weight.shape)


@torch.library.register_fake("minidl::pool_norm_relu_backward")
def _pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean, invstd,
                             grad_weight, grad_bias, training):
    check_pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean,
                                  invstd, grad_weight, grad_bias, "minidl.pool_norm_relu_backward")
    return torch.empty_like(input, memory_format=_format(input))
