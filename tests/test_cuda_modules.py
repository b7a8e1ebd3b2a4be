"""The Module layer on CUDA: both backends against each other and the CPU, and training against the CPU.

The helpers, and the skip of the whole module without a GPU or CUDA kernels: cuda_support.py.
"""
import pytest
import torch

import minidl

from cuda_support import CUDA, DTYPES, TOL, cuda_kernels, randn  # noqa: F401 (cuda_kernels: the skip)


# ---- the Module layer --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", ["Tanh", "ReLU"])
def test_modules_cpp_vs_python_on_cuda(module, dtype):
    torch.manual_seed(11)
    x, gy = randn((64, 25), dtype), randn((64, 25), dtype)
    results = {}
    for name in ("cpp", "python"):
        minidl.set_backend(name)
        m = getattr(minidl, module)()
        results[name] = (m.forward(x), m.backward(gy))
        assert results[name][0].device == x.device
    minidl.set_backend("cpp")
    m = getattr(minidl, module)()
    cpu = (m.forward(x.cpu()), m.backward(gy.cpu()))
    for got, want, cpu_want in zip(results["cpp"], results["python"], cpu):
        torch.testing.assert_close(got, want, **TOL[dtype])
        torch.testing.assert_close(got.cpu(), cpu_want, **TOL[dtype])


def _net(device, dtype):
    return minidl.Sequential(minidl.Linear(2, 25, device=device, dtype=dtype), minidl.ReLU(),
                             minidl.Linear(25, 25, device=device, dtype=dtype), minidl.Tanh(),
                             minidl.Linear(25, 2, device=device, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend_name", ["cpp", "python"])
def test_training_on_cuda_matches_cpu(backend_name, dtype):
    """A few SGD steps of the same network on the GPU and on the CPU (cpp backend): same losses and weights."""
    torch.manual_seed(12)
    x = torch.rand(200, 2, dtype=dtype)
    target = torch.stack([(x - 0.5).norm(dim=1) < 0.4, (x - 0.5).norm(dim=1) >= 0.4], dim=1).to(dtype)
    cpu_net = _net("cpu", dtype)
    gpu_net = _net(CUDA, dtype)
    assert all(p.device.type == torch.device(CUDA).type for p, _ in gpu_net.param())
    for (pc, _), (pg, _) in zip(cpu_net.param(), gpu_net.param()):
        pg.copy_(pc)

    def train(net, x, target, backend_name):
        minidl.set_backend(backend_name)
        loss_fn, opt = minidl.LossMSE(), minidl.SGD(net, lr=0.1, momentum=0.9)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            losses.append(loss_fn.forward(net.forward(x), target))
            net.backward(loss_fn.backward())
            opt.step()
        return torch.stack(losses)

    cpu_losses = train(cpu_net, x, target, "cpp")
    gpu_losses = train(gpu_net, x.to(CUDA), target.to(CUDA), backend_name)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu_losses.cpu(), cpu_losses, **tol)
    for (pc, gc), (pg, gg) in zip(cpu_net.param(), gpu_net.param()):
        torch.testing.assert_close(pg.cpu(), pc, **tol)
        torch.testing.assert_close(gg.cpu(), gc, **tol)
    assert cpu_losses[-1] < cpu_losses[0]
