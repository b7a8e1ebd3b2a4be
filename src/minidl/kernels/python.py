"""The kernel interface in pure Python: tensor methods only, and no torch import but `empty` (the course rule)."""
from torch import empty  # noqa: F401  (the one import the course allows; kernels use tensor methods)

from .checks import (check_elementwise_backward, check_float, check_linear_backward, check_linear_forward,
                     check_mlp_backward, check_mse, check_sgd, check_stack)


def _plain(t):
    """t (or None) without its autograd history: minidl never records a graph (the C++ kernels run under NoGradGuard)."""
    return t.detach() if t is not None and t.requires_grad else t


def linear_forward(input, weight, bias):
    """y = input @ weight.T + bias."""
    check_linear_forward(input, weight, bias)
    input, weight, bias = _plain(input), _plain(weight), _plain(bias)
    if bias is None:
        return input.mm(weight.t())
    return bias.addmm(input, weight.t())


def linear_backward(grad_output, input, weight, grad_weight, grad_bias):
    """Return grad_input; add the weight and bias gradients into grad_weight and grad_bias."""
    check_linear_backward(grad_output, input, weight, grad_weight, grad_bias)
    grad_output, input, weight = _plain(grad_output), _plain(input), _plain(weight)
    grad_weight, grad_bias = _plain(grad_weight), _plain(grad_bias)
    grad_weight.addmm_(grad_output.t(), input)
    if grad_bias is not None:
        grad_bias.add_(grad_output.sum(0))
    return grad_output.mm(weight)


def tanh_forward(input):
    """y = tanh(input)."""
    check_float(input, "minidl.tanh_forward", "input")
    return _plain(input).tanh()


def tanh_backward(grad_output, output):
    """grad_output * (1 - y^2), from the saved output y."""
    check_elementwise_backward(grad_output, output, "minidl.tanh_backward")
    output = _plain(output)
    return output.mul(output).neg_().add_(1).mul_(_plain(grad_output))


def relu_forward(input):
    """y = max(input, 0); NaN stays NaN."""
    check_float(input, "minidl.relu_forward", "input")
    return _plain(input).clamp(min=0)


def relu_backward(grad_output, output):
    """grad_output where y > 0, else 0 (where y is NaN the gradient passes, as in torch)."""
    check_elementwise_backward(grad_output, output, "minidl.relu_backward")
    return _plain(grad_output).masked_fill(_plain(output).le(0), 0)


def mlp_forward(input, weights, biases, activations):
    """A stack of Linear layers, each followed by an activation (0 none, 1 relu, 2 tanh); every layer's output."""
    check_stack(input, weights, biases, activations, "minidl.mlp_forward")
    outputs, x = [], _plain(input)
    weights, biases = [_plain(w) for w in weights], [_plain(b) for b in biases]
    for w, b, a in zip(weights, biases, activations):
        x = b.addmm(x, w.t())
        if a == 1:
            x.clamp_(min=0)
        elif a == 2:
            x.tanh_()
        outputs.append(x)
    return outputs


def mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, activations, grad_input):
    """Add every layer's gradients into grad_weights and grad_biases; write the input's into grad_input if given."""
    check_mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, activations, grad_input)
    g, input = _plain(grad_output), _plain(input)
    outputs, weights = [_plain(y) for y in outputs], [_plain(w) for w in weights]
    grad_weights, grad_biases = [_plain(t) for t in grad_weights], [_plain(t) for t in grad_biases]
    grad_input = _plain(grad_input)
    for k in reversed(range(len(weights))):
        y, a = outputs[k], activations[k]
        if a == 1:
            g = g.masked_fill(y.le(0), 0)
        elif a == 2:
            g = y.mul(y).neg_().add_(1).mul_(g)
        grad_weights[k].addmm_(g.t(), outputs[k - 1] if k > 0 else input)
        grad_biases[k].add_(g.sum(0))
        if k > 0:
            g = g.mm(weights[k])
        elif grad_input is not None:
            grad_input.addmm_(g, weights[0], beta=0)  # written in place: no temporary to copy


def mse_forward(output, target):
    """(mean((output - target)^2), 2 (output - target) / numel)."""
    check_mse(output, target)
    diff = _plain(output).sub(_plain(target))
    loss = diff.square().mean()
    return loss, diff.mul_(2.0 / max(diff.numel(), 1))


def sgd_step_(params, grads, momentum_buffers, lr, momentum, weight_decay, zero_grads=False):
    """One step of torch.optim.SGD's arithmetic for every parameter; momentum buffers start at zero.
    zero_grads: then set each gradient to zero."""
    check_sgd(params, grads, momentum_buffers, momentum, zero_grads)
    for i, (p, g) in enumerate(zip(params, grads)):
        p, g = _plain(p), _plain(g)  # in place through a detached view, as torch.optim under no_grad
        d = g.add(p, alpha=weight_decay) if weight_decay else g
        if momentum:
            d = _plain(momentum_buffers[i]).mul_(momentum).add_(d)
        p.add_(d, alpha=-lr)
        if zero_grads:
            g.zero_()


def zero_(tensors):
    """Set every tensor to zero."""
    for t in tensors:
        _plain(t).zero_()
