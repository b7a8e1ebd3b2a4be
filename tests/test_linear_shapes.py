"""Linear, and the fused Sequential stack, on inputs of shape [*, in_features] as torch.nn.Linear."""
import pytest
import torch

import minidl as dl
from op_cases import torch_linear

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}
DTYPES = [torch.float64, torch.float32]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
SHAPES = [(5,), (1, 5), (7, 5), (2, 3, 4, 5), (3, 1, 5), (0, 5), (2, 0, 5)]


def _reference(tmodule, x, gy):
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        y = tmodule(xr)
        y.backward(gy)
    return y.detach(), xr.grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("noncontiguous", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_takes_any_leading_dimensions(backend_name, device, dtype, shape, noncontiguous, bias):
    torch.manual_seed(len(shape))
    lin = dl.Linear(5, 3, bias=bias, device=device, dtype=dtype)
    tl = torch_linear(lin)
    x = torch.randn(*shape, dtype=dtype, device=device)
    if noncontiguous:  # the same values in a layout that no 2-D view can describe
        x = torch.randn(*reversed(shape), dtype=dtype, device=device).permute(*reversed(range(len(shape))))
    gy = torch.randn(*shape[:-1], 3, dtype=dtype, device=device)
    y_ref, gx_ref = _reference(tl, x, gy)
    y = lin(x)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    gx = lin.backward(gy)
    assert gx.shape == x.shape
    torch.testing.assert_close(gx, gx_ref, **TOL[dtype])
    torch.testing.assert_close(lin.grad_weight, tl.weight.grad, **TOL[dtype])
    if bias:
        torch.testing.assert_close(lin.grad_bias, tl.bias.grad, **TOL[dtype])


def test_a_contiguous_input_is_viewed_not_copied(backend_name):
    lin = dl.Linear(5, 3)
    x = torch.randn(2, 3, 5)
    out, ctx = lin.call(x)
    assert ctx.input.data_ptr() == x.data_ptr() and ctx.input.shape == (6, 5)
    assert out.shape == (2, 3, 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), (7, 5), (0, 3, 5)])
@pytest.mark.parametrize("fused", [True, False])
def test_sequential_takes_any_leading_dimensions(backend_name, device, dtype, shape, fused):
    """The fused stack (mlp_forward/mlp_backward) and module by module give torch's answers."""
    torch.manual_seed(3)
    net = dl.Sequential(dl.Linear(5, 4, device=device, dtype=dtype), dl.Tanh(),
                        dl.Linear(4, 2, device=device, dtype=dtype), dl.ReLU())
    if not fused:
        net[0].bias = None  # a layer without a bias: the stack runs module by module
        net[0].grad_bias = None
    assert (net.fused is not None) == fused
    tnet = torch.nn.Sequential(torch_linear(net[0]), torch.nn.Tanh(), torch_linear(net[2]), torch.nn.ReLU())
    x = torch.randn(*shape, dtype=dtype, device=device)
    gy = torch.randn(*shape[:-1], 2, dtype=dtype, device=device)
    y_ref, gx_ref = _reference(tnet, x, gy)
    y = net(x)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(net.backward(gy), gx_ref, **TOL[dtype])
    for m, tm in ((net[0], tnet[0]), (net[2], tnet[2])):
        torch.testing.assert_close(m.grad_weight, tm.weight.grad, **TOL[dtype])
        if m.bias is not None:
            torch.testing.assert_close(m.grad_bias, tm.bias.grad, **TOL[dtype])
    net(x)
    assert net.backward(gy, input_grad=False) is None


def test_sequential_refuses_a_wrong_last_dimension_or_grad_shape(backend_name):
    net = dl.Sequential(dl.Linear(5, 4), dl.ReLU(), dl.Linear(4, 2))
    with pytest.raises(ValueError, match=r"^Sequential\(.*\)\.forward: expected input of shape \[\*, 5\], got \[2, 3, 4\]"):
        net(torch.randn(2, 3, 4))
    net(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"^Sequential\(.*\)\.backward: expected grad_output of shape \[2, 3, 2\]"):
        net.backward(torch.randn(3, 2, 2))


def test_one_linear_serves_inputs_of_different_ranks(backend_name):
    """Module reuse: the same Linear on a batch and on a single vector, each backward with its own context."""
    torch.manual_seed(5)
    lin = dl.Linear(5, 3, dtype=torch.float64)
    tl = torch_linear(lin)
    a, b = torch.randn(4, 2, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    ga, gb = torch.randn(4, 2, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    ya, ctx_a = lin.call(a)
    yb, ctx_b = lin.call(b)
    gxb, gxa = lin.backward_ctx(ctx_b, gb), lin.backward_ctx(ctx_a, ga)
    ar, br = a.clone().requires_grad_(), b.clone().requires_grad_()
    with torch.enable_grad():
        (tl(ar) * ga).sum().add((tl(br) * gb).sum()).backward()
    torch.testing.assert_close(gxa, ar.grad)
    torch.testing.assert_close(gxb, br.grad)
    torch.testing.assert_close(lin.grad_weight, tl.weight.grad)
    torch.testing.assert_close(lin.grad_bias, tl.bias.grad)
