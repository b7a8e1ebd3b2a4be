"""The siamese head's modules (Softmax, PairOuter) composed and reused, gradcheck of every classification op,
and the C++ kernels against the Python fallback and across thread counts."""
import pytest
import torch

import minidl as dl
from conftest import require_cpp

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-6)}
DTYPES = [torch.float64, torch.float32]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def torch_head(out, head):
    """The aux head of minidl.pairs.models.Siamese: softmax per digit, joint p(a) p(b)^T, then a Linear."""
    n = out.shape[0]
    p = out.softmax(dim=2)
    joint = p[:, 0, :, None] * p[:, 1, None, :]
    return head(joint.reshape(n, 100))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 100])
def test_siamese_head_matches_torch(backend_name, device, dtype, n):
    torch.manual_seed(n)
    head = dl.Sequential(dl.Softmax(dim=-1), dl.PairOuter(), dl.Linear(100, 2, device=device, dtype=dtype))
    thead = torch.nn.Linear(100, 2, device=device, dtype=dtype)
    with torch.no_grad():
        thead.weight.copy_(head[2].weight)
        thead.bias.copy_(head[2].bias)
    out = torch.randn(n, 2, 10, dtype=dtype, device=device) * 3
    gy = torch.randn(n, 2, dtype=dtype, device=device)
    out_ref = out.clone().requires_grad_()
    with torch.enable_grad():
        y_ref = torch_head(out_ref, thead)
        y_ref.backward(gy)
    y = head(out)
    torch.testing.assert_close(y, y_ref.detach(), **TOL[dtype])
    torch.testing.assert_close(head.backward(gy), out_ref.grad, **TOL[dtype])
    torch.testing.assert_close(head[2].grad_weight, thead.weight.grad, **TOL[dtype])
    torch.testing.assert_close(head[2].grad_bias, thead.bias.grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_softmax_serves_both_digits_through_contexts(backend_name, dtype):
    """The same Softmax applied to each digit's logits apart, each backward with its own call's context."""
    torch.manual_seed(4)
    softmax, outer = dl.Softmax(dim=-1), dl.PairOuter(flatten=False)
    out = torch.randn(6, 2, 10, dtype=dtype)
    gy = torch.randn(6, 10, 10, dtype=dtype)
    pa, ctx_a = softmax.call(out[:, 0])
    pb, ctx_b = softmax.call(out[:, 1])
    joint, ctx_j = outer.call(torch.stack([pa, pb], 1))
    g = outer.backward_ctx(ctx_j, gy)
    gb = softmax.backward_ctx(ctx_b, g[:, 1])  # in the reverse order of the calls
    ga = softmax.backward_ctx(ctx_a, g[:, 0])
    out_ref = out.clone().requires_grad_()
    with torch.enable_grad():
        p = out_ref.softmax(dim=2)
        joint_ref = p[:, 0, :, None] * p[:, 1, None, :]
        joint_ref.backward(gy)
    torch.testing.assert_close(joint, joint_ref.detach(), **TOL[dtype])
    torch.testing.assert_close(torch.stack([ga, gb], 1), out_ref.grad, **TOL[dtype])


class _Op(torch.autograd.Function):
    """A minidl forward kernel and its backward as one torch function, for gradcheck."""

    @staticmethod
    def forward(ctx, x, kind, arg):
        with torch.no_grad():
            from minidl import backend
            ops = backend.ops
            if kind == "ce":
                loss, grad = ops.cross_entropy_forward(x, arg)
                ctx.save_for_backward(grad)
                ctx.kind = kind
                return loss
            y = ops.softmax_forward(x, arg) if kind == "softmax" else ops.pair_outer_forward(x)
        ctx.save_for_backward(y if kind == "softmax" else x)
        ctx.kind, ctx.arg = kind, arg
        return y

    @staticmethod
    def backward(ctx, gy):
        from minidl import backend
        (saved,) = ctx.saved_tensors
        with torch.no_grad():
            if ctx.kind == "ce":
                return saved * gy, None, None
            if ctx.kind == "softmax":
                return backend.ops.softmax_backward(gy.contiguous(), saved, ctx.arg), None, None
            return backend.ops.pair_outer_backward(gy.contiguous(), saved), None, None


@pytest.mark.parametrize("kind,shape,arg", [("ce", (4, 3), torch.tensor([0, 2, 1, 2])), ("ce", (1, 1), torch.tensor([0])),
                                            ("ce", (3, 2), torch.tensor([1, 0, 1])), ("softmax", (3, 4), 1),
                                            ("softmax", (2, 3, 2), 1), ("softmax", (5,), 0), ("pair", (3, 2, 4), None),
                                            ("pair", (1, 2, 1), None)])
def test_gradcheck(backend_name, kind, shape, arg):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _Op.apply(t, kind, arg), (x,), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_equals_python_fallback(dtype):
    require_cpp()
    from minidl.kernels import cpp, python

    torch.manual_seed(6)
    logits, target = torch.randn(200, 10, dtype=dtype) * 5, torch.randint(0, 10, (200,))
    x, gy, gj = torch.randn(100, 2, 10, dtype=dtype), torch.randn(100, 2, 10, dtype=dtype), torch.randn(100, 10, 10,
                                                                                                          dtype=dtype)
    tol = TOL[dtype]
    for a, b in zip(cpp.cross_entropy_forward(logits, target), python.cross_entropy_forward(logits, target)):
        torch.testing.assert_close(a, b, **tol)
    y = cpp.softmax_forward(x, -1)
    torch.testing.assert_close(y, python.softmax_forward(x, -1), **tol)
    torch.testing.assert_close(cpp.softmax_backward(gy, y, -1), python.softmax_backward(gy, y, -1), **tol)
    assert torch.equal(cpp.pair_outer_forward(x), python.pair_outer_forward(x))
    torch.testing.assert_close(cpp.pair_outer_backward(gj, x), python.pair_outer_backward(gj, x), **tol)


def test_cpp_results_do_not_depend_on_the_thread_count():
    require_cpp()
    from minidl.kernels import cpp

    torch.manual_seed(7)
    logits, target = torch.randn(50000, 10), torch.randint(0, 10, (50000,))
    x, gj = torch.randn(20000, 2, 10), torch.randn(20000, 10, 10)
    calls = [lambda: cpp.cross_entropy_forward(logits, target), lambda: (cpp.softmax_forward(x, -1),),
             lambda: (cpp.softmax_forward(x, 0),), lambda: (cpp.softmax_backward(x, x, 1),),
             lambda: (cpp.pair_outer_forward(x),), lambda: (cpp.pair_outer_backward(gj, x),)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = [call() for call in calls]
        torch.set_num_threads(max(threads, 4))
        together = [call() for call in calls]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(alone, together):
        for s, t in zip(a, b):
            assert torch.equal(s, t)
