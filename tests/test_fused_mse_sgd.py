"""The fused MSE loss (mse_forward) against torch, and the fused SGD step (sgd_step_) against the Python
fallback and a step then zero_grad."""
import pytest
import torch

import minidl as dl

from conftest import require_cpp
from op_cases import autograd_reference


@pytest.mark.parametrize("shape", [(1, 1), (100, 2), (3, 5, 7), (70000,)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mse_forward_matches_torch(ops, device, shape, dtype):
    torch.manual_seed(12)
    o = torch.randn(*shape, dtype=dtype, device=device)
    t = torch.randn(*shape, dtype=dtype, device=device)
    loss, grad = ops.mse_forward(o, t)
    ref, grad_ref = autograd_reference(lambda o: torch.nn.functional.mse_loss(o, t), o, None)
    tol = dict(rtol=1e-12, atol=0) if dtype == torch.float64 else dict(rtol=1e-5, atol=0)
    assert loss.shape == () and loss.dtype == dtype
    torch.testing.assert_close(loss, ref, **tol)
    torch.testing.assert_close(grad, grad_ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mse_forward_overflows_to_inf_like_torch(ops, dtype):
    big = torch.full((4,), torch.finfo(dtype).max / 2, dtype=dtype)
    loss, grad = ops.mse_forward(big, -big)
    assert torch.equal(loss, torch.nn.functional.mse_loss(big, -big))  # inf in float32 and float64
    assert torch.isfinite(grad).all()


def test_sgd_kernel_equals_fallback_bit_for_bit(device):
    require_cpp()
    from minidl.kernels import cpp, python

    torch.manual_seed(13)
    shapes = [(25, 2), (25,), (3, 4, 5)]
    runs = []
    for k in (cpp, python):
        torch.manual_seed(14)
        ps = [torch.randn(s, dtype=torch.float32, device=device) for s in shapes]
        gs = [torch.randn(s, dtype=torch.float32, device=device) for s in shapes]
        vs = [torch.zeros(s, dtype=torch.float32, device=device) for s in shapes]
        for _ in range(3):
            k.sgd_step_(ps, gs, vs, 0.1, 0.9, 0.01)
        runs.append(ps + vs)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("transposed", [False, True])
def test_sgd_zero_grads_equals_a_step_then_zero(ops, device, transposed):
    """zero_grads=True: the same parameters and buffers bit for bit, and every gradient zero after."""
    torch.manual_seed(15)
    shapes = [(25, 2), (25,), (6, 5)]
    ps = [torch.randn(s, device=device) for s in shapes]
    gs = [torch.randn(s[::-1], device=device).t() if transposed and len(s) == 2 else torch.randn(s, device=device)
          for s in shapes]
    vs = [torch.randn(s, device=device) for s in shapes]
    ref_p, ref_v = [p.clone() for p in ps], [v.clone() for v in vs]
    ops.sgd_step_(ref_p, [g.clone() for g in gs], ref_v, 0.1, 0.9, 0.01)
    ops.sgd_step_(ps, gs, vs, 0.1, 0.9, 0.01, True)
    for a, b in zip(ps + vs, ref_p + ref_v):
        assert torch.equal(a, b)
    assert all(torch.count_nonzero(g) == 0 for g in gs)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("zero_grads", [False, True])
def test_sgd_repeated_parameter_steps_in_turn(device, transposed, zero_grads):
    """A list that names a parameter twice: each entry steps in turn (the second sees the
    first's update and, with zero_grads, the zeroed gradient), on every path of the kernel (the CPU
    loop; ATen one tensor at a time for strided or GPU tensors) exactly as the Python fallback."""
    require_cpp()
    from minidl.kernels import cpp, python

    runs = []
    for k in (cpp, python):
        torch.manual_seed(17)
        p = torch.randn(5, 6, device=device)
        p = p.t().contiguous().t() if transposed else p  # a strided view: not the CPU loop
        other = torch.randn(4, device=device)
        g, g_other = torch.randn_like(p), torch.randn(4, device=device)
        vs = [torch.randn(5, 6, device=device), torch.randn(4, device=device), torch.randn(5, 6, device=device)]
        k.sgd_step_([p, other, p], [g, g_other, g], vs, 0.1, 0.9, 0.01, zero_grads)
        runs.append([p, other, g, g_other] + vs)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_sgd_step_zero_grad_trains_like_step_then_zero_grad(backend_name):
    def train(fused):
        torch.manual_seed(16)
        net = dl.Sequential(dl.Linear(2, 25), dl.ReLU(), dl.Linear(25, 25), dl.Tanh(), dl.Linear(25, 2))
        loss, opt = dl.LossMSE(), dl.SGD(net.param(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        x, t = torch.rand(64, 2), torch.rand(64, 2)
        for _ in range(5):
            loss.forward(net.forward(x), t)
            net.backward(loss.backward())
            if fused:
                opt.step(zero_grad=True)
            else:
                opt.step()
                opt.zero_grad()
        return [p.clone() for p, _ in net.param()], [g.clone() for _, g in net.param()]

    (p1, g1), (p2, g2) = train(True), train(False)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert all(torch.equal(a, b) and not a.any() for a, b in zip(g1, g2))


def test_sgd_zero_grads_refuses_shared_memory_before_writing(ops):
    p, other = torch.ones(3, 2), torch.ones(2)
    g = torch.ones(2).expand(3, 2)
    with pytest.raises(ValueError, match=r"minidl.sgd_step_ \(parameter 1\): zero_grads needs gradients whose "
                                         r"elements have memory of their own, got one of strides \[0, 1\]"):
        ops.sgd_step_([other, p], [torch.ones(2), g], [], 0.1, 0.0, 0.0, True)
    assert torch.equal(other, torch.ones(2)) and torch.equal(p, torch.ones(3, 2))
