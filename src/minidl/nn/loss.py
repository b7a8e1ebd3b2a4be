"""The losses: LossMSE (torch.nn.MSELoss()) and CrossEntropyLoss (torch.nn.CrossEntropyLoss()), whose kernels
return the loss and its gradient together."""
import math
import numbers

from .. import backend as _backend
from .module import _TENSOR, CHECKED, Module, kernel_error


def _scaled(module, grad, gradwrtoutput):
    """d loss / d output times the upstream gradient of the loss (one real value, as the loss), if one is given."""
    for g in gradwrtoutput:
        if isinstance(g, _TENSOR):
            if g.numel() != 1 or g.is_complex() or str(g.dtype) == "torch.bool":
                raise ValueError(_not_one_value(module, f"shape {list(g.shape)}, {g.dtype}"))
            g = g.reshape(())  # 0-d: the gradient keeps its dtype and device, as autograd casts one
        elif isinstance(g, numbers.Real) and not isinstance(g, bool):
            g = float(g)
        else:
            raise TypeError(_not_one_value(module, type(g).__name__))
        grad = grad.mul(g)
    return grad


def _not_one_value(module, got):
    return f"{module!r}.backward: expected the loss's gradient to be one real value (the loss is a scalar), got {got}"


class FusedLoss(Module):
    """A loss whose kernel `_op` returns (loss, d loss / d output); backward() needs no argument.

    With check_finite (the default) a loss that turns NaN or infinite raises FloatingPointError naming
    the step (the count of forward calls), instead of letting training go on with garbage.
    """

    _op = None

    def __init__(self, check_finite=True):
        self.check_finite = check_finite
        self.steps = 0

    def forward(self, output, target):
        """The loss of output against target; its gradient waits for backward()."""
        self._ctx = None
        loss, grad = self._loss(output, target)
        self._ctx = grad  # a direct call's context is the gradient alone: no Context to make on every step
        return loss

    def backward(self, *gradwrtoutput):
        """d loss / d output of the latest forward; times the upstream gradient of the loss if one is given."""
        grad = self.take_ctx()
        return _scaled(self, grad, gradwrtoutput) if gradwrtoutput else grad

    def forward_ctx(self, ctx, output, target):
        loss, ctx.grad = self._loss(output, target)
        return loss

    def backward_ctx(self, ctx, *gradwrtoutput):
        """d loss / d output, computed with the loss; times the upstream gradient of the loss if one is given."""
        return _scaled(self, ctx.grad, gradwrtoutput)

    def _loss(self, output, target):
        """(loss, d loss / d output) from the kernel; counts the step and checks the loss is finite."""
        try:
            loss, grad = getattr(_backend.ops, self._op)(output, target)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        self.steps += 1
        if self.check_finite and not loss.is_meta and not math.isfinite(loss.item()):  # meta: no value
            name = type(self).__name__
            if output.numel() == 0:  # no value to average: torch.nn's nan
                raise ValueError(f"{name}: the batch is empty (output of shape {list(output.shape)}), its mean loss is "
                                 f"nan; pass {name}(check_finite=False) to get that nan")
            raise FloatingPointError(f"{name}: the loss became {loss.item()} at step {self.steps}; "
                                     f"lower the learning rate, or pass {name}(check_finite=False) to go on")
        return loss, grad


class LossMSE(FusedLoss):
    """Mean of (output - target)^2 over all elements, as torch.nn.MSELoss(); check_finite as in FusedLoss."""

    _op = "mse_forward"


class CrossEntropyLoss(FusedLoss):
    """Mean over the batch of -log softmax(logits)[target], as torch.nn.CrossEntropyLoss(): logits [N, C], target [N]
    of int64 class indices; backward() needs no argument. The log-softmax is computed with its maximum subtracted,
    so large logits do not overflow. check_finite as in FusedLoss."""

    _op = "cross_entropy_forward"
