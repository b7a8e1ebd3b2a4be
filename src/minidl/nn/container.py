"""Sequential: modules applied in order, run as one fused kernel call each way when they form a Linear stack, and
each MaxPool2d -> BatchNorm2d -> ReLU run as one (nn/block.py)."""
from torch import empty

from .. import backend as _backend
from ..kernels import ACTIVATIONS
from .activation import ReLU, Tanh
from .block import BLOCK, PoolNormReLU, fused_blocks
from .linear import Linear, as_rows, grad_rows
from .module import _TENSOR, CHECKED, Context, Module, kernel_error


def fused_layers(modules):
    """((Linear, activation kind), ...) when the modules are Linear layers, each optionally followed by a
    ReLU or Tanh: the stack that mlp_forward and mlp_backward run in one call each; else None."""
    layers, i = [], 0
    while i < len(modules):
        linear = modules[i]
        if type(linear) is not Linear:
            return None
        follower = modules[i + 1] if i + 1 < len(modules) else None
        kind = follower.kind if type(follower) in (ReLU, Tanh) else "none"
        layers.append((linear, kind))
        i += 1 if kind == "none" else 2
    return tuple(layers) or None


def _steps(modules):
    """What a forward module by module runs: the modules, each fused_blocks run as one PoolNormReLU."""
    steps, i = [], 0
    for start in fused_blocks(modules):
        steps += modules[i:start]
        steps.append(PoolNormReLU(*modules[start:start + len(BLOCK)]))
        i = start + len(BLOCK)
    return tuple(steps) + modules[i:]


def _stack_tensors(linears):
    """(weights, biases) of the Linear layers now, or None when one has no bias (the fused kernels need one each)."""
    weights, biases = [], []
    for linear in linears:  # one loop: it runs on every forward, and comprehensions cost twice as much here
        bias = linear.bias
        if bias is None:
            return None
        weights.append(linear.weight)
        biases.append(bias)
    return weights, biases


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Whether the fused kernels run is decided when `modules` is set, by fused_layers; a stack whose
    Linear layers all have a bias at the time of a forward then runs as one kernel call each way,
    with the same arithmetic as module by module. Otherwise each (MaxPool2d, BatchNorm2d, ReLU) run
    (fused_blocks) runs as one PoolNormReLU step, the other modules one by one. A module may appear more than once: its gradients
    add up over its uses, and param() lists its parameters once, as torch.nn does.
    """

    input_grad_optional = True

    def __init__(self, *modules):
        self.modules = modules

    @property
    def modules(self):
        """The modules, in order (a tuple); assigning a new sequence decides the fusion again."""
        return self._modules

    @modules.setter
    def modules(self, modules):
        modules = tuple(modules)
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: expected minidl Modules, got {type(m).__name__} at position {i}")
        layers = fused_layers(modules)
        self._modules = modules
        self._linears = None if layers is None else tuple(linear for linear, _ in layers)
        self._codes = None if layers is None else [ACTIVATIONS.index(kind) for _, kind in layers]
        self._steps = _steps(modules)

    @property
    def blocks(self):
        """((MaxPool2d, BatchNorm2d, ReLU), ...): the runs that a forward module by module fuses, in order."""
        return tuple((s.pool, s.norm, s.relu) for s in self._steps if type(s) is PoolNormReLU)

    @property
    def fused(self):
        """((Linear, activation kind), ...) that the next forward runs as fused kernels, or None (module by module)."""
        linears = self._linears
        if linears is None or _stack_tensors(linears) is None:
            return None
        return tuple((linear, ACTIVATIONS[code]) for linear, code in zip(linears, self._codes))

    def forward_ctx(self, ctx, input):
        linears = self._linears
        tensors = None if linears is None else _stack_tensors(linears)  # a bias can be set to None after construction
        if tensors is not None:
            weights, biases = tensors
            lead = None
            if type(input) is not _TENSOR or input.dim() != 2:
                input, lead = as_rows(self, input, weights[0].shape[1])  # [*, in] runs as a matrix, as in Linear
            try:
                outputs = _backend.ops.mlp_forward(input, weights, biases, self._codes)
            except CHECKED as e:
                raise kernel_error(self, "forward", e) from None
            ctx.stack = (input, linears, weights, self._codes, outputs, lead)  # what mlp_backward needs but gradients
            return outputs[-1] if lead is None else outputs[-1].view(*lead, weights[-1].shape[0])
        ctx.stack, ctx.modules, ctx.children = None, self._steps, []
        for m in ctx.modules:
            child = Context()
            input = m.forward_ctx(child, input)
            ctx.children.append(child)
        return input

    def backward(self, grad_output, input_grad=True):
        """Gradient of the input (None with input_grad=False, which may skip computing it, as torch does for
        inputs that do not require grad); parameter gradients accumulate."""
        return self.backward_ctx(self.take_ctx(), grad_output, input_grad)

    def backward_ctx(self, ctx, grad_output, input_grad=True):
        if ctx.spent:  # a second backward would add every gradient again
            raise RuntimeError(f"{self!r}.backward: this forward's context has served a backward already; "
                               f"each forward serves one backward")
        ctx.spent = True
        if ctx.stack is None:
            modules, children = ctx.modules, ctx.children
            for i in range(len(modules) - 1, 0, -1):
                grad_output = modules[i].backward_ctx(children[i], grad_output)
            if not modules:
                return grad_output if input_grad else None
            if not input_grad and modules[0].input_grad_optional:  # e.g. a first Conv2d skips its input's gradient
                return modules[0].backward_ctx(children[0], grad_output, False)
            grad_output = modules[0].backward_ctx(children[0], grad_output)
            return grad_output if input_grad else None
        input, linears, weights, codes, outputs, lead = ctx.stack
        if lead is not None:
            grad_output = grad_rows(self, grad_output, lead, weights[-1].shape[0])
        grad_input = empty(input.shape, dtype=input.dtype, device=input.device) if input_grad else None
        grad_weights, grad_biases = [], []
        for linear in linears:  # one loop, as in _stack_tensors
            grad_weights.append(linear.grad_weight)
            grad_biases.append(linear.grad_bias)
        try:
            _backend.ops.mlp_backward(grad_output, input, outputs, weights, grad_weights, grad_biases, codes, grad_input)
        except CHECKED as e:
            raise kernel_error(self, "backward", e) from None
        return grad_input if lead is None or grad_input is None else grad_input.view(*lead, input.shape[1])

    def named_children(self):
        return [(str(i), m) for i, m in enumerate(self._modules)]

    def __getitem__(self, i):
        return self._modules[i]

    def __len__(self):
        return len(self._modules)

    def __repr__(self):
        return "Sequential(" + ", ".join(repr(m) for m in self._modules) + ")"
