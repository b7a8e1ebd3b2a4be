"""Per-call contexts: modules applied several times, shared by two networks, or replaced, against torch.nn
networks built the same way (float64, both backends, the fused and the module-by-module paths)."""
import os
import re

import pytest
import torch

import minidl as dl

from op_cases import autograd_reference, torch_linear

F64 = dict(dtype=torch.float64)
TOL = dict(rtol=1e-12, atol=1e-12)


class Through(dl.Module):
    """y = x (stateless, so it may be reused); at the end of a Sequential it keeps the stack module by module."""

    def forward(self, input):
        return input

    def backward(self, grad_output):
        return grad_output


def twin(module, twins=None):
    """The torch.nn network of a minidl one, with a module shared wherever the minidl one is shared."""
    twins = {} if twins is None else twins
    if id(module) not in twins:
        if isinstance(module, dl.Linear):
            twins[id(module)] = torch_linear(module)
        elif isinstance(module, dl.Sequential):
            twins[id(module)] = torch.nn.Sequential(*[twin(m, twins) for m in module.modules])
        else:
            twins[id(module)] = {dl.Tanh: torch.nn.Tanh, dl.ReLU: torch.nn.ReLU, Through: torch.nn.Identity}[type(module)]()
    return twins[id(module)]


def seq(path, *modules):
    """A Sequential of the modules that runs fused, or module by module (a Through at the end)."""
    net = dl.Sequential(*modules) if path == "fused" else dl.Sequential(*modules, Through())
    assert (net.fused is not None) == (path == "fused")
    return net


def reused_net(what, times, path):
    """A network in which a Linear, a Tanh or a whole Sequential is applied `times` times."""
    torch.manual_seed(30 + times)
    if what == "linear":
        a, mods = dl.Linear(4, 4, **F64), []
        for _ in range(times):
            mods += [a, dl.Tanh()]
        return seq(path, *mods, dl.Linear(4, 2, **F64))
    if what == "tanh":
        t, mods = dl.Tanh(), []
        for _ in range(times):
            mods += [dl.Linear(4, 4, **F64), t]
        return seq(path, *mods, dl.Linear(4, 2, **F64))
    block = seq(path, dl.Linear(4, 4, **F64), dl.Tanh())
    return dl.Sequential(*[block] * times, dl.Linear(4, 2, **F64))


def check_against_torch(net, ref, x, gy):
    y = net.forward(x)
    gx = net.backward(gy)
    y_ref, gx_ref = autograd_reference(ref, x, gy)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(gx, gx_ref, **TOL)
    ref_params = list(ref.parameters())  # each shared tensor once, in order of first use
    assert len(net.param()) == len(ref_params)
    for (_, g), rp in zip(net.param(), ref_params):
        torch.testing.assert_close(g, rp.grad, **TOL)


@pytest.mark.parametrize("path", ["fused", "modules"])
@pytest.mark.parametrize("times", [2, 3])
@pytest.mark.parametrize("what", ["linear", "tanh", "sequential"])
def test_a_module_applied_several_times_in_one_forward(backend_name, what, times, path):
    net = reused_net(what, times, path)
    torch.manual_seed(40)
    check_against_torch(net, twin(net), torch.randn(6, 4, **F64), torch.randn(6, 2, **F64))


@pytest.mark.parametrize("path", ["fused", "modules"])
@pytest.mark.parametrize("order", ["first net first", "second net first"])
def test_two_networks_sharing_a_linear_both_forwards_before_either_backward(backend_name, path, order):
    torch.manual_seed(41)
    shared = dl.Linear(4, 4, **F64)
    nets = [seq(path, dl.Linear(3, 4, **F64), dl.Tanh(), shared),
            seq(path, shared, dl.ReLU(), dl.Linear(4, 2, **F64))]
    twins = {}
    refs = [twin(n, twins) for n in nets]
    xs = [torch.randn(5, 3, **F64), torch.randn(7, 4, **F64)]
    gys = [torch.randn(5, 4, **F64), torch.randn(7, 2, **F64)]
    for n in nets:
        n.zero_grad()
    for n, x in zip(nets, xs):
        n.forward(x)
    turns = [0, 1] if order == "first net first" else [1, 0]
    gxs = {i: nets[i].backward(gys[i]) for i in turns}
    for i in turns:
        _, gx_ref = autograd_reference(refs[i], xs[i], gys[i])  # the shared twin's grad adds up over both
        torch.testing.assert_close(gxs[i], gx_ref, **TOL)
    pairs = {id(p): g for n in nets for p, g in n.param()}
    ref_grads = {id(p): p.grad for r in refs for p in r.parameters()}
    ours = [pairs[id(p)] for n in nets for p, _ in n.param()]
    theirs = [ref_grads[id(p)] for r in refs for p in r.parameters()]
    for g, want in zip(ours, theirs):
        torch.testing.assert_close(g, want, **TOL)


@pytest.mark.parametrize("change", ["shorter", "longer", "between forward and backward"])
def test_modules_replaced_after_a_forward(backend_name, change):
    """Assigning net.modules decides the path again: the old fused stack never runs after it."""
    torch.manual_seed(42)
    a, b, c, d = dl.Linear(3, 4, **F64), dl.Linear(4, 4, **F64), dl.Linear(4, 2, **F64), dl.Linear(2, 3, **F64)
    net = dl.Sequential(a, dl.Tanh(), b, dl.ReLU(), c)
    x, gy = torch.randn(5, 3, **F64), torch.randn(5, 2, **F64)
    net.forward(x)
    if change == "between forward and backward":  # the backward belongs to the forward that ran
        ref = twin(net)
        net.modules = net.modules[:2]
        gx = net.backward(gy)
        _, gx_ref = autograd_reference(ref, x, gy)
        torch.testing.assert_close(gx, gx_ref, **TOL)
        return
    net.modules = net.modules[:2] if change == "shorter" else net.modules + (dl.Tanh(), d)
    net.zero_grad()
    gy = torch.randn(5, 4 if change == "shorter" else 3, **F64)
    check_against_torch(net, twin(net), x, gy)


@pytest.mark.parametrize("path", ["fused", "modules"])
def test_input_grad_false_returns_none_on_both_paths(backend_name, path):
    torch.manual_seed(43)
    net = seq(path, dl.Linear(3, 4, **F64), dl.ReLU(), dl.Linear(4, 2, **F64))
    x, gy = torch.randn(5, 3, **F64), torch.randn(5, 2, **F64)
    net.forward(x)
    assert net.backward(gy) is not None
    grads = [g.clone() for _, g in net.param()]
    net.zero_grad()
    net.forward(x)
    assert net.backward(gy, input_grad=False) is None
    for a, (_, b) in zip(grads, net.param()):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def _modules_to_call():
    torch.manual_seed(44)
    return [(dl.Linear(3, 3), 1), (dl.Tanh(), 1), (dl.ReLU(), 1), (dl.Sequential(dl.Linear(3, 3), dl.Tanh()), 1),
            (dl.Sequential(dl.Linear(3, 3, bias=False), dl.Tanh()), 1), (dl.LossMSE(), 2)]


@pytest.mark.parametrize("index", range(6))
def test_backward_once_more_than_forward_names_the_module(backend_name, index):
    module, inputs = _modules_to_call()[index]
    x = torch.rand(4, 3)
    args = (x, torch.rand(4, 3))[:inputs]
    grad = () if isinstance(module, dl.LossMSE) else (torch.ones(4, 3),)
    module.forward(*args)
    module.backward(*grad)
    with pytest.raises(RuntimeError, match=rf"^{re.escape(repr(module))}\.backward: called more times than forward$"):
        module.backward(*grad)


@pytest.mark.parametrize("index", range(6))
def test_a_forward_that_raised_leaves_no_context(backend_name, index):
    module, inputs = _modules_to_call()[index]
    args = (torch.rand(4, 3), torch.rand(4, 3))[:inputs]
    grad = () if isinstance(module, dl.LossMSE) else (torch.ones(4, 3),)
    module.forward(*args)
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        module.forward(*((torch.rand(4, 3), torch.rand(5, 3)) if inputs == 2 else ("not a tensor",)))
    with pytest.raises(RuntimeError, match=rf"^{re.escape(repr(module))}\.backward: called before forward$"):
        module.backward(*grad)


def test_loss_backward_scales_by_the_upstream_gradient(backend_name):
    loss = dl.LossMSE()
    output, target = torch.rand(4, 3, **F64), torch.rand(4, 3, **F64)
    loss.forward(output, target)
    torch.testing.assert_close(loss.backward(torch.tensor(3.0, **F64)), 3 * 2 * (output - target) / 12, **TOL)
    with pytest.raises(RuntimeError, match=r"^LossMSE\(\)\.backward: called more times than forward$"):
        loss.backward()


def test_backward_pairs_with_the_latest_forward(backend_name):
    torch.manual_seed(45)
    lin = dl.Linear(3, 2, **F64)
    x1, x2, gy = torch.randn(4, 3, **F64), torch.randn(4, 3, **F64), torch.randn(4, 2, **F64)
    lin.forward(x1)
    lin.forward(x2)
    lin.backward(gy)
    torch.testing.assert_close(lin.grad_weight, gy.t() @ x2, **TOL)
    with pytest.raises(RuntimeError, match=r"^Linear\(3, 2, bias=True\)\.backward: called more times than forward$"):
        lin.backward(gy)


class Siamese(dl.Module):
    """One branch applied to two inputs, then summed: the shape of the pairs study's weight-sharing nets."""

    def __init__(self, branch):
        self.branch = branch

    def forward_ctx(self, ctx, x1, x2):
        y1, ctx.first = self.branch.call(x1)
        y2, ctx.second = self.branch.call(x2)
        return y1 + y2

    def backward_ctx(self, ctx, grad_output):
        return self.branch.backward_ctx(ctx.first, grad_output), self.branch.backward_ctx(ctx.second, grad_output)

    def named_children(self):
        return [("branch", self.branch)]


@pytest.mark.parametrize("path", ["fused", "modules"])
def test_a_branch_applied_to_two_inputs_through_call(backend_name, path):
    torch.manual_seed(46)
    net = Siamese(seq(path, dl.Linear(3, 4, **F64), dl.Tanh(), dl.Linear(4, 2, **F64)))
    ref = twin(net.branch)
    x1, x2, gy = torch.randn(5, 3, **F64), torch.randn(5, 3, **F64), torch.randn(5, 2, **F64)
    y = net.forward(x1, x2)
    g1, g2 = net.backward(gy)
    xr1, xr2 = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    with torch.enable_grad():
        y_ref = ref(xr1) + ref(xr2)
        y_ref.backward(gy)
    torch.testing.assert_close(y, y_ref.detach(), **TOL)
    torch.testing.assert_close(g1, xr1.grad, **TOL)
    torch.testing.assert_close(g2, xr2.grad, **TOL)
    for (_, g), rp in zip(net.param(), ref.parameters()):
        torch.testing.assert_close(g, rp.grad, **TOL)


class Doubler(dl.Module):
    """A module in the course's style: forward and backward only, keeping its own state."""

    def forward(self, input):
        return input.mul(2)

    def backward(self, grad_output):
        return grad_output.mul(2)


def test_a_module_written_as_forward_and_backward_runs_inside_a_sequential(backend_name):
    lin = dl.Linear(3, 2, **F64)
    net = dl.Sequential(lin, Doubler())
    x = torch.randn(4, 3, **F64)
    y = net.forward(x)
    torch.testing.assert_close(y, 2 * lin.forward(x), **TOL)
    gx = net.backward(torch.ones(4, 2, **F64))
    torch.testing.assert_close(gx, 2 * torch.ones(4, 2, **F64) @ lin.weight, **TOL)


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.parametrize("path", ["fused", "modules"])
def test_forwards_without_backward_keep_memory_flat(backend_name, path):
    """100,000 forwards (an evaluation loop) of a net that applies a module twice: no context piles up."""
    steps = 100_000 if backend_name == "cpp" else 20_000
    torch.manual_seed(47)
    block = seq(path, dl.Linear(2, 2), dl.Tanh())
    net = dl.Sequential(block, block, dl.Linear(2, 2))
    x = torch.rand(4, 2)
    for i in range(steps + 2_000):
        if i == 2_000:
            start = _rss_mib()
        net.forward(x)
        block.forward(x)
    assert _rss_mib() - start < 5, f"RSS grew from {start:.1f} to {_rss_mib():.1f} MiB over {steps} forwards"
