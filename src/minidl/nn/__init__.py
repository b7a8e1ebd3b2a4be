"""The Module layer: each module's forward and backward, written against a per-call context."""
from .activation import Activation, ReLU, Tanh
from .container import Sequential, fused_layers
from .linear import Linear
from .loss import CrossEntropyLoss, LossMSE
from .module import Context, Module
from .softmax import PairOuter, Softmax

__all__ = ["Module", "Context", "Linear", "Activation", "ReLU", "Tanh", "Sequential", "fused_layers", "LossMSE",
           "CrossEntropyLoss", "Softmax", "PairOuter"]
