"""Property tests (hypothesis) of the fused Linear stack (mlp_forward, mlp_backward), the MSE loss and
SGD: both backends against each other and torch (fuzz_support.py says what is drawn and checked)."""
import math

import torch
from hypothesis import given, note
from hypothesis import strategies as st

from torch.optim.sgd import sgd as _torch_sgd  # torch.optim.SGD's arithmetic, as a function
from fuzz_support import (BATCH, DTYPES, F64, FUZZ, SHAPES, _backends, _eps, _fin, _sub, _tiny, arg, assert_same,
                          assert_within, check_output, matmul_bound)


# --- the fused stack ---------------------------------------------------------------------------
STACK_SIZES = st.sampled_from([0, 1, 2, 3, 5, 8, 17, 33])


def _act64(z, a):
    return torch.relu(z) if a == 1 else torch.tanh(z) if a == 2 else z


def _stack(data, dtype):
    layers = data.draw(st.integers(1, 3), label="layers")
    sizes = [data.draw(STACK_SIZES, label="size") for _ in range(layers + 1)]
    acts = [data.draw(st.sampled_from([0, 1, 2]), label="activation") for _ in range(layers)]
    n = data.draw(BATCH, label="N")
    ws = [arg(data, (o, i), dtype, scale=data.draw(st.sampled_from([_tiny(dtype), 1e-3, 0.3, 1.0, 30.0]), label="w scale"))
          for i, o in zip(sizes, sizes[1:])]
    bs = [arg(data, (o,), dtype, scale=data.draw(st.sampled_from([1e-3, 1.0, 1e3]), label="b scale")) for o in sizes[1:]]
    x = arg(data, (n, sizes[0]), dtype, scale=data.draw(st.sampled_from([_tiny(dtype), 1e-3, 1.0, 1e3, 1e8]), label="x scale"))
    note(f"mlp sizes {sizes} activations {acts} batch {n}")
    return n, sizes, acts, x, ws, bs


@FUZZ
@given(data=st.data())
def test_mlp_forward(data):
    dtype = data.draw(DTYPES, label="dtype")
    n, sizes, acts, x, ws, bs = _stack(data, dtype)
    results = {}
    for name, k in _backends():
        outs = k.mlp_forward(x.t, [w.t for w in ws], [b.t for b in bs], acts)
        assert len(outs) == len(ws)
        prev = x.t
        for i, (y, w, b, a) in enumerate(zip(outs, ws, bs, acts)):
            check_output(name, y)
            assert y.dtype == dtype
            # Each layer from the kernel's own previous output: the error bound of one layer.
            X, W, B = prev.double(), w.t.double(), b.t.double()
            ref = _act64(torch.addmm(B, X, W.t()), a)
            bound = matmul_bound(B.abs() + X.abs() @ W.abs().t(), sizes[i], dtype)
            if a == 2:
                bound = bound + 4 * _eps(dtype) * ref.abs()
            assert_within(y, ref, bound, f"{name} mlp_forward layer {i}")
            prev = y
        assert x.untouched() and all(w.untouched() for w in ws) and all(b.untouched() for b in bs)
        results[name] = outs
    if "cpp" in results:  # other loops than Python's addmm (small layers): NaN and inf in the same places
        for i, (c, p) in enumerate(zip(results["cpp"], results["python"])):
            assert torch.equal(c.isnan(), p.isnan()) and torch.equal(c.isinf(), p.isinf()), f"layer {i}"


@FUZZ
@given(data=st.data())
def test_mlp_backward(data):
    dtype = data.draw(DTYPES, label="dtype")
    n, sizes, acts, x, ws, bs = _stack(data, dtype)
    layers = len(ws)
    # Saved outputs: any values (the op is a function of them); tanh outputs of moderate size.
    outs = [arg(data, (n, o), dtype, scale=data.draw(st.sampled_from([0.5, 1.0, 1e3]), label="y scale"),
                max_abs=1.5 if a == 2 else None)
            for o, a in zip(sizes[1:], acts)]
    gy = arg(data, (n, sizes[-1]), dtype, scale=data.draw(st.sampled_from([_tiny(dtype), 1e-3, 1.0, 1e3]), label="g scale"))
    gw_bufs = [arg(data, tuple(w.t.shape), dtype, writable=True) for w in ws]
    gb_bufs = [arg(data, tuple(b.t.shape), dtype, writable=True) for b in bs]
    gw0, gb0 = [g.t.clone() for g in gw_bufs], [g.t.clone() for g in gb_bufs]
    gx_buf = arg(data, tuple(x.t.shape), dtype, writable=True) if data.draw(st.booleans(), label="grad_input") else None
    want_gx = gx_buf is not None

    # Reference chain: the gradient g in the dtype (so that it underflows to 0, and 0 * inf is NaN,
    # where the kernels' does), each product with it in float64, and a float64 magnitude bound
    # alongside (|g| through |act'| and |W|).
    eps, tiny = _eps(dtype), torch.finfo(dtype).tiny
    G = gy.t.clone()
    Gabs = G.double().abs()
    refs = [None] * layers
    terms = n + sum(sizes) + 3 * layers
    for k in reversed(range(layers)):
        y = outs[k].t
        if acts[k] == 1:
            mask = y <= 0
            G, Gabs = G.masked_fill(mask, 0), Gabs.masked_fill(mask, 0)
        elif acts[k] == 2:
            Y = y.double()
            G, Gabs = G * (1 - y * y), _fin(Gabs * (1 + Y * Y))
        Gabs = _fin(Gabs + tiny)
        X = (outs[k - 1].t if k > 0 else x.t).double()
        G64 = G.double()
        gw = (gw0[k].double() + G64.t() @ X, gw0[k].double().abs() + _fin(Gabs.t() @ X.abs()))
        gb = (gb0[k].double() + G64.sum(0), gb0[k].double().abs() + _fin(Gabs.sum(0)))
        refs[k] = (gw, gb)
        W = ws[k].t
        G, Gabs = G @ W, _fin(Gabs @ W.double().abs())
    G = G.double()
    gx_ref = G, Gabs

    def bound(mag):
        return 2 * (terms + 2) * eps * mag + (terms + 2) * _sub(dtype)

    results = {}
    for name, k in _backends():
        gws, gbs = [g.clone() for g in gw_bufs], [g.clone() for g in gb_bufs]
        gx = gx_buf.clone() if want_gx else None
        ret = k.mlp_backward(gy.t, x.t, [o.t for o in outs], [w.t for w in ws], [g.t for g in gws],
                             [g.t for g in gbs], acts, gx.t if gx else None)
        assert ret is None
        for i in range(layers):
            (gw_ref, gw_mag), (gb_ref, gb_mag) = refs[i]
            assert_within(gws[i].t, gw_ref, bound(gw_mag), f"{name} mlp_backward grad_weight {i}")
            assert_within(gbs[i].t, gb_ref, bound(gb_mag), f"{name} mlp_backward grad_bias {i}")
        for buf in gws + gbs:
            assert buf.outside_untouched(), f"{name} mlp_backward wrote outside a gradient's view"
        if gx:  # overwritten, not accumulated
            assert_within(gx.t, gx_ref[0], bound(gx_ref[1]), f"{name} mlp_backward grad_input")
            assert gx.outside_untouched(), f"{name} mlp_backward wrote outside grad_input's view"
        for buf in [x, gy] + outs + ws:
            assert buf.untouched(), f"{name} mlp_backward modified a read-only input"
        results[name] = [g.t.clone() for g in gws + gbs] + ([gx.t.clone()] if gx else [])
    if "cpp" in results:  # NaN and inf in the same places (values: each within bound of the reference)
        for c, p in zip(results["cpp"], results["python"]):
            assert torch.equal(c.isnan(), p.isnan()) and torch.equal(c.isinf(), p.isinf())


# --- loss and optimizer ------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_mse_forward(data):
    dtype, shape = data.draw(DTYPES, label="dtype"), data.draw(SHAPES, label="shape")
    # No finfo.max here: float32 sums of squares that overflow differ between the backends
    # (test_mse_float32_overflow_agrees in test_fuzz_invalid.py).
    o, t = arg(data, shape, dtype), arg(data, shape, dtype)
    n = o.t.numel()
    D = (o.t - t.t).double()  # the difference rounded in the dtype, as both backends compute it
    loss_ref = (D * D).mean() if n else torch.tensor(math.nan, dtype=F64)
    grad_ref = D * (2.0 / max(n, 1))
    loss_bound = 2 * (n + 4) * _eps(dtype) * _fin((D * D).mean() if n else torch.tensor(0.0, dtype=F64)) + 4 * _sub(dtype)
    results = {}
    for name, k in _backends():
        loss, grad = k.mse_forward(o.t, t.t)
        check_output(name, grad)
        assert loss.shape == () and loss.dtype == dtype and grad.dtype == dtype
        assert_within(loss, loss_ref, loss_bound, f"{name} mse_forward loss")
        assert_within(grad, grad_ref, 2 * _eps(dtype) * grad_ref.abs() + 2 * _sub(dtype), f"{name} mse_forward grad")
        assert o.untouched() and t.untouched()
        results[name] = loss, grad
    if n:
        ref = torch.nn.functional.mse_loss(o.t, t.t)
        assert_within(results["python"][0], ref.double(), loss_bound, "python mse vs torch mse_loss")
    if "cpp" in results:
        assert_same(results["cpp"][1], results["python"][1], "cpp vs python mse_forward grad")
        assert_within(results["cpp"][0], results["python"][0].double(), 2 * loss_bound, "cpp vs python mse loss")


@FUZZ
@given(data=st.data())
def test_sgd_step(data):
    dtype = data.draw(DTYPES, label="dtype")
    count = data.draw(st.integers(1, 3), label="params")  # none: test_sgd_step_without_params (test_fuzz_invalid)
    shapes = [data.draw(SHAPES, label="shape") for _ in range(count)]
    lr = data.draw(st.sampled_from([0.0, 1e-3, 0.1, 1.0, 10.0]), label="lr")
    momentum = data.draw(st.sampled_from([0.0, 0.5, 0.9]), label="momentum")
    wd = data.draw(st.sampled_from([0.0, 1e-4, 0.1]), label="weight_decay")
    p_bufs = [arg(data, s, dtype, writable=True, with_max=True) for s in shapes]
    grads = [arg(data, s, dtype, with_max=True) for s in shapes]
    v_bufs = [arg(data, s, dtype, writable=True) for s in shapes]
    p0, v0 = [p.t.clone() for p in p_bufs], [v.t.clone() for v in v_bufs]
    pass_buffers = momentum != 0 or data.draw(st.booleans(), label="buffers without momentum")

    # torch.optim's own arithmetic (buffers given, so not its first-step clone).
    p_ref, v_ref = [p.clone() for p in p0], [v.clone() for v in v0]
    _torch_sgd(p_ref, [g.t for g in grads], v_ref if momentum else [None] * count, foreach=False,
               weight_decay=wd, momentum=momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False)
    for name, k in _backends():
        ps, vs = [p.clone() for p in p_bufs], [v.clone() for v in v_bufs]
        ret = k.sgd_step_([p.t for p in ps], [g.t for g in grads], [v.t for v in vs] if pass_buffers else [],
                          lr, momentum, wd)
        assert ret is None
        for i in range(count):
            # Documented: torch.optim.SGD's arithmetic, bit for bit.
            assert_same(ps[i].t, p_ref[i], f"{name} sgd_step_ param {i}")
            assert_same(vs[i].t, v_ref[i] if momentum else v0[i], f"{name} sgd_step_ momentum_buffer {i}")
            assert ps[i].outside_untouched() and vs[i].outside_untouched(), f"{name} sgd_step_ wrote outside a view"
            assert grads[i].untouched(), f"{name} sgd_step_ modified a grad"
