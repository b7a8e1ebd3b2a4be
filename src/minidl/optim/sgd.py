"""SGD with momentum and weight decay, step for step the same as torch.optim.SGD."""
from torch import empty

from .. import backend as _backend
from .pairs import checked_numbers, checked_pairs


class SGD:
    """p -= lr * v, where v = momentum * v + (g + weight_decay * p), v starting at zero (v = d without momentum)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = checked_pairs(params, "SGD")
        checked_numbers("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if not lr > 0:
            raise ValueError(f"SGD: expected lr > 0, got {lr!r}")
        if not momentum >= 0:
            raise ValueError(f"SGD: expected momentum >= 0, got {momentum!r}")
        if not weight_decay >= 0:
            raise ValueError(f"SGD: expected weight_decay >= 0, got {weight_decay!r}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self._tensors = [p for p, _ in self.params]
        self._grads = [g for _, g in self.params]
        self.buffers = []  # momentum buffers, made at the first step (after any Module.to)

    def step(self, zero_grad=False):
        """Update every parameter from its gradient, in one kernel call; zero_grad=True also sets the
        gradients to zero in the same pass (the same as calling zero_grad() after, minus one pass over memory)."""
        lr, momentum, weight_decay = self.lr, self.momentum, self.weight_decay
        if not type(lr) is type(momentum) is type(weight_decay) is float:  # set to something else since __init__
            lr, momentum, weight_decay = checked_numbers("SGD.step", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if not self._tensors:
            return
        if momentum and not self.buffers:
            self.buffers = [empty(p.shape, dtype=p.dtype, device=p.device).zero_() for p in self._tensors]
        try:
            _backend.ops.sgd_step_(self._tensors, self._grads, self.buffers, lr, momentum, weight_decay,
                                   bool(zero_grad))
        except (RuntimeError, ValueError, TypeError) as e:
            raise type(e)(f"SGD.step: {e}") from None

    def zero_grad(self):
        """Set every gradient to zero."""
        _backend.ops.zero_(self._grads)
