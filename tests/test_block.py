"""The fused MaxPool2d -> BatchNorm2d -> ReLU block (Sequential's PoolNormReLU steps) against the same modules run
one by one and against torch.nn with autograd: outputs, gradients, running statistics, both backends."""
import pytest
import torch

import minidl as dl
from minidl.nn.block import PoolNormReLU, fused_blocks

F64_TOL = dict(rtol=1e-12, atol=1e-12)
F32_TOL = dict(rtol=1e-5, atol=1e-5)


def modules(channels, dtype, momentum=0.1):
    return dl.MaxPool2d(2), dl.BatchNorm2d(channels, momentum=momentum, dtype=dtype), dl.ReLU()


def unfused_step(mods, x, g):
    """The modules one by one (each its own kernels): (output, grad_input)."""
    ctxs = []
    for m in mods:
        x, ctx = m.call(x)
        ctxs.append(ctx)
    y = x
    for m, ctx in zip(reversed(mods), reversed(ctxs)):
        g = m.backward_ctx(ctx, g)
    return y, g


def torch_block(norm):
    t = torch.nn.BatchNorm2d(norm.num_features, momentum=norm.momentum, dtype=norm.weight.dtype)
    with torch.no_grad():
        t.weight.copy_(norm.weight)
        t.bias.copy_(norm.bias)
    return torch.nn.Sequential(torch.nn.MaxPool2d(2), t, torch.nn.ReLU())


def randomise(norm, seed):
    g = torch.Generator().manual_seed(seed)
    norm.weight.copy_(torch.randn(norm.num_features, generator=g, dtype=norm.weight.dtype))
    norm.bias.copy_(torch.randn(norm.num_features, generator=g, dtype=norm.weight.dtype))


def test_sequential_fuses_each_run_at_construction():
    a, b = modules(4, torch.float64), modules(8, torch.float64)
    conv = dl.Conv2d(1, 4, 3)
    net = dl.Sequential(conv, *a, dl.Conv2d(4, 8, 3), *b, dl.Flatten())
    assert net.blocks == (a, b)
    assert fused_blocks(net.modules) == (1, 5)
    assert dl.Sequential(a[1], a[0], a[2]).blocks == ()
    assert dl.Sequential(*a[:2]).blocks == ()
    net.modules = [conv, a[0], a[1]]
    assert net.blocks == ()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [12, 7, 4])
@pytest.mark.parametrize("training", [True, False])
def test_fused_equals_unfused_and_torch(backend_name, dtype, channels_last, size, training):
    tol = F64_TOL if dtype == torch.float64 else F32_TOL
    fused_mods, plain_mods = modules(6, dtype), modules(6, dtype)
    for norm in (fused_mods[1], plain_mods[1]):
        randomise(norm, 1)
    net = dl.Sequential(*fused_mods)
    assert net.blocks == (fused_mods,)
    ref = torch_block(plain_mods[1])
    if not training:
        for m in (net, ref, *plain_mods):
            m.eval()
    gen = torch.Generator().manual_seed(2)
    for step in range(3):
        x = torch.randn(5, 6, size, size, generator=gen, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = net.forward(x)
        g = torch.randn(y.shape, generator=gen, dtype=dtype)
        if channels_last:
            g = g.contiguous(memory_format=torch.channels_last)
        gi = net.backward(g)
        y_plain, gi_plain = unfused_step(plain_mods, x, g)
        xr = x.clone().requires_grad_()
        with torch.enable_grad():
            yr = ref(xr)
            yr.backward(g)
        for got, want_plain, want_torch in ((y, y_plain, yr.detach()), (gi, gi_plain, xr.grad)):
            torch.testing.assert_close(got, want_plain, **tol)
            torch.testing.assert_close(got, want_torch, **tol)
            assert got.is_contiguous(memory_format=torch.channels_last) == channels_last or size == 4
        fused_norm, plain_norm, torch_norm = fused_mods[1], plain_mods[1], ref[1]
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(fused_norm, name), getattr(plain_norm, name), **tol)
            torch.testing.assert_close(getattr(fused_norm, name), getattr(torch_norm, name), **tol)
        torch.testing.assert_close(fused_norm.grad_weight, plain_norm.grad_weight, **tol)
        torch.testing.assert_close(fused_norm.grad_bias, plain_norm.grad_bias, **tol)
        torch.testing.assert_close(fused_norm.grad_weight, torch_norm.weight.grad, **tol)  # accumulated over steps
        torch.testing.assert_close(fused_norm.grad_bias, torch_norm.bias.grad, **tol)


@pytest.mark.parametrize("channels_last", [False, True])
def test_non_finite_inputs_follow_torch(backend_name, channels_last):
    """Evaluation mode, where a NaN or an infinity stays in its element: the window picks it as torch's max-pool
    does, and ReLU's gradient passes where the output is NaN or +inf, and nowhere it is -inf."""
    mods = modules(3, torch.float64)
    randomise(mods[1], 3)
    net, ref = dl.Sequential(*mods), torch_block(mods[1])
    net.eval(), ref.eval()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, 6, 6, generator=gen, dtype=torch.float64)
    flat = x.view(-1)
    flat[torch.randperm(flat.numel(), generator=gen)[:30]] = torch.tensor([float("nan"), float("inf"), -float("inf")],
                                                                         dtype=x.dtype).repeat(10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = net.forward(x)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    gi = net.backward(g)
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        yr = ref(xr)
        yr.backward(g)
    assert bool(y.isnan().any()) and bool(y.isinf().any())
    torch.testing.assert_close(y, yr.detach(), **F64_TOL, equal_nan=True)
    torch.testing.assert_close(gi, xr.grad, **F64_TOL, equal_nan=True)


def test_momentum_none_and_calls_with_their_own_contexts(backend_name):
    mods, plain = modules(3, torch.float64, momentum=None), modules(3, torch.float64, momentum=None)
    net = dl.Sequential(*mods)
    xs = [torch.randn(4, 3, 6, 6, dtype=torch.float64) for _ in range(3)]
    calls = [net.call(x) for x in xs]  # three forwards, then their backwards in reverse order
    for y, ctx in reversed(calls):
        net.backward_ctx(ctx, torch.ones_like(y))
    plain_calls = []
    for x in xs:
        ctxs = []
        for m in plain:
            x, c = m.call(x)
            ctxs.append(c)
        plain_calls.append((x, ctxs))
    for y, ctxs in reversed(plain_calls):
        g = torch.ones_like(y)
        for m, c in zip(reversed(plain), reversed(ctxs)):
            g = m.backward_ctx(c, g)
    for (y, _), (y_plain, _) in zip(calls, plain_calls):
        torch.testing.assert_close(y, y_plain, **F64_TOL)
    for name in ("running_mean", "running_var", "num_batches_tracked", "grad_weight", "grad_bias"):
        torch.testing.assert_close(getattr(mods[1], name), getattr(plain[1], name), **F64_TOL)
    assert int(mods[1].num_batches_tracked) == 3


def test_one_pooled_value_per_channel_in_training_raises_as_torch(backend_name):
    net = dl.Sequential(*modules(3, torch.float32))
    x = torch.randn(1, 3, 2, 3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.BatchNorm2d(3), torch.nn.ReLU())(x)
    with pytest.raises(ValueError, match=r"PoolNormReLU\(.*minidl.pool_norm_relu_forward: expected more than 1 value "
                                         r"per channel when training, got pooled shape \[1, 3, 1, 1\]"):
        net.forward(x)
    assert int(net[1].num_batches_tracked) == 0
    net.eval()
    assert net.forward(x).shape == (1, 3, 1, 1)  # evaluation uses the running statistics, as torch


@pytest.mark.parametrize("bad, message", [
    (lambda x, w: (x.float(), w), r"expected weight of dtype (torch.float32|Float) like input, got (torch.float64|Double)"),
    (lambda x, w: (x[:, :, :1], w), r"expected input of at least kernel_size \[2, 2\]"),
    (lambda x, w: (x, w[:2]), r"expected weight of shape \[3\], got \[2\]"),
])
def test_bad_arguments_name_the_op(ops, bad, message):
    x, w = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    x, w = bad(x, w)
    rm, rv = torch.zeros(3, dtype=w.dtype), torch.ones(3, dtype=w.dtype)
    with pytest.raises((ValueError, TypeError), match="minidl.pool_norm_relu_forward: " + message):
        ops.pool_norm_relu_forward(x, [2, 2], [2, 2], w, w.clone(), rm, rv, True, 0.1, 1e-5)


def test_backward_refuses_an_argmax_outside_the_window_before_writing(ops, device):
    x, w, zeros = torch.randn(2, 3, 4, 4, device=device), torch.randn(3, device=device), torch.zeros(3, device=device)
    y, pooled, argmax, mean, invstd = ops.pool_norm_relu_forward(x, [2, 2], [2, 2], w, zeros, zeros.clone(),
                                                                 zeros + 1, True, 0.1, 1e-5)
    argmax[0, 0, 0, 0] = 4
    grad_weight, grad_bias = zeros.clone(), zeros.clone()
    with pytest.raises(IndexError, match=r"minidl.pool_norm_relu_backward: expected argmax in \[0, 4\) for "
                                         r"kernel_size \[2, 2\], got 4"):
        ops.pool_norm_relu_backward(torch.ones_like(y), x, y, pooled, argmax, [2, 2], [2, 2], w, mean, invstd,
                                    grad_weight, grad_bias, True)
    assert not grad_weight.any() and not grad_bias.any()  # refused before the batch norm's sums


def test_block_module_repr_and_children():
    mods = modules(2, torch.float32)
    step = PoolNormReLU(*mods)
    assert repr(step).startswith("PoolNormReLU(MaxPool2d(")
    assert [n for n, _, _ in step.named_param()] == ["1.weight", "1.bias"]
