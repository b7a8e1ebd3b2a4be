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
    for r in ("grad_output", "input", "output", "pooled", "weight", "mean", "invstd")]
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
@pytest.mark.parametrize("op, make, names", WRITTEN_PAIRS, ids=[p[0][7:] for p in WRITTEN_PAIRS])
def test_two_written_tensors_sharing_memory_are_refused(backend_name, device, op, make, names):
    first, second = names

    def overlapping(t):  # the two one element apart in one buffer: partly the same memory
        n = t[first].numel()
        buffer = torch.zeros(n + t[second].numel(), dtype=t[first].dtype, device=device)
        return {first: buffer[:n].view(t[first].shape), second: buffer[1:1 + t[second].numel()].view(t[second].shape)}
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


@pytest.mark.parametrize("op, make, names", WRITTEN_PAIRS, ids=[p[0][7:] for p in WRITTEN_PAIRS])
def test_written_tensors_as_disjoint_views_of_one_buffer_are_taken(backend_name, op, make, names):
    """A flat gradient (or statistics) buffer: the results equal those with tensors of their own."""
    from minidl import backend
    torch.manual_seed(3)
    own, call_own = make("cpu", lambda t: {})
    sizes = [own[n].numel() for n in names]
    flat = torch.cat([own[n].reshape(-1) for n in names])
    views = dict(zip(names, (v.view(own[n].shape) for v, n in zip(flat.split(sizes), names))))
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
    """Random views of one buffer as grad_weight and weight: the C++ and Python checks refuse the same ones, and
    for dense views exactly those whose elements meet (strided ones whose spans interleave also count)."""
    buffer = torch.zeros(40, dtype=torch.float64)

    def view(strides):
        strides = data.draw(st.sampled_from(strides))
        offset = data.draw(st.integers(0, 39 - strides[0] - 2 * strides[1]))
        return buffer.as_strided((2, 3), strides, offset)

    gw, w = view([(3, 1), (1, 2), (6, 2), (1, 3)]), view([(3, 1), (1, 2), (6, 2), (1, 3), (3, 0), (0, 1)])
    g, x = torch.ones(4, 2, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64)
    refused = {}
    for name, ops in _backends():
        try:
            ops.linear_backward(g, x, w, gw, None)
            refused[name] = False
        except ValueError as e:
            assert "expected grad_weight to share no memory with weight" in str(e)
            refused[name] = True
    assert len(set(refused.values())) == 1, refused
    elements = lambda t: {t.storage_offset() + i * t.stride(0) + j * t.stride(1) for i in range(2) for j in range(3)}
    dense = lambda t: t.is_contiguous() or t.t().is_contiguous()
    if dense(gw) and dense(w):
        assert refused["python"] == bool(elements(gw) & elements(w))
