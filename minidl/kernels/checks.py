"""Input checks of the Python and fake kernels: the twin of csrc/checks.h, with the same messages."""
_FLOATS = ("torch.float32", "torch.float64")


def check_float(t, op, name):
    if str(t.dtype) not in _FLOATS:
        raise TypeError(f"{op}: expected {name} to be float32 or float64, got {t.dtype}")


def check_like(t, ref, op, name, ref_name):
    if t.device != ref.device:
        raise RuntimeError(f"{op}: expected {name} on {ref.device} like {ref_name}, got {t.device}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: expected {name} of dtype {ref.dtype} like {ref_name}, got {t.dtype}")


def check_dim(t, dim, op, name):
    if t.dim() != dim:
        raise ValueError(f"{op}: expected {name} with {dim} dimensions, got shape {list(t.shape)}")


def check_shape(t, expected, op, name):
    if list(t.shape) != list(expected):
        raise ValueError(f"{op}: expected {name} of shape {list(expected)}, got {list(t.shape)}")


def _check_linear(input, weight, op):
    check_float(weight, op, "weight")
    check_like(input, weight, op, "input", "weight")
    check_dim(input, 2, op, "input")
    check_dim(weight, 2, op, "weight")
    if input.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: expected input of shape [N, {weight.shape[1]}] for weight of shape "
                         f"{list(weight.shape)}, got {list(input.shape)}")


def check_linear_forward(input, weight, bias):
    op = "minidl.linear_forward"
    _check_linear(input, weight, op)
    if bias is not None:
        check_like(bias, weight, op, "bias", "weight")
        check_shape(bias, [weight.shape[0]], op, "bias")


def check_linear_backward(grad_output, input, weight, grad_weight, grad_bias):
    op = "minidl.linear_backward"
    _check_linear(input, weight, op)
    check_like(grad_output, weight, op, "grad_output", "weight")
    check_shape(grad_output, [input.shape[0], weight.shape[0]], op, "grad_output")
    check_like(grad_weight, weight, op, "grad_weight", "weight")
    check_shape(grad_weight, weight.shape, op, "grad_weight")
    if grad_bias is not None:
        check_like(grad_bias, weight, op, "grad_bias", "weight")
        check_shape(grad_bias, [weight.shape[0]], op, "grad_bias")


def check_elementwise_backward(grad_output, output, op):
    check_float(output, op, "output")
    check_like(grad_output, output, op, "grad_output", "output")
    check_shape(grad_output, output.shape, op, "grad_output")
