"""Flatten: dimensions start_dim..end_dim merged into one (a view where the memory allows, as torch's)."""
from .module import Module, check_tensor, kernel_error

_SHAPE_ERRORS = (RuntimeError, IndexError, TypeError)  # what flatten and reshape raise on bad input


class Flatten(Module):
    """input.flatten(start_dim, end_dim); backward gives the gradient the input's shape back."""

    def __init__(self, start_dim=1, end_dim=-1):
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Flatten: expected {name} to be an int, got {value!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward_ctx(self, ctx, input):
        check_tensor(self, "forward", input)
        try:
            output = input.flatten(self.start_dim, self.end_dim)
        except _SHAPE_ERRORS as e:
            raise kernel_error(self, "forward", e) from None
        ctx.shape = input.shape
        return output

    def backward_ctx(self, ctx, grad_output):
        check_tensor(self, "backward", grad_output, "grad_output")
        try:
            return grad_output.reshape(ctx.shape)
        except _SHAPE_ERRORS as e:
            raise kernel_error(self, "backward", e) from None

    def __repr__(self):
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"
