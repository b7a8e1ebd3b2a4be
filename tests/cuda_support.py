"""The CUDA kernels (csrc/cuda/activation.cu, and ops/linear.cpp on the CUDA key) against the CPU
extension, the Python fallback and torch.autograd.

Everything here is skipped without a GPU, or when the installed minidl._C was built without its
CUDA kernels (a CPU-only torch, or MINIDL_NO_CUDA=1). With MINIDL_REQUIRE_EXT=1 (CI) and a GPU,
missing CUDA kernels are a failure instead.

This module holds what the CUDA tests share: the constants, the module-wide skip (the autouse
fixture cuda_kernels, which each test file below imports) and the tensor helpers. The tests:
test_cuda_kernels.py (every op, every layout), test_cuda_autograd.py (autograd, gradcheck, opcheck),
test_cuda_errors.py, test_cuda_streams.py (streams and devices), test_cuda_modules.py (the Module layer).
"""
import os

import pytest
import torch

import minidl
from minidl import backend

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
