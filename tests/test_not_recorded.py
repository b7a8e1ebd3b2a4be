"""minidl's ops are not recorded by torch's autograd: a call that autograd would record (grad mode on, an input
that requires grad) raises naming the op and the argument, on both backends and both call paths, instead of
silently contributing no gradient; under torch.no_grad() the same call works."""
import pytest
import torch

from conftest import require_cpp
from op_cases import op_cases

MESSAGE = r"minidl\.{op}: {what} requires grad, but minidl ops are not recorded by torch's autograd; call it under " \
          r"torch\.no_grad\(\)"


def _paths(backend_name):
    """The functions to call each op through: the backend's, and for cpp also torch.ops.minidl."""
    from minidl import backend

    paths = [lambda name: getattr(backend.ops, name)]
    if backend_name == "cpp":
        paths.append(lambda name: getattr(torch.ops.minidl, name).default)
    return paths


def test_torch_func_grad_through_an_op_raises(backend_name):
    x = torch.randn(5, 3, dtype=torch.float64)
    for op in _paths(backend_name):
        with pytest.raises(RuntimeError, match=MESSAGE.format(op="relu_forward", what="input")):
            torch.func.grad(lambda t: op("relu_forward")(t).sum())(x)


def test_loss_backward_through_an_op_raises(backend_name):
    x, w, b = torch.randn(5, 3), torch.randn(4, 3, requires_grad=True), torch.randn(4)
    w2 = torch.randn(2, 4, requires_grad=True)
    for op in _paths(backend_name):
        with torch.enable_grad():
            with pytest.raises(RuntimeError, match=MESSAGE.format(op="linear_forward", what="weight")):
                op("linear_forward")(x, w, b).sum().backward()
            with pytest.raises(RuntimeError, match=MESSAGE.format(op="mlp_forward", what="a tensor of weights")):
                op("mlp_forward")(x, [w.detach(), w2], [b, torch.randn(2)], [1, 2])[-1].sum().backward()
            with pytest.raises(RuntimeError, match=MESSAGE.format(op="tanh_backward", what="grad_output")):
                op("tanh_backward")(w2 * 2, torch.randn(2, 4))


def test_the_same_calls_work_under_no_grad(backend_name):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for op in _paths(backend_name):
        with torch.no_grad():
            y = op("relu_forward")(x)
            z = op("linear_forward")(x, w, None)
        assert not y.requires_grad and not z.requires_grad
        torch.testing.assert_close(y, x.detach().clamp(min=0), rtol=0, atol=0)
        torch.testing.assert_close(z, x.detach() @ w.detach().t())


def _requiring_grad(args, index):
    """args with the index-th floating-point tensor (counting inside lists) cloned to require grad; and that
    argument's position. Integer tensors (max-pool indices) cannot require grad."""
    out, seen = [], 0
    position = None
    for k, a in enumerate(args):
        if isinstance(a, torch.Tensor) or isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
            items = a if isinstance(a, list) else [a]
            copied = []
            for t in items:
                if not t.is_floating_point():
                    copied.append(t)
                    continue
                copied.append(t.clone().requires_grad_() if seen == index else t)
                position = k if seen == index else position
                seen += 1
            out.append(copied if isinstance(a, list) else copied[0])
        else:
            out.append(a)
    return out, position


@pytest.mark.parametrize("index", range(len(op_cases("cpu"))))
def test_every_op_refuses_every_argument_that_requires_grad(backend_name, index):
    """Each tensor argument in turn requires grad: the call raises (nothing written), and runs under no_grad."""
    name, args = op_cases("cpu")[index]
    for op in _paths(backend_name):
        k = 0
        while True:
            call_args, position = _requiring_grad(args, k)
            if position is None:
                break
            before = [a.clone() if isinstance(a, torch.Tensor) else a for a in call_args]
            with torch.enable_grad(), pytest.raises(RuntimeError, match=rf"minidl\.{name}: .*requires grad"):
                op(name)(*call_args)
            for a, b in zip(call_args, before):  # refused before any write
                assert not isinstance(a, torch.Tensor) or torch.equal(a, b)
            with torch.no_grad():
                op(name)(*call_args)
            k += 1
        assert k > 0


def test_the_autograd_kernel_of_every_op_is_minidls():
    """torch.ops.minidl reaches the check through an Autograd kernel per op (not torch's boxed fallback, which
    would only warn)."""
    require_cpp()
    import minidl._C

    for name, _ in minidl._C._ops:
        dump = torch._C._dispatch_dump(f"minidl::{name}")
        autograd = [line for line in dump.splitlines() if line.startswith("Autograd")]
        assert autograd and "fallthrough" not in autograd[0] and "library.cpp" in autograd[0], (name, autograd)
