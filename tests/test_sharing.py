"""Modules used more than once, and tensors reassigned after a Sequential is built: against torch.nn
networks that share the same way, in float64, on both backends."""
import pytest
import torch

import minidl as dl

from op_cases import autograd_reference, torch_linear as twin


def shared_nets(kind):
    """(minidl net, torch.nn twin): the same modules shared in the same places."""
    torch.manual_seed(11)
    f64 = dict(dtype=torch.float64)
    if kind == "relu twice, unfused":  # a Linear without bias keeps the stack module by module
        a, b, r = dl.Linear(3, 4, **f64), dl.Linear(4, 4, bias=False, **f64), dl.ReLU()
        ta, tb, tr = twin(a), twin(b), torch.nn.ReLU()
        return dl.Sequential(a, r, b, r), torch.nn.Sequential(ta, tr, tb, tr)
    if kind == "linear twice, unfused":
        a, t = dl.Linear(4, 4, bias=False, **f64), dl.Tanh()
        ta = twin(a)
        return dl.Sequential(a, t, a, t), torch.nn.Sequential(ta, torch.nn.Tanh(), ta, torch.nn.Tanh())
    if kind == "linear twice, fused":
        a = dl.Linear(4, 4, **f64)
        ta = twin(a)
        return dl.Sequential(a, dl.Tanh(), a), torch.nn.Sequential(ta, torch.nn.Tanh(), ta)
    if kind == "block twice, nested":
        block = dl.Sequential(dl.Linear(4, 4, **f64), dl.ReLU())
        tblock = torch.nn.Sequential(twin(block[0]), torch.nn.ReLU())
        a = dl.Linear(4, 4, bias=False, **f64)
        ta = twin(a)
        return (dl.Sequential(block, a, dl.Sequential(a, block)),
                torch.nn.Sequential(tblock, ta, torch.nn.Sequential(ta, tblock)))
    raise ValueError(kind)


KINDS = ["relu twice, unfused", "linear twice, unfused", "linear twice, fused", "block twice, nested"]


@pytest.mark.parametrize("kind", KINDS)
def test_shared_modules_match_torch(backend_name, kind):
    net, ref = shared_nets(kind)
    in_features = 3 if kind.startswith("relu") else 4
    torch.manual_seed(12)
    x = torch.randn(6, in_features, dtype=torch.float64)
    y = net.forward(x)
    gy = torch.randn_like(y)
    gx = net.backward(gy)
    y_ref, gx_ref = autograd_reference(ref, x, gy)
    tol = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(gx, gx_ref, **tol)
    ref_params = list(ref.parameters())  # each shared tensor once
    assert len(net.param()) == len(ref_params)
    for (p, g), rp in zip(net.param(), ref_params):
        torch.testing.assert_close(p, rp.detach(), rtol=0, atol=0)
        torch.testing.assert_close(g, rp.grad, **tol)


@pytest.mark.parametrize("kind", KINDS)
def test_sgd_steps_a_shared_parameter_once(backend_name, kind):
    net, ref = shared_nets(kind)
    in_features = 3 if kind.startswith("relu") else 4
    opt = dl.SGD(net, lr=0.1, momentum=0.9, weight_decay=0.01)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    torch.manual_seed(13)
    for step in range(3):
        x = torch.randn(5, in_features, dtype=torch.float64)
        net.forward(x)
        net.backward(torch.ones(5, 4, dtype=torch.float64))
        opt.step(zero_grad=step % 2 == 0)  # the fused zeroing and a separate zero_grad alike
        if step % 2:
            net.zero_grad()
        ref_opt.zero_grad()
        with torch.enable_grad():
            ref(x).backward(torch.ones(5, 4, dtype=torch.float64))
        ref_opt.step()
    for (p, _), rp in zip(net.param(), ref.parameters()):
        torch.testing.assert_close(p, rp.detach(), rtol=1e-12, atol=1e-12)


def test_state_dict_names_a_shared_tensor_at_each_place_like_torch():
    net, ref = shared_nets("block twice, nested")
    assert list(net.state_dict()) == list(ref.state_dict())  # torch keeps every name of a shared tensor
    assert len(net.param()) == len(list(ref.parameters())) == 3  # and lists the tensor once
    net.load_state_dict({k: v.clone() for k, v in net.state_dict().items()})


def test_a_weight_shared_without_its_gradient_is_refused():
    a, b = dl.Linear(3, 3), dl.Linear(3, 3)
    b.weight = a.weight  # but not b.grad_weight: its gradient would be lost
    net = dl.Sequential(a, dl.Tanh(), b)
    with pytest.raises(ValueError, match=r"param: 2.weight shares 0.weight's tensor but not its gradient; "
                                         r"share the gradient too"):
        net.param()
    b.grad_weight = a.grad_weight
    assert len(net.param()) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_tensors_assigned_between_forward_and_backward_are_kept(backend_name, kind):
    """A backward reads the gradient tensors a module has then, also when one was assigned after the forward."""
    net, _ = shared_nets(kind)
    in_features = 3 if kind.startswith("relu") else 4
    net.forward(torch.randn(5, in_features, dtype=torch.float64))
    lin = next(m for m in _leaves(net) if isinstance(m, dl.Linear))
    new_grad = torch.zeros_like(lin.grad_weight)
    lin.grad_weight = new_grad
    net.backward(torch.ones(5, 4, dtype=torch.float64))
    assert lin.grad_weight is new_grad and new_grad.abs().sum() > 0


@pytest.mark.parametrize("stack", ["reused", "module by module", "fused"])
def test_backward_after_a_failed_forward_raises(backend_name, stack):
    """A forward that raised has left some modules with its inputs: no backward may mix them in."""
    if stack == "reused":
        net, _ = shared_nets("relu twice, unfused")
    else:
        last = dl.Linear(4, 4, bias=stack == "fused")
        net = dl.Sequential(dl.Linear(3, 4), dl.Tanh(), last)
    net.forward(torch.randn(6, 3, dtype=net[0].weight.dtype))
    with pytest.raises(ValueError, match="Linear"):
        net.forward(torch.randn(6, 5, dtype=net[0].weight.dtype))
    with pytest.raises(RuntimeError, match=r"Sequential\(.*backward: called before forward"):
        net.backward(torch.ones(6, 4, dtype=net[0].weight.dtype))


def _leaves(module):
    for m in getattr(module, "modules", [module]):
        yield from ([m] if not isinstance(m, dl.Sequential) else _leaves(m))


def test_reassigned_weights_reach_the_fused_path(backend_name):
    torch.manual_seed(14)
    a, b = dl.Linear(3, 5, dtype=torch.float64), dl.Linear(5, 2, dtype=torch.float64)
    net = dl.Sequential(a, dl.Tanh(), b)
    x = torch.randn(4, 3, dtype=torch.float64)
    net.forward(x)
    a.weight = torch.randn(5, 3, dtype=torch.float64)
    b.bias = torch.randn(2, dtype=torch.float64)
    a.grad_weight = torch.zeros(5, 3, dtype=torch.float64)
    by_module = lambda: b.forward(dl.Tanh().forward(a.forward(x)))  # noqa: E731
    # fused and module by module: the same products, summed in another order
    torch.testing.assert_close(net.forward(x), by_module(), rtol=1e-12, atol=1e-14)
    net.backward(torch.ones(4, 2, dtype=torch.float64))
    assert a.grad_weight.abs().sum() > 0  # the new gradient tensor received the gradient
    b.bias = b.grad_bias = None  # now the stack can't be fused: it runs module by module
    torch.testing.assert_close(net.forward(x), by_module(), rtol=0, atol=0)
    assert net.backward(torch.ones(4, 2, dtype=torch.float64)).shape == (4, 3)
