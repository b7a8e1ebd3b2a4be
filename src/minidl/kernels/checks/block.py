"""Checks of the pool -> batch norm -> ReLU block ops: the twin of csrc/block_checks.h, same messages."""
from . import check_like, check_shape
from .layer import (_check_per_channel, check_batch_norm_settings, check_maxpool2d, check_positions,
                    check_running_stats_written)
from .memory import check_apart, check_written


MAX_WINDOW = 256  # the largest pooling window: argmax keeps each maximum's position in a byte


def check_pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var, training,
                                 momentum, eps, op):
    """The pooled shape [N, C, OH, OW]."""
    shape = check_maxpool2d(input, kernel_size, stride, op)
    if kernel_size[0] * kernel_size[1] > MAX_WINDOW:
        raise ValueError(f"{op}: expected a window of at most 256 elements (argmax is uint8), got kernel_size "
                         f"{list(kernel_size)}")
    check_batch_norm_settings(input, weight, bias, running_mean, running_var, momentum, eps, op)
    if training and shape[0] * shape[2] * shape[3] <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got pooled shape {shape} "
                         f"from input of shape {list(input.shape)}")
    check_running_stats_written(input, weight, bias, running_mean, running_var, training, op)
    return shape


def check_pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean,
                                  invstd, grad_weight, grad_bias, op):
    shape = check_maxpool2d(input, kernel_size, stride, op)
    for t, name in ((grad_output, "grad_output"), (output, "output"), (pooled, "pooled")):
        check_like(t, input, op, name, "input")
        check_shape(t, shape, op, name)
    check_positions(argmax, input, shape, "torch.uint8", op, "argmax")
    for t, name in ((weight, "weight"), (mean, "mean"), (invstd, "invstd"), (grad_weight, "grad_weight"),
                    (grad_bias, "grad_bias")):
        _check_per_channel(t, input, op, name)
    check_written(grad_weight, op, "grad_weight")
    check_written(grad_bias, op, "grad_bias")
    check_apart([(grad_weight, "grad_weight"), (grad_bias, "grad_bias")],
                [(grad_output, "grad_output"), (input, "input"), (output, "output"), (pooled, "pooled"),
                 (argmax, "argmax"), (weight, "weight"), (mean, "mean"), (invstd, "invstd")], op)
