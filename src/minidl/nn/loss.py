"""LossMSE: the mean squared error, as torch.nn.MSELoss()."""
import math

from .. import backend as _backend
from .module import CHECKED, Module, kernel_error


class LossMSE(Module):
    """Mean of (output - target)^2 over all elements, as torch.nn.MSELoss(); backward() needs no argument.

    With check_finite (the default) a loss that turns NaN or infinite raises FloatingPointError naming
    the step (the count of forward calls), instead of letting training go on with garbage.
    """

    def __init__(self, check_finite=True):
        self.check_finite = check_finite
        self.steps = 0

    def forward_ctx(self, ctx, output, target):
        try:
            loss, ctx.grad = _backend.ops.mse_forward(output, target)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        self.steps += 1
        if self.check_finite and not math.isfinite(loss.item()):
            raise FloatingPointError(f"LossMSE: the loss became {loss.item()} at step {self.steps}; "
                                     f"lower the learning rate, or pass LossMSE(check_finite=False) to go on")
        return loss

    def backward_ctx(self, ctx, *gradwrtoutput):
        """d loss / d output, computed with the loss; times the upstream gradient of the loss if one is given."""
        grad = ctx.grad
        for g in gradwrtoutput:
            grad = grad.mul(g)
        return grad
