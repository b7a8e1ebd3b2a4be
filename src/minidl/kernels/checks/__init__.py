"""Input checks of the Python and fake kernels: the twin of csrc/checks.h, with the same messages
(but dtypes as Python prints them: torch.float32 where C++ says Float)."""
from torch import empty

from .. import ACTIVATIONS
from .memory import check_apart, check_written, expanded

_FLOATS = ("torch.float32", "torch.float64")
_CODES = range(len(ACTIVATIONS))
_CODES_TEXT = " or ".join([", ".join(f"{i} ({kind})" for i, kind in enumerate(ACTIVATIONS[:-1])),
                           f"{len(ACTIVATIONS) - 1} ({ACTIVATIONS[-1]})"])
_TENSOR = type(empty(0))  # torch.Tensor, within the course rule of importing only torch.empty


def _check_tensor(t, op, name):
    if not isinstance(t, _TENSOR):
        raise TypeError(f"{op}: expected {name} to be a torch.Tensor, got {type(t).__name__}")


def check_float(t, op, name):
    _check_tensor(t, op, name)
    if str(t.dtype) not in _FLOATS:
        raise TypeError(f"{op}: expected {name} to be float32 or float64, got {t.dtype}")


def check_like(t, ref, op, name, ref_name):
    _check_tensor(t, op, name)
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
    check_written(grad_weight, op, "grad_weight")
    if grad_bias is not None:
        check_written(grad_bias, op, "grad_bias")
    check_apart([(grad_weight, "grad_weight"), (grad_bias, "grad_bias")],
                [(grad_output, "grad_output"), (input, "input"), (weight, "weight")], op)


def check_elementwise_backward(grad_output, output, op):
    check_float(output, op, "output")
    check_like(grad_output, output, op, "grad_output", "output")
    check_shape(grad_output, output.shape, op, "grad_output")


def check_stack(input, weights, biases, activations, op, bias_name="bias"):
    """The checks of a fused stack of Linear layers (mlp_forward, mlp_backward: biases named bias_name)."""
    if not weights:
        raise ValueError(f"{op}: expected at least one layer")
    if len(biases) != len(weights) or len(activations) != len(weights):
        raise ValueError(f"{op}: expected as many {bias_name}es and activations as weights ({len(weights)}), got "
                         f"{len(biases)} {bias_name}es and {len(activations)} activations")
    _check_linear(input, weights[0], f"{op} (layer 0)")
    for i, (w, b, a) in enumerate(zip(weights, biases, activations)):
        name = f"{op} (layer {i})"
        check_float(w, name, "weight")
        check_like(w, weights[0], name, "weight", "the first weight")
        check_dim(w, 2, name, "weight")
        if i > 0 and w.shape[1] != weights[i - 1].shape[0]:
            raise ValueError(f"{name}: expected weight of shape [*, {weights[i - 1].shape[0]}] after a layer of "
                             f"{weights[i - 1].shape[0]} outputs, got {list(w.shape)}")
        check_like(b, w, name, bias_name, "weight")
        check_shape(b, [w.shape[0]], name, bias_name)
        if a not in _CODES:
            raise ValueError(f"{name}: expected activation codes {_CODES_TEXT}, got {a}")


def check_mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, activations, grad_input):
    op = "minidl.mlp_backward"
    check_stack(input, weights, grad_biases, activations, op, "grad_bias")
    n = len(weights)
    if len(outputs) != n or len(grad_weights) != n:
        raise ValueError(f"{op}: expected {n} outputs and grad_weights, got {len(outputs)} and {len(grad_weights)}")
    for i, (y, w, gw) in enumerate(zip(outputs, weights, grad_weights)):
        name = f"{op} (layer {i})"
        check_like(y, w, name, "output", "weight")
        check_shape(y, [input.shape[0], w.shape[0]], name, "output")
        check_like(gw, w, name, "grad_weight", "weight")
        check_shape(gw, w.shape, name, "grad_weight")
    check_like(grad_output, weights[-1], op, "grad_output", "the last weight")
    check_shape(grad_output, outputs[-1].shape, op, "grad_output")
    read = [(grad_output, "grad_output"), (input, "input")] + [
        pair for i in range(n) for pair in ((outputs[i], f"outputs[{i}]"), (weights[i], f"weights[{i}]"))]
    written = [pair for i in range(n) for pair in ((grad_weights[i], f"grad_weights[{i}]"),
                                                   (grad_biases[i], f"grad_biases[{i}]"))]
    # Layers add into their gradients one after another, so two layers' may share memory (one layer applied twice).
    for i in range(n):
        for t, name in written[2 * i:2 * i + 2]:
            check_written(t, op, name)
        check_apart(written[2 * i:2 * i + 2], read, op)
    if grad_input is not None:
        check_like(grad_input, weights[0], op, "grad_input", "the first weight")
        check_shape(grad_input, input.shape, op, "grad_input")
        check_written(grad_input, op, "grad_input")
        # nor with a gradient: layer 0's are written with it
        check_apart([(grad_input, "grad_input")], read + written, op)


def check_mse(output, target):
    op = "minidl.mse_forward"
    check_float(output, op, "output")
    check_like(target, output, op, "target", "output")
    check_shape(target, output.shape, op, "target")


def check_sgd(params, grads, momentum_buffers, lr, momentum, weight_decay, zero_grads=False):
    op = "minidl.sgd_step_"
    if len(grads) != len(params):
        raise ValueError(f"{op}: expected as many grads as params ({len(params)}), got {len(grads)}")
    for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if not value >= 0:  # also refuses NaN; :g prints as C++ does
            raise ValueError(f"{op}: expected {name} >= 0, got {value:g}")
    if momentum and len(momentum_buffers) != len(params):
        raise ValueError(f"{op}: expected as many momentum_buffers as params ({len(params)}), "
                         f"got {len(momentum_buffers)}")
    for i, (p, g) in enumerate(zip(params, grads)):
        name = f"{op} (parameter {i})"
        check_float(p, name, "param")
        check_like(g, p, name, "grad", "param")
        check_shape(g, p.shape, name, "grad")
        if zero_grads and expanded(g):
            raise ValueError(f"{name}: zero_grads needs gradients whose elements have memory of their own, "
                             f"got one of strides {list(g.stride())}")
        if momentum:
            check_like(momentum_buffers[i], p, name, "momentum_buffer", "param")
            check_shape(momentum_buffers[i], p.shape, name, "momentum_buffer")
        grad = [(g, "grad")]  # read, and written too with zero_grads
        check_apart([(p, "param"), (momentum_buffers[i] if momentum else None, "momentum_buffer")]
                    + (grad if zero_grads else []), [] if zero_grads else grad, name)


def check_not_recorded(op, arguments):
    """Refuse a call that torch's autograd would record (an argument that requires grad, in grad mode): minidl's ops
    compute their own gradients and would silently add nothing to torch's graph (csrc/not_recorded.h)."""
    for name, value in arguments.items():
        listed = isinstance(value, (list, tuple))
        for t in value if listed else (value,):
            # A new (empty) tensor computed from t requires grad only in grad mode (at t's level inside torch.func).
            if getattr(t, "requires_grad", False) and t.as_strided((0,), (1,)).clone().requires_grad:
                raise RuntimeError(f"{op}: {'a tensor of ' if listed else ''}{name} requires grad, but minidl ops are "
                                   "not recorded by torch's autograd; call it under torch.no_grad() or on detached "
                                   "tensors (minidl's modules compute their own gradients)")
