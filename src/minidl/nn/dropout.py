"""Dropout: in training, zero each element with probability p and scale the others by 1 / (1 - p)."""
from .. import backend as _backend
from .module import CHECKED, Module, check_tensor, kernel_error


class Dropout(Module):
    """Identity in evaluation (and for p = 0). In training the mask is drawn from `generator` (a
    torch.Generator; None: torch's default one), as torch.nn.functional.dropout draws it on the CPU."""

    generator = None

    def __init__(self, p=0.5):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"Dropout: expected p, the probability of an element to be zeroed, between 0 and 1, "
                             f"got {p!r}")
        self.p = p

    def forward_ctx(self, ctx, input):
        if not self.training or self.p == 0:
            check_tensor(self, "forward", input)
            ctx.mask = None
            return input
        try:
            output, ctx.mask = _backend.ops.dropout_forward(input, float(self.p), self.generator)
        except CHECKED as e:
            raise kernel_error(self, "forward", e) from None
        return output

    def backward_ctx(self, ctx, grad_output):
        if ctx.mask is None:
            check_tensor(self, "backward", grad_output, "grad_output")
            return grad_output
        try:
            return _backend.ops.dropout_backward(grad_output, ctx.mask)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None

    def __repr__(self):
        return f"Dropout(p={self.p})"
