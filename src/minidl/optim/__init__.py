"""Optimizers over the (parameter, gradient) pairs of Module.param(), and learning-rate schedules."""
from .adam import Adam
from .schedule import CosineAnnealingLR
from .sgd import SGD

__all__ = ["SGD", "Adam", "CosineAnnealingLR"]
