"""BatchNorm1d and BatchNorm2d against torch.nn: outputs, gradients, running statistics, buffers, errors."""
import pytest
import torch

import minidl as dl
from conftest import require_cpp

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=2e-5, atol=2e-5)}
SHAPES_2D = [(4, 3, 5, 5), (1, 2, 3, 1), (7, 5, 3, 4), (2, 1, 1, 2), (100, 32, 6, 6), (100, 64, 2, 2)]
SHAPES_1D = [(8, 5), (2, 3), (3, 4, 7)]


def _layout(t, channels_last):
    return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t


def _pair(shape, dtype, device, momentum=0.1):
    """A minidl batch norm and a torch.nn one with the same random affine parameters. The torch one runs in
    float64: float32 sums over thousands of elements (torch's included) are checked against exact ones."""
    cls = (dl.BatchNorm2d, torch.nn.BatchNorm2d) if len(shape) == 4 else (dl.BatchNorm1d, torch.nn.BatchNorm1d)
    ours = cls[0](shape[1], momentum=momentum, device=device, dtype=dtype)
    theirs = cls[1](shape[1], momentum=momentum, device=device, dtype=torch.float64)
    ours.weight.copy_(torch.randn(shape[1], dtype=dtype)).add_(1)
    ours.bias.copy_(torch.randn(shape[1], dtype=dtype))
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias)
    return ours, theirs


def _steps(ours, theirs, xs, grads):
    """Forward and backward through both, batch after batch; the last outputs and input gradients."""
    for x, g in zip(xs, grads):
        xr = x.to(torch.float64, copy=True).requires_grad_()
        with torch.enable_grad():
            y_ref = theirs(xr)
            y_ref.backward(g.double())
        y = ours.forward(x)
        gx = ours.backward(g)
    return y, gx, y_ref.detach().to(x.dtype), xr.grad.to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES_2D + SHAPES_1D)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch_over_several_steps(backend_name, device, dtype, shape, channels_last, training):
    if channels_last and len(shape) != 4:
        pytest.skip("channels-last is 4-D")
    torch.manual_seed(0)
    ours, theirs = _pair(shape, dtype, device)
    if not training:  # statistics from a few training steps first, then evaluation
        _steps(ours, theirs, [torch.randn(*shape, dtype=dtype, device=device) * 2 + 1 for _ in range(3)],
               [torch.randn(*shape, dtype=dtype, device=device) for _ in range(3)])
        ours.eval(), theirs.eval()
    xs = [_layout(torch.randn(*shape, dtype=dtype, device=device) * 3 - 1, channels_last) for _ in range(3)]
    grads = [_layout(torch.randn(*shape, dtype=dtype, device=device), channels_last) for _ in range(3)]
    ours.zero_grad(), theirs.zero_grad()
    y, gx, y_ref, gx_ref = _steps(ours, theirs, xs, grads)
    tol = TOL[dtype]
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(gx, gx_ref, **tol)
    torch.testing.assert_close(ours.grad_weight, theirs.weight.grad.to(dtype), **tol)  # summed over the steps
    torch.testing.assert_close(ours.grad_bias, theirs.bias.grad.to(dtype), **tol)
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name).to(dtype), **tol)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)
    assert y.stride() == y_ref.stride() and gx.stride() == gx_ref.stride()


@pytest.mark.parametrize("momentum", [None, 0.5, 0.0, 1.0])
def test_momentum_as_torch_including_the_cumulative_average(backend_name, momentum):
    torch.manual_seed(1)
    ours, theirs = _pair((6, 3, 2, 2), torch.float64, "cpu", momentum=momentum)
    shape = (6, 3, 2, 2)
    _steps(ours, theirs, [torch.randn(*shape, dtype=torch.float64) + i for i in range(4)],
           [torch.randn(*shape, dtype=torch.float64) for _ in range(4)])
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, **TOL[torch.float64])
    torch.testing.assert_close(ours.running_var, theirs.running_var, **TOL[torch.float64])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(backend_name, training):
    torch.manual_seed(2)
    bn = dl.BatchNorm2d(3, dtype=torch.float64)
    bn.running_var.uniform_(0.5, 2)
    bn.train(training)
    x, w, b = torch.randn(4, 3, 2, 3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(
        3, dtype=torch.float64)

    class BN(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            bn.weight.copy_(w), bn.bias.copy_(b)
            state = bn.running_mean.clone(), bn.running_var.clone()
            y, ctx.minidl = bn.call(x.detach())
            bn.running_mean.copy_(state[0]), bn.running_var.copy_(state[1])  # gradcheck calls it many times
            return y

        @staticmethod
        def backward(ctx, g):
            bn.zero_grad()
            gx = bn.backward_ctx(ctx.minidl, g.contiguous())
            return gx, bn.grad_weight.clone(), bn.grad_bias.clone()

    assert torch.autograd.gradcheck(BN.apply, tuple(t.requires_grad_() for t in (x, w, b)))


def test_backends_agree(device):
    require_cpp()
    from minidl.kernels import cpp, python

    torch.manual_seed(3)
    for channels_last in (False, True):
        for dtype in (torch.float32, torch.float64):
            x = _layout(torch.randn(9, 4, 3, 5, dtype=dtype, device=device) * 2 + 3, channels_last)
            like = dict(dtype=dtype, device=device)
            w, b, g = torch.randn(4, **like), torch.randn(4, **like), torch.randn_like(x)
            results = []
            for k in (cpp, python):
                rm, rv = torch.zeros(4, **like), torch.ones(4, **like)
                y, mean, invstd = k.batch_norm_forward(x, w, b, rm, rv, True, 0.1, 1e-5)
                gw, gb = torch.zeros(4, **like), torch.zeros(4, **like)
                results.append((y, mean, invstd, rm, rv, k.batch_norm_backward(g, x, w, mean, invstd, gw, gb, True),
                                gw, gb))
            # The two sum in different orders: agreement to a few units of rounding of the largest element.
            eps = torch.finfo(dtype).eps
            for a, c in zip(*results):
                torch.testing.assert_close(a, c, rtol=16 * eps, atol=16 * eps * float(c.abs().max()))


def test_reused_batch_norm_pairs_each_backward_with_its_statistics(backend_name):
    """One BatchNorm applied twice in a forward: each backward uses its own call's batch statistics."""
    torch.manual_seed(4)
    bn = dl.BatchNorm1d(3, dtype=torch.float64)
    ref = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64) * 4 + 2
    ya, ctx_a = bn.call(a)
    yb, ctx_b = bn.call(yb_in := b)
    ga, gb = torch.randn_like(ya), torch.randn_like(yb)
    gxb = bn.backward_ctx(ctx_b, gb)
    gxa = bn.backward_ctx(ctx_a, ga)
    ar, br = a.clone().requires_grad_(), yb_in.clone().requires_grad_()
    with torch.enable_grad():
        (ref(ar) * ga).sum().add((ref(br) * gb).sum()).backward()
    torch.testing.assert_close(gxa, ar.grad, **TOL[torch.float64])
    torch.testing.assert_close(gxb, br.grad, **TOL[torch.float64])
    torch.testing.assert_close(bn.grad_weight, ref.weight.grad, **TOL[torch.float64])
    torch.testing.assert_close(bn.running_mean, ref.running_mean, **TOL[torch.float64])
    assert int(bn.num_batches_tracked) == 2


def test_buffers_round_trip_and_convert(backend_name, tmp_path):
    torch.manual_seed(5)
    net = dl.Sequential(dl.BatchNorm2d(3), dl.Flatten(), dl.BatchNorm1d(12))
    for _ in range(3):
        net.forward(torch.randn(4, 3, 2, 2) * 3 + 1)
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "0.running_mean", "0.running_var",
                        "0.num_batches_tracked", "2.running_mean", "2.running_var", "2.num_batches_tracked"]
    ref = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.BatchNorm1d(12))
    assert set(ref.state_dict()) == set(sd)  # the same names as torch.nn's
    dl.save(sd, tmp_path / "bn.pt")
    other = dl.Sequential(dl.BatchNorm2d(3), dl.Flatten(), dl.BatchNorm1d(12))
    other.load_state_dict(dl.load(tmp_path / "bn.pt"))
    for (name, a), b in zip(sd.items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    net.eval(), other.eval()
    x = torch.randn(2, 3, 2, 2)
    assert torch.equal(net.forward(x), other.forward(x))
    other.to(dtype=torch.float64)
    assert other[0].running_var.dtype == torch.float64 and other[0].num_batches_tracked.dtype == torch.int64
    torch.testing.assert_close(other.forward(x.double()), net.forward(x).double(), rtol=1e-5, atol=1e-5)


def test_batch_of_one_in_training_raises_like_torch(backend_name):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm2d(3)(torch.randn(1, 3, 1, 1))
    bn = dl.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, eps=1e-05, momentum=0\.1\)\.forward: minidl\.batch_norm_forward: "
                                         r"expected more than 1 value per channel when training, got input of shape "
                                         r"\[1, 3, 1, 1\]"):
        bn.forward(torch.randn(1, 3, 1, 1))
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(3))
    bn.forward(torch.randn(1, 3, 1, 2))  # two values per channel
    bn.eval()
    assert bn.forward(torch.randn(1, 3, 1, 1)).shape == (1, 3, 1, 1)  # evaluation takes a batch of one


def test_batch_norm_errors_name_module_shapes_and_dtypes(backend_name):
    bn = dl.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, .*\)\.forward: expected 4D input, got shape \[2, 3\]"):
        bn.forward(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3, .*\)\.forward: expected 2D or 3D input, got shape \[2, 3, 4, 5\]"):
        dl.BatchNorm1d(3).forward(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"minidl\.batch_norm_forward: expected weight of shape \[4\], got \[3\]"):
        bn.forward(torch.randn(2, 4, 2, 2))
    with pytest.raises(TypeError, match=r"minidl\.batch_norm_forward: expected weight of dtype (Double|torch.float64) like input"):
        bn.forward(torch.randn(2, 3, 2, 2, dtype=torch.float64))
    bn.forward(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"minidl\.batch_norm_backward: expected grad_output of shape \[2, 3, 2, 2\]"):
        bn.backward(torch.randn(2, 3, 2, 1))
    with pytest.raises(ValueError, match="BatchNorm2d: expected num_features to be a positive int"):
        dl.BatchNorm2d(0)
    with pytest.raises(TypeError, match="BatchNorm1d: expected dtype float32 or float64"):
        dl.BatchNorm1d(3, dtype=torch.int32)


def test_train_and_eval_reach_batch_norm_inside_sequential(backend_name):
    torch.manual_seed(6)
    net = dl.Sequential(dl.Linear(4, 3), dl.BatchNorm1d(3), dl.Tanh())
    x = torch.randn(6, 4)
    net.forward(x)
    stats = net[1].running_mean.clone()
    net.eval()
    assert not net[1].training
    y = net.forward(x)
    assert torch.equal(net[1].running_mean, stats)  # evaluation leaves the statistics alone
    h = net[0].forward(x)
    expected = (h - stats) / (net[1].running_var + 1e-5).sqrt()
    torch.testing.assert_close(y, expected.tanh(), rtol=1e-5, atol=1e-6)


def test_cpp_results_do_not_depend_on_the_thread_count():
    """Large enough for the loops to split over threads: the same bits with 1 thread and with 2."""
    require_cpp()
    from minidl.kernels import cpp

    torch.manual_seed(7)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = []
            for channels_last in (False, True):
                x = _layout(torch.randn(64, 48, 12, 12) * 2 + 1, channels_last)
                g = torch.randn_like(x)
                rm, rv = torch.zeros(48), torch.ones(48)
                y, mean, invstd = cpp.batch_norm_forward(x, torch.ones(48), torch.zeros(48), rm, rv, True, 0.1, 1e-5)
                gw, gb = torch.zeros(48), torch.zeros(48)
                out += [y, mean, invstd, rm, rv, cpp.batch_norm_backward(g, x, torch.ones(48), mean, invstd, gw, gb, True),
                        gw, gb]
                pooled, indices = cpp.maxpool2d_forward(x, [3, 3], [2, 1])
                out += [pooled, indices, cpp.maxpool2d_backward(torch.randn_like(pooled), x, indices, [3, 3], [2, 1])]
            results.append(out)
            torch.manual_seed(7)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def _norm_calls(written):
    """(name, call) of the batch-norm and block ops, with an expanded (stride 0) tensor where `written` says."""
    x, ones = torch.randn(4, 3, 4, 4), lambda: torch.ones(3)
    given = {name: (torch.zeros(1).expand(3) if name == written else ones()) for name in
             ("running_mean", "running_var", "grad_weight", "grad_bias")}
    rm, rv, gw, gb = given["running_mean"], given["running_var"], given["grad_weight"], given["grad_bias"]
    pooled, argmax = torch.randn(4, 3, 2, 2), torch.zeros(4, 3, 2, 2, dtype=torch.uint8)

    def block_backward(k):
        return k.pool_norm_relu_backward(pooled, x, pooled, pooled, argmax, [2, 2], [2, 2], ones(), ones(), ones(),
                                         gw, gb, True)
    return {
        "running_mean": [lambda k: k.batch_norm_forward(x, ones(), ones(), rm, rv, True, 0.1, 1e-5),
                         lambda k: k.pool_norm_relu_forward(x, [2, 2], [2, 2], ones(), ones(), rm, rv, True, 0.1, 1e-5)],
        "running_var": [lambda k: k.batch_norm_forward(x, ones(), ones(), rm, rv, True, 0.1, 1e-5),
                        lambda k: k.pool_norm_relu_forward(x, [2, 2], [2, 2], ones(), ones(), rm, rv, True, 0.1, 1e-5)],
        "grad_weight": [lambda k: k.batch_norm_backward(x, x, ones(), ones(), ones(), gw, gb, True), block_backward],
        "grad_bias": [lambda k: k.batch_norm_backward(x, x, ones(), ones(), ones(), gw, gb, True), block_backward],
    }[written], given


@pytest.mark.parametrize("written", ["running_mean", "running_var", "grad_weight", "grad_bias"])
def test_an_expanded_tensor_the_op_writes_is_refused(backend_name, written):
    """Several writes into one element: before, the C++ kernels wrote on regardless (the Python ones raised torch's
    error, which names no op); now both refuse it in one message, before any write."""
    from minidl import backend
    calls, given = _norm_calls(written)
    for call in calls:
        with pytest.raises(ValueError, match=rf"^minidl\.\w+: expected {written} whose elements have memory of their "
                                             rf"own \(the op writes it\), got strides \[0\]$"):
            call(backend.ops)
        assert all(torch.equal(t, torch.ones(3)) for name, t in given.items() if name != written)


def test_an_expanded_running_statistic_is_only_read_in_evaluation(backend_name):
    x, mean = torch.randn(4, 3, 2, 2, dtype=torch.float64), torch.full((1,), 0.5, dtype=torch.float64).expand(3)
    bn = dl.BatchNorm2d(3, dtype=torch.float64).eval()
    bn.running_mean = mean
    torch.testing.assert_close(bn(x), (x - 0.5) / (1 + 1e-5) ** 0.5)
