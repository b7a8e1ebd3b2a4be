"""The Module layer: Linear, ReLU, Tanh, Sequential, LossMSE. Each backward sits beside its forward.

Like the kernels' Python fallback, this file imports nothing from torch but `empty`: every tensor
is made by `empty` and filled with tensor methods, and autograd is never used.
"""
import math

from torch import empty

from . import backend as _backend

_CHECKED = (RuntimeError, ValueError, TypeError)
_TENSOR = type(empty(0))  # torch.Tensor, within the course rule of importing only torch.empty


def _fail(module, method, error):
    """Re-raise a kernel's error with the module that called it in front."""
    message = str(error)
    if "incompatible function arguments" in message:  # pybind11's, which goes on to print every tensor
        message = message.split(" The following")[0] + " Expected torch.Tensor arguments."
    return type(error)(f"{module!r}.{method}: {message}")


class Module:
    """Base class: forward(*input), backward(*gradwrtoutput), param() -> [(tensor, grad), ...]."""

    def forward(self, *input):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *gradwrtoutput):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def param(self):
        """(parameter, gradient) pairs of equal shape; empty for modules without parameters."""
        return []

    def zero_grad(self):
        """Set every gradient to zero (backward accumulates into them)."""
        _backend.ops.zero_([grad for _, grad in self.param()])

    def named_param(self):
        """(name, parameter, gradient) triples; names like '2.weight' inside a Sequential."""
        return []

    def state_dict(self):
        """{name: parameter tensor}: the tensors themselves, a shared one under each of its names, as in torch.nn."""
        return {name: p for name, p, _ in self.named_param()}

    def load_state_dict(self, state_dict):
        """Copy the tensors of state_dict into the parameters, in place; names and shapes must match."""
        own = {name: p for name, p, _ in self.named_param()}
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if missing or unexpected:
            raise KeyError(f"{self!r}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        converted = {}  # every value converted before the first copy: a bad state_dict changes nothing
        for name, p in own.items():
            value = state_dict[name]
            if not isinstance(value, _TENSOR):
                raise TypeError(f"{self!r}.load_state_dict: {name} expected a torch.Tensor, got {type(value).__name__}")
            if list(value.shape) != list(p.shape):
                raise ValueError(f"{self!r}.load_state_dict: {name} expected shape {list(p.shape)}, "
                                 f"got {list(value.shape)}")
            try:
                converted[name] = value.to(device=p.device, dtype=p.dtype, copy=True)
            except (RuntimeError, TypeError, NotImplementedError) as e:
                raise type(e)(f"{self!r}.load_state_dict: {name}: {e}") from None
        for name, p in own.items():
            p.detach().copy_(converted[name])  # detached: also for a parameter that requires grad

    def to(self, device=None, dtype=None):
        """Move parameters and gradients in place (optimizers keep seeing the same tensors); returns self."""
        for p, g in self.param():
            p.data = p.data.to(device=device, dtype=dtype)
            g.data = g.data.to(device=device, dtype=dtype)
        return self

    def __call__(self, *input):
        return self.forward(*input)

    def __repr__(self):
        return f"{type(self).__name__}()"

    def _saved(self, tensor):
        if tensor is None:
            raise RuntimeError(f"{self!r}.backward: called before forward")
        return tensor


class _Tensor:
    """A Linear tensor attribute whose assignment bumps Linear.generation (fused Sequentials cache them)."""

    keys = set()  # where instances keep these tensors: "_weight", ...

    def __set_name__(self, owner, name):
        self.name, self.key = name, "_" + name
        _Tensor.keys.add(self.key)

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.key]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__} has no {self.name} yet") from None

    def __set__(self, obj, value):
        obj.__dict__[self.key] = value
        Linear.generation += 1


class Linear(Module):
    """y = x @ weight.T + bias, initialised like torch.nn.Linear: uniform in ±1/sqrt(in_features)."""

    weight, bias, grad_weight, grad_bias = _Tensor(), _Tensor(), _Tensor(), _Tensor()
    generation = 0  # how many times any Linear's tensors were assigned

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Linear: expected {name} to be a positive int, got {value!r}")
        if dtype is not None and str(dtype) not in ("torch.float32", "torch.float64"):
            raise TypeError(f"Linear: expected dtype float32 or float64 (what the kernels take), got {dtype!r}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        try:
            self.weight = empty((out_features, in_features), device=device, dtype=dtype).uniform_(-bound, bound)
        except (RuntimeError, TypeError, AssertionError) as e:  # torch asserts when built without CUDA
            kind = TypeError if isinstance(e, TypeError) else RuntimeError
            raise kind(f"Linear: cannot make parameters with device={device!r}, dtype={dtype!r}: {e}") from None
        self.grad_weight = empty(self.weight.shape, device=device, dtype=dtype).zero_()
        self.bias = self.grad_bias = None
        if bias:
            self.bias = empty((out_features,), device=device, dtype=dtype).uniform_(-bound, bound)
            self.grad_bias = empty(self.bias.shape, device=device, dtype=dtype).zero_()
        self._input = None

    def forward(self, input):
        try:
            output = _backend.ops.linear_forward(input, self.weight, self.bias)
        except _CHECKED as e:
            raise _fail(self, "forward", e) from None
        self._input = input
        return output

    def backward(self, grad_output):
        input = self._saved(self._input)
        try:
            return _backend.ops.linear_backward(grad_output, input, self.weight, self.grad_weight, self.grad_bias)
        except _CHECKED as e:
            raise _fail(self, "backward", e) from None

    def param(self):
        if self.bias is None:
            return [(self.weight, self.grad_weight)]
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]

    def named_param(self):
        return [(name, p, g) for name, (p, g) in zip(("weight", "bias"), self.param())]

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class _Activation(Module):
    """An elementwise activation whose backward needs only its saved output."""

    _forward = _backward = None  # names of the kernels

    def __init__(self):
        self._output = None

    def forward(self, input):
        try:
            self._output = getattr(_backend.ops, self._forward)(input)
        except _CHECKED as e:
            raise _fail(self, "forward", e) from None
        return self._output

    def backward(self, grad_output):
        output = self._saved(self._output)
        try:
            return getattr(_backend.ops, self._backward)(grad_output, output)
        except _CHECKED as e:
            raise _fail(self, "backward", e) from None


class ReLU(_Activation):
    """y = max(x, 0)."""

    _forward, _backward = "relu_forward", "relu_backward"


class Tanh(_Activation):
    """y = tanh(x)."""

    _forward, _backward = "tanh_forward", "tanh_backward"


def _saved_state(module):
    """A module's attributes but its parameter tensors: what its forward left there for its backward."""
    return {k: v for k, v in module.__dict__.items() if k not in _Tensor.keys}


def _tree(module):
    """The module and, for a Sequential, every module inside it."""
    yield module
    if isinstance(module, Sequential):
        for m in module.modules:
            yield from _tree(m)


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    When the modules are Linear layers (with bias), each optionally followed by a ReLU or Tanh,
    the whole stack runs as one fused kernel call each way (mlp_forward, mlp_backward): the same
    arithmetic as module by module, without a kernel call per module.

    A module may appear more than once (a ReLU used twice, a Linear used at two places): its
    gradients then add up over its uses, and param() lists its parameters once, as torch.nn does.
    """

    _ACTIVATION_CODES = {"ReLU": 1, "Tanh": 2}

    def __init__(self, *modules):
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: expected minidl Modules, got {type(m).__name__} at position {i}")
        self.modules = tuple(modules)
        self._input = self._outputs = self._states = None
        # A module used twice keeps in its attributes what only its last forward saved: the
        # module-by-module path then keeps each use's attributes and puts them back for its backward.
        ids = [id(t) for m in modules for t in _tree(m)]
        self._reused = len(ids) != len(set(ids))
        self._stack()

    def _stack(self):
        """[(Linear, activation or None), ...] if the modules form a fusable stack, else None; with the
        lists of tensors the fused kernels take, built again when a Linear's tensors were reassigned."""
        if getattr(self, "_generation", None) == Linear.generation:
            return self._layers
        self._generation = Linear.generation
        self._layers = layers = self._fusable_layers()
        if layers is not None:
            self._weights = [lin.weight for lin, _ in layers]
            self._biases = [lin.bias for lin, _ in layers]
            self._grad_weights = [lin.grad_weight for lin, _ in layers]
            self._grad_biases = [lin.grad_bias for lin, _ in layers]
            self._grads = self._grad_weights + self._grad_biases
            self._codes = [0 if act is None else self._ACTIVATION_CODES[type(act).__name__] for _, act in layers]
        return layers

    def _fusable_layers(self):
        layers, i, mods = [], 0, self.modules
        while i < len(mods):
            lin = mods[i]
            if type(lin) is not Linear or lin.bias is None or lin.grad_bias is None:
                return None
            act = mods[i + 1] if i + 1 < len(mods) and type(mods[i + 1]) in (ReLU, Tanh) else None
            layers.append((lin, act))
            i += 2 if act is not None else 1
        return layers or None

    def forward(self, input):
        layers = self._stack()
        self._input = None  # until this forward succeeds: a backward after a failed one raises
        if layers is None:
            x, states = input, []
            for m in self.modules:
                x = m.forward(x)
                if self._reused:
                    states.append([(t, _saved_state(t)) for t in _tree(m)])
            self._input, self._outputs, self._states = input, None, (states if self._reused else None)
            return x
        try:
            outputs = _backend.ops.mlp_forward(input, self._weights, self._biases, self._codes)
        except _CHECKED as e:
            raise _fail(self, "forward", e) from None
        self._input, self._outputs, self._states = input, outputs, None
        x = input
        for (lin, act), y in zip(layers, outputs):  # so that each module's own backward still works
            lin._input = x
            if act is not None:
                act._output = y
            x = y
        return outputs[-1]

    def backward(self, grad_output, input_grad=True):
        """Gradient of the input (None with input_grad=False, which skips computing it, as torch does for
        inputs that do not require grad); parameter gradients accumulate."""
        input = self._saved(self._input)
        if self._outputs is None or self._stack() is None:  # module by module, as forward ran
            for i in reversed(range(len(self.modules))):
                if self._states is not None:
                    for t, state in self._states[i]:
                        t.__dict__.update(state)
                grad_output = self.modules[i].backward(grad_output)
            return grad_output
        grad_input = empty(input.shape, dtype=input.dtype, device=input.device) if input_grad else None
        try:
            _backend.ops.mlp_backward(grad_output, input, self._outputs, self._weights, self._grad_weights,
                                      self._grad_biases, self._codes, grad_input)
        except _CHECKED as e:
            raise _fail(self, "backward", e) from None
        return grad_input

    def param(self):
        """Each (parameter, gradient) pair once, also when a module or a tensor is used more than once."""
        pairs = {}  # id(parameter) -> (name, parameter, gradient)
        for name, p, g in self.named_param():
            first = pairs.setdefault(id(p), (name, p, g))
            if first[2] is not g:
                raise ValueError(f"{self!r}.param: {name} shares {first[0]}'s tensor but not its gradient; "
                                 f"share the gradient too (e.g. b.grad_weight = a.grad_weight)")
        return [(p, g) for _, p, g in pairs.values()]

    def named_param(self):
        """Every module's triples, a shared tensor under each of its names (torch's state_dict keeps them too)."""
        return [(f"{i}.{name}", p, g) for i, m in enumerate(self.modules) for name, p, g in m.named_param()]

    def zero_grad(self):
        if self._stack() is None:  # each module's gradients, without param()'s names and checks
            return _backend.ops.zero_([g for m in self.modules for _, g in m.param()])
        _backend.ops.zero_(self._grads)

    def __getitem__(self, i):
        return self.modules[i]

    def __len__(self):
        return len(self.modules)

    def __repr__(self):
        return "Sequential(" + ", ".join(repr(m) for m in self.modules) + ")"


class LossMSE(Module):
    """Mean of (output - target)^2 over all elements, as torch.nn.MSELoss(); backward() needs no argument.

    With check_finite (the default) a loss that turns NaN or infinite raises FloatingPointError naming
    the step (the count of forward calls), instead of letting training go on with garbage.
    """

    def __init__(self, check_finite=True):
        self.check_finite = check_finite
        self.steps = 0
        self._grad = None

    def forward(self, output, target):
        try:
            loss, self._grad = _backend.ops.mse_forward(output, target)
        except _CHECKED as e:
            raise _fail(self, "forward", e) from None
        self.steps += 1
        if self.check_finite and not math.isfinite(loss.item()):
            raise FloatingPointError(f"LossMSE: the loss became {loss.item()} at step {self.steps}; "
                                     f"lower the learning rate, or pass LossMSE(check_finite=False) to go on")
        return loss

    def backward(self, *gradwrtoutput):
        """d loss / d output, computed with the loss; times the upstream gradient of the loss if one is given."""
        grad = self._saved(self._grad)
        for g in gradwrtoutput:
            grad = grad.mul(g)
        return grad
