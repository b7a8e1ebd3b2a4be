"""Each kernel against torch.autograd, on both backends, and the two backends against each other."""
import pytest
import torch

from conftest import assert_within_float32_sum_bound, require_cpp
from op_cases import autograd_reference, linear_reference, op_cases

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}
LINEAR_SHAPES = [(1, 1, 1), (1, 25, 25), (7, 3, 5), (100, 2, 25), (33, 17, 9)]
ELEMENTWISE_SHAPES = [(1,), (5,), (3, 7), (2, 3, 5), (1000, 33), (40000,)]


def make(shape, dtype, device, scale=3.0, noncontiguous=False):
    if noncontiguous:  # a transposed view of a larger tensor: not contiguous
        t = torch.randn(*reversed(shape), dtype=dtype, device=device).mul_(scale)
        t = t.permute(*reversed(range(len(shape))))
        assert not t.is_contiguous() or t.dim() < 2 or 1 in shape
        return t
    return torch.randn(*shape, dtype=dtype, device=device).mul_(scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,fin,fout", LINEAR_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_linear_matches_autograd(ops, device, dtype, n, fin, fout, bias, noncontiguous):
    torch.manual_seed(0)
    x = make((n, fin), dtype, device, noncontiguous=noncontiguous)
    w = make((fout, fin), dtype, device, noncontiguous=noncontiguous)
    b = make((fout,), dtype, device) if bias else None
    gy = make((n, fout), dtype, device, noncontiguous=noncontiguous)
    y_ref, gx_ref, gw_ref, gb_ref = linear_reference(x, w, b, gy)

    y = ops.linear_forward(x, w, b)
    gw0 = torch.randn_like(w)  # the kernel adds into the given gradient
    gw = gw0.clone()
    gb0 = torch.randn_like(b) if bias else None
    gb = gb0.clone() if bias else None
    gx = ops.linear_backward(gy, x, w, gw, gb)

    if dtype == torch.float64:
        torch.testing.assert_close(y, y_ref, **TOL[dtype])
        torch.testing.assert_close(gx, gx_ref, **TOL[dtype])
        torch.testing.assert_close(gw - gw0, gw_ref, **TOL[dtype])
        if bias:
            torch.testing.assert_close(gb - gb0, gb_ref, **TOL[dtype])
        return
    # float32: torch's and minidl's matrix products may sum in different orders (cuBLAS picks its
    # kernel by layout), so compare both with float64 within the sums' rounding bound.
    x64, w64, gy64 = x.double(), w.double(), gy.double()
    b64 = None if b is None else b.double()
    y64, gx64, gw64, gb64 = linear_reference(x64, w64, b64, gy64)
    # the same sums over absolute values: each result's sum of |terms|
    y_mag, gx_mag, gw_mag, gb_mag = linear_reference(x64.abs(), w64.abs(), None if b is None else b64.abs(),
                                                     gy64.abs())
    checks = [("y", y, y_ref, y64, y_mag, fin + bias), ("grad_input", gx, gx_ref, gx64, gx_mag, fout),
              ("grad_weight", gw, None, gw0.double() + gw64, gw0.double().abs() + gw_mag, n + 1)]
    if bias:
        checks.append(("grad_bias", gb, None, gb0.double() + gb64, gb0.double().abs() + gb_mag, n + 1))
    for name, got, torch_got, want, magnitude, terms in checks:
        assert_within_float32_sum_bound(got, want, magnitude, terms, f"minidl {name}")
        if torch_got is not None:
            assert_within_float32_sum_bound(torch_got, want, magnitude, terms, f"torch {name}")


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("name", ["tanh", "relu"])
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_activation_matches_autograd(ops, device, dtype, shape, name, noncontiguous):
    torch.manual_seed(1)
    x = make(shape, dtype, device, noncontiguous=noncontiguous)
    gy = make(shape, dtype, device, noncontiguous=noncontiguous)
    y_ref, gx_ref = autograd_reference(ACTIVATIONS[name], x, gy)

    y = getattr(ops, f"{name}_forward")(x)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    # Backward from the reference output: in float32, 1 - y^2 near |y| = 1 amplifies the forward's
    # last-bit differences, which test_tanh_float32_accuracy_over_its_range bounds on their own.
    gx = getattr(ops, f"{name}_backward")(gy, y_ref)
    torch.testing.assert_close(gx, gx_ref, **TOL[dtype])


def test_tanh_float32_accuracy_over_its_range(ops):
    """The float32 tanh on a dense sweep: within 1e-6 of float64 (relative near 0), and at most 1 unit
    in the last place of tanh rounded from float64."""
    x = torch.cat([torch.linspace(-12, 12, 200001), torch.linspace(-10, 10, 2 ** 21),
                   torch.logspace(-30, 1, 20000), -torch.logspace(-30, 1, 20000)])
    y, ref = ops.tanh_forward(x).double(), x.double().tanh()
    assert (y - ref).abs().max().item() <= 1e-6
    assert ((y - ref).abs() / ref.abs().clamp(min=1e-300)).max().item() <= 4e-7
    rounded = ref.float()
    ulp = (torch.nextafter(rounded.abs(), torch.tensor(float("inf"))) - rounded.abs()).double()
    assert ((y - rounded.double()).abs() / ulp).max().item() <= 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [1, 255, 256, 257, 767, 768, 769, 1023, 1024, 4097, 100_003])
def test_cpp_tanh_is_the_same_in_every_block(dtype, n):
    """The C++ tanh walks its input in blocks and fetches ahead (csrc/cpu/activation_loops.cpp): each
    element comes out the same alone, and from a slice that moves every block edge."""
    require_cpp()
    from minidl.kernels import cpp

    x = torch.randn(n, dtype=dtype) * 4
    y = cpp.tanh_forward(x)
    alone = torch.cat([cpp.tanh_forward(x[i:i + 1]) for i in range(min(n, 300))])
    assert torch.equal(y[:300], alone)
    assert torch.equal(y[7:], cpp.tanh_forward(x[7:].clone()))
    torch.testing.assert_close(y, x.tanh(), rtol=4 * torch.finfo(dtype).eps, atol=torch.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_special_values_follow_torch(ops, dtype):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30, -1e-30, 50.0, -50.0],
                     dtype=dtype)
    g = torch.tensor([1.0, 2.0, float("nan"), float("inf"), 3.0, -1.0, 4.0, 5.0, 6.0], dtype=dtype)
    for name, ref in ACTIVATIONS.items():
        y = getattr(ops, f"{name}_forward")(x)
        torch.testing.assert_close(y, ref(x), equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(ops.relu_backward(g, torch.relu(x)),
                               torch.ops.aten.threshold_backward(g, torch.relu(x), 0), equal_nan=True)
    y = torch.tanh(x)
    torch.testing.assert_close(ops.tanh_backward(g, y), torch.ops.aten.tanh_backward(g, y), equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_empty_tensors(ops, dtype):
    x = torch.empty(0, 3, dtype=dtype)
    w = torch.randn(4, 3, dtype=dtype)
    assert ops.linear_forward(x, w, torch.zeros(4, dtype=dtype)).shape == (0, 4)
    gw = torch.zeros_like(w)
    assert ops.linear_backward(torch.empty(0, 4, dtype=dtype), x, w, gw, None).shape == (0, 3)
    assert gw.abs().sum() == 0
    for name in ("tanh", "relu"):
        y = getattr(ops, f"{name}_forward")(torch.empty(0, dtype=dtype))
        assert y.shape == (0,) and getattr(ops, f"{name}_backward")(y, y).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpp_equals_python_fallback(device, dtype):
    """The same inputs through both implementations: linear and ReLU bit for bit, tanh within 2 ulp."""
    require_cpp()
    from minidl.kernels import cpp, python

    torch.manual_seed(2)
    x = make((64, 31), dtype, device)
    w, b, gy = make((17, 31), dtype, device), make((17,), dtype, device), make((64, 17), dtype, device)
    gws = [torch.zeros_like(w) for _ in range(2)]
    gbs = [torch.zeros_like(b) for _ in range(2)]
    outs = [(k.linear_forward(x, w, b), k.linear_backward(gy, x, w, gw, gb))
            for k, gw, gb in zip((cpp, python), gws, gbs)]
    for a, c in zip(outs[0], outs[1]):
        assert torch.equal(a, c)
    assert torch.equal(gws[0], gws[1]) and torch.equal(gbs[0], gbs[1])
    assert torch.equal(cpp.relu_forward(x), python.relu_forward(x))
    assert torch.equal(cpp.relu_backward(x, x), python.relu_backward(x, x))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(cpp.tanh_forward(x), python.tanh_forward(x), rtol=2 * eps, atol=2 * eps)
    y = python.tanh_forward(x)
    torch.testing.assert_close(cpp.tanh_backward(x, y), python.tanh_backward(x, y), rtol=0, atol=0)


@pytest.mark.parametrize("index", range(len(op_cases("cpu"))))
def test_opcheck(device, index):
    require_cpp()
    name, args = op_cases(device)[index]
    torch.library.opcheck(getattr(torch.ops.minidl, name).default, args)
