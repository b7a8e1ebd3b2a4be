"""BatchNorm1d and BatchNorm2d: per-channel normalisation with batch statistics in training (which also
update running ones) and the running statistics in evaluation, then a per-channel scale and shift."""
import numbers

from torch import empty

from .. import backend as _backend
from .module import CHECKED, Module, check_dtype, check_sizes, kernel_error, new_param


class _BatchNorm(Module):
    """The common part: weight (ones) and bias (zeros) parameters, running_mean, running_var and
    num_batches_tracked buffers, as torch.nn's; momentum=None averages over every batch seen."""

    buffer_names = ("running_mean", "running_var", "num_batches_tracked")
    input_dims = ()  # the numbers of dimensions an input may have
    expected = ""  # how the error for another number says it

    def __init__(self, num_features, eps=1e-5, momentum=0.1, device=None, dtype=None):
        name = type(self).__name__
        check_sizes(name, num_features=num_features)
        check_dtype(name, dtype)
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)):
            raise TypeError(f"{name}: expected momentum to be a number or None, got {momentum!r}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
            raise TypeError(f"{name}: expected eps to be a number, got {eps!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight, self.grad_weight = new_param(name, num_features, device, dtype)
        self.weight.fill_(1)
        self.bias, self.grad_bias = new_param(name, num_features, device, dtype)
        self.bias.zero_()
        self.running_mean = empty(num_features, device=device, dtype=dtype).zero_()
        self.running_var = empty(num_features, device=device, dtype=dtype).fill_(1)
        self.num_batches_tracked = empty((), device=device).long().zero_()

    def forward_ctx(self, ctx, input):
        if getattr(input, "dim", None) is not None and input.dim() not in self.input_dims:
            raise ValueError(f"{self!r}.forward: expected {self.expected} input, got shape {list(input.shape)}")
        training, momentum = self.batch_settings()
        weight = self.weight
        try:
            output, mean, invstd = _backend.ops.batch_norm_forward(
                input, weight, self.bias, self.running_mean, self.running_var, training, momentum, self.eps)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        self.batch_done(training)
        ctx.input, ctx.weight, ctx.mean, ctx.invstd, ctx.training = input, weight, mean, invstd, training
        return output

    def batch_settings(self):
        """(training, momentum) for the next forward's kernel; momentum=None: a cumulative average, as torch.nn's."""
        training, momentum = self.training, self.momentum
        if momentum is None:  # unused in evaluation, where the running statistics stay as they are
            momentum = 1.0 / (int(self.num_batches_tracked) + 1) if training else 0.0
        return training, momentum

    def batch_done(self, training):
        """After a forward's kernel ran: count a training batch in num_batches_tracked."""
        if training:
            self.num_batches_tracked.add_(1)

    def backward_ctx(self, ctx, grad_output):
        try:
            return _backend.ops.batch_norm_backward(grad_output, ctx.input, ctx.weight, ctx.mean, ctx.invstd,
                                                    self.grad_weight, self.grad_bias, ctx.training)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None

    def param(self):
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]

    def named_param(self):
        return [("weight", self.weight, self.grad_weight), ("bias", self.bias, self.grad_bias)]

    def __repr__(self):
        return f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum})"


class BatchNorm1d(_BatchNorm):
    """Batch norm over [N, C] or [N, C, L] inputs: statistics per channel C."""

    input_dims, expected = (2, 3), "2D or 3D"


class BatchNorm2d(_BatchNorm):
    """Batch norm over [N, C, H, W] inputs (NCHW or channels-last): statistics per channel C."""

    input_dims, expected = (4,), "4D"
