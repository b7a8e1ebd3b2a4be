"""The pool -> batch norm -> ReLU block's kernels in pure Python: the max-pool and batch-norm fallbacks composed,
with argmax (each window's maximum as its position i * kw + j, uint8) in place of plane indices."""
from ..checks import check_not_recorded
from ..checks.block import check_pool_norm_relu_backward, check_pool_norm_relu_forward
from ..checks.layer import is_channels_last
from .norm import batch_norm_backward, batch_norm_forward
from .pool import _LONG, _UINT8, _empty_like_format, maxpool2d_backward, pool_taps, tap_offsets, window_starts
from .scratch import scratch_like
from .select import INTEGER_OF, dropped_where


def pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var, training, momentum,
                           eps):
    """(output, pooled, argmax, mean, invstd): max-pool, batch norm of the pooled tensor, ReLU."""
    op = "minidl.pool_norm_relu_forward"
    check_not_recorded(op, locals())
    check_pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var, training,
                                 momentum, eps, op)
    pooled, argmax = pool_taps(input, kernel_size, stride, _UINT8)
    z, mean, invstd = batch_norm_forward(pooled, weight, bias, running_mean, running_var, training, momentum, eps)
    return z.clamp_(min=0), pooled, argmax, mean, invstd


def pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean, invstd,
                            grad_weight, grad_bias, training):
    """grad_input: ReLU's and batch norm's backward on the pooled grid, then each window's gradient at its argmax."""
    op = "minidl.pool_norm_relu_backward"
    check_not_recorded(op, locals())
    check_pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean,
                                  invstd, grad_weight, grad_bias, op)
    (kh, kw), (sh, sw) = kernel_size, stride
    # amax: ~10x faster than max() on uint8 (torch 2.13, CPU); the meta device has no values to check
    if argmax.numel() and not argmax.is_meta and int(argmax.amax()) >= kh * kw:
        raise IndexError(f"{op}: expected argmax in [0, {kh * kw}) for kernel_size {list(kernel_size)}, got "
                         f"{int(argmax.amax())}")
    drop = scratch_like("relu mask", output).copy_(output).le_(0)
    gz = dropped_where(grad_output, drop)  # a NaN output keeps its gradient, as in torch
    gp = batch_norm_backward(gz, pooled, weight, mean, invstd, grad_weight, grad_bias, training)
    if (sh, sw) != (kh, kw):  # windows that overlap or leave gaps: scatter, adding in window order
        indices = tap_offsets(input, kernel_size).take(argmax.to(_LONG))
        indices.add_(window_starts(input, list(argmax.shape), stride))
        return maxpool2d_backward(gp, input, indices, kernel_size, stride)
    # Windows that tile the input: each element is one window's tap t, written whole (gp where argmax == t, else 0).
    h, w = input.shape[2:]
    oh, ow = argmax.shape[2:]
    grad_input = _empty_like_format(list(input.shape), input, gp.dtype, is_channels_last(input))
    if oh * kh < h or ow * kw < w:
        grad_input.zero_()  # the rows and columns no window covers
    integer = INTEGER_OF[gp.dtype]  # all ones keeps gp's bits, zero clears them
    taps, gp_bits = scratch_like("argmax taps", argmax, integer).copy_(argmax), gp.view(integer)
    bits = scratch_like("tap bits", taps)
    for i in range(kh):
        for j in range(kw):  # in place in integers: a comparison into a new bool tensor is several times slower
            bits.copy_(taps).eq_(i * kw + j).neg_().bitwise_and_(gp_bits)
            grad_input[:, :, i:oh * kh:kh, j:ow * kw:kw].copy_(bits.view(gp.dtype))
    return grad_input
