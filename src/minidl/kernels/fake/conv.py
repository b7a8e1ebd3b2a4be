"""Shape functions of the convolution ops."""
import torch

from ..checks.conv import channels_last_output, check_conv2d_backward, check_conv2d_forward


def _empty(shape, input, weight):
    """As the C++ kernels allocate it: channels-last by torch's rule (checks.conv), else contiguous."""
    layout = torch.channels_last if channels_last_output(input, weight) else torch.contiguous_format
    return torch.empty(shape, dtype=weight.dtype, device=weight.device, memory_format=layout)


@torch.library.register_fake("minidl::conv2d_forward")
def _conv2d_forward(input, weight, bias, stride, padding):
    oh, ow = check_conv2d_forward(input, weight, bias, stride, padding)
    return _empty((input.shape[0], weight.shape[0], oh, ow), input, weight)


@torch.library.register_fake("minidl::conv2d_backward")
def _conv2d_backward(grad_output, input, weight, grad_weight, grad_bias, stride, padding, input_grad=True):
    check_conv2d_backward(grad_output, input, weight, grad_weight, grad_bias, stride, padding)
    if not input_grad:
        return weight.new_empty((0,))
    return _empty(input.shape, input, weight)
