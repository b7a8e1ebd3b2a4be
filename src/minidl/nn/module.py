"""Module, the base of every layer, and Context, what one forward call saves for its backward.

A module's forward and backward are written once, as forward_ctx(ctx, *input) and
backward_ctx(ctx, *grad): the context belongs to the call, not to the module, so one module can
be applied several times (or inside two networks) and each backward meets its own forward.
Called directly, forward(*input) keeps the context of its latest call for the next backward.
"""
import re
from collections.abc import Mapping

from torch import empty

from .. import backend as _backend
from ..kernels.checks.memory import overlapping_pair

CHECKED = (RuntimeError, ValueError, TypeError)  # what the kernels raise on bad input
FLOAT_DTYPES = ("torch.float32", "torch.float64")  # what the kernels take
_TENSOR = type(empty(0))  # torch.Tensor, within the course rule of importing only torch.empty
USED = object()  # the context slot after a backward consumed it


def kernel_error(module, method, error):
    """A kernel's error with the module that called it in front."""
    message = str(error)
    if "incompatible function arguments" in message:  # pybind11's, which goes on to print every tensor
        message = _signature_only(message)
    return type(error)(f"{module!r}.{method}: {message}")


def _signature_only(message):
    """pybind11's 'incompatible function arguments' error, its values left out: the op and the types it takes."""
    head, _, supported = message.partition(" The following argument types are supported:")
    lines = supported.strip().splitlines()
    if not lines:
        return head
    signature = re.sub(r"^\d+\.\s*", "", lines[0].strip()).split(" -> ")[0]
    for long, short in (("torch.Tensor", "Tensor"), ("typing.SupportsFloat | typing.SupportsIndex", "float"),
                        ("typing.SupportsInt | typing.SupportsIndex", "int"), ("collections.abc.", ""), ("typing.", "")):
        signature = signature.replace(long, short)
    return f"{head} It takes {signature}."


def check_tensor(module, method, value, name="input"):
    """A TypeError naming module.method unless value is a torch.Tensor."""
    if not isinstance(value, _TENSOR):
        raise TypeError(f"{module!r}.{method}: expected {name} to be a torch.Tensor, got {type(value).__name__}")


def check_sizes(owner, **sizes):
    """A ValueError naming owner unless every size is a positive int."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: expected {name} to be a positive int, got {value!r}")


def check_dtype(owner, dtype):
    """A TypeError naming owner unless dtype is None or one the kernels take."""
    if dtype is not None and str(dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: expected dtype float32 or float64 (what the kernels take), got {dtype!r}")


def new_param(owner, shape, device, dtype):
    """(parameter, its zeroed gradient), the parameter uninitialised; an error naming owner if they cannot be made."""
    try:
        param = empty(shape, device=device, dtype=dtype)
    except (RuntimeError, TypeError, AssertionError) as e:  # torch asserts when built without CUDA
        kind = TypeError if isinstance(e, TypeError) else RuntimeError
        raise kind(f"{owner}: cannot make parameters with device={device!r}, dtype={dtype!r}: {e}") from None
    return param, empty(shape, device=device, dtype=dtype).zero_()


def check_own_memory(owner, tensors):
    """A ValueError naming owner if two of the (tensor, name) pairs share memory: a backward would add into a
    parameter or into another's gradient, or an optimizer step one memory twice."""
    pair = overlapping_pair([(t, name) for t, name in tensors if isinstance(t, _TENSOR)])
    if pair is not None:
        raise ValueError(f"{owner}: {pair[0]} and {pair[1]} share memory; give each a tensor of its own, or share "
                         f"one tensor and its gradient (b.weight = a.weight; b.grad_weight = a.grad_weight)")


class Context:
    """What one forward call saved for its backward (tinygrad's and minitorch's ctx): any attributes."""

    spent = False  # whether a backward consumed it (Sequential's sets it)


class Module:
    """Base class: forward(*input), backward(*gradwrtoutput), param() -> [(tensor, grad), ...]."""

    training = True
    buffer_names = ()  # attributes holding state that is not a parameter (running statistics, ...)
    input_grad_optional = False  # whether backward_ctx takes input_grad=False, to skip the input's gradient
    _ctx = None  # the context of the latest direct forward, until a backward uses it

    def forward_ctx(self, ctx, *input):
        """The forward of one call: save in ctx what backward_ctx will need."""
        if type(self).forward is not Module.forward:  # a module written as forward/backward keeps its own state
            return self.forward(*input)
        raise NotImplementedError(f"{type(self).__name__}.forward_ctx")

    def backward_ctx(self, ctx, *gradwrtoutput):
        """The backward of the call that filled ctx: accumulate parameter gradients, return the input's."""
        if type(self).backward is not Module.backward:
            return self.backward(*gradwrtoutput)
        raise NotImplementedError(f"{type(self).__name__}.backward_ctx")

    def call(self, *input):
        """(output, ctx): a forward whose context the caller keeps, for a later backward_ctx(ctx, grad)."""
        ctx = Context()
        return self.forward_ctx(ctx, *input), ctx

    def forward(self, *input):
        """forward_ctx with a fresh context, kept for the next backward (the latest call's only)."""
        ctx = Context()
        self._ctx = None  # until forward_ctx returns: a forward that raised leaves nothing for a backward
        # one input passed by name: a call with *input costs several times more, and small steps are made of such calls
        output = self.forward_ctx(ctx, input[0]) if len(input) == 1 else self.forward_ctx(ctx, *input)
        self._ctx = ctx
        return output

    def backward(self, *gradwrtoutput):
        """The backward of the latest forward; each forward serves one backward."""
        ctx = self.take_ctx()
        if len(gradwrtoutput) == 1:  # by name, as in forward
            return self.backward_ctx(ctx, gradwrtoutput[0])
        return self.backward_ctx(ctx, *gradwrtoutput)

    def take_ctx(self):
        """The latest direct forward's context, for one backward: an error when none is left."""
        ctx = self._ctx
        if ctx is None or ctx is USED:
            why = "called before forward" if ctx is None else "called more times than forward"
            raise RuntimeError(f"{self!r}.backward: {why}")
        self._ctx = USED
        return ctx

    def __call__(self, *input):
        return self.forward(*input)

    def named_children(self):
        """(name, module) for every module inside this one."""
        return []

    def named_param(self):
        """(name, parameter, gradient) triples; names like '2.weight' inside a Sequential."""
        return [(f"{c}.{n}", p, g) for c, m in self.named_children() for n, p, g in m.named_param()]

    def param(self):
        """(parameter, gradient) pairs, each once, also when a module or a tensor is used more than once."""
        pairs = {}  # id(parameter) -> (name, parameter, gradient)
        for name, p, g in self.named_param():
            first = pairs.setdefault(id(p), (name, p, g))
            if first[2] is not g:
                raise ValueError(f"{self!r}.param: {name} shares {first[0]}'s tensor but not its gradient; "
                                 f"share the gradient too (e.g. b.grad_weight = a.grad_weight)")
        check_own_memory(f"{self!r}.param", [(p, name) for name, p, _ in pairs.values()]
                         + [(g, f"{name}'s gradient") for name, _, g in pairs.values()])
        return [(p, g) for _, p, g in pairs.values()]

    def named_buffers(self):
        """(name, tensor) for the state that is not a parameter, this module's then its children's."""
        own = [(n, getattr(self, n)) for n in self.buffer_names]
        return own + [(f"{c}.{n}", t) for c, m in self.named_children() for n, t in m.named_buffers()]

    def zero_grad(self):
        """Set every gradient to zero (backward accumulates into them)."""
        _backend.ops.zero_([g for _, _, g in self.named_param()])

    def train(self, mode=True):
        """Set the training flag of this module and of every module inside it; returns self."""
        self.training = bool(mode)
        for _, m in self.named_children():
            m.train(mode)
        return self

    def eval(self):
        """Evaluation mode (train(False)); returns self."""
        return self.train(False)

    def state_dict(self):
        """{name: tensor}: parameters, then buffers; the tensors themselves, a shared one under each of its names."""
        return {**{name: p for name, p, _ in self.named_param()}, **dict(self.named_buffers())}

    def load_state_dict(self, state_dict):
        """Copy the tensors of state_dict into the parameters and buffers, in place; names and shapes must match."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{self!r}.load_state_dict: expected a dict of tensors like state_dict() returns, "
                            f"got {type(state_dict).__name__}")
        own = self.state_dict()
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
        """Move parameters, gradients and buffers in place (optimizers keep the same tensors); returns self.
        dtype applies to floating-point tensors; buffers of integers keep theirs, as in torch.nn."""
        check_dtype(f"{self!r}.to", dtype)
        tensors = [t for pair in self.param() for t in pair] + [t for _, t in self.named_buffers()]
        old = [t.data for t in tensors]
        try:  # in place, so that optimizers keep the same tensors; torch refuses some swaps (to or from meta)
            moved = [t.data.to(device=device, dtype=dtype if t.is_floating_point() else None) for t in tensors]
            for t, new in zip(tensors, moved):
                t.data = new
        except (RuntimeError, TypeError, AssertionError) as e:  # torch asserts when built without CUDA
            for t, data in zip(tensors, old):  # a move that fails changes nothing
                t.data = data
            kind = TypeError if isinstance(e, TypeError) else RuntimeError
            raise kind(f"{self!r}.to: cannot move its tensors in place to device={device!r}, dtype={dtype!r}: "
                       f"{e}") from None
        return self

    def __repr__(self):
        return f"{type(self).__name__}()"
