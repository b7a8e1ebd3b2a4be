"""The CUDA kernels (csrc/cuda/activation.cu, and ops/linear.cpp on the CUDA key) against the CPU
extension, the Python fallback and torch.autograd.

Everything here is skipped without a GPU, or when the installed minidl._C was built without its
CUDA kernels (a CPU-only torch, or MINIDL_NO_CUDA=1). With MINIDL_REQUIRE_EXT=1 (CI) and a GPU,
missing CUDA kernels are a failure instead.
"""
import os

import pytest
import torch

import minidl
from minidl import backend
from minidl.kernels import python as py_ops

from conftest import assert_within_float32_sum_bound
from op_cases import autograd_reference, linear_reference

CUDA = "cuda"
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}
EXACT = dict(rtol=0, atol=0, equal_nan=True)
DTYPES = [torch.float32, torch.float64]
# 1, 3, 5: below one 16-byte vector; 1023, 4097: a vector body and a scalar tail of every length.
SIZES = [1, 2, 3, 4, 5, 7, 8, 1023, 1024, 4097, (33, 17)]
UNARY = ["tanh_forward", "relu_forward"]
BACKWARD = ["tanh_backward", "relu_backward"]
ALL_OPS = ["linear_forward", "linear_backward"] + UNARY + BACKWARD


def _skip_or_fail(reason):
    if os.environ.get("MINIDL_REQUIRE_EXT") == "1":
        pytest.fail(f"MINIDL_REQUIRE_EXT=1 and a GPU is visible, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module", autouse=True)
def cuda_kernels():
    """Skip the whole module unless a GPU is visible and minidl._C has CUDA kernels for every op."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible (torch.cuda.is_available() is False)")
    if not backend.cpp_available():
        _skip_or_fail(f"the C++ extension is unavailable: {backend._cpp_error}")
    missing = [op for op in ALL_OPS
               if not torch._C._dispatch_has_kernel_for_dispatch_key(f"minidl::{op}", "CUDA")]
    if missing:
        _skip_or_fail(f"minidl._C has no CUDA kernel for {', '.join(missing)} "
                      f"(built without CUDA: see MINIDL_NO_CUDA / FORCE_CUDA in setup.py)")
    previous = minidl.get_backend()
    yield
    minidl.set_backend(previous)


def mdl(name):
    return getattr(torch.ops.minidl, name).default


def _shape(size):
    return size if isinstance(size, tuple) else (size,)


def randn(shape, dtype, device=CUDA, scale=3.0):
    return torch.randn(*_shape(shape), dtype=dtype, device=device).mul_(scale)


def with_specials(x):
    """x with NaN, +-inf and +-0 written over its first elements (as many as fit)."""
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30, -1e-30, 25.0, -25.0],
                            dtype=x.dtype)
    flat = x.view(-1)
    k = min(flat.numel(), specials.numel())
    flat[:k] = specials[:k].to(x.device)
    return x


def saved_output(name, x):
    """The forward output that a backward op receives, computed by torch."""
    return torch.tanh(x) if name == "tanh_backward" else torch.relu(x)


def assert_like_cpu(name, got, want, dtype):
    """CUDA vs CPU kernels: relu is exact; tanh's math libraries differ in the last bits."""
    if name.startswith("relu"):
        torch.testing.assert_close(got.cpu(), want.cpu(), **EXACT)
    else:
        torch.testing.assert_close(got.cpu(), want.cpu(), equal_nan=True, **TOL[dtype])


def check_output(out, like):
    assert out.device == like.device
    assert out.dtype == like.dtype
    assert out.shape == like.shape
    assert out.is_contiguous()


# ---- every op: CUDA vs the CPU extension vs the Python fallback ---------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", UNARY)
def test_forward_matches_cpu_and_python(name, size, dtype):
    torch.manual_seed(0)
    x_cpu = with_specials(randn(size, dtype, "cpu"))
    x = x_cpu.to(CUDA)
    y = mdl(name)(x)
    check_output(y, x)
    assert_like_cpu(name, y, mdl(name)(x_cpu), dtype)
    assert_like_cpu(name, y, getattr(py_ops, name)(x), dtype)
    torch.testing.assert_close(x.cpu(), x_cpu, **EXACT)  # the input is left alone


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", BACKWARD)
def test_backward_matches_cpu_and_python(name, size, dtype):
    torch.manual_seed(1)
    y_cpu = saved_output(name, with_specials(randn(size, dtype, "cpu")))
    g_cpu = randn(size, dtype, "cpu")
    g, y = g_cpu.to(CUDA), y_cpu.to(CUDA)
    out = mdl(name)(g, y)
    check_output(out, y)
    assert_like_cpu(name, out, mdl(name)(g_cpu, y_cpu), dtype)
    # The kernel rounds g * (1 - y*y) step by step (no FMA), as the Python fallback's mul/neg/add/mul:
    # bit for bit equal on the same device.
    torch.testing.assert_close(out, getattr(py_ops, name)(g, y), **EXACT)


def test_relu_nan_and_signed_zero_semantics():
    x = torch.tensor([float("nan"), -0.0, 0.0, -1.0, 2.0], device=CUDA)
    y = mdl("relu_forward")(x)
    torch.testing.assert_close(y, torch.tensor([float("nan"), 0.0, 0.0, 0.0, 2.0], device=CUDA), **EXACT)
    g = torch.full((5,), 7.0, device=CUDA)
    # y <= 0 ? 0 : g: where the output is NaN the gradient passes, as torch's threshold_backward.
    torch.testing.assert_close(mdl("relu_backward")(g, y), torch.tensor([7.0, 0.0, 0.0, 0.0, 7.0], device=CUDA),
                               **EXACT)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_cpu_and_python(dtype, bias):
    torch.manual_seed(2)
    x, w, gy = randn((37, 19), dtype, "cpu"), randn((23, 19), dtype, "cpu"), randn((37, 23), dtype, "cpu")
    b = randn((23,), dtype, "cpu") if bias else None
    results = {}
    for where, ops in (("cpu", torch.ops.minidl), ("cuda", torch.ops.minidl), ("python", py_ops)):
        dev = "cpu" if where == "cpu" else CUDA
        gw = torch.ones(23, 19, dtype=dtype, device=dev)
        gb = torch.ones(23, dtype=dtype, device=dev) if bias else None
        bd = b.to(dev) if bias else None
        fwd = ops.linear_forward if ops is py_ops else ops.linear_forward.default
        bwd = ops.linear_backward if ops is py_ops else ops.linear_backward.default
        y = fwd(x.to(dev), w.to(dev), bd)
        gx = bwd(gy.to(dev), x.to(dev), w.to(dev), gw, gb)
        results[where] = [t.cpu() for t in (y, gx, gw) + ((gb,) if bias else ())]
    if dtype == torch.float64:
        for where in ("cuda", "python"):
            for got, want in zip(results[where], results["cpu"]):
                torch.testing.assert_close(got, want, **TOL[dtype])
        return
    # float32: the three sum in different orders; each must stay within the rounding bound of its sums.
    x64, w64, gy64, b64 = x.double(), w.double(), gy.double(), b.double() if bias else None
    y64, gx64, gw64, gb64 = linear_reference(x64, w64, b64, gy64)  # the gradients start at 1 above
    want = [y64, gx64, 1 + gw64] + ([1 + gb64] if bias else [])
    ym, gxm, gwm, gbm = linear_reference(x64.abs(), w64.abs(), b64.abs() if bias else None, gy64.abs())
    magnitude = [ym, gxm, 1 + gwm] + ([1 + gbm] if bias else [])
    (n, fin), fout = x.shape, w.shape[0]
    terms = [fin + bias, fout, n + 1, n + 1]  # the bias and the accumulated-into 1 are one term more
    for where in ("cpu", "cuda", "python"):
        for name, got, ref, mag, k in zip(("y", "grad_input", "grad_weight", "grad_bias"), results[where], want,
                                          magnitude, terms):
            assert_within_float32_sum_bound(got, ref, mag, k, f"{where} {name}")


# ---- layouts: non-contiguous, misaligned, empty, large ----------------------------------------


SHAPE = (37, 29)


def _layouts(dtype, fill=lambda t: t):
    """(description, view) pairs: views of shape SHAPE, in the layouts the kernels must handle, of
    fresh CUDA tensors whose storage holds fill(random values)."""
    rows, cols = SHAPE
    n = rows * cols

    def base(*shape):
        return fill(randn(shape, dtype))

    views = [
        ("contiguous", base(rows, cols)),
        ("transposed", base(cols, rows).t()),
        ("every other column", base(rows, 2 * cols)[:, ::2]),
        ("expanded row", base(1, cols).expand(rows, cols)),
    ]
    # Contiguous views whose data pointer is 4, 8 or 12 bytes past 16-byte alignment (float32),
    # or 8 bytes (float64), then aligned again.
    for k in (1, 2, 3, 4):
        views.append((f"offset {k} element(s)", base(n + k)[k:].view(rows, cols)))
    for what, v in views:
        assert v.shape == SHAPE, what
    return views


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_forward_layouts(name, dtype):
    torch.manual_seed(3)
    for what, x in _layouts(dtype):
        y = mdl(name)(x)
        check_output(y, x)
        try:
            assert_like_cpu(name, y, getattr(py_ops, name)(x), dtype)
            assert_like_cpu(name, y, mdl(name)(x.cpu()), dtype)
        except AssertionError as e:
            raise AssertionError(f"input {what}: {e}") from None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BACKWARD)
def test_backward_layouts(name, dtype):
    """Every pairing of layouts, so that the vector path is taken only when all three pointers align."""
    torch.manual_seed(4)
    grads = _layouts(dtype)
    saveds = _layouts(dtype, fill=lambda t: saved_output(name, t))
    for gwhat, g in grads:
        for ywhat, y in saveds:
            out = mdl(name)(g, y)
            check_output(out, y)
            try:
                torch.testing.assert_close(out, getattr(py_ops, name)(g, y), **EXACT)
                assert_like_cpu(name, out, mdl(name)(g.cpu(), y.cpu()), dtype)
            except AssertionError as e:
                raise AssertionError(f"grad_output {gwhat}, output {ywhat}: {e}") from None


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 5, 2)])
@pytest.mark.parametrize("name", UNARY + BACKWARD)
def test_empty(name, shape):
    x = torch.empty(shape, device=CUDA)
    out = mdl(name)(x) if name in UNARY else mdl(name)(x, x)
    check_output(out, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_tensor(dtype):
    """2^24 + 3 elements: many passes of the grid-stride loop (the grid is capped), and a tail."""
    torch.manual_seed(5)
    n = (1 << 24) + 3
    x = randn((n,), dtype)
    g = randn((n,), dtype)
    for name in UNARY:
        y = mdl(name)(x)
        check_output(y, x)
        assert_like_cpu(name, y, getattr(py_ops, name)(x), dtype)
    for name in BACKWARD:
        y = saved_output(name, x)
        torch.testing.assert_close(mdl(name)(g, y), getattr(py_ops, name)(g, y), **EXACT)
    # and misaligned, which takes the scalar kernel over the whole tensor
    xm = x[1:]
    torch.testing.assert_close(mdl("relu_forward")(xm), torch.relu(xm), **EXACT)


# ---- against torch.autograd ------------------------------------------------------------------


@pytest.mark.parametrize("size", [5, 1023, (64, 33)])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_float64_gradients_match_autograd(act, size):
    torch.manual_seed(6)
    x = randn(size, torch.float64)
    gy = randn(size, torch.float64)
    y_ref, gx_ref = autograd_reference(getattr(torch, act), x, gy)
    y = mdl(f"{act}_forward")(x)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
    gx = mdl(f"{act}_backward")(gy, y)
    torch.testing.assert_close(gx, gx_ref, **TOL[torch.float64])


class _MinidlActivation(torch.autograd.Function):
    """A minidl forward/backward pair as an autograd Function, for gradcheck."""

    @staticmethod
    def forward(ctx, x, act):
        y = mdl(f"{act}_forward")(x)
        ctx.act = act
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        return mdl(f"{ctx.act}_backward")(gy.contiguous(), y), None


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_gradcheck_float64(act):
    torch.manual_seed(7)
    x = randn((7, 5), torch.float64)
    x = torch.where(x.abs() < 0.1, x.sign() * 0.5 + x, x)  # keep relu away from its kink
    x.requires_grad_()
    with torch.enable_grad():
        assert torch.autograd.gradcheck(lambda t: _MinidlActivation.apply(t, act), (x,))


# ---- opcheck -----------------------------------------------------------------------------------


def _opcheck_cases(dtype):
    """(label, op name, args): built on demand, since the CUDA tensors exist only with a GPU."""
    torch.manual_seed(8)
    x, w, b = randn((5, 3), dtype), randn((4, 3), dtype), randn((4,), dtype)
    gy = randn((5, 4), dtype)
    big = randn((4097,), dtype)
    cases = [
        ("bias", "linear_forward", (x, w, b)),
        ("no bias, transposed input", "linear_forward", (x.t().contiguous().t(), w, None)),
        ("bias", "linear_backward", (gy, x, w, torch.zeros_like(w), torch.zeros_like(b))),
        ("no bias", "linear_backward", (gy, x, w, torch.zeros_like(w), None)),
    ]
    for name in ("tanh", "relu"):
        cases += [
            ("contiguous", f"{name}_forward", (x,)),
            ("transposed", f"{name}_forward", (x.t(),)),
            ("misaligned", f"{name}_forward", (big[1:],)),
            ("empty", f"{name}_forward", (big[:0],)),
            ("contiguous", f"{name}_backward", (gy, torch.randn_like(gy))),
            ("transposed", f"{name}_backward", (gy.t(), torch.randn_like(gy).t())),
            ("misaligned", f"{name}_backward", (big[1:], big[:-1])),
        ]
    return cases


_N_OPCHECK_CASES = 4 + 2 * 7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(_N_OPCHECK_CASES))
def test_opcheck(index, dtype):
    cases = _opcheck_cases(dtype)
    assert len(cases) == _N_OPCHECK_CASES
    label, name, args = cases[index]
    try:
        torch.library.opcheck(mdl(name), args)
    except Exception as e:
        raise AssertionError(f"opcheck of minidl.{name} ({label}, {dtype}) failed: {e}") from e


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKWARD)
def test_mixed_devices_name_the_op_and_both_devices(name):
    y = torch.rand(4, device=CUDA)
    g = torch.rand(4)
    dev = str(y.device)  # "cuda:0"
    with pytest.raises(RuntimeError, match=rf"^minidl\.{name}: expected grad_output on {dev} like output, got cpu"):
        mdl(name)(g, y)
    with pytest.raises(RuntimeError, match=rf"^minidl\.{name}: expected grad_output on cpu like output, got {dev}"):
        mdl(name)(g.to(CUDA), y.cpu())


def test_mixed_devices_linear():
    w = torch.rand(3, 2, device=CUDA)
    with pytest.raises(RuntimeError, match=r"minidl\.linear_forward: expected input on cuda:\d+ like weight, got cpu"):
        mdl("linear_forward")(torch.rand(4, 2), w, None)
    with pytest.raises(RuntimeError, match=r"minidl\.linear_forward: expected bias on cuda:\d+ like weight, got cpu"):
        mdl("linear_forward")(torch.rand(4, 2, device=CUDA), w, torch.rand(3))


@pytest.mark.parametrize("backend_name", ["cpp", "python"])
def test_mixed_devices_through_modules(backend_name):
    minidl.set_backend(backend_name)
    act = minidl.Tanh()
    act.forward(torch.rand(4, 3, device=CUDA))
    with pytest.raises(RuntimeError, match=r"Tanh\(\)\.backward: minidl\.tanh_backward: expected grad_output on "
                                           r"cuda:\d+ like output, got cpu"):
        act.backward(torch.rand(4, 3))
    lin = minidl.Linear(3, 2, device=CUDA)
    with pytest.raises(RuntimeError, match=r"Linear\(3, 2, bias=True\)\.forward: minidl\.linear_forward: "
                                           r"expected input on cuda:\d+ like weight, got cpu"):
        lin.forward(torch.rand(4, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32])
@pytest.mark.parametrize("name", UNARY + BACKWARD)
def test_unsupported_dtypes_raise(name, dtype):
    """float16/bfloat16 are not supported (as on the CPU and in the Python fallback)."""
    x = torch.ones(8, device=CUDA).to(dtype)
    with pytest.raises(TypeError, match=rf"minidl\.{name}: expected .* to be float32 or float64"):
        mdl(name)(x) if name in UNARY else mdl(name)(x, x)


# ---- streams and devices -----------------------------------------------------------------------


@pytest.mark.parametrize("name", UNARY + BACKWARD)
def test_runs_on_the_current_stream(name):
    """The input is written on a side stream behind a long sleep; a kernel launched on any stream
    but the current one would read it before it is written."""
    torch.manual_seed(9)
    src = randn((1 << 20,), torch.float32)
    x = torch.zeros_like(src)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # ~tens of ms of GPU time
        x.copy_(src)
        out = mdl(name)(x) if name in UNARY else mdl(name)(src, saved_output(name, x))
    side.synchronize()
    want = getattr(py_ops, name)(src) if name in UNARY else getattr(py_ops, name)(src, saved_output(name, src))
    torch.testing.assert_close(out, want, **(EXACT if "relu" in name or name in BACKWARD else TOL[torch.float32]))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("name", UNARY + BACKWARD)
def test_second_device(name):
    """A tensor on cuda:1 while cuda:0 is current: the kernel runs on, and returns, cuda:1."""
    torch.manual_seed(10)
    x = randn((4097,), torch.float32, device="cuda:1")
    with torch.cuda.device(0):
        out = mdl(name)(x) if name in UNARY else mdl(name)(x, saved_output(name, x))
    assert out.device == x.device
    want = getattr(py_ops, name)(x) if name in UNARY else getattr(py_ops, name)(x, saved_output(name, x))
    torch.testing.assert_close(out, want, **(EXACT if "relu" in name or name in BACKWARD else TOL[torch.float32]))


# ---- the Module layer --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", ["Tanh", "ReLU"])
def test_modules_cpp_vs_python_on_cuda(module, dtype):
    torch.manual_seed(11)
    x, gy = randn((64, 25), dtype), randn((64, 25), dtype)
    results = {}
    for name in ("cpp", "python"):
        minidl.set_backend(name)
        m = getattr(minidl, module)()
        results[name] = (m.forward(x), m.backward(gy))
        assert results[name][0].device == x.device
    minidl.set_backend("cpp")
    m = getattr(minidl, module)()
    cpu = (m.forward(x.cpu()), m.backward(gy.cpu()))
    for got, want, cpu_want in zip(results["cpp"], results["python"], cpu):
        torch.testing.assert_close(got, want, **TOL[dtype])
        torch.testing.assert_close(got.cpu(), cpu_want, **TOL[dtype])


def _net(device, dtype):
    return minidl.Sequential(minidl.Linear(2, 25, device=device, dtype=dtype), minidl.ReLU(),
                             minidl.Linear(25, 25, device=device, dtype=dtype), minidl.Tanh(),
                             minidl.Linear(25, 2, device=device, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend_name", ["cpp", "python"])
def test_training_on_cuda_matches_cpu(backend_name, dtype):
    """A few SGD steps of the same network on the GPU and on the CPU (cpp backend): same losses and weights."""
    torch.manual_seed(12)
    x = torch.rand(200, 2, dtype=dtype)
    target = torch.stack([(x - 0.5).norm(dim=1) < 0.4, (x - 0.5).norm(dim=1) >= 0.4], dim=1).to(dtype)
    cpu_net = _net("cpu", dtype)
    gpu_net = _net(CUDA, dtype)
    assert all(p.device.type == torch.device(CUDA).type for p, _ in gpu_net.param())
    for (pc, _), (pg, _) in zip(cpu_net.param(), gpu_net.param()):
        pg.copy_(pc)

    def train(net, x, target, backend_name):
        minidl.set_backend(backend_name)
        loss_fn, opt = minidl.LossMSE(), minidl.SGD(net, lr=0.1, momentum=0.9)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            losses.append(loss_fn.forward(net.forward(x), target))
            net.backward(loss_fn.backward())
            opt.step()
        return torch.stack(losses)

    cpu_losses = train(cpu_net, x, target, "cpp")
    gpu_losses = train(gpu_net, x.to(CUDA), target.to(CUDA), backend_name)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu_losses.cpu(), cpu_losses, **tol)
    for (pc, gc), (pg, gg) in zip(cpu_net.param(), gpu_net.param()):
        torch.testing.assert_close(pg.cpu(), pc, **tol)
        torch.testing.assert_close(gg.cpu(), gc, **tol)
    assert cpu_losses[-1] < cpu_losses[0]
