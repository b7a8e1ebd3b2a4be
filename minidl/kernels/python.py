"""The kernel interface in pure Python: tensor methods only, and no torch import but `empty` (the course rule)."""
from torch import empty  # noqa: F401  (the one import the course allows; kernels use tensor methods)

from .checks import check_elementwise_backward, check_float, check_linear_backward, check_linear_forward


def linear_forward(input, weight, bias):
    """y = input @ weight.T + bias."""
    check_linear_forward(input, weight, bias)
    if bias is None:
        return input.mm(weight.t())
    return bias.addmm(input, weight.t())


def linear_backward(grad_output, input, weight, grad_weight, grad_bias):
    """Return grad_input; add the weight and bias gradients into grad_weight and grad_bias."""
    check_linear_backward(grad_output, input, weight, grad_weight, grad_bias)
    grad_weight.addmm_(grad_output.t(), input)
    if grad_bias is not None:
        grad_bias.add_(grad_output.sum(0))
    return grad_output.mm(weight)


def tanh_forward(input):
    """y = tanh(input)."""
    check_float(input, "minidl.tanh_forward", "input")
    return input.tanh()


def tanh_backward(grad_output, output):
    """grad_output * (1 - y^2), from the saved output y."""
    check_elementwise_backward(grad_output, output, "minidl.tanh_backward")
    return output.mul(output).neg_().add_(1).mul_(grad_output)


def relu_forward(input):
    """y = max(input, 0); NaN stays NaN."""
    check_float(input, "minidl.relu_forward", "input")
    return input.clamp(min=0)


def relu_backward(grad_output, output):
    """grad_output where y > 0, else 0 (where y is NaN the gradient passes, as in torch)."""
    check_elementwise_backward(grad_output, output, "minidl.relu_backward")
    return grad_output.masked_fill(output.le(0), 0)
