"""The CUDA kernels against torch.autograd (float64 gradients, gradcheck) and torch.library.opcheck.

The helpers, and the skip of the whole module without a GPU or CUDA kernels: cuda_support.py.
"""
import pytest
import torch

from cuda_support import DTYPES, TOL, cuda_kernels, mdl, randn  # noqa: F401 (cuda_kernels: the skip)
from op_cases import autograd_reference


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
