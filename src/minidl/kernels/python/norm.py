"""BatchNorm's kernels in pure Python: statistics in float64 like the C++ kernels, outputs in the input's
memory format (channels-last stays channels-last)."""
from torch import empty

from ..checks import check_not_recorded
from ..checks.layer import check_batch_norm_backward, check_batch_norm_forward, is_channels_last
from .scratch import scratch_like

_DOUBLE = empty(0).double().dtype  # torch.float64, within the course rule


def _in_layout(t):
    """t contiguous in the order the C++ kernels walk it: channels-last for a channels-last 4-D tensor, else NCHW."""
    if is_channels_last(t):
        return t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    return t.contiguous()


def _reduced(input):
    """The dimensions reduced per channel, the shape that broadcasts [C] over input, and the count per channel."""
    dims = [0] + list(range(2, input.dim()))
    count = 1
    for d in dims:
        count *= input.shape[d]
    return dims, [1, input.shape[1]] + [1] * (input.dim() - 2), count


def _inverse_std(var, eps):
    """1 / sqrt(var + eps), 0 where both are 0: torch's rule for batch statistics, here for running ones too."""
    invstd = var.add(eps).rsqrt()
    return invstd.masked_fill_(var.eq(0), 0) if eps == 0 else invstd


def batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum, eps):
    """(output, mean, invstd); training: batch statistics, the running ones updated (unbiased variance)."""
    op = "minidl.batch_norm_forward"
    check_not_recorded(op, locals())
    check_batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum, eps, op)
    x = _in_layout(input)
    dims, shape, count = _reduced(x)
    if training:
        x64 = scratch_like("norm float64", x, _DOUBLE).copy_(x)  # a copy even from float64: changed in place
        mean = x64.mean(dims)
        var_sum = x64.sub_(mean.view(shape)).square_().sum(dims)  # in place: one float64 copy of x in all
        invstd = _inverse_std(var_sum.div(count), eps)
        running_mean.copy_(mean.mul(momentum).add_(running_mean.double().mul(1 - momentum)))
        running_var.copy_(var_sum.div(count - 1).mul_(momentum).add_(running_var.double().mul(1 - momentum)))
    else:
        # a copy even from float64: mean is the caller's to keep while running_mean changes
        mean, invstd = running_mean.to(_DOUBLE, copy=True), _inverse_std(running_var.double(), eps)
    scale = invstd.mul(weight.double())
    alpha, beta = scale.to(x.dtype), bias.double().sub(mean.mul(scale)).to(x.dtype)
    output = x.mul(alpha.view(shape)).add_(beta.view(shape))
    return output, mean.to(x.dtype), invstd.to(x.dtype)


def batch_norm_backward(grad_output, input, weight, mean, invstd, grad_weight, grad_bias, training):
    """grad_input; adds the weight and bias gradients into grad_weight and grad_bias."""
    op = "minidl.batch_norm_backward"
    check_not_recorded(op, locals())
    check_batch_norm_backward(grad_output, input, weight, mean, invstd, grad_weight, grad_bias, op)
    x = _in_layout(input)
    g = grad_output.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) if is_channels_last(input) else \
        grad_output.contiguous()
    dims, shape, count = _reduced(x)
    invstd64 = invstd.double()
    gsum = g.sum(dims, dtype=invstd64.dtype)  # summed in float64 without a float64 copy of g
    dot = scratch_like("norm float64", x, _DOUBLE).copy_(x).sub_(mean.double().view(shape)).mul_(g).sum(dims)
    grad_weight.add_(dot.mul(invstd64).to(x.dtype))
    grad_bias.add_(gsum.to(x.dtype))
    scale = invstd64.mul(weight.double()).to(x.dtype).view(shape)
    if not training:
        return g.mul(scale)
    grad_mean = gsum.div(count).to(x.dtype).view(shape)
    k = dot.mul(invstd64).mul_(invstd64).div_(count).to(x.dtype).view(shape)
    return g.sub(grad_mean).sub_(x.sub(mean.view(shape)).mul_(k)).mul_(scale)
