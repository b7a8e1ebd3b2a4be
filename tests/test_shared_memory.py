"""A tensor an op writes (a gradient it adds into, a running statistic) that shares memory with one the op reads,
or with another it writes, is refused before any write on both backends: before, `m.grad_weight = m.weight` gave
a silently wrong input gradient. Gradients that are disjoint views of one buffer stay allowed."""
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minidl as dl
from fuzz_support import FUZZ, _backends

DEVICES = ["cpu", "meta"]  # meta: the shape functions (fake kernels) check the same


def _linear(device, alias):
    t = {n: torch.randn(*s, dtype=torch.float64, device=device) for n, s in
         (("grad_output", (4, 2)), ("input", (4, 3)), ("weight", (2, 3)), ("grad_weight", (2, 3)), ("grad_bias", (2,)))}
    t.update(alias(t))
    return t, lambda k: k.linear_backward(t["grad_output"], t["input"], t["weight"], t["grad_weight"], t["grad_bias"])


def _conv(device, alias):
    t = {n: torch.randn(*s, dtype=torch.float64, device=device) for n, s in
         (("grad_output", (2, 2, 3, 3)), ("input", (2, 1, 5, 5)), ("weight", (2, 1, 3, 3)),
          ("grad_weight", (2, 1, 3, 3)), ("grad_bias", (2,)))}
    t.update(alias(t))
    return t, lambda k: k.conv2d_backward(t["grad_output"], t["input"], t["weight"], t["grad_weight"], t["grad_bias"],
                                          [1, 1], [0, 0])


def _norm_backward(device, alias):
    t = {n: torch.rand(*s, dtype=torch.float64, device=device) + 0.5 for n, s in
         (("grad_output", (4, 3, 2, 2)), ("input", (4, 3, 2, 2)), ("weight", (3,)), ("mean", (3,)), ("invstd", (3,)),
          ("grad_weight", (3,)), ("grad_bias", (3,)))}
    t.update(alias(t))
    return t, lambda k: k.batch_norm_backward(t["grad_output"], t["input"], t["weight"], t["mean"], t["invstd"],
                                              t["grad_weight"], t["grad_bias"], True)


def _norm_forward(device, alias):
    t = {n: torch.rand(*s, dtype=torch.float64, device=device) + 0.5 for n, s in
         (("input", (4, 3, 2, 2)), ("weight", (3,)), ("bias", (3,)), ("running_mean", (3,)), ("running_var", (3,)))}
    t.update(alias(t))
    return t, lambda k: k.batch_norm_forward(t["input"], t["weight"], t["bias"], t["running_mean"], t["running_var"],
                                             True, 0.1, 1e-5)


def _block_forward(device, alias):
    t = {n: torch.rand(*s, dtype=torch.float64, device=device) + 0.5 for n, s in
         (("input", (4, 3, 4, 4)), ("weight", (3,)), ("bias", (3,)), ("running_mean", (3,)), ("running_var", (3,)))}
    t.update(alias(t))
    return t, lambda k: k.pool_norm_relu_forward(t["input"], [2, 2], [2, 2], t["weight"], t["bias"], t["running_mean"],
                                                 t["running_var"], True, 0.1, 1e-5)


def _block_backward(device, alias):
    t = {n: torch.rand(*s, dtype=torch.float64, device=device) + 0.5 for n, s in
         (("grad_output", (4, 3, 2, 2)), ("input", (4, 3, 4, 4)), ("output", (4, 3, 2, 2)), ("pooled", (4, 3, 2, 2)),
          ("weight", (3,)), ("mean", (3,)), ("invstd", (3,)), ("grad_weight", (3,)), ("grad_bias", (3,)))}
    t["argmax"] = torch.zeros(4, 3, 2, 2, dtype=torch.uint8, device=device)
    t.update(alias(t))
    return t, lambda k: k.pool_norm_relu_backward(t["grad_output"], t["input"], t["output"], t["pooled"], t["argmax"],
                                                  [2, 2], [2, 2], t["weight"], t["mean"], t["invstd"],
                                                  t["grad_weight"], t["grad_bias"], True)


def _part_of(name, within):
    """An alias: tensor `name` becomes elements of tensor `within` (its first ones, reshaped)."""
    if within == "argmax":  # uint8: both made of one buffer's bytes, the float64 tensor its first 3 elements
        def alias(t):
            buffer = torch.zeros(6, dtype=torch.float64, device=t[name].device)
            return {name: buffer[:3], within: buffer.view(torch.uint8).view(t[within].shape)}
        return alias
    return lambda t: {name: t[within].reshape(-1)[:t[name].numel()].view(t[name].shape)}


# (op, make, written, read): each pair the op must refuse to share memory
CASES = [("minidl.linear_backward", _linear, w, r) for w in ("grad_weight", "grad_bias")
         for r in ("grad_output", "input", "weight")] + [
    ("minidl.conv2d_backward", _conv, w, r) for w in ("grad_weight", "grad_bias")
    for r in ("grad_output", "input", "weight")] + [
    ("minidl.batch_norm_backward", _norm_backward, w, r) for w in ("grad_weight", "grad_bias")
    for r in ("grad_output", "input", "weight", "mean", "invstd")] + [
    ("minidl.batch_norm_forward", _norm_forward, w, r) for w in ("running_mean", "running_var")
    for r in ("input", "weight", "bias")] + [
    ("minidl.pool_norm_relu_forward", _block_forward, w, r) for w in ("running_mean", "running_var")
    for r in ("input", "weight", "bias")] + [
    ("minidl.pool_norm_relu_backward", _block_backward, w, r) for w in ("grad_weight", "grad_bias")
    for r in ("grad_output", "input", "output", "pooled", "argmax", "weight", "mean", "invstd")]
WRITTEN_PAIRS = [("minidl.linear_backward", _linear, ("grad_weight", "grad_bias")),
                 ("minidl.conv2d_backward", _conv, ("grad_weight", "grad_bias")),
                 ("minidl.batch_norm_backward", _norm_backward, ("grad_weight", "grad_bias")),
                 ("minidl.batch_norm_forward", _norm_forward, ("running_mean", "running_var")),
                 ("minidl.pool_norm_relu_forward", _block_forward, ("running_mean", "running_var")),
                 ("minidl.pool_norm_relu_backward", _block_backward, ("grad_weight", "grad_bias"))]


def _refused(call, t, message):
    from minidl import backend
    before = {n: v.clone() for n, v in t.items()}
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        call(backend.ops)
    if t["input"].device.type != "meta":
        assert all(torch.equal(t[n], before[n]) for n in t), "refused after a write"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, make, written, read", CASES, ids=[f"{c[0][7:]}-{c[2]}-{c[3]}" for c in CASES])
def test_a_written_tensor_sharing_memory_with_a_read_one_is_refused(backend_name, device, op, make, written, read):
    t, call = make(device, _part_of(written, read))
    _refused(call, t, f"{op}: expected {written} to share no memory with {read} "
                      f"(the op writes {written} while it reads {read})")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shift, step", [(0, 1), (1, 1), (1, 2)], ids=["same-elements", "one-apart", "strided"])
@pytest.mark.parametrize("op, make, names", WRITTEN_PAIRS, ids=[p[0][7:] for p in WRITTEN_PAIRS])
def test_two_written_tensors_sharing_memory_are_refused(backend_name, device, shift, step, op, make, names):
    """Partly or wholly the same memory (running_mean that is running_var: updated twice, in an order); strided:
    every other element of one buffer, one element apart."""
    first, second = names

    def overlapping(t):
        n1, n2 = t[first].numel(), t[second].numel()
        buffer = torch.zeros(step * (max(n1, n2) + 1), dtype=t[first].dtype, device=device)
        return {first: buffer[:step * n1:step].view(t[first].shape),
                second: buffer[step * shift:step * (shift + n2):step].view(t[second].shape)}
    t, call = make(device, overlapping)
    _refused(call, t, f"{op}: expected {first} and {second} to share no memory (the op writes both)")


def test_mlp_backward_adds_twice_into_a_gradient_listed_twice(backend_name):
    """A stack applying one layer twice lists its gradients twice: they take both layers' sums."""
    from minidl import backend
    torch.manual_seed(5)
    x, w = torch.randn(5, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    b = torch.zeros(3, dtype=torch.float64)
    outs = backend.ops.mlp_forward(x, [w, w], [b, b], [2, 0])
    gw, gb, g = torch.zeros_like(w), torch.zeros_like(b), torch.randn(5, 3, dtype=torch.float64)
    backend.ops.mlp_backward(g, x, outs, [w, w], [gw, gw], [gb, gb], [2, 0], None)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ((torch.tanh(xr @ wr.t()) @ wr.t()) * g).sum().backward()
    torch.testing.assert_close(gw, wr.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, g.sum(0) + ((1 - outs[0] ** 2) * (g @ w)).sum(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("packing", ["flat", "interleaved"])
@pytest.mark.parametrize("op, make, names", WRITTEN_PAIRS, ids=[p[0][7:] for p in WRITTEN_PAIRS])
def test_written_tensors_as_disjoint_views_of_one_buffer_are_taken(backend_name, packing, op, make, names):
    """A flat gradient (or statistics) buffer, or the columns of one ([O, I + 1] holding a weight's gradient and
    its bias's): the results equal those with tensors of their own."""
    from minidl import backend
    torch.manual_seed(3)
    own, call_own = make("cpu", lambda t: {})
    sizes = [own[n].numel() for n in names]
    if packing == "flat":
        flat = torch.cat([own[n].reshape(-1) for n in names])
        views = dict(zip(names, (v.view(own[n].shape) for v, n in zip(flat.split(sizes), names))))
    else:
        packed = torch.zeros(max(sizes), 2, dtype=torch.float64)
        views = {n: packed[:size, column].view(own[n].shape) for column, (n, size) in enumerate(zip(names, sizes))}
        for n in names:
            views[n].copy_(own[n])
    shared, call_shared = make("cpu", lambda t: {})
    shared.update({n: v.clone() for n, v in own.items() if n not in names}, **views)
    for got, want in zip(call_shared(backend.ops), call_own(backend.ops)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for n in names:
        torch.testing.assert_close(shared[n], own[n], rtol=0, atol=0)


def test_mlp_backward_refuses_a_gradient_that_is_another_layers_weight(backend_name):
    from minidl import backend
    torch.manual_seed(4)
    x, ws, bs = torch.randn(5, 3), [torch.randn(4, 3), torch.randn(2, 4)], [torch.randn(4), torch.randn(2)]
    outs = backend.ops.mlp_forward(x, ws, bs, [1, 0])
    gws, gbs = [torch.zeros(4, 3), ws[0].reshape(-1)[:8].view(2, 4)], [torch.zeros(4), torch.zeros(2)]
    before = [t.clone() for t in (*ws, *gws, *gbs)]
    with pytest.raises(ValueError, match=re.escape("minidl.mlp_backward: expected grad_weights[1] to share no memory "
                                                   "with weights[0] (the op writes grad_weights[1] while it reads "
                                                   "weights[0])")):
        backend.ops.mlp_backward(torch.ones(5, 2), x, outs, ws, gws, gbs, [1, 0], None)
    assert all(torch.equal(t, old) for t, old in zip((*ws, *gws, *gbs), before))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "module-by-module"])
def test_tied_transposed_weights_get_torchs_values_and_gradients(backend_name, fused):
    """An autoencoder whose decoder is the encoder's transpose, gradient too: the stack's two layers add into one
    gradient, one after the other (fused: one mlp_backward call). An optimizer would step that memory twice (two
    parameter tensors): param() refuses, naming both."""
    torch.manual_seed(6)
    enc, dec = dl.Linear(4, 3, dtype=torch.float64), dl.Linear(3, 4, dtype=torch.float64)
    dec.weight, dec.grad_weight = enc.weight.t(), enc.grad_weight.t()
    net = dl.Sequential(enc, dl.Tanh(), dec) if fused else dl.Sequential(enc, dl.Tanh(), dl.Dropout(0.0), dec)
    x, g = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    y = net(x)
    gx = net.backward(g)
    w, b1, b2 = (t.clone().requires_grad_() for t in (enc.weight, enc.bias, dec.bias))
    xr = x.clone().requires_grad_()
    yr = torch.tanh(xr @ w.t() + b1) @ w + b2
    (yr * g).sum().backward()
    torch.testing.assert_close(y, yr.detach(), rtol=1e-12, atol=1e-12)
    for got, want in ((gx, xr.grad), (enc.grad_weight, w.grad), (enc.grad_bias, b1.grad), (dec.grad_bias, b2.grad)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=re.escape(f"{net!r}.param: 0.weight and {2 if fused else 3}"
                                                   f".weight share memory; give each a tensor of its own")):
        net.param()


def test_param_refuses_a_gradient_that_is_another_modules_parameter(backend_name):
    """Module by module each op sees only its own tensors: l2's backward wrote l1's weight before l1 read it."""
    l1, l2 = dl.Linear(3, 3), dl.Linear(3, 3)
    l2.grad_weight = l1.weight
    net = dl.Sequential(l1, dl.ReLU(), dl.Dropout(0.0), l2)
    with pytest.raises(ValueError, match=re.escape(f"{net!r}.param: 0.weight and 3.weight's gradient share memory")):
        dl.SGD(net, lr=0.1)


@pytest.mark.parametrize("op", ["linear", "conv2d", "mlp"])
@pytest.mark.parametrize("written", ["grad_weight", "grad_bias"])
def test_an_expanded_gradient_is_refused_before_any_write(backend_name, op, written):
    """Before: ATen refused an expanded grad_bias after grad_weight had been added into."""
    from minidl import backend
    k = backend.ops
    shape = (2, 1, 1, 3) if op == "conv2d" else (2, 3)
    gw = torch.zeros(1, *shape[1:]).expand(shape) if written == "grad_weight" else torch.zeros(shape)
    gb = torch.zeros(1).expand(2) if written == "grad_bias" else torch.zeros(2)
    name = {"grad_weight": "grad_weights[0]", "grad_bias": "grad_biases[0]"}[written] if op == "mlp" else written
    strides = list((gw if written == "grad_weight" else gb).stride())
    with pytest.raises(ValueError, match=re.escape(f"minidl.{op}_backward: expected {name} whose elements have memory "
                                                   f"of their own (the op writes it), got strides {strides}")):
        if op == "linear":
            k.linear_backward(torch.ones(4, 2), torch.ones(4, 3), torch.ones(2, 3), gw, gb)
        elif op == "conv2d":
            k.conv2d_backward(torch.ones(1, 2, 1, 1), torch.ones(1, 1, 1, 3), torch.ones(shape), gw, gb, [1, 1], [0, 0])
        else:
            x, w = torch.ones(4, 3), torch.ones(2, 3)
            k.mlp_backward(torch.ones(4, 2), x, k.mlp_forward(x, [w], [torch.ones(2)], [0]), [w], [gw], [gb], [0], None)
    assert not gw.any() and not gb.any()


@pytest.mark.parametrize("make", [lambda: dl.Linear(3, 2), lambda: dl.Conv2d(1, 2, 3)], ids=["Linear", "Conv2d"])
def test_a_module_whose_gradient_is_its_weight_says_so(backend_name, make):
    m = make()
    m.grad_weight = m.weight
    x = torch.randn(2, 3) if isinstance(m, dl.Linear) else torch.randn(2, 1, 5, 5)
    y = m(x)
    with pytest.raises(ValueError, match=re.escape(f"{m!r}.backward: ") + r"minidl\.\w+_backward: expected grad_weight "
                                         r"to share no memory with weight"):
        m.backward(torch.ones_like(y))


@FUZZ
@given(st.data())
def test_the_backends_agree_on_which_strided_views_share_memory(data):
    """Random views of one buffer as grad_weight and weight: the C++ and Python checks refuse exactly those whose
    elements meet."""
    buffer = torch.zeros(40, dtype=torch.float64)

    def view(strides):  # offsets within 5 elements: spans that meet, often interleaved
        return buffer.as_strided((2, 3), data.draw(st.sampled_from(strides)), data.draw(st.integers(0, 5)))

    gw, w = view([(3, 1), (1, 2), (6, 2), (2, 4), (1, 3)]), view([(3, 1), (1, 2), (6, 2), (2, 4), (3, 0), (0, 1)])
    g, x = torch.ones(4, 2, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64)
    refused = {}
    for name, ops in _backends():
        try:
            ops.linear_backward(g, x, w, gw, None)
            refused[name] = False
        except ValueError as e:
            assert "expected grad_weight to share no memory with weight" in str(e)
            refused[name] = True
    elements = lambda t: {t.storage_offset() + i * t.stride(0) + j * t.stride(1) for i in range(2) for j in range(3)}
    assert set(refused.values()) == {bool(elements(gw) & elements(w))}, refused



def test_an_optimizer_refuses_parameters_that_share_memory_without_being_one_tensor():
    """Lists from leaves' param() joined by hand: tied transposed weights would be stepped twice."""
    a, b = dl.Linear(4, 3), dl.Linear(3, 4)
    b.weight, b.grad_weight = a.weight.t(), a.grad_weight.t()
    with pytest.raises(ValueError, match=re.escape("SGD: parameter 0 and parameter 2 share memory")):
        dl.SGD(a.param() + b.param(), lr=0.1)
    b.weight, b.grad_weight = torch.empty(4, 3), torch.zeros(4, 3)
    dl.SGD(a.param() + a.param(), lr=0.1)  # one tensor listed twice: stepped twice, as asked


def test_param_names_the_optimizer_error_for_an_entry_that_is_not_a_tensor():
    class Odd(dl.nn.module.Module):
        def named_param(self):
            return [("w", torch.zeros(2), None)]
    net = dl.Sequential(Odd(), dl.Linear(2, 2))
    assert len(net.param()) == 3
    with pytest.raises(TypeError, match=r"^SGD: expected \(parameter, gradient\) pairs of tensors"):
        dl.SGD(net, lr=0.1)
