"""The fused Linear stack of a Sequential against torch.autograd and the same modules run one by one."""
import pytest
import torch

import minidl as dl

from op_cases import autograd_reference, torch_linear

STACKS = {
    "disk": ([2, 25, 25, 25, 2], [1, 1, 1, 0]),
    "tanh-out": ([5, 7, 3], [2, 2]),
    "one-layer": ([4, 3], [0]),
    "mixed": ([6, 9, 1, 4], [2, 0, 1]),
}


def _stack(sizes, codes, dtype, device):
    acts = {0: None, 1: dl.ReLU, 2: dl.Tanh}
    mods = []
    for fin, fout, c in zip(sizes, sizes[1:], codes):
        mods.append(dl.Linear(fin, fout, dtype=dtype, device=device))
        if acts[c]:
            mods.append(acts[c]())
    return mods


def _torch_twin(mods):
    ref = []
    for m in mods:
        if isinstance(m, dl.Linear):
            ref.append(torch_linear(m))
        else:
            ref.append(torch.nn.ReLU() if isinstance(m, dl.ReLU) else torch.nn.Tanh())
    return torch.nn.Sequential(*ref)


@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 17])
def test_fused_sequential_matches_autograd(backend_name, device, stack, dtype, batch):
    torch.manual_seed(9)
    sizes, codes = STACKS[stack]
    net = dl.Sequential(*_stack(sizes, codes, dtype, device))
    assert net.fused is not None  # takes the fused path
    ref = _torch_twin(net.modules)
    x = torch.randn(batch, sizes[0], dtype=dtype, device=device).t().contiguous().t()  # non-contiguous if batch > 1
    gy = torch.randn(batch, sizes[-1], dtype=dtype, device=device)
    y = net.forward(x)
    gx = net.backward(gy)
    y_ref, gx_ref = autograd_reference(ref, x, gy)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(gx, gx_ref, **tol)
    for (_, g), p in zip(net.param(), ref.parameters()):
        torch.testing.assert_close(g, p.grad, **tol)


@pytest.mark.parametrize("stack", list(STACKS))
def test_fused_equals_module_by_module(backend_name, device, stack):
    """The fused stack and the same modules run one by one give the same outputs and gradients."""
    torch.manual_seed(10)
    sizes, codes = STACKS[stack]
    mods = _stack(sizes, codes, torch.float64, device)
    fused = dl.Sequential(*mods)
    x = torch.randn(8, sizes[0], dtype=torch.float64, device=device)
    gy = torch.randn(8, sizes[-1], dtype=torch.float64, device=device)
    y1 = fused.forward(x)
    gx1 = fused.backward(gy)
    g1 = [g.clone() for _, g in fused.param()]
    fused.zero_grad()
    y2 = x
    for m in mods:
        y2 = m.forward(y2)
    gx2 = gy
    for m in reversed(mods):
        gx2 = m.backward(gx2)
    torch.testing.assert_close(y1, y2, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(gx1, gx2, rtol=1e-14, atol=1e-15)
    for a, (_, b) in zip(g1, fused.param()):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


def test_input_grad_false_skips_the_input_gradient(backend_name):
    net = dl.Sequential(*_stack([3, 4, 2], [1, 0], torch.float64, "cpu"))
    x, gy = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    net.forward(x)
    full = net.backward(gy)
    grads = [g.clone() for _, g in net.param()]
    net.zero_grad()
    net.forward(x)
    assert full is not None and net.backward(gy, input_grad=False) is None
    for a, (_, b) in zip(grads, net.param()):
        assert torch.equal(a, b)


def test_module_backward_still_works_after_a_fused_forward(backend_name):
    """A module of a fused stack, called on its own, pairs its backward with its own forward; the
    stack's backward still meets the stack's forward (its input x), not the module's."""
    net = dl.Sequential(*_stack([3, 4, 2], [2, 0], torch.float64, "cpu"))
    ref = _torch_twin(net.modules)
    x, h = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    gy = torch.randn(5, 2, dtype=torch.float64)
    net.forward(x)
    with pytest.raises(RuntimeError, match=r"^Linear\(4, 2, bias=True\)\.backward: called before forward$"):
        net[2].backward(gy)  # the stack's forward is the stack's: it left nothing on its modules
    net[2].forward(h)
    g_last = net[2].backward(torch.ones(5, 2, dtype=torch.float64))  # the last Linear on its own
    torch.testing.assert_close(g_last, torch.ones(5, 2, dtype=torch.float64) @ net[2].weight)
    net.zero_grad()
    gx = net.backward(gy)
    _, gx_ref = autograd_reference(ref, x, gy)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    for (_, g), p in zip(net.param(), ref.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-12)


def test_unfusable_sequences_run_module_by_module(backend_name):
    torch.manual_seed(11)
    for mods in ([dl.ReLU(), dl.Linear(3, 2)], [dl.Linear(3, 4, bias=False), dl.Tanh(), dl.Linear(4, 2)],
                 [dl.Linear(3, 4), dl.ReLU(), dl.Tanh(), dl.Linear(4, 2)], [dl.Sequential(dl.Linear(3, 3)), dl.Linear(3, 2)]):
        net = dl.Sequential(*mods)
        assert net.fused is None
        x = torch.randn(6, 3)
        y = net.forward(x)
        assert y.shape == (6, 2) and net.backward(torch.ones_like(y)).shape == (6, 3)


def test_bias_gradient_of_a_large_batch_is_summed_accurately(backend_name):
    """A float32 sum that adds row after row stays at 2^24 once it gets there (2^24 + 1 rounds back):
    the bias gradient must be summed as torch sums (in a cascade), on the fused path past the small loops."""
    net = dl.Sequential(dl.Linear(1, 1))
    n = 65536
    net.forward(torch.ones(n, 1))
    g = torch.ones(n, 1)
    g[0] = 2.0 ** 24
    net.zero_grad()
    net.backward(g, input_grad=False)
    exact = 2.0 ** 24 + (n - 1)
    # row after row loses all n - 1 ones (error 65535); a cascade, a few ulps of 2 (15 here)
    assert abs(net[0].grad_bias.item() - exact) <= 1e-5 * exact
