"""Checks of the layer ops (max-pool, batch norm, dropout): the twin of csrc/layer_checks.h, same messages."""
import math

from . import _check_tensor, check_dim, check_float, check_like, check_shape
from .memory import check_apart, check_written


def is_channels_last(t):
    """Whether a 4-D tensor's strides are channels-last ones: c10's is_channels_last_strides_2d, which
    suggest_memory_format (what the C++ kernels follow) uses; ambiguous cases count as NCHW."""
    if t.dim() != 4 or t.stride(1) == 0:
        return False
    low = 0
    for d in (1, 3, 2, 0):
        if t.shape[d] == 0 or t.stride(d) < low or (d == 0 and low == t.stride(1)):
            return False
        low = t.stride(d) * (t.shape[d] if t.shape[d] > 1 else 1)
    return True


def _check_pair(v, op, name):
    if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) and i > 0 for i in v)):
        raise ValueError(f"{op}: expected {name} to be two positive ints, got "
                         f"{list(v) if isinstance(v, (list, tuple)) else v!r}")


def check_maxpool2d(input, kernel_size, stride, op):
    """The output's [N, C, OH, OW]."""
    check_float(input, op, "input")
    check_dim(input, 4, op, "input")
    _check_pair(kernel_size, op, "kernel_size")
    _check_pair(stride, op, "stride")
    if input.shape[2] < kernel_size[0] or input.shape[3] < kernel_size[1]:
        raise ValueError(f"{op}: expected input of at least kernel_size {list(kernel_size)} in its last two "
                         f"dimensions, got shape {list(input.shape)}")
    return [input.shape[0], input.shape[1], (input.shape[2] - kernel_size[0]) // stride[0] + 1,
            (input.shape[3] - kernel_size[1]) // stride[1] + 1]


def check_maxpool2d_backward(grad_output, input, indices, kernel_size, stride, op):
    shape = check_maxpool2d(input, kernel_size, stride, op)
    check_like(grad_output, input, op, "grad_output", "input")
    check_shape(grad_output, shape, op, "grad_output")
    check_positions(indices, input, shape, "torch.int64", op, "indices")


def check_positions(t, input, shape, dtype, op, name):
    """Max-pooling's saved positions (indices, argmax): a tensor on input's device, of dtype and shape."""
    _check_tensor(t, op, name)
    if t.device != input.device:
        raise RuntimeError(f"{op}: expected {name} on {input.device} like input, got {t.device}")
    if str(t.dtype) != dtype:
        raise TypeError(f"{op}: expected {name} of dtype {dtype}, got {t.dtype}")
    check_shape(t, shape, op, name)


def _check_per_channel(t, input, op, name):
    check_like(t, input, op, name, "input")
    check_shape(t, [input.shape[1]], op, name)


def check_running_stats_written(input, weight, bias, running_mean, running_var, training, op):
    """In training the running statistics are updated."""
    if training:
        check_written(running_mean, op, "running_mean")
        check_written(running_var, op, "running_var")
        check_apart([(running_mean, "running_mean"), (running_var, "running_var")],
                    [(input, "input"), (weight, "weight"), (bias, "bias")], op)


def _check_batch_norm_input(input, op):
    check_float(input, op, "input")
    if not 2 <= input.dim() <= 4:
        raise ValueError(f"{op}: expected input of shape [N, C], [N, C, L] or [N, C, H, W], got {list(input.shape)}")


def check_batch_norm_settings(input, weight, bias, running_mean, running_var, momentum, eps, op):
    """The per-channel tensors, eps and momentum of a batch-norm forward (also the fused block's)."""
    for t, name in ((weight, "weight"), (bias, "bias"), (running_mean, "running_mean"), (running_var, "running_var")):
        _check_per_channel(t, input, op, name)
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"{op}: expected eps >= 0, got {eps}")
    if not math.isfinite(momentum):
        raise ValueError(f"{op}: expected a finite momentum, got {momentum}")


def check_batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum, eps, op):
    _check_batch_norm_input(input, op)
    check_batch_norm_settings(input, weight, bias, running_mean, running_var, momentum, eps, op)
    if training and input.shape[0] * math.prod(input.shape[2:]) <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input of shape "
                         f"{list(input.shape)}")
    check_running_stats_written(input, weight, bias, running_mean, running_var, training, op)


def check_batch_norm_backward(grad_output, input, weight, mean, invstd, grad_weight, grad_bias, op):
    _check_batch_norm_input(input, op)
    check_like(grad_output, input, op, "grad_output", "input")
    check_shape(grad_output, input.shape, op, "grad_output")
    for t, name in ((weight, "weight"), (mean, "mean"), (invstd, "invstd"), (grad_weight, "grad_weight"),
                    (grad_bias, "grad_bias")):
        _check_per_channel(t, input, op, name)
    check_written(grad_weight, op, "grad_weight")
    check_written(grad_bias, op, "grad_bias")
    check_apart([(grad_weight, "grad_weight"), (grad_bias, "grad_bias")],
                [(grad_output, "grad_output"), (input, "input"), (weight, "weight"), (mean, "mean"),
                 (invstd, "invstd")], op)


def _is_torch_generator(g):
    """Whether g is a torch.Generator (not imported here: the course rule), not numpy's or another library's."""
    kind = type(g)
    return kind.__name__ == "Generator" and kind.__module__.split(".")[0] == "torch"


def check_dropout(input, p, generator, op):
    check_float(input, op, "input")
    if not 0 <= p <= 1:
        raise ValueError(f"{op}: expected p between 0 and 1, got {p}")
    if generator is not None and not _is_torch_generator(generator):
        raise TypeError(f"{op}: expected generator to be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != input.device.type:
        raise RuntimeError(f"{op}: expected a generator on {input.device.type} like input, got one on {generator.device}")


def check_dropout_backward(grad_output, mask, op):
    check_float(mask, op, "mask")
    check_like(grad_output, mask, op, "grad_output", "mask")
    check_shape(grad_output, mask.shape, op, "grad_output")
