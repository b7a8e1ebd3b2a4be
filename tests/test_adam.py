"""minidl.adam_step_ and dl.Adam against torch.optim.Adam, on both backends and every device."""
import pytest
import torch

import minidl as dl
from conftest import require_cpp

# The CPU kernel takes a correctly rounded square root where torch's CPU sqrt (MKL's) may be 1 ulp off:
# the results agree to rounding, not bit for bit.
TOL = {torch.float64: dict(rtol=1e-13, atol=1e-15), torch.float32: dict(rtol=1e-6, atol=1e-7)}
# Below one vector, a vector and a tail, several vectors, a matrix, a 3-d tensor, a scalar-like [1].
SHAPES = [(3,), (13,), (1000, 3), (33, 17), (3, 4, 5), (1,)]
BETAS = [(0.9, 0.999), (0.3, 0.5)]  # 1 - beta1 under and over 0.5: lerp's two forms


def _state(ps):
    return [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]


def _torch_adam(ps, **options):
    """torch.optim.Adam over copies of ps; returns (the copies, the optimizer)."""
    leaves = [p.clone().requires_grad_() for p in ps]
    return leaves, torch.optim.Adam(leaves, **options)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("betas", BETAS)
def test_adam_step_matches_torch_over_many_steps(ops, device, dtype, weight_decay, betas):
    torch.manual_seed(0)
    ps = [torch.randn(s, dtype=dtype, device=device) for s in SHAPES]
    leaves, opt = _torch_adam(ps, lr=0.01, betas=betas, eps=1e-8, weight_decay=weight_decay)
    ms, vs = _state(ps)
    for step in range(1, 51):
        grads = [torch.randn_like(p) for p in ps]
        for leaf, g in zip(leaves, grads):
            leaf.grad = g.clone()
        opt.step()
        ops.adam_step_(ps, grads, ms, vs, step, 0.01, betas[0], betas[1], 1e-8, weight_decay)
    for p, m, v, leaf in zip(ps, ms, vs, leaves):
        state = opt.state[leaf]
        torch.testing.assert_close(p, leaf.detach(), **TOL[dtype])
        torch.testing.assert_close(m, state["exp_avg"], **TOL[dtype])
        torch.testing.assert_close(v, state["exp_avg_sq"], **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_strided_tensors_step_like_contiguous_ones(ops, device, dtype):
    """Transposed parameters, gradients and state (the ATen path of the C++ op) against torch."""
    torch.manual_seed(1)
    ps = [torch.randn(7, 5, dtype=dtype, device=device).t(), torch.randn(40, dtype=dtype, device=device)[::2]]
    leaves, opt = _torch_adam(ps, lr=0.1, weight_decay=0.01)
    ms = [torch.zeros(7, 5, dtype=dtype, device=device).t(), torch.zeros(20, dtype=dtype, device=device)]
    vs = [torch.zeros(7, 5, dtype=dtype, device=device).t(), torch.zeros(20, dtype=dtype, device=device)]
    for step in range(1, 6):
        grads = [torch.randn(7, 5, dtype=dtype, device=device).t(), torch.randn(20, dtype=dtype, device=device)]
        for leaf, g in zip(leaves, grads):
            leaf.grad = g.clone()
        opt.step()
        ops.adam_step_(ps, grads, ms, vs, step, 0.1, 0.9, 0.999, 1e-8, 0.01)
    for p, leaf in zip(ps, leaves):
        torch.testing.assert_close(p, leaf.detach(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpp_is_the_same_in_vectors_tails_and_any_thread_count(dtype):
    """Each element comes out the same alone, inside a vector or a tail (a slice moves every vector edge), and with
    one thread or two over a tensor longer than one thread's share."""
    require_cpp()
    from minidl.kernels import cpp

    torch.manual_seed(2)
    n = 100_003
    p, g, m, v = (torch.randn(n, dtype=dtype) for _ in range(4))
    v.abs_()

    def step(offset=0, count=n, threads=1):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            args = [[t[offset:offset + count].clone()] for t in (p, g, m, v)]
            cpp.adam_step_(*args, 3, 0.01, 0.9, 0.999, 1e-8, 0.01)
        finally:
            torch.set_num_threads(previous)
        return torch.cat([a[0] for a in args])

    whole = step()
    assert torch.equal(step(threads=2), whole)
    assert torch.equal(step(offset=5, count=n - 5), torch.cat([whole[i * n + 5:(i + 1) * n] for i in range(4)]))
    alone = torch.stack([step(offset=i, count=1) for i in range(20)], dim=1)
    assert torch.equal(alone, whole.view(4, n)[:, :20])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_cuda_kernel_steps_long_lists_and_tensors_of_many_blocks():
    """More tensors than one launch's table holds, and a tensor longer than one launch's blocks cover (cuda/adam.cu):
    every element steps once, as torch's own ops step it (the Python fallback on the GPU)."""
    require_cpp()
    from minidl import _build_info
    from minidl.kernels import cpp, python

    if _build_info.WITH_CUDA:
        assert torch._C._dispatch_has_kernel_for_dispatch_key("minidl::adam_step_", "CUDA")
    shapes = [(5,)] * 30 + [(320 * 65536 + 7,), (0,)] + [(3 * 65536 + 1,)] * 3 + [(2, 3)] * 30
    runs = []
    for k in (cpp, python):
        torch.manual_seed(6)
        ps = [torch.randn(s, device="cuda") for s in shapes]
        ms, vs = _state(ps)
        for step in range(1, 4):
            k.adam_step_(ps, [torch.randn_like(p) for p in ps], ms, vs, step, 0.01, 0.9, 0.999, 1e-8, 0.01)
        runs.append(ps + ms + vs)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


@pytest.mark.parametrize("transposed", [False, True])
def test_zero_grads_equals_a_step_then_zero(ops, device, transposed):
    torch.manual_seed(3)
    shapes = [(25, 2), (25,), (6, 5)]
    ps = [torch.randn(s, device=device) for s in shapes]
    gs = [torch.randn(s[::-1], device=device).t() if transposed and len(s) == 2 else torch.randn(s, device=device)
          for s in shapes]
    ms, vs = [torch.randn(s, device=device) for s in shapes], [torch.rand(s, device=device) for s in shapes]
    ref = [[t.clone() for t in ts] for ts in (ps, ms, vs)]
    ops.adam_step_(ref[0], [g.clone() for g in gs], ref[1], ref[2], 4, 0.1, 0.9, 0.999, 1e-8, 0.01)
    ops.adam_step_(ps, gs, ms, vs, 4, 0.1, 0.9, 0.999, 1e-8, 0.01, True)
    for a, b in zip(ps + ms + vs, ref[0] + ref[1] + ref[2]):
        assert torch.equal(a, b)
    assert all(torch.count_nonzero(g) == 0 for g in gs)


def test_empty_lists_step_nothing(ops):
    ops.adam_step_([], [], [], [], 1, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    opt = dl.Adam([])
    opt.step()
    opt.zero_grad()


def _op_args(**changes):
    p = [torch.ones(3, 2), torch.ones(4)]
    args = dict(params=p, grads=[torch.ones(3, 2), torch.ones(4)], exp_avgs=[torch.zeros(3, 2), torch.zeros(4)],
                exp_avg_sqs=[torch.zeros(3, 2), torch.zeros(4)], step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, zero_grads=False)
    args.update(changes)
    return args


BAD_OP_CALLS = [
    (dict(grads=[torch.ones(3, 2)]), ValueError, r"expected as many grads as params \(2\), got 1"),
    (dict(exp_avgs=[torch.zeros(3, 2)]), ValueError, r"expected as many exp_avgs and exp_avg_sqs as params \(2\), "
                                                     r"got 1 and 2"),
    (dict(exp_avg_sqs=[]), ValueError, r"exp_avg_sqs as params \(2\), got 2 and 0"),
    (dict(grads=[torch.ones(3, 2), torch.ones(5)]), ValueError, r"\(parameter 1\): expected grad of shape \[4\], "
                                                                r"got \[5\]"),
    (dict(exp_avgs=[torch.zeros(2, 3), torch.zeros(4)]), ValueError, r"\(parameter 0\): expected exp_avg of shape "
                                                                     r"\[3, 2\], got \[2, 3\]"),
    (dict(exp_avg_sqs=[torch.zeros(3, 2), torch.zeros(4, dtype=torch.float64)]), TypeError,
     r"\(parameter 1\): expected exp_avg_sq of dtype (Float|torch\.float32) like param, "
     r"got (Double|torch\.float64)"),
    (dict(params=[torch.ones(3, 2), torch.ones(4, dtype=torch.int64)]), TypeError,
     r"\(parameter 1\): expected param to be float32 or float64, got (Long|torch\.int64)"),
    (dict(step=0), ValueError, r"expected step >= 1 \(steps count from 1\), got 0"),
    (dict(lr=-0.1), ValueError, r"expected lr >= 0, got -0.1"),
    (dict(lr=float("nan")), ValueError, r"expected lr >= 0, got nan"),
    (dict(beta1=1.0), ValueError, r"expected beta1 in \[0, 1\), got 1"),
    (dict(beta2=-0.5), ValueError, r"expected beta2 in \[0, 1\), got -0.5"),
    (dict(eps=-1e-8), ValueError, r"expected eps >= 0, got -1e-08"),
    (dict(weight_decay=-1.0), ValueError, r"expected weight_decay >= 0, got -1"),
    (dict(grads=[torch.ones(2).expand(3, 2), torch.ones(4)], zero_grads=True), ValueError,
     r"\(parameter 0\): zero_grads needs gradients whose elements have memory of their own, got one of strides "
     r"\[0, 1\]"),
]


@pytest.mark.parametrize("changes,error,message", BAD_OP_CALLS)
def test_bad_op_arguments_raise_naming_the_op_before_any_write(ops, changes, error, message):
    args = _op_args(**changes)
    before = [[t.clone() for t in args[k]] for k in ("params", "exp_avgs", "exp_avg_sqs")]
    with pytest.raises(error, match=r"^minidl\.adam_step_.*" + message):
        ops.adam_step_(**args)
    after = [args[k] for k in ("params", "exp_avgs", "exp_avg_sqs")]
    assert all(torch.equal(a, b) for x, y in zip(before, after) for a, b in zip(x, y))


def test_tensors_on_another_device_are_refused(ops):
    args = _op_args(grads=[torch.ones(3, 2), torch.ones(4, device="meta")])
    with pytest.raises(RuntimeError, match=r"minidl\.adam_step_ \(parameter 1\): expected grad on cpu like param, "
                                           r"got meta"):
        ops.adam_step_(**args)


# --- dl.Adam -----------------------------------------------------------------------------------

def _networks(dtype=torch.float64, device="cpu"):
    """A minidl network and the same torch.nn one, with the same initial weights."""
    torch.manual_seed(5)
    net = dl.Sequential(dl.Linear(3, 25, dtype=dtype, device=device), dl.ReLU(),
                        dl.Linear(25, 25, dtype=dtype, device=device), dl.ReLU(),
                        dl.Linear(25, 2, dtype=dtype, device=device))
    ref = torch.nn.Sequential(torch.nn.Linear(3, 25), torch.nn.ReLU(), torch.nn.Linear(25, 25), torch.nn.ReLU(),
                              torch.nn.Linear(25, 2)).to(dtype=dtype, device=device)
    with torch.no_grad():
        for k in (0, 2, 4):
            ref[k].weight.copy_(net.modules[k].weight)
            ref[k].bias.copy_(net.modules[k].bias)
    return net, ref


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
@pytest.mark.parametrize("zero_grad_in_step", [False, True])
def test_a_network_trains_as_with_torch_optim_adam(backend_name, device, weight_decay, zero_grad_in_step):
    """20 steps of a Linear/ReLU network with LossMSE: the same losses and weights as torch.nn + torch.optim.Adam.
    Each step adds the gradients of two batches (two backward calls), as autograd accumulates them."""
    net, ref = _networks(device=device)
    opt = dl.Adam(net.param(), lr=1e-2, weight_decay=weight_decay)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=weight_decay)
    loss_fn = dl.LossMSE()
    for step in range(20):
        batches = [(torch.rand(16, 3, dtype=torch.float64, device=device),
                    torch.rand(16, 2, dtype=torch.float64, device=device)) for _ in range(2)]
        if not zero_grad_in_step:
            net.zero_grad()
        ref_opt.zero_grad()
        for x, t in batches:
            loss = loss_fn.forward(net.forward(x), t)
            net.backward(loss_fn.backward())
            with torch.enable_grad():
                ref_loss = torch.nn.functional.mse_loss(ref(x), t)
                ref_loss.backward()
            torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-12, atol=1e-15)
        grads = [g.clone() for _, g in net.param()]
        opt.step(zero_grad=zero_grad_in_step)
        ref_opt.step()
        for (p, g), g_before, rp in zip(net.param(), grads, ref.parameters()):
            torch.testing.assert_close(g_before, rp.grad, rtol=1e-12, atol=1e-15)
            assert torch.equal(g, torch.zeros_like(g) if zero_grad_in_step else g_before)
            torch.testing.assert_close(p, rp.detach(), rtol=1e-12, atol=1e-15)
    assert opt.steps == 20


def test_adam_takes_a_module_and_keeps_its_state(backend_name):
    net, _ = _networks()
    opt = dl.Adam(net, lr=0.1, betas=[0.8, 0.9], eps=1e-6, weight_decay=0.1)
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay, opt.steps) == (0.1, (0.8, 0.9), 1e-6, 0.1, 0)
    assert len(opt.params) == 6 and opt.exp_avgs == [] and opt.exp_avg_sqs == []
    for _, g in net.param():
        g.fill_(0.5)
    opt.step()
    assert opt.steps == 1 and len(opt.exp_avgs) == 6
    for m, v in zip(opt.exp_avgs, opt.exp_avg_sqs):  # not a view of anything else, moved with the parameters
        assert m.shape == v.shape and m.data_ptr() != v.data_ptr()
    opt.zero_grad()
    assert all(not g.any() for _, g in net.param())


BAD_ADAM = [
    (dict(lr=0), ValueError, r"^Adam: expected lr > 0, got 0$"),
    (dict(lr=-1e-3), ValueError, r"^Adam: expected lr > 0, got -0.001$"),
    (dict(lr="0.1"), TypeError, r"^Adam: expected lr to be a number, got str '0.1'$"),
    (dict(betas=(1.0, 0.999)), ValueError, r"^Adam: expected betas\[0\] in \[0, 1\), got 1.0$"),
    (dict(betas=(0.9, -0.1)), ValueError, r"^Adam: expected betas\[1\] in \[0, 1\), got -0.1$"),
    (dict(betas=0.9), TypeError, r"^Adam: expected betas to be a pair of numbers, got 0.9$"),
    (dict(betas=(0.9, None)), TypeError, r"^Adam: expected beta2 to be a number, got NoneType None$"),
    (dict(eps=-1e-8), ValueError, r"^Adam: expected eps >= 0, got -1e-08$"),
    (dict(weight_decay=-0.1), ValueError, r"^Adam: expected weight_decay >= 0, got -0.1$"),
]


@pytest.mark.parametrize("options,error,message", BAD_ADAM)
def test_bad_adam_options_raise_naming_adam(options, error, message):
    with pytest.raises(error, match=message):
        dl.Adam(_networks()[0].param(), **options)


def test_bad_pairs_and_kernel_errors_name_adam(backend_name):
    with pytest.raises(TypeError, match=r"^Adam: expected \(parameter, gradient\) pairs as returned by "
                                        r"Module.param\(\), got Tensor at position 0"):
        dl.Adam([torch.rand(3)])
    with pytest.raises(ValueError, match=r"^Adam: parameter 0 has shape \[2\] but its gradient has shape \[3\]"):
        dl.Adam([(torch.rand(2), torch.rand(3))])
    opt = dl.Adam([(torch.rand(2, 2), torch.rand(2, 2)), (torch.rand(2), torch.rand(2, dtype=torch.float64))])
    with pytest.raises(TypeError, match=r"^Adam.step: minidl.adam_step_ \(parameter 1\): expected grad of dtype"):
        opt.step()
    assert opt.steps == 0  # refused before anything was written: the step did not happen
