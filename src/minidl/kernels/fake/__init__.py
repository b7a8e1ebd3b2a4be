"""Shape-only ("fake") implementations of the C++ ops, for opcheck, torch.compile and meta tensors.

They check their inputs like the real kernels, so a mistake is caught while tracing too.
"""
import torch

from ..checks import (check_elementwise_backward, check_float, check_linear_backward, check_linear_forward,
                     check_mlp_backward, check_mse, check_sgd, check_stack)


@torch.library.register_fake("minidl::linear_forward")
def _linear_forward(input, weight, bias):
    check_linear_forward(input, weight, bias)
    return input.new_empty((input.shape[0], weight.shape[0]))


@torch.library.register_fake("minidl::linear_backward")
def _linear_backward(grad_output, input, weight, grad_weight, grad_bias):
    check_linear_backward(grad_output, input, weight, grad_weight, grad_bias)
    return input.new_empty(input.shape)


def kept_format(t):
    """The layout of an elementwise op's output (activation.h's kept_format): channels-last for a channels-last
    input, else contiguous."""
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _register_activation(name):
    @torch.library.register_fake(f"minidl::{name}_forward")
    def _forward(input):
        check_float(input, f"minidl.{name}_forward", "input")
        return torch.empty_like(input, memory_format=kept_format(input))

    @torch.library.register_fake(f"minidl::{name}_backward")
    def _backward(grad_output, output):
        check_elementwise_backward(grad_output, output, f"minidl.{name}_backward")
        return torch.empty_like(output, memory_format=kept_format(output))


for _name in ("tanh", "relu"):
    _register_activation(_name)


@torch.library.register_fake("minidl::mlp_forward")
def _mlp_forward(input, weights, biases, activations):
    check_stack(input, weights, biases, activations, "minidl.mlp_forward")
    return [input.new_empty((input.shape[0], w.shape[0])) for w in weights]


@torch.library.register_fake("minidl::mlp_backward")
def _mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, activations, grad_input):
    check_mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, activations, grad_input)


@torch.library.register_fake("minidl::mse_forward")
def _mse_forward(output, target):
    check_mse(output, target)
    return output.new_empty(()), torch.empty_like(output, memory_format=torch.contiguous_format)


@torch.library.register_fake("minidl::sgd_step_")
def _sgd_step_(params, grads, momentum_buffers, lr, momentum, weight_decay, zero_grads=False):
    check_sgd(params, grads, momentum_buffers, lr, momentum, weight_decay, zero_grads)


# The shape functions of the op families in files of their own (one import line each).
from . import adam, block, classify, conv, layer  # noqa: E402,F401
