"""Shape functions of the classification ops (cross-entropy, softmax, pairwise outer product)."""
import torch

from ..checks.classify import (check_cross_entropy, check_pair_input, check_pair_outer_backward, check_softmax,
                               check_softmax_backward)


@torch.library.register_fake("minidl::cross_entropy_forward")
def _cross_entropy_forward(logits, target):
    check_cross_entropy(logits, target)  # the targets' values are data: checked by the real kernels only
    return logits.new_empty(()), torch.empty_like(logits, memory_format=torch.contiguous_format)


@torch.library.register_fake("minidl::softmax_forward")
def _softmax_forward(input, dim):
    check_softmax(input, dim)
    return torch.empty_like(input, memory_format=torch.contiguous_format)


@torch.library.register_fake("minidl::softmax_backward")
def _softmax_backward(grad_output, output, dim):
    check_softmax_backward(grad_output, output, dim)
    return torch.empty_like(output, memory_format=torch.contiguous_format)


@torch.library.register_fake("minidl::pair_outer_forward")
def _pair_outer_forward(input):
    check_pair_input(input, "minidl.pair_outer_forward")
    n, _, k = input.shape
    return input.new_empty((n, k, k))


@torch.library.register_fake("minidl::pair_outer_backward")
def _pair_outer_backward(grad_output, input):
    check_pair_outer_backward(grad_output, input)
    return input.new_empty(input.shape)
