"""The Module layer against the identical torch.nn network, finite differences, accumulation and SGD."""
import pytest
import torch

import minidl as dl

from op_cases import autograd_reference, torch_linear


def disk_pair(dtype=torch.float64, device="cpu", acts=("relu", "tanh", "relu")):
    """The same 2-25-25-25-2 network in minidl and in torch.nn, with identical weights."""
    torch.manual_seed(4)
    mods, ref = [], []
    sizes = [2, 25, 25, 25, 2]
    for i, (fin, fout) in enumerate(zip(sizes, sizes[1:])):
        lin = dl.Linear(fin, fout, dtype=dtype, device=device)
        mods.append(lin)
        ref.append(torch_linear(lin))
        if i < len(acts):
            mods.append(dl.ReLU() if acts[i] == "relu" else dl.Tanh())
            ref.append(torch.nn.ReLU() if acts[i] == "relu" else torch.nn.Tanh())
    return dl.Sequential(*mods), torch.nn.Sequential(*ref)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 10, 100])
def test_sequential_grads_match_torch_nn(backend_name, device, dtype, batch):
    net, ref = disk_pair(dtype, device)
    x = torch.rand(batch, 2, dtype=dtype, device=device)
    t = torch.rand(batch, 2, dtype=dtype, device=device)
    crit = dl.LossMSE()
    loss = crit.forward(net.forward(x), t)
    net.zero_grad()
    gx = net.backward(crit.backward())

    one = torch.ones((), dtype=dtype, device=device)
    loss_ref, gx_ref = autograd_reference(lambda xr: torch.nn.MSELoss()(ref(xr), t), x, one)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss, loss_ref, **tol)
    torch.testing.assert_close(gx, gx_ref, **tol)
    ref_params = [p for p in ref.parameters()]
    assert len(net.param()) == len(ref_params) == 8
    for (p, g), rp in zip(net.param(), ref_params):
        assert p.shape == g.shape == rp.shape
        torch.testing.assert_close(g, rp.grad, **tol)


def test_finite_differences(backend_name):
    """Every parameter gradient of a Tanh network against central differences of the loss, in float64."""
    net, _ = disk_pair(torch.float64, acts=("tanh", "tanh", "tanh"))
    torch.manual_seed(5)
    x, t = torch.rand(7, 2, dtype=torch.float64), torch.rand(7, 2, dtype=torch.float64)
    crit = dl.LossMSE()
    crit.forward(net.forward(x), t)
    net.zero_grad()
    net.backward(crit.backward())
    eps = 1e-6
    for p, g in net.param():
        flat, gflat = p.view(-1), g.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 7)):
            old = flat[i].item()
            flat[i] = old + eps
            up = crit.forward(net.forward(x), t).item()
            flat[i] = old - eps
            down = crit.forward(net.forward(x), t).item()
            flat[i] = old
            assert abs((up - down) / (2 * eps) - gflat[i].item()) < 1e-7


def test_gradients_accumulate_and_zero_grad(backend_name):
    net, _ = disk_pair()
    x, t = torch.rand(5, 2, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
    crit = dl.LossMSE()
    net.zero_grad()
    crit.forward(net.forward(x), t)
    net.backward(crit.backward())
    once = [g.clone() for _, g in net.param()]
    crit.forward(net.forward(x), t)
    net.backward(crit.backward())
    for (_, g), g1 in zip(net.param(), once):
        assert g1.abs().sum() > 0
        # Kernels add each sample's term into the gradient in turn, so the second pass rounds
        # differently from 2 * g1: equal to float64 rounding, as every float64 check here.
        torch.testing.assert_close(g, 2 * g1, rtol=1e-13, atol=0)
    net.zero_grad()
    assert all(g.abs().sum() == 0 for _, g in net.param())


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01), (0.9, 0.01)])
def test_sgd_matches_torch_optim(backend_name, momentum, weight_decay):
    net, ref = disk_pair()
    torch.manual_seed(6)
    x, t = torch.rand(50, 2, dtype=torch.float64), torch.rand(50, 2, dtype=torch.float64)
    crit, opt = dl.LossMSE(), dl.SGD(net.param(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    ropt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for _ in range(5):
        loss = crit.forward(net.forward(x), t)
        opt.zero_grad()
        net.backward(crit.backward())
        opt.step()
        with torch.enable_grad():
            ropt.zero_grad()
            rloss = torch.nn.MSELoss()(ref(x), t)
            rloss.backward()
        ropt.step()
        torch.testing.assert_close(loss, rloss.detach(), rtol=1e-12, atol=0)
    for (p, _), rp in zip(net.param(), ref.parameters()):
        torch.testing.assert_close(p, rp.detach(), rtol=1e-12, atol=1e-14)


def test_linear_init_like_torch():
    torch.manual_seed(7)
    lin = dl.Linear(400, 300)
    bound = 1 / 400 ** 0.5
    for p in (lin.weight, lin.bias):
        assert p.dtype == torch.float32 and p.abs().max() <= bound
        assert p.abs().max() > 0.95 * bound and abs(p.mean().item()) < 0.05 * bound
    assert [g.shape for _, g in lin.param()] == [(300, 400), (300,)]
    assert all(g.abs().sum() == 0 for _, g in lin.param())
    assert dl.Linear(3, 2, bias=False).param()[0][0].shape == (2, 3)
    assert dl.ReLU().param() == [] and dl.Tanh().param() == []


def test_loss_mse_matches_torch():
    torch.manual_seed(8)
    out, t = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    crit = dl.LossMSE()
    loss = crit.forward(out, t)
    ref, grad_ref = autograd_reference(lambda o: torch.nn.MSELoss()(o, t), out, None)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, ref, rtol=1e-14, atol=0)
    torch.testing.assert_close(crit.backward(), grad_ref, rtol=1e-14, atol=0)


def test_to_moves_in_place_and_optimizer_follows():
    net, _ = disk_pair(torch.float32)
    opt = dl.SGD(net.param(), lr=0.1)
    net.to(dtype=torch.float64)
    assert all(p.dtype == torch.float64 and g.dtype == torch.float64 for p, g in net.param())
    assert all(p is q for (p, _), (q, _) in zip(net.param(), opt.params))
