"""The convnet block after a convolution, MaxPool2d -> BatchNorm2d -> ReLU, run as one kernel call each way
(pool_norm_relu_forward/_backward); Sequential decides, from its modules, where it runs (fused_blocks)."""
import math

from .. import backend as _backend
from ..kernels.checks.block import MAX_WINDOW
from .activation import ReLU
from .module import CHECKED, Module, kernel_error
from .norm import BatchNorm2d
from .pool import MaxPool2d

BLOCK = (MaxPool2d, BatchNorm2d, ReLU)  # the module types of a fused run, in order


def fused_blocks(modules):
    """The start positions of non-overlapping (MaxPool2d, BatchNorm2d, ReLU) runs in modules, first to last;
    a larger pooling window than the fused kernels take runs module by module."""
    starts, i = [], 0
    while i + len(BLOCK) <= len(modules):
        run = modules[i:i + len(BLOCK)]
        if all(type(m) is kind for m, kind in zip(run, BLOCK)) and math.prod(run[0].window[0]) <= MAX_WINDOW:
            starts.append(i)
            i += len(BLOCK)
        else:
            i += 1
    return tuple(starts)


class PoolNormReLU(Module):
    """Three existing modules run as one fused op each way, with the arithmetic and state updates of running them
    one by one: the BatchNorm2d's training flag, momentum, running buffers, num_batches_tracked and gradients."""

    def __init__(self, pool, norm, relu):
        self.pool, self.norm, self.relu = pool, norm, relu

    def forward_ctx(self, ctx, input):
        norm = self.norm
        kernel_size, stride = self.pool.window
        training, momentum = norm.batch_settings()
        weight = norm.weight
        try:
            output, pooled, argmax, mean, invstd = _backend.ops.pool_norm_relu_forward(
                input, kernel_size, stride, weight, norm.bias, norm.running_mean, norm.running_var, training, momentum,
                norm.eps)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        norm.batch_done(training)
        ctx.saved = (input, output, pooled, argmax, kernel_size, stride, weight, mean, invstd, training)
        return output

    def backward_ctx(self, ctx, grad_output):
        input, output, pooled, argmax, kernel_size, stride, weight, mean, invstd, training = ctx.saved
        try:
            return _backend.ops.pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride,
                                                        weight, mean, invstd, self.norm.grad_weight,
                                                        self.norm.grad_bias, training)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None

    def named_children(self):
        return [("0", self.pool), ("1", self.norm), ("2", self.relu)]

    def __repr__(self):
        return f"PoolNormReLU({self.pool!r}, {self.norm!r}, {self.relu!r})"
