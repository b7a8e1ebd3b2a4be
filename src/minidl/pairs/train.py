"""Train one model on one draw of pairs and record its error curves."""

import contextlib
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .trainers import trainer_for


FRAMEWORKS = ("minidl", "torch")


@dataclass
class TrainConfig:
    """Options of one training run (the test set is only ever measured, never used to choose)."""

    epochs: int = 25
    batch_size: int = 100
    lr: float = 5e-3  # with the cosine schedule; chosen on validation pairs from the train split
    optimizer: str = "adam"  # or "sgd" (with momentum 0.9)
    cosine: bool = True  # anneal the learning rate to zero along a cosine over the epochs
    aux_weight: float = 1.0  # weight of the digit cross-entropy for models with digit logits
    normalize: bool = True  # standardise inputs by the training set's mean and std
    shift: int = 1  # random translation of each training digit by up to this many pixels
    swap: bool = True  # randomly swap the two digits of training pairs (needs the classes)
    curves: bool = True  # evaluate train and test error after every epoch
    device: str = "cpu"
    framework: str = "minidl"  # the models' modules and kernels: minidl's own, or torch.nn + autograd
    check_finite: bool = True  # stop with FloatingPointError once the loss is NaN or infinite

    def validate(self):
        """Raise ValueError (or RuntimeError for an unusable device) on a bad option."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig: {name} must be an int >= 1, got {value!r}")
        if not isinstance(self.shift, int) or not 0 <= self.shift <= 3:
            raise ValueError(f"TrainConfig: shift must be an int in 0..3, got {self.shift!r}")
        if not _is_number(self.lr) or not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"TrainConfig: lr must be a finite number > 0, got {self.lr!r}")
        if not _is_number(self.aux_weight) or not 0 <= self.aux_weight < math.inf:
            raise ValueError(f"TrainConfig: aux_weight must be a finite number >= 0, "
                             f"got {self.aux_weight!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: adam, sgd")
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {self.framework!r}; valid: {', '.join(FRAMEWORKS)}")
        check_device(self.device)


def _is_number(value):
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_device(name):
    """Raise ValueError for a device string torch cannot parse or that is not available here."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"TrainConfig: bad device {name!r} ({e})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only "
                             f"{torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise ValueError(f"TrainConfig: device {name!r} unsupported; use cpu or cuda")


def shift_digits(x, max_shift, generator):
    """Translate each digit independently by up to max_shift pixels, filling with zeros."""
    n, c, h, w = x.shape
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, c), generator=generator).to(x.device)
    if x.numel() == 0:
        return x.clone()
    padded = F.pad(x, (max_shift,) * 4).flatten()
    hp, wp = h + 2 * max_shift, w + 2 * max_shift
    # every h x w window of the flat padded pixels, one per start offset (overlapping views, no copy);
    # gathering whole windows by their starts is 2-3x faster than indexing the pixels one by one
    windows = padded.as_strided((padded.numel() - (h - 1) * wp - (w - 1), h, w), (1, wp, 1))
    starts = torch.arange(n * c, device=x.device).view(n, c) * (hp * wp) + dy * wp + dx
    return windows.index_select(0, starts.flatten()).view(n, c, h, w)


def swap_pairs(x, classes, generator):
    """Swap the two digits of a random half of the pairs; the target follows from the classes."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    n = len(x)
    rows = (torch.arange(2 * n, device=x.device).view(n, 2) ^ flip[:, None].long()).flatten()  # 2i+1, 2i if flipped
    x = x.reshape(2 * n, *x.shape[2:]).index_select(0, rows).view(x.shape)
    classes = classes.reshape(2 * n).index_select(0, rows).view(n, 2)
    return x, classes  # note (b <= a) is not (not a <= b) when a == b, hence recomputing


def check_losses(losses, epoch):
    """Raise FloatingPointError naming the first non-finite step loss (epoch and step from 1)."""
    bad = torch.nonzero(~torch.isfinite(losses)).flatten()
    if len(bad):
        step = int(bad[0])
        raise FloatingPointError(
            f"loss became {float(losses[step])} at epoch {epoch + 1}, step {step + 1}")


def augmented(train_x, train_y, train_c, mean, std, config, generator):
    """One epoch's (inputs, targets, classes): digits swapped and shifted, then normalised."""
    x, c = train_x, train_c  # augment raw pixels, where padding with zeros is background
    if config.swap:
        x, c = swap_pairs(x, c, generator)
    if config.shift:
        x = shift_digits(x, config.shift, generator)
    y = (c[:, 0] <= c[:, 1]).long() if config.swap else train_y
    return (x - mean) / std, y, c


@contextlib.contextmanager
def deterministic_cudnn():
    """cuDNN's deterministic convolutions, chosen by heuristics rather than timed: its default
    sums the weight gradients in an order that varies between runs and processes, so a run on CUDA
    would not reproduce from its seed (the CPU kernels do)."""
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


@deterministic_cudnn()
def train_model(model, data, config, seed=0, progress=None):
    """Train MODEL (a minidl Module or a torch.nn.Module, as config.framework says) on DATA
    (generate_pair_sets' 6-tuple); return a dict of figures and curves."""
    config.validate()
    device = torch.device(config.device)
    train_x, train_y, train_c, test_x, test_y, _ = (t.to(device) for t in data)
    mean, std = (train_x.mean(), train_x.std()) if config.normalize else (0.0, 1.0)
    train_eval, test_x = (train_x - mean) / std, (test_x - mean) / std
    trainer = trainer_for(model, config, device)
    generator = torch.Generator().manual_seed(seed)
    n = len(train_x)
    curves = {"train_loss_curve": [], "train_error_curve": [], "test_error_curve": []}
    devices = [device.index or 0] if device.type == "cuda" else []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=devices):  # dropout draws from the global RNG: seed a copy
        torch.manual_seed(seed)
        for epoch in range(config.epochs):
            x, y, c = augmented(train_x, train_y, train_c, mean, std, config, generator)
            order = torch.randperm(n, generator=generator).to(device)
            total, losses = trainer.epoch(x, y, c, order)
            if config.check_finite:
                check_losses(losses, epoch)
            curves["train_loss_curve"].append(float(total) / n)
            if config.curves:
                curves["train_error_curve"].append(trainer.errors(train_eval, train_y))
                curves["test_error_curve"].append(trainer.errors(test_x, test_y))
            if progress is not None:
                progress()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if config.curves:
        train_error, test_error = curves["train_error_curve"][-1], curves["test_error_curve"][-1]
    else:
        train_error, test_error = trainer.errors(train_eval, train_y), trainer.errors(test_x, test_y)
    return {"train_error": train_error, "test_error": test_error, "seconds": seconds, **curves}
