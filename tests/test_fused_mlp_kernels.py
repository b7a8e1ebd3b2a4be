"""The fused stack's ops (mlp_forward, mlp_backward) called directly: the bias gradient's summation order,
gradients that share memory, the small layers' loops, against the Python fallback."""
import re

import pytest
import torch

from conftest import require_cpp


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
def test_mlp_backward_refuses_a_bias_gradient_that_shares_memory(kernels, shares):
    """A grad_bias that is a row of grad_output, or part of the layer's grad_weight: refused by both backends
    before any write (the answer would depend on the order of the kernel's reads and writes)."""
    if kernels == "cpp":
        require_cpp()
    from minidl.kernels import cpp, python

    k = cpp if kernels == "cpp" else python
    torch.manual_seed(17)
    x = torch.randn(40, 30, dtype=torch.float64)
    w, b = torch.randn(300, 30, dtype=torch.float64), torch.randn(300, dtype=torch.float64)
    (y,) = k.mlp_forward(x, [w], [b], [1])
    gy, gw = torch.randn(40, 300, dtype=torch.float64), torch.randn_like(w)
    gb = gy[39] if shares == "grad_output" else gw.view(-1)[:300]
    before = [t.clone() for t in (gy, gw)]
    message = ("grad_biases[0] to share no memory with grad_output" if shares == "grad_output" else
               "grad_weights[0] and grad_biases[0] to share no memory (the op writes both)")
    with pytest.raises(ValueError, match=re.escape(f"minidl.mlp_backward: expected {message}")):
        k.mlp_backward(gy, x, [y], [w], [gw], [gb], [1], None)
    assert all(torch.equal(t, old) for t, old in zip((gy, gw), before))


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


@pytest.mark.parametrize("alias", ["grad_output", "input", "outputs[0]", "weights[0]", "grad_weights[0]",
                                   "grad_biases[0]"])
def test_mlp_backward_refuses_a_grad_input_that_shares_memory(ops, alias):
    torch.manual_seed(22)
    w, b = torch.randn(4, 4), torch.randn(4)
    x = torch.randn(3, 4)
    outs = ops.mlp_forward(x, [w], [b], [0])
    g = torch.randn(3, 4)
    gw, gb_and_more = torch.zeros(4, 4), torch.zeros(3, 4)
    gb = gb_and_more[0]  # a grad_bias whose storage can also hold a grad_input
    grad_input = {"grad_output": g, "input": x, "outputs[0]": outs[0], "weights[0]": w[:3], "grad_weights[0]": gw[:3],
                  "grad_biases[0]": gb_and_more}[alias]
    before = [t.clone() for t in (g, x, outs[0], w, gw, gb)]
    with pytest.raises(ValueError, match=re.escape(f"minidl.mlp_backward: expected grad_input to share no memory "
                                                   f"with {alias} (the op writes grad_input while it reads {alias})")):
        ops.mlp_backward(g, x, outs, [w], [gw], [gb], [0], grad_input)
    for t, old in zip((g, x, outs[0], w, gw, gb), before):
        assert torch.equal(t, old)  # refused before any write


def test_mlp_backward_takes_a_grad_input_beside_a_gradient_in_one_buffer(ops):
    """Views of one storage that share no byte: taken, with the values of tensors of their own."""
    torch.manual_seed(23)
    w, b, x, g = torch.randn(4, 4), torch.randn(4), torch.randn(3, 4), torch.randn(3, 4)
    outs = ops.mlp_forward(x, [w], [b], [0])
    buffer = torch.zeros(4, 4)
    ops.mlp_backward(g, x, outs, [w], [torch.zeros(4, 4)], [buffer[3]], [0], buffer[:3])
    gb, gx = torch.zeros(4), torch.zeros(3, 4)
    ops.mlp_backward(g, x, outs, [w], [torch.zeros(4, 4)], [gb], [0], gx)
    assert torch.equal(buffer[3], gb) and torch.equal(buffer[:3], gx)
