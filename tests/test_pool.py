"""MaxPool2d and Flatten against torch.nn.functional + autograd: values, indices, gradients, layouts, errors."""
import pytest
import torch

import minidl as dl
from minidl import backend
from conftest import require_cpp

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-6, atol=1e-6)}
# (shape, kernel_size, stride): odd sizes, batch 1, stride below and above the kernel, windows that miss the edge
POOLS = [((2, 3, 8, 8), 2, None), ((1, 1, 5, 7), 2, None), ((3, 4, 7, 9), (3, 2), (1, 2)), ((2, 2, 6, 5), 3, 2),
         ((1, 5, 4, 4), 4, None), ((4, 3, 9, 6), (2, 3), (3, 1)), ((2, 2, 3, 3), 1, 2),
         # 8 channels and more with short output rows: the C++ kernel runs NCHW inputs through its channels-last loop
         ((3, 9, 6, 7), 2, None), ((2, 16, 5, 5), (2, 3), (1, 2)), ((1, 64, 4, 4), 2, None)]


def _layout(t, channels_last):
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def _reference(x, kernel_size, stride, grad):
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        y, indices = torch.nn.functional.max_pool2d_with_indices(xr, kernel_size, stride)
        y.backward(grad)
    return y.detach(), indices, xr.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,kernel_size,stride", POOLS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_maxpool2d_matches_torch(backend_name, device, dtype, shape, kernel_size, stride, channels_last):
    torch.manual_seed(0)
    x = _layout(torch.randn(*shape, dtype=dtype, device=device), channels_last)
    pool = dl.MaxPool2d(kernel_size, stride)
    y = pool.forward(x)
    grad = _layout(torch.randn_like(y), channels_last)
    y_ref, indices_ref, gx_ref = _reference(x, kernel_size, stride, grad)
    assert torch.equal(y, y_ref)
    gx = pool.backward(grad)
    torch.testing.assert_close(gx, gx_ref, **TOL[dtype])
    # The output keeps the input's memory format, as torch's does.
    assert y.stride() == y_ref.stride() and gx.stride() == gx_ref.stride()
    _, indices = backend.ops.maxpool2d_forward(x, *pool._window)
    assert torch.equal(indices, indices_ref) and indices.stride() == indices_ref.stride()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_maxpool2d_ties_and_nans_follow_torch(ops, dtype):
    """Ties go to the first maximum; a NaN wins its window (the last NaN, as torch's kernel)."""
    x = torch.tensor([[1.0, 1.0, 2.0, 2.0], [1.0, 0.0, 2.0, 2.0], [float("nan"), 5.0, 3.0, float("-inf")],
                      [4.0, float("nan"), float("-inf"), float("-inf")]], dtype=dtype)
    for channels_last in (False, True):
        x4 = _layout(x.expand(2, 3, 4, 4).clone(), channels_last)
        y, indices = ops.maxpool2d_forward(x4, [2, 2], [2, 2])
        y_ref, indices_ref = torch.nn.functional.max_pool2d_with_indices(x4, 2, 2)
        assert torch.equal(y.isnan(), y_ref.isnan()) and torch.equal(y.nan_to_num(), y_ref.nan_to_num())
        assert torch.equal(indices, indices_ref)
        g = torch.ones_like(y)
        assert torch.equal(ops.maxpool2d_backward(g, x4, indices, [2, 2], [2, 2]),
                           torch.ops.aten.max_pool2d_with_indices_backward(g, x4, [2, 2], [2, 2], [0, 0], [1, 1],
                                                                           False, indices_ref))


def test_maxpool2d_backends_agree_bit_for_bit(device):
    require_cpp()
    from minidl.kernels import cpp, python

    torch.manual_seed(1)
    for channels_last in (False, True):
        x = _layout(torch.randn(3, 9, 11, 10, device=device), channels_last)
        outs = [k.maxpool2d_forward(x, [3, 3], [2, 1]) for k in (cpp, python)]
        assert all(torch.equal(a, b) for a, b in zip(*outs))
        g = torch.randn_like(outs[0][0])
        if x.is_cuda:  # the fallback's scatter_add_ adds in no fixed order there: integers, whose sums are exact
            g = g.mul_(8).round_()
        grads = [k.maxpool2d_backward(g, x, outs[0][1], [3, 3], [2, 1]) for k in (cpp, python)]
        assert torch.equal(*grads)


def test_maxpool2d_gradcheck(backend_name):
    torch.manual_seed(2)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    pool = dl.MaxPool2d((2, 3), (2, 2))

    class Pool(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y, ctx.minidl = pool.call(x.detach())
            return y

        @staticmethod
        def backward(ctx, g):
            return pool.backward_ctx(ctx.minidl, g.contiguous())

    assert torch.autograd.gradcheck(Pool.apply, (x.requires_grad_(),))


def test_maxpool2d_reused_pairs_each_backward_with_its_forward(backend_name):
    torch.manual_seed(3)
    pool = dl.MaxPool2d(2)
    a, b = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 8, 8)
    ya, ctx_a = pool.call(a)
    yb, ctx_b = pool.call(b)
    gb = pool.backward_ctx(ctx_b, torch.ones_like(yb))
    ga = pool.backward_ctx(ctx_a, torch.ones_like(ya))
    assert ga.shape == a.shape and gb.shape == b.shape
    assert torch.equal(ga, _reference(a, 2, 2, torch.ones_like(ya))[2])


def test_maxpool2d_errors_name_the_module_and_shapes(backend_name):
    pool = dl.MaxPool2d(3)
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=3, stride=3\)\.forward: minidl\.maxpool2d_forward: "
                                         r"expected input of at least kernel_size \[3, 3\].*\[1, 1, 2, 5\]"):
        pool.forward(torch.zeros(1, 1, 2, 5))
    with pytest.raises(ValueError, match=r"minidl\.maxpool2d_forward: expected input with 4 dimensions, got shape \[4, 4\]"):
        pool.forward(torch.zeros(4, 4))
    with pytest.raises(TypeError, match=r"minidl\.maxpool2d_forward: expected input to be float32 or float64"):
        pool.forward(torch.zeros(1, 1, 4, 4, dtype=torch.int32))
    pool.forward(torch.zeros(1, 1, 6, 6))
    with pytest.raises(ValueError, match=r"maxpool2d_backward: expected grad_output of shape \[1, 1, 2, 2\], got \[1, 1, 3, 3\]"):
        pool.backward(torch.zeros(1, 1, 3, 3))
    for bad in (0, (2, 0), (1, 2, 3), "2", 1.5):
        with pytest.raises(ValueError, match="MaxPool2d: expected kernel_size"):
            dl.MaxPool2d(bad)
    with pytest.raises(ValueError, match="MaxPool2d: expected stride"):
        dl.MaxPool2d(2, 0)


@pytest.mark.parametrize("outside", [16, -1])
def test_maxpool2d_backward_refuses_indices_outside_the_plane(ops, device, outside):
    x = torch.randn(1, 2, 4, 4, device=device)
    y, indices = ops.maxpool2d_forward(x, [2, 2], [2, 2])
    indices[0, 1, 1, 0] = outside
    with pytest.raises(IndexError, match=r"minidl\.maxpool2d_backward: expected indices in \[0, 16\)"):
        ops.maxpool2d_backward(torch.ones_like(y), x, indices, [2, 2], [2, 2])
    with pytest.raises(TypeError, match=r"minidl\.maxpool2d_backward: expected indices of dtype"):
        ops.maxpool2d_backward(torch.ones_like(y), x, indices.int(), [2, 2], [2, 2])


@pytest.mark.parametrize("start_dim,end_dim", [(1, -1), (0, -1), (1, 2), (2, 3), (0, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_flatten_matches_torch(start_dim, end_dim, channels_last):
    x = _layout(torch.randn(2, 3, 4, 5), channels_last)
    flatten = dl.Flatten(start_dim, end_dim)
    y = flatten.forward(x)
    ref = torch.nn.Flatten(start_dim, end_dim)(x)
    assert torch.equal(y, ref) and y.shape == ref.shape
    if not channels_last:
        assert y.data_ptr() == x.data_ptr()  # a view
    g = torch.randn_like(y)
    assert torch.equal(flatten.backward(g), g.reshape(x.shape))


def test_flatten_errors_name_the_module():
    with pytest.raises(IndexError, match=r"Flatten\(start_dim=3, end_dim=-1\)\.forward: "):
        dl.Flatten(3).forward(torch.zeros(2, 3))
    flatten = dl.Flatten()
    flatten.forward(torch.zeros(2, 3, 4))
    with pytest.raises(RuntimeError, match=r"Flatten\(start_dim=1, end_dim=-1\)\.backward: "):
        flatten.backward(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="Flatten: expected start_dim to be an int"):
        dl.Flatten(1.0)


def test_a_small_convnet_stack_runs_in_sequential_on_both_modes(backend_name):
    """Sequential carries train()/eval() to every layer; Flatten feeds Linear."""
    torch.manual_seed(4)
    net = dl.Sequential(dl.BatchNorm2d(3), dl.ReLU(), dl.MaxPool2d(2), dl.Dropout(0.3), dl.Flatten(), dl.Linear(12, 2))
    x = torch.randn(5, 3, 4, 4)
    y = net.forward(x)
    assert y.shape == (5, 2)
    gx = net.backward(torch.ones_like(y))
    assert gx.shape == x.shape
    net.eval()
    assert not any(m.training for m in net.modules)
    y1, y2 = net.forward(x), net.forward(x)
    assert torch.equal(y1, y2)  # evaluation: running statistics, no dropout
    net.train()
    assert all(m.training for m in net.modules)
