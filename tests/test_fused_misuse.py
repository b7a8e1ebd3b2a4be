"""The fused path on unusual calls: bad input and backward before forward name the module, tensors that
require grad (under no_grad and in grad mode), modules with no parameters to zero."""
import pytest
import torch

import minidl as dl


def test_fused_bad_input_names_the_sequential(backend_name):
    net = dl.Sequential(dl.Linear(2, 25), dl.ReLU(), dl.Linear(25, 2))
    with pytest.raises(ValueError, match=r"Sequential\(Linear\(2, 25.*forward.*layer 0.*\[N, 2\].*got \[4, 3\]"):
        net.forward(torch.rand(4, 3))
    net.forward(torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"Sequential\(.*backward.*grad_output of shape \[4, 2\], got \[4, 3\]"):
        net.backward(torch.rand(4, 3))
    with pytest.raises(RuntimeError, match=r"Sequential\(.*backward: called before forward"):
        dl.Sequential(dl.Linear(2, 2)).backward(torch.rand(1, 2))
    with pytest.raises(ValueError, match=r"SGD.step.*minidl.sgd_step_ \(parameter 0\).*grad of shape \[2, 2\]"):
        opt = dl.SGD([(torch.rand(2, 2), torch.rand(2, 2))], lr=0.1)
        opt._grads[0] = torch.rand(3)
        opt.step()


def test_fused_backward_names_a_bad_grad_bias(backend_name):
    """mlp_backward checks the gradients of the biases, not the biases: its messages say grad_bias."""
    net = dl.Sequential(dl.Linear(4, 2), dl.ReLU(), dl.Linear(2, 3))
    assert net.fused is not None
    for grad_bias, error, message in [
            (torch.zeros(2), ValueError, r"expected grad_bias of shape \[3\], got \[2\]"),
            (torch.zeros(3, dtype=torch.float64), TypeError,
             r"expected grad_bias of dtype (Float|torch\.float32) like weight, got (Double|torch\.float64)")]:
        net.forward(torch.rand(5, 4))
        net[2].grad_bias = grad_bias
        with pytest.raises(error, match=r"^Sequential\(.*\)\.backward: minidl\.mlp_backward \(layer 1\): "
                                        + message + "$"):
            net.backward(torch.rand(5, 3))


def test_mlp_backward_counts_grad_biases(ops):
    x, w = torch.rand(5, 4), torch.rand(3, 4)
    outputs = ops.mlp_forward(x, [w], [torch.zeros(3)], [0])
    with pytest.raises(ValueError, match=r"^minidl\.mlp_backward: expected as many grad_biases and activations as "
                                         r"weights \(1\), got 0 grad_biases and 1 activations$"):
        ops.mlp_backward(torch.rand(5, 3), x, outputs, [w], [torch.zeros(3, 4)], [], [0], None)


def test_inputs_that_require_grad_under_no_grad(backend_name):
    """Under torch.no_grad(), inputs that require grad give the values they give without, and no graph."""
    torch.manual_seed(21)
    net = dl.Sequential(dl.Linear(100, 100), dl.ReLU(), dl.Linear(100, 3))
    x, gy = torch.randn(10, 100), torch.randn(10, 3)
    y_ref = net.forward(x)
    gx_ref = net.backward(gy)
    with torch.enable_grad():  # grad mode on, nothing requires grad: the kernels' own ATen calls run as usual
        torch.testing.assert_close(net.forward(x), y_ref, rtol=0, atol=0)
        torch.testing.assert_close(net.backward(gy), gx_ref, rtol=0, atol=0)
    with torch.no_grad():
        y = net.forward(x.clone().requires_grad_())
        gx = net.backward(gy.clone().requires_grad_())
        lin = dl.Linear(100, 100)
        z = lin.forward(x.clone().requires_grad_())
        lin.backward(torch.ones(10, 100, requires_grad=True))
        loss = dl.LossMSE().forward(y, torch.zeros_like(y))
        opt = dl.SGD(net, lr=0.1, momentum=0.9)
        opt.step()
        strided = dl.SGD([(torch.ones(3, 4, requires_grad=True).t(), torch.ones(4, 3))], lr=0.1)
        strided.step()  # the ATen path of sgd_step_ (strided), updating in place a view of a leaf
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)
    assert z.shape == (10, 100) and loss.item() > 0
    # and no torch graph behind any result or parameter (it would grow by a node per step)
    for t in [y, gx, z, loss] + [t for m in (net, lin) for pair in m.param() for t in pair]:
        assert t.grad_fn is None and not t.requires_grad


def test_an_input_that_requires_grad_in_grad_mode_is_refused_naming_the_module(backend_name):
    """torch's autograd would not see minidl's ops: a module says so instead of returning untracked values."""
    net = dl.Sequential(dl.Linear(4, 3), dl.ReLU(), dl.Linear(3, 2))
    with torch.enable_grad():
        with pytest.raises(RuntimeError, match=r"Sequential\(.*\)\.forward: minidl\.mlp_forward: input requires grad"):
            net.forward(torch.randn(5, 4, requires_grad=True))


@pytest.mark.parametrize("fused", [True, False])
def test_parameters_that_require_grad_under_no_grad(backend_name, fused):
    """Parameters that require grad (torch Parameters assigned to a Linear, say) train without a graph."""
    torch.manual_seed(23)
    net = dl.Sequential(dl.Linear(4, 3), dl.Tanh(), dl.Linear(3, 2, bias=fused))
    for p, _ in net.param():
        p.requires_grad_()
    opt = dl.SGD(net, lr=0.1, momentum=0.9)
    with torch.no_grad():
        for _ in range(3):
            y = net.forward(torch.randn(5, 4))
            gx = net.backward(torch.ones(5, 2))
            opt.step(zero_grad=True)
    net.load_state_dict({k: v.detach().clone() for k, v in net.state_dict().items()})
    assert y.grad_fn is None and gx.grad_fn is None
    for p, g in net.param():
        assert p.grad_fn is None and p.requires_grad and g.grad_fn is None
    with torch.enable_grad(), pytest.raises(RuntimeError, match=r"requires grad, but minidl ops are not recorded"):
        net.forward(torch.randn(5, 4))


def test_zero_grad_of_modules_without_parameters(backend_name):
    for module in (dl.ReLU(), dl.Tanh(), dl.Sequential(), dl.Sequential(dl.ReLU())):
        module.zero_grad()
    dl.SGD([], lr=0.1).zero_grad()


def test_backward_before_forward_names_the_module_once(backend_name):
    for module in (dl.Linear(2, 2), dl.ReLU(), dl.Sequential(dl.Linear(2, 2))):
        with pytest.raises(RuntimeError) as info:
            module.backward(torch.ones(1, 2))
        assert str(info.value) == f"{module!r}.backward: called before forward"
