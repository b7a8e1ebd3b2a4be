"""Adam, step for step the same as torch.optim.Adam (not amsgrad; weight decay added to the gradient)."""
from torch import empty

from .. import backend as _backend
from .pairs import checked_numbers, checked_pairs


def _checked_hyperparameters(owner, lr, betas, eps, weight_decay):
    """(lr, beta1, beta2, eps, weight_decay) as floats, each checked to be a number; errors name `owner`."""
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise TypeError(f"{owner}: expected betas to be a pair of numbers, got {betas!r}")
    return checked_numbers(owner, lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)


class Adam:
    """m = lerp(m, g, 1 - beta1), v = beta2 v + (1 - beta2) g^2 (g including weight_decay * p), both starting at
    zero; p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps) at step t."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = checked_pairs(params, "Adam")
        _checked_hyperparameters("Adam", lr, betas, eps, weight_decay)
        if not lr > 0:
            raise ValueError(f"Adam: expected lr > 0, got {lr!r}")
        for i, beta in enumerate(betas):
            if not 0 <= beta < 1:
                raise ValueError(f"Adam: expected betas[{i}] in [0, 1), got {beta!r}")
        if not eps >= 0:
            raise ValueError(f"Adam: expected eps >= 0, got {eps!r}")
        if not weight_decay >= 0:
            raise ValueError(f"Adam: expected weight_decay >= 0, got {weight_decay!r}")
        self.lr, self.betas = float(lr), (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self._tensors = [p for p, _ in self.params]
        self._grads = [g for _, g in self.params]
        self.steps = 0  # steps taken: torch.optim.Adam's state "step"
        self.exp_avgs, self.exp_avg_sqs = [], []  # made at the first step (after any Module.to)

    def step(self, zero_grad=False):
        """Update every parameter from its gradient, in one kernel call; zero_grad=True also sets the
        gradients to zero in the same pass (the same as calling zero_grad() after, minus one pass over memory)."""
        lr, betas, eps, weight_decay = self.lr, self.betas, self.eps, self.weight_decay
        floats = type(betas) is tuple and len(betas) == 2 and type(betas[0]) is type(betas[1]) is float
        if floats and type(lr) is type(eps) is type(weight_decay) is float:  # their values: the kernel checks them
            beta1, beta2 = betas
        else:  # set to something else since __init__
            lr, beta1, beta2, eps, weight_decay = _checked_hyperparameters("Adam.step", lr, betas, eps, weight_decay)
        if not self._tensors:
            return
        if not self.exp_avgs:
            self.exp_avgs = [empty(p.shape, dtype=p.dtype, device=p.device).zero_() for p in self._tensors]
            self.exp_avg_sqs = [empty(p.shape, dtype=p.dtype, device=p.device).zero_() for p in self._tensors]
        try:
            _backend.ops.adam_step_(self._tensors, self._grads, self.exp_avgs, self.exp_avg_sqs, self.steps + 1,
                                    lr, beta1, beta2, eps, weight_decay, bool(zero_grad))
        except (RuntimeError, ValueError, TypeError) as e:
            raise type(e)(f"Adam.step: {e}") from None
        self.steps += 1

    def zero_grad(self):
        """Set every gradient to zero."""
        _backend.ops.zero_(self._grads)
