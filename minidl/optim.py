"""SGD with momentum and weight decay, step for step the same as torch.optim.SGD."""
from . import nn as _nn


class SGD:
    """p -= lr * v, where v = momentum * v + (g + weight_decay * p) (v = g + weight_decay * p at the first step)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        if isinstance(params, _nn.Module):
            params = params.param()
        self.params = list(params)
        for i, pair in enumerate(self.params):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"SGD: expected (parameter, gradient) pairs as returned by Module.param(), "
                                f"got {type(pair).__name__} at position {i}")
            p, g = pair
            if p.shape != g.shape:
                raise ValueError(f"SGD: parameter {i} has shape {list(p.shape)} but its gradient has "
                                 f"shape {list(g.shape)}")
        if not lr > 0:
            raise ValueError(f"SGD: expected lr > 0, got {lr!r}")
        if not momentum >= 0:
            raise ValueError(f"SGD: expected momentum >= 0, got {momentum!r}")
        if not weight_decay >= 0:
            raise ValueError(f"SGD: expected weight_decay >= 0, got {weight_decay!r}")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers = [None] * len(self.params)

    def step(self):
        """Update every parameter from its gradient."""
        for i, (p, g) in enumerate(self.params):
            d = g.add(p, alpha=self.weight_decay) if self.weight_decay else g
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = d.clone()
                else:
                    self.buffers[i].mul_(self.momentum).add_(d)
                d = self.buffers[i]
            p.add_(d, alpha=-self.lr)

    def zero_grad(self):
        """Set every gradient to zero."""
        for _, g in self.params:
            g.zero_()
