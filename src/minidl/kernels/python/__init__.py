"""The kernel interface in pure Python: tensor methods only, and no torch import but `empty` (the course rule).

The dense ops (linear, activations, mlp, mse, sgd) are here; each further op family has a file of its own in
this package, whose ops are imported at the end."""
from torch import empty  # the one import the course allows; kernels use tensor methods

from .. import ACTIVATIONS
from ..checks import (check_elementwise_backward, check_float, check_linear_backward, check_linear_forward,
                      check_mlp_backward, check_mse, check_not_recorded, check_sgd, check_stack)

_RELU, _TANH = ACTIVATIONS.index("relu"), ACTIVATIONS.index("tanh")


def linear_forward(input, weight, bias):
    """y = input @ weight.T + bias."""
    check_not_recorded("minidl.linear_forward", locals())
    check_linear_forward(input, weight, bias)
    if bias is None:
        return input.mm(weight.t())
    return bias.addmm(input, weight.t())


def linear_backward(grad_output, input, weight, grad_weight, grad_bias):
    """Return grad_input; add the weight and bias gradients into grad_weight and grad_bias."""
    check_not_recorded("minidl.linear_backward", locals())
    check_linear_backward(grad_output, input, weight, grad_weight, grad_bias)
    grad_weight.addmm_(grad_output.t(), input)
    if grad_bias is not None:
        grad_bias.add_(grad_output.sum(0))
    return grad_output.mm(weight)


def tanh_forward(input):
    """y = tanh(input)."""
    check_not_recorded("minidl.tanh_forward", locals())
    check_float(input, "minidl.tanh_forward", "input")
    return input.tanh()


def tanh_backward(grad_output, output):
    """grad_output * (1 - y^2), from the saved output y."""
    check_not_recorded("minidl.tanh_backward", locals())
    check_elementwise_backward(grad_output, output, "minidl.tanh_backward")
    return output.mul(output).neg_().add_(1).mul_(grad_output)


def relu_forward(input):
    """y = max(input, 0); NaN stays NaN."""
    check_not_recorded("minidl.relu_forward", locals())
    check_float(input, "minidl.relu_forward", "input")
    return input.clamp(min=0)


def relu_backward(grad_output, output):
    """grad_output where y > 0, else 0 (where y is NaN the gradient passes, as in torch)."""
    check_not_recorded("minidl.relu_backward", locals())
    check_elementwise_backward(grad_output, output, "minidl.relu_backward")
    return grad_output.masked_fill(output.le(0), 0)


def mlp_forward(input, weights, biases, activations):
    """A stack of Linear layers, each followed by an activation (codes: indices into ACTIVATIONS); every layer's output."""
    check_not_recorded("minidl.mlp_forward", locals())
    check_stack(input, weights, biases, activations, "minidl.mlp_forward")
    outputs, x = [], input
    for w, b, a in zip(weights, biases, activations):
        x = b.addmm(x, w.t())
        if a == _RELU:
            x.clamp_(min=0)
        elif a == _TANH:
            x.tanh_()
        outputs.append(x)
    return outputs


def mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, activations, grad_input):
    """Add every layer's gradients into grad_weights and grad_biases; write the input's into grad_input if given."""
    check_not_recorded("minidl.mlp_backward", locals())
    check_mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, activations, grad_input)
    g = grad_output
    for k in reversed(range(len(weights))):
        y, a = outputs[k], activations[k]
        if a == _RELU:
            g = g.masked_fill(y.le(0), 0)
        elif a == _TANH:
            g = y.mul(y).neg_().add_(1).mul_(g)
        grad_weights[k].addmm_(g.t(), outputs[k - 1] if k > 0 else input)
        grad_biases[k].add_(g.sum(0))
        if k > 0:
            g = g.mm(weights[k])
        elif grad_input is not None:
            grad_input.addmm_(g, weights[0], beta=0)  # written in place: no temporary to copy


def mse_forward(output, target):
    """(mean((output - target)^2), 2 (output - target) / numel)."""
    check_not_recorded("minidl.mse_forward", locals())
    check_mse(output, target)
    diff = output.sub(target)
    loss = diff.square().mean()
    return loss, diff.mul_(2.0 / max(diff.numel(), 1))


def sgd_step_(params, grads, momentum_buffers, lr, momentum, weight_decay, zero_grads=False):
    """One step of torch.optim.SGD's arithmetic for every parameter; momentum buffers start at zero.
    zero_grads: then set each gradient to zero."""
    check_not_recorded("minidl.sgd_step_", locals())
    check_sgd(params, grads, momentum_buffers, lr, momentum, weight_decay, zero_grads)
    for i, (p, g) in enumerate(zip(params, grads)):
        d = g.add(p, alpha=weight_decay) if weight_decay else g
        if momentum:
            d = momentum_buffers[i].mul_(momentum).add_(d)
        p.add_(d, alpha=-lr)
        if zero_grads:
            g.zero_()


def zero_(tensors):
    """Set every tensor to zero."""
    for t in tensors:
        t.detach().zero_()  # as torch.optim.Optimizer.zero_grad, also for leaves that require grad


# The op families in files of their own (one import line each).
from .adam import adam_step_  # noqa: E402,F401
from .block import pool_norm_relu_backward, pool_norm_relu_forward  # noqa: E402,F401
from .classify import (cross_entropy_forward, pair_outer_backward, pair_outer_forward, softmax_backward,  # noqa: E402,F401
                       softmax_forward)
from .conv import conv2d_backward, conv2d_forward  # noqa: E402,F401
from .dropout import dropout_backward, dropout_forward  # noqa: E402,F401
from .norm import batch_norm_backward, batch_norm_forward  # noqa: E402,F401
from .pool import maxpool2d_backward, maxpool2d_forward  # noqa: E402,F401
