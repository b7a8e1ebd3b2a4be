"""The Module layer: each module's forward and backward, written against a per-call context."""
from .activation import Activation, ReLU, Tanh
from .container import Sequential, fused_layers
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .loss import CrossEntropyLoss, LossMSE
from .module import Context, Module
from .norm import BatchNorm1d, BatchNorm2d
from .pool import MaxPool2d
from .shape import Flatten
from .softmax import PairOuter, Softmax

__all__ = ["Module", "Context", "Linear", "Conv2d", "MaxPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten",
           "Activation", "ReLU", "Tanh", "Softmax", "PairOuter", "Sequential", "fused_layers", "LossMSE",
           "CrossEntropyLoss"]
