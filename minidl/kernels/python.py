"""The kernel interface in pure Python: tensor methods only, and no torch import but `empty` (the course rule)."""
from torch import empty  # noqa: F401  (the one import the course allows; kernels use tensor methods)

_FLOATS = ("torch.float32", "torch.float64")


def _check_float(t, op, name):
    if str(t.dtype) not in _FLOATS:
        raise TypeError(f"{op}: expected {name} to be float32 or float64, got {t.dtype}")


def _check_like(t, ref, op, name, ref_name):
    if t.device != ref.device:
        raise RuntimeError(f"{op}: expected {name} on {ref.device} like {ref_name}, got {t.device}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: expected {name} of dtype {ref.dtype} like {ref_name}, got {t.dtype}")


def _check_dim(t, dim, op, name):
    if t.dim() != dim:
        raise ValueError(f"{op}: expected {name} with {dim} dimensions, got shape {list(t.shape)}")


def _check_shape(t, expected, op, name):
    if list(t.shape) != list(expected):
        raise ValueError(f"{op}: expected {name} of shape {list(expected)}, got {list(t.shape)}")


def _check_linear(input, weight, op):
    _check_float(weight, op, "weight")
    _check_like(input, weight, op, "input", "weight")
    _check_dim(input, 2, op, "input")
    _check_dim(weight, 2, op, "weight")
    if input.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: expected input of shape [N, {weight.shape[1]}] for weight of shape "
                         f"{list(weight.shape)}, got {list(input.shape)}")


def _check_elementwise_backward(grad_output, saved, op):
    _check_float(saved, op, "output")
    _check_like(grad_output, saved, op, "grad_output", "output")
    _check_shape(grad_output, saved.shape, op, "grad_output")


def linear_forward(input, weight, bias):
    """y = input @ weight.T + bias."""
    op = "minidl.linear_forward"
    _check_linear(input, weight, op)
    if bias is None:
        return input.mm(weight.t())
    _check_like(bias, weight, op, "bias", "weight")
    _check_shape(bias, [weight.shape[0]], op, "bias")
    return bias.addmm(input, weight.t())


def linear_backward(grad_output, input, weight, grad_weight, grad_bias):
    """Return grad_input; add the weight and bias gradients into grad_weight and grad_bias."""
    op = "minidl.linear_backward"
    _check_linear(input, weight, op)
    _check_like(grad_output, weight, op, "grad_output", "weight")
    _check_shape(grad_output, [input.shape[0], weight.shape[0]], op, "grad_output")
    _check_like(grad_weight, weight, op, "grad_weight", "weight")
    _check_shape(grad_weight, weight.shape, op, "grad_weight")
    grad_weight.addmm_(grad_output.t(), input)
    if grad_bias is not None:
        _check_like(grad_bias, weight, op, "grad_bias", "weight")
        _check_shape(grad_bias, [weight.shape[0]], op, "grad_bias")
        grad_bias.add_(grad_output.sum(0))
    return grad_output.mm(weight)


def tanh_forward(input):
    """y = tanh(input)."""
    _check_float(input, "minidl.tanh_forward", "input")
    return input.tanh()


def tanh_backward(grad_output, output):
    """grad_output * (1 - y^2), from the saved output y."""
    _check_elementwise_backward(grad_output, output, "minidl.tanh_backward")
    return output.mul(output).neg_().add_(1).mul_(grad_output)


def relu_forward(input):
    """y = max(input, 0); NaN stays NaN."""
    _check_float(input, "minidl.relu_forward", "input")
    return input.clamp(min=0)


def relu_backward(grad_output, output):
    """grad_output where y > 0, else 0 (where y is NaN the gradient passes, as in torch)."""
    _check_elementwise_backward(grad_output, output, "minidl.relu_backward")
    return grad_output.masked_fill(output.le(0), 0)
