"""The fused kernels (a whole Linear stack, MSE, SGD) against the unfused path and torch.autograd."""
import re

import pytest
import torch

import minidl as dl

from conftest import require_cpp
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


@pytest.mark.parametrize("shape", [(1, 1), (100, 2), (3, 5, 7), (70000,)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mse_forward_matches_torch(ops, device, shape, dtype):
    torch.manual_seed(12)
    o = torch.randn(*shape, dtype=dtype, device=device)
    t = torch.randn(*shape, dtype=dtype, device=device)
    loss, grad = ops.mse_forward(o, t)
    ref, grad_ref = autograd_reference(lambda o: torch.nn.functional.mse_loss(o, t), o, None)
    tol = dict(rtol=1e-12, atol=0) if dtype == torch.float64 else dict(rtol=1e-5, atol=0)
    assert loss.shape == () and loss.dtype == dtype
    torch.testing.assert_close(loss, ref, **tol)
    torch.testing.assert_close(grad, grad_ref, **tol)


@pytest.mark.parametrize("act", [1, 2])  # ReLU, Tanh
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ours", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_mlp_backward_sums_bias_gradients_rows_in_order(act, dtype, ours, threads):
    """The activation's backward pass also adds the bias gradient's column sums (one pass instead of
    two): the same bits as the activation's backward op, then its rows added one after another into
    the existing gradient, and the weight gradient the same addmm_. At 2 threads the columns split
    into 2 tasks of 2050 (the grain, 32768 elements over 16 rows, is 2048 columns)."""
    require_cpp()
    ops = torch.ops.minidl
    torch.manual_seed(16)
    rows, sizes = (37, [20, 300, 7]) if threads == 1 else (16, [20, 4100, 7])
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if torch.get_num_threads() != threads:
            pytest.skip(f"cannot run {threads} threads here")
        _check_bias_sums_rows_in_order(ops, act, dtype, ours, rows, sizes)
    finally:
        torch.set_num_threads(old_threads)


def _check_bias_sums_rows_in_order(ops, act, dtype, ours, rows, sizes):
    if ours:  # layer 0's gradient comes from layer 1's product, a temporary the op may overwrite
        codes = [act, 0]
    else:  # the only layer gets the caller's gradient, which must stay as it is
        codes, sizes = [act], sizes[:2]
    x = torch.randn(rows, sizes[0], dtype=dtype)
    ws = [torch.randn(b, a, dtype=dtype) / a ** 0.5 for a, b in zip(sizes, sizes[1:])]
    bs = [torch.randn(b, dtype=dtype) for b in sizes[1:]]
    outs = ops.mlp_forward(x, ws, bs, codes)
    gy = torch.randn(rows, sizes[-1], dtype=dtype)
    gy_before = gy.clone()
    gws = [torch.randn_like(w) for w in ws]
    gbs = [torch.randn_like(b) for b in bs]
    gw0, gb0 = gws[0].clone(), gbs[0].clone()
    ops.mlp_backward(gy, x, outs, ws, gws, gbs, codes, None)
    g = torch.mm(gy, ws[1]) if ours else gy
    g = (ops.relu_backward if act == 1 else ops.tanh_backward)(g, outs[0])
    for r in range(rows):
        gb0 += g[r]
    assert torch.equal(gbs[0], gb0)
    assert torch.equal(gws[0], gw0.addmm_(g.t(), x))
    assert torch.equal(gy, gy_before)


@pytest.mark.parametrize("kernels", ["cpp", "python"])
@pytest.mark.parametrize("shares", ["grad_output", "grad_weight"])
def test_mlp_backward_bias_gradient_that_shares_memory(kernels, shares):
    """A grad_bias that is a row of grad_output, or part of the layer's grad_weight: both backends
    read grad_output and add into grad_weight before they add into grad_bias, as the two-pass order
    did (the fused pass would read rows it has changed, or add in another order)."""
    if kernels == "cpp":
        require_cpp()
    from minidl.kernels import cpp, python

    k = cpp if kernels == "cpp" else python
    torch.manual_seed(17)
    rows, n_in, n_out = 40, 30, 300
    x = torch.randn(rows, n_in, dtype=torch.float64)
    w, b = torch.randn(n_out, n_in, dtype=torch.float64), torch.randn(n_out, dtype=torch.float64)
    (y,) = k.mlp_forward(x, [w], [b], [1])
    gy = torch.randn(rows, n_out, dtype=torch.float64)
    gw = torch.randn_like(w)
    g = torch.where(y > 0, gy, 0.0)
    want_gw = gw.clone().addmm_(g.t(), x)  # grad_weight first, then grad_bias
    if shares == "grad_output":
        gb, want_gb = gy[rows - 1], gy[rows - 1].clone()
    else:
        gb, want_gb = gw.view(-1)[:n_out], want_gw.view(-1)[:n_out]
    for r in range(rows):  # rows in order, as the CPU kernel adds them
        want_gb += g[r]
    k.mlp_backward(gy, x, [y], [w], [gw], [gb], [1], None)
    if kernels == "cpp":  # the same operations in the same order: the same bits
        assert torch.equal(gb, want_gb) and torch.equal(gw, want_gw)
    else:  # the fallback sums with torch
        torch.testing.assert_close(gb, want_gb, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gw, want_gw, rtol=1e-12, atol=1e-12)


def test_sgd_kernel_equals_fallback_bit_for_bit(device):
    require_cpp()
    from minidl.kernels import cpp, python

    torch.manual_seed(13)
    shapes = [(25, 2), (25,), (3, 4, 5)]
    runs = []
    for k in (cpp, python):
        torch.manual_seed(14)
        ps = [torch.randn(s, dtype=torch.float32, device=device) for s in shapes]
        gs = [torch.randn(s, dtype=torch.float32, device=device) for s in shapes]
        vs = [torch.zeros(s, dtype=torch.float32, device=device) for s in shapes]
        for _ in range(3):
            k.sgd_step_(ps, gs, vs, 0.1, 0.9, 0.01)
        runs.append(ps + vs)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("transposed", [False, True])
def test_sgd_zero_grads_equals_a_step_then_zero(ops, device, transposed):
    """zero_grads=True: the same parameters and buffers bit for bit, and every gradient zero after."""
    torch.manual_seed(15)
    shapes = [(25, 2), (25,), (6, 5)]
    ps = [torch.randn(s, device=device) for s in shapes]
    gs = [torch.randn(s[::-1], device=device).t() if transposed and len(s) == 2 else torch.randn(s, device=device)
          for s in shapes]
    vs = [torch.randn(s, device=device) for s in shapes]
    ref_p, ref_v = [p.clone() for p in ps], [v.clone() for v in vs]
    ops.sgd_step_(ref_p, [g.clone() for g in gs], ref_v, 0.1, 0.9, 0.01)
    ops.sgd_step_(ps, gs, vs, 0.1, 0.9, 0.01, True)
    for a, b in zip(ps + vs, ref_p + ref_v):
        assert torch.equal(a, b)
    assert all(torch.count_nonzero(g) == 0 for g in gs)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("zero_grads", [False, True])
def test_sgd_repeated_parameter_steps_in_turn(device, transposed, zero_grads):
    """A list that names a parameter twice: each entry steps in turn (the second sees the
    first's update and, with zero_grads, the zeroed gradient), on every path of the kernel (the CPU
    loop; ATen one tensor at a time for strided or GPU tensors) exactly as the Python fallback."""
    require_cpp()
    from minidl.kernels import cpp, python

    runs = []
    for k in (cpp, python):
        torch.manual_seed(17)
        p = torch.randn(5, 6, device=device)
        p = p.t().contiguous().t() if transposed else p  # a strided view: not the CPU loop
        other = torch.randn(4, device=device)
        g, g_other = torch.randn_like(p), torch.randn(4, device=device)
        vs = [torch.randn(5, 6, device=device), torch.randn(4, device=device), torch.randn(5, 6, device=device)]
        k.sgd_step_([p, other, p], [g, g_other, g], vs, 0.1, 0.9, 0.01, zero_grads)
        runs.append([p, other, g, g_other] + vs)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_sgd_step_zero_grad_trains_like_step_then_zero_grad(backend_name):
    def train(fused):
        torch.manual_seed(16)
        net = dl.Sequential(dl.Linear(2, 25), dl.ReLU(), dl.Linear(25, 25), dl.Tanh(), dl.Linear(25, 2))
        loss, opt = dl.LossMSE(), dl.SGD(net.param(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        x, t = torch.rand(64, 2), torch.rand(64, 2)
        for _ in range(5):
            loss.forward(net.forward(x), t)
            net.backward(loss.backward())
            if fused:
                opt.step(zero_grad=True)
            else:
                opt.step()
                opt.zero_grad()
        return [p.clone() for p, _ in net.param()], [g.clone() for _, g in net.param()]

    (p1, g1), (p2, g2) = train(True), train(False)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert all(torch.equal(a, b) and not a.any() for a, b in zip(g1, g2))


def test_sgd_zero_grads_refuses_shared_memory_before_writing(ops):
    p, other = torch.ones(3, 2), torch.ones(2)
    g = torch.ones(2).expand(3, 2)
    with pytest.raises(ValueError, match=r"minidl.sgd_step_ \(parameter 1\): zero_grads needs gradients whose "
                                         r"elements have memory of their own, got one of strides \[0, 1\]"):
        ops.sgd_step_([other, p], [torch.ones(2), g], [], 0.1, 0.0, 0.0, True)
    assert torch.equal(other, torch.ones(2)) and torch.equal(p, torch.ones(3, 2))


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mse_forward_overflows_to_inf_like_torch(ops, dtype):
    big = torch.full((4,), torch.finfo(dtype).max / 2, dtype=dtype)
    loss, grad = ops.mse_forward(big, -big)
    assert torch.equal(loss, torch.nn.functional.mse_loss(big, -big))  # inf in float32 and float64
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("batch, width", [(0, 100), (2, 64), (3, 45), (2, 65)])
def test_small_layer_loops_at_their_size_limit(batch, width):
    """The direct loops for small layers (csrc/cpu/small_linear.cpp) at their limit of 8K multiply-adds,
    just past it, and an empty batch before a large layer, against the fallback in float64."""
    require_cpp()
    from minidl.kernels import cpp, python

    torch.manual_seed(0)
    x = torch.randn(batch, width, dtype=torch.float64)
    ws = [torch.randn(width, width, dtype=torch.float64), torch.randn(3, width, dtype=torch.float64)]
    bs = [torch.randn(width, dtype=torch.float64), torch.randn(3, dtype=torch.float64)]
    outs = {}
    for name, k in (("cpp", cpp), ("python", python)):
        ys = k.mlp_forward(x, ws, bs, [2, 0])
        gws, gbs, gx = [torch.zeros_like(w) for w in ws], [torch.zeros_like(b) for b in bs], torch.empty_like(x)
        k.mlp_backward(torch.ones_like(ys[-1]), x, ys, ws, gws, gbs, [2, 0], gx)
        outs[name] = ys + gws + gbs + [gx]
    for c, p in zip(outs["cpp"], outs["python"]):
        assert c.shape == p.shape
        torch.testing.assert_close(c, p, rtol=1e-12, atol=1e-12)


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


@pytest.mark.parametrize("alias", ["grad_output", "input", "output", "weight", "grad_weight", "grad_bias"])
def test_mlp_backward_refuses_a_grad_input_that_shares_memory(ops, alias):
    torch.manual_seed(22)
    w, b = torch.randn(4, 4), torch.randn(4)
    x = torch.randn(3, 4)
    outs = ops.mlp_forward(x, [w], [b], [0])
    g = torch.randn(3, 4)
    gw, gb_and_more = torch.zeros(4, 4), torch.zeros(3, 4)
    gb = gb_and_more[0]  # a grad_bias whose storage can also hold a grad_input
    grad_input = {"grad_output": g, "input": x, "output": outs[0], "weight": w[:3], "grad_weight": gw[:3],
                  "grad_bias": gb_and_more}[alias]
    before = [t.clone() for t in (g, x, outs[0], w, gw, gb)]
    name = re.escape("minidl.mlp_backward" + ("" if alias in ("grad_output", "input") else " (layer 0)"))
    with pytest.raises(ValueError, match=rf"{name}: expected grad_input to have memory of its own, got a view "
                                         rf"of {alias}'s storage"):
        ops.mlp_backward(g, x, outs, [w], [gw], [gb], [0], grad_input)
    for t, old in zip((g, x, outs[0], w, gw, gb), before):
        assert torch.equal(t, old)  # refused before any write


def test_zero_grad_of_modules_without_parameters(backend_name):
    for module in (dl.ReLU(), dl.Tanh(), dl.Sequential(), dl.Sequential(dl.ReLU())):
        module.zero_grad()
    dl.SGD([], lr=0.1).zero_grad()


def test_backward_before_forward_names_the_module_once(backend_name):
    for module in (dl.Linear(2, 2), dl.ReLU(), dl.Sequential(dl.Linear(2, 2))):
        with pytest.raises(RuntimeError) as info:
            module.backward(torch.ones(1, 2))
        assert str(info.value) == f"{module!r}.backward: called before forward"
