"""CrossEntropyLoss, Softmax and PairOuter (ops and modules) against torch.nn.functional and torch.autograd."""
import pytest
import torch
import torch.nn.functional as F

import minidl as dl
from conftest import assert_within_float32_sum_bound

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-6)}
DTYPES = [torch.float64, torch.float32]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
CE_SHAPES = [(1, 1), (1, 2), (5, 1), (100, 2), (200, 10), (7, 3), (33, 17)]


def ce_reference(logits, target):
    """torch's mean cross-entropy and its gradient by autograd."""
    x = logits.detach().clone().requires_grad_()
    with torch.enable_grad():
        loss = F.cross_entropy(x, target)
        loss.backward()
    return loss.detach(), x.grad


def make(shape, dtype, device, scale=3.0, noncontiguous=False):
    if noncontiguous:
        return torch.randn(tuple(reversed(shape)), dtype=dtype, device=device).mul_(scale).permute(tuple(
            reversed(range(len(shape)))))
    return torch.randn(tuple(shape), dtype=dtype, device=device).mul_(scale)


# ---- cross-entropy --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", CE_SHAPES)
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_cross_entropy_matches_torch(ops, device, dtype, n, c, noncontiguous):
    torch.manual_seed(n * 100 + c)
    logits = make((n, c), dtype, device, noncontiguous=noncontiguous)
    target = torch.randint(0, c, (n,), device=device)
    loss, grad = ops.cross_entropy_forward(logits, target)
    loss_ref, grad_ref = ce_reference(logits, target)
    assert loss.shape == () and loss.dtype == dtype and grad.shape == (n, c) and grad.is_contiguous()
    torch.testing.assert_close(loss, loss_ref, **TOL[dtype])
    torch.testing.assert_close(grad, grad_ref, **TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, -1e4, 1e30])
def test_cross_entropy_extreme_logits_do_not_overflow(ops, device, dtype, scale):
    torch.manual_seed(1)
    logits = torch.randn(50, 10, dtype=dtype, device=device) * scale
    logits[:, 3] = scale  # ties at the largest (or smallest) value
    target = torch.randint(0, 10, (50,), device=device)
    loss, grad = ops.cross_entropy_forward(logits, target)
    loss_ref, grad_ref = ce_reference(logits.double(), target)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss.double(), loss_ref, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    torch.testing.assert_close(grad.double(), grad_ref, rtol=0, atol=1e-7 if dtype == torch.float32 else 1e-15)


def test_cross_entropy_special_values_follow_torch(ops):
    nan, inf = float("nan"), float("inf")
    logits = torch.tensor([[0.0, nan, 1.0], [-inf, 0.0, 1.0], [2.0, -inf, -inf]], dtype=torch.float64)
    for target in ([0, 1, 0], [1, 0, 0]):
        t = torch.tensor(target)
        loss, grad = ops.cross_entropy_forward(logits, t)
        loss_ref, grad_ref = ce_reference(logits, t)
        torch.testing.assert_close(loss, loss_ref, equal_nan=True)
        torch.testing.assert_close(grad, grad_ref, equal_nan=True)


def test_cross_entropy_of_no_rows_is_nan_like_torch(ops):
    loss, grad = ops.cross_entropy_forward(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert torch.isnan(loss) and torch.isnan(F.cross_entropy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)))
    assert grad.shape == (0, 4)


@pytest.mark.parametrize("bad", [[0, 3, 1], [-1, 0, 2], [5, -7, 0], [2**62, 0, 0]])
def test_cross_entropy_refuses_targets_out_of_range(ops, bad):
    with pytest.raises(ValueError) as e:
        ops.cross_entropy_forward(torch.randn(3, 3), torch.tensor(bad))
    assert "minidl.cross_entropy_forward" in str(e.value) and "[0, 3)" in str(e.value)
    assert f"[{min(bad)}, {max(bad)}]" in str(e.value)


@pytest.mark.parametrize("logits,target,kind,fragments", [
    (torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0]), TypeError, ["target", "int64", ("Float", "float32")]),
    (torch.randn(3, 4), torch.tensor([0, 1, 2], dtype=torch.int32), TypeError, ["target", "int64", ("Int", "int32")]),
    (torch.randn(3, 4), torch.tensor([0, 1]), ValueError, ["target", "[3]", "[2]"]),
    (torch.randn(3, 4), torch.tensor([[0, 1, 2]]), ValueError, ["target", "[3]", "[1, 3]"]),
    (torch.randn(4), torch.tensor(1), ValueError, ["logits", "2 dimensions", "[4]"]),
    (torch.ones(3, 4, dtype=torch.int64), torch.tensor([0, 1, 2]), TypeError, ["logits", "float32 or float64"]),
])
def test_cross_entropy_bad_input_names_the_op_and_module(ops, logits, target, kind, fragments):
    with pytest.raises(kind) as e:
        ops.cross_entropy_forward(logits, target)
    assert str(e.value).startswith("minidl.cross_entropy_forward")
    for f in fragments:  # a tuple: any of its spellings (C++ and Python print dtypes differently)
        assert any(g in str(e.value) for g in (f if isinstance(f, tuple) else (f,))), (f, str(e.value))
    with pytest.raises(kind) as e:
        dl.CrossEntropyLoss().forward(logits, target)
    assert str(e.value).startswith("CrossEntropyLoss().forward: minidl.cross_entropy_forward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_loss_module(backend_name, dtype):
    torch.manual_seed(2)
    logits, target = torch.randn(200, 10, dtype=dtype), torch.randint(0, 10, (200,))
    crit = dl.CrossEntropyLoss()
    loss = crit(logits, target)
    loss_ref, grad_ref = ce_reference(logits, target)
    torch.testing.assert_close(loss, loss_ref, **TOL[dtype])
    torch.testing.assert_close(crit.backward(), grad_ref, **TOL[dtype])
    crit(logits, target)
    torch.testing.assert_close(crit.backward(torch.tensor(3.0, dtype=dtype)), 3 * grad_ref, **TOL[dtype])
    with pytest.raises(FloatingPointError, match="CrossEntropyLoss: the loss became nan at step 3"):
        crit(torch.full((2, 3), float("nan"), dtype=dtype), torch.tensor([0, 1]))
    assert torch.isnan(dl.CrossEntropyLoss(check_finite=False)(torch.full((2, 3), float("nan")), torch.tensor([0, 1])))


# ---- softmax ------------------------------------------------------------------------------------------------

SOFTMAX_CASES = [((1,), 0), ((3,), -1), ((1, 1), 1), ((4, 1), -1), ((100, 2, 10), -1), ((100, 2, 10), 1),
                 ((2, 3, 4), 0), ((7, 33), 1), ((5, 3, 2, 4), 2), ((), 0), ((0, 5), 1), ((3, 0), 1)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES)
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_softmax_matches_autograd(ops, device, dtype, shape, dim, noncontiguous):
    torch.manual_seed(len(shape) * 10 + dim)
    x = make(shape, dtype, device, noncontiguous=noncontiguous)
    gy = make(shape, dtype, device, noncontiguous=noncontiguous)
    # The reference in float64 from the same inputs: two float32 results of g - sum(y g), each within
    # float32's rounding of the truth, may differ by twice that where it cancels.
    xr = x.to(torch.float64, copy=True).requires_grad_()
    with torch.enable_grad():
        y_ref = torch.softmax(xr, dim)
        y_ref.backward(gy.double())
    y = ops.softmax_forward(x, dim)
    assert y.is_contiguous() and y.dtype == dtype
    torch.testing.assert_close(y.double(), y_ref.detach(), **TOL[dtype])
    torch.testing.assert_close(ops.softmax_backward(gy, y, dim).double(), xr.grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_extreme_and_special_values_follow_torch(ops, dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [1e30, 1e30, -1e30], [float("nan"), 0.0, 1.0], [-float("inf"), 0.0, 1.0],
                      [float("inf"), 0.0, 1.0]], dtype=dtype)
    torch.testing.assert_close(ops.softmax_forward(x, 1), torch.softmax(x, 1), equal_nan=True, **TOL[dtype])


def test_softmax_bad_input(ops):
    for call, kind, fragments in [
        (lambda: ops.softmax_forward(torch.ones(3, dtype=torch.int64), 0), TypeError, ["input", "float32 or float64"]),
        (lambda: ops.softmax_forward(torch.ones(2, 3), 2), ValueError, ["dim in [-2, 1]", "[2, 3]", "got 2"]),
        (lambda: ops.softmax_forward(torch.ones(2, 3), -3), ValueError, ["dim in [-2, 1]", "got -3"]),
    ]:
        with pytest.raises(kind) as e:
            call()
        assert str(e.value).startswith("minidl.softmax_forward")
        assert all(f in str(e.value) for f in fragments), str(e.value)
    with pytest.raises(ValueError, match=r"^minidl.softmax_backward: expected grad_output of shape \[2, 3\]"):
        ops.softmax_backward(torch.ones(3, 2), torch.ones(2, 3), 1)
    with pytest.raises(ValueError, match=r"^Softmax\(dim=2\).forward: minidl.softmax_forward: expected dim"):
        dl.Softmax(dim=2)(torch.ones(2, 3))
    with pytest.raises(TypeError, match="Softmax: expected dim to be an int"):
        dl.Softmax(dim=None)


# ---- the pairwise outer product -----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", [(1, 1), (1, 10), (100, 10), (7, 3), (0, 4), (3, 0)])
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_pair_outer_matches_autograd(ops, device, dtype, n, k, noncontiguous):
    torch.manual_seed(n + k)
    x = make((n, 2, k), dtype, device, noncontiguous=noncontiguous)
    gy = make((n, k, k), dtype, device, noncontiguous=noncontiguous)
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        y_ref = xr[:, 0, :, None] * xr[:, 1, None, :]
        y_ref.backward(gy)
    y = ops.pair_outer_forward(x)
    assert y.shape == (n, k, k) and y.is_contiguous()
    torch.testing.assert_close(y, y_ref.detach(), rtol=0, atol=0)  # one rounded product per element
    gx = ops.pair_outer_backward(gy, x)
    if dtype == torch.float64:
        torch.testing.assert_close(gx, xr.grad, **TOL[dtype])
        return
    # float32: k-term sums in another order than torch's; both within the sums' rounding bound of the float64 value
    x64, g64 = x.double(), gy.double()
    want = torch.stack([(g64 * x64[:, 1, None, :]).sum(2), (g64 * x64[:, 0, :, None]).sum(1)], 1)
    magnitude = torch.stack([(g64 * x64[:, 1, None, :]).abs().sum(2), (g64 * x64[:, 0, :, None]).abs().sum(1)], 1)
    assert_within_float32_sum_bound(gx, want, magnitude, k, "minidl grad_input")
    assert_within_float32_sum_bound(xr.grad, want, magnitude, k, "torch grad_input")


def test_pair_outer_bad_input(ops):
    for call, op, fragments in [
        (lambda: ops.pair_outer_forward(torch.ones(3, 3, 4)), "pair_outer_forward", ["[N, 2, K]", "[3, 3, 4]"]),
        (lambda: ops.pair_outer_forward(torch.ones(3, 8)), "pair_outer_forward", ["[N, 2, K]", "[3, 8]"]),
        (lambda: ops.pair_outer_backward(torch.ones(3, 4, 3), torch.ones(3, 2, 4)), "pair_outer_backward",
         ["grad_output", "[3, 4, 4]", "[3, 4, 3]"]),
        (lambda: ops.pair_outer_backward(torch.ones(3, 4, 4, dtype=torch.float64), torch.ones(3, 2, 4)),
         "pair_outer_backward", ["grad_output", "dtype"]),
    ]:
        with pytest.raises((ValueError, TypeError)) as e:
            call()
        assert str(e.value).startswith(f"minidl.{op}")
        assert all(f in str(e.value) for f in fragments), str(e.value)
    m = dl.PairOuter()
    m(torch.rand(3, 2, 4))
    with pytest.raises(ValueError, match=r"^PairOuter\(flatten=True\).backward: .*\[3, 16\].*\[3, 4, 4\]"):
        m.backward(torch.rand(3, 4, 4))
