"""The pool -> batch norm -> ReLU block's kernels in pure Python: the max-pool and batch-norm fallbacks composed,
with argmax (each window's maximum as its position i * kw + j, uint8) converted from and to plane indices."""
from torch import empty

from ..checks import check_not_recorded
from ..checks.block import check_pool_norm_relu_backward, check_pool_norm_relu_forward
from ..checks.layer import is_channels_last
from .norm import batch_norm_backward, batch_norm_forward
from .pool import _LONG, _empty_like_format, _steps, maxpool2d_backward, maxpool2d_forward

_UINT8 = empty(0).byte().dtype  # torch.uint8, within the course rule


def _window_starts(input, shape, stride):
    """Each window's first plane index h * W + w, [OH, OW]."""
    width = input.shape[3]
    return _steps(shape[2], stride[0] * width, input.device)[:, None] + _steps(shape[3], stride[1], input.device)[None, :]


def pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var, training, momentum,
                           eps):
    """(output, pooled, argmax, mean, invstd): max-pool, batch norm of the pooled tensor, ReLU."""
    op = "minidl.pool_norm_relu_forward"
    check_not_recorded(op, locals())
    shape = check_pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var, training,
                                         momentum, eps, op)
    pooled, indices = maxpool2d_forward(input, kernel_size, stride)
    z, mean, invstd = batch_norm_forward(pooled, weight, bias, running_mean, running_var, training, momentum, eps)
    offset = indices.sub(_window_starts(input, shape, stride))
    width = input.shape[3]
    position = offset.div(width, rounding_mode="floor").mul_(kernel_size[1]).add_(offset.remainder(width))
    argmax = _empty_like_format(shape, input, _UINT8, is_channels_last(input)).copy_(position)
    return z.clamp_(min=0), pooled, argmax, mean, invstd


def pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean, invstd,
                            grad_weight, grad_bias, training):
    """grad_input: ReLU's and batch norm's backward on the pooled grid, then each window's gradient at its argmax."""
    op = "minidl.pool_norm_relu_backward"
    check_not_recorded(op, locals())
    check_pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean,
                                  invstd, grad_weight, grad_bias, op)
    window = kernel_size[0] * kernel_size[1]
    gz = grad_output.masked_fill(output.le(0), 0)
    gp = batch_norm_backward(gz, pooled, weight, mean, invstd, grad_weight, grad_bias, training)
    if argmax.numel() and int(argmax.max()) >= window:
        raise IndexError(f"{op}: expected argmax in [0, {window}) for kernel_size {list(kernel_size)}, got "
                         f"{int(argmax.max())}")
    a = argmax.to(_LONG)
    width = input.shape[3]
    indices = a.div(kernel_size[1], rounding_mode="floor").mul_(width).add_(a.remainder(kernel_size[1]))
    indices.add_(_window_starts(input, list(argmax.shape), stride))
    return maxpool2d_backward(gp, input, indices, kernel_size, stride)
