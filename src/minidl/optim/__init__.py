"""Optimizers over the (parameter, gradient) pairs of Module.param()."""
from .sgd import SGD

__all__ = ["SGD"]
