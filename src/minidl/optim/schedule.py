"""Learning-rate schedules over an optimizer's `lr` (SGD's or Adam's)."""
import math
import numbers


class CosineAnnealingLR:
    """lr from its value at construction (base_lr) down to eta_min along half a cosine over T_max epochs, and back up
    over the next T_max; step() after each epoch. The same values as torch.optim.lr_scheduler.CosineAnnealingLR:
    its recursive form, lr_t = eta_min + (lr_{t-1} - eta_min) (1 + cos(pi t / T_max)) / (1 + cos(pi (t-1) / T_max))."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        lr = getattr(optimizer, "lr", None)
        if not isinstance(lr, numbers.Real) or isinstance(lr, bool):
            raise TypeError(f"CosineAnnealingLR: expected an optimizer with a number `lr` (minidl.SGD, minidl.Adam), "
                            f"got {type(optimizer).__name__}")
        if not isinstance(T_max, numbers.Integral) or isinstance(T_max, bool) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: expected T_max to be an integer >= 1, got {T_max!r}")
        if not isinstance(eta_min, numbers.Real) or isinstance(eta_min, bool) or not eta_min >= 0:
            raise ValueError(f"CosineAnnealingLR: expected eta_min to be a number >= 0, got {eta_min!r}")
        self.optimizer, self.T_max, self.eta_min = optimizer, int(T_max), float(eta_min)
        self.base_lr = float(lr)
        self.last_epoch = 0
        self._last_lr = [self.base_lr]

    def step(self):
        """Move to the next epoch and set the optimizer's lr for it."""
        self.last_epoch += 1
        t, t_max, eta_min, lr = self.last_epoch, self.T_max, self.eta_min, self.optimizer.lr
        if (t - 1 - t_max) % (2 * t_max) == 0:  # leaving the minimum, where the ratio below would be 0 / 0
            lr = lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        else:
            lr = ((1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max)) * (lr - eta_min)
                  + eta_min)
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def get_last_lr(self):
        """[the lr of the current epoch] (a list, as torch's schedulers return one per parameter group)."""
        return list(self._last_lr)
