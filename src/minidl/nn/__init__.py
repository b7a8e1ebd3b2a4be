"""The Module layer: each module's forward and backward, written against a per-call context."""
from .activation import Activation, ReLU, Tanh
from .container import Sequential, fused_layers
from .conv import Conv2d
from .linear import Linear
from .loss import LossMSE
from .module import Context, Module

__all__ = ["Module", "Context", "Linear", "Conv2d", "Activation", "ReLU", "Tanh", "Sequential", "fused_layers", "LossMSE"]
