"""The (parameter, gradient) pairs an optimizer steps (a Module's, or the list Module.param() returns), and the
checks of its hyperparameters."""
import numbers

from torch import empty

from .. import nn as _nn
from ..nn.module import check_own_memory

_TENSOR = type(empty(0))  # torch.Tensor, within the course rule of importing only torch.empty


def checked_pairs(params, owner):
    """The pairs as a list, each checked to be two tensors of one shape; errors name `owner` ("SGD", "Adam")."""
    if isinstance(params, _nn.Module):
        params = params.param()
    try:
        iterator = iter(params)
    except TypeError:  # not iterable: None, a torch.nn.Module, a number
        raise TypeError(f"{owner}: expected a minidl Module or an iterable of (parameter, gradient) pairs as "
                        f"returned by Module.param(), got {type(params).__name__}") from None
    pairs = list(iterator)
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"{owner}: expected (parameter, gradient) pairs as returned by Module.param(), "
                            f"got {type(pair).__name__} at position {i}")
        p, g = pair
        if not (isinstance(p, _TENSOR) and isinstance(g, _TENSOR)):
            raise TypeError(f"{owner}: expected (parameter, gradient) pairs of tensors as returned by "
                            f"Module.param(), got ({type(p).__name__}, {type(g).__name__}) at position {i}")
        if p.shape != g.shape:
            raise ValueError(f"{owner}: parameter {i} has shape {list(p.shape)} but its gradient has "
                             f"shape {list(g.shape)}")
    first = {}  # (id(p), id(g)) -> the position where the pair is first listed: a pair listed again steps again
    for i, (p, g) in enumerate(pairs):
        first.setdefault((id(p), id(g)), i)
    check_own_memory(owner, [(pairs[i][0], f"parameter {i}") for i in first.values()]
                     + [(pairs[i][1], f"parameter {i}'s gradient") for i in first.values()])
    return pairs


def checked_numbers(owner, **values):
    """The values as floats, each checked to be a real number (not a bool) or a tensor of one (torch.optim takes
    a tensor lr); errors name `owner` ("SGD.step")."""
    for name, value in values.items():
        one = isinstance(value, _TENSOR) and value.numel() == 1 and value.is_floating_point()
        if not one and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
            raise TypeError(f"{owner}: expected {name} to be a number, got {type(value).__name__} {value!r}")
    return [float(value) for value in values.values()]
