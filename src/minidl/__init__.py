"""minidl: a small, readable deep-learning framework without autograd, with C++/CUDA kernels.

    import torch, minidl as dl
    torch.set_grad_enabled(False)
    net = dl.Sequential(dl.Linear(2, 25), dl.ReLU(), dl.Linear(25, 2))
"""
from .backend import cpp_available, get_backend, set_backend
from .memory import cpu_cache_info, empty_cpu_cache, set_cpu_cache_limit
from .nn import (BatchNorm1d, BatchNorm2d, Context, Conv2d, CrossEntropyLoss, Dropout, Flatten, Linear, LossMSE,
                 MaxPool2d, Module, PairOuter, ReLU, Sequential, Softmax, Tanh)
from .optim import SGD, Adam, CosineAnnealingLR
from .serialization import load, save

__version__ = "0.1.0"
__all__ = ["Module", "Context", "Linear", "Conv2d", "MaxPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten",
           "ReLU", "Tanh", "Softmax", "PairOuter", "Sequential", "LossMSE", "CrossEntropyLoss",
           "SGD", "Adam", "CosineAnnealingLR",
           "get_backend", "set_backend", "cpp_available", "save", "load",
           "cpu_cache_info", "empty_cpu_cache", "set_cpu_cache_limit"]
