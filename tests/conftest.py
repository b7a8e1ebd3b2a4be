"""Fixtures shared by the core tests: the kernel backends and the devices to run them on."""
import os
from pathlib import Path

import pytest
import torch

import minidl
from minidl import backend

BACKENDS = ["cpp", "python"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# Subprocesses import the same minidl as this process: the installed one, else the checkout.
PACKAGE_ROOT = Path(minidl.__file__).resolve().parents[1]


def subprocess_env(**extra):
    """os.environ for a child Python that imports this process's minidl (PACKAGE_ROOT first on its path)."""
    return {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def assert_within_float32_sum_bound(got, want, magnitude, terms, what):
    """float32 sums against their float64 value `want`: every element within the worst-case rounding
    error of a `terms`-term float32 sum of products, gamma_k * sum|terms| (Higham, Accuracy and Stability
    of Numerical Algorithms, 3.1), which holds in any summation order, FMA or not. Different BLAS
    (MKL, cuBLAS) and layouts sum in different orders, so their results differ from each other by up
    to this much where terms cancel. At the term counts these tests use (k <= 38), a wrong result or one
    computed in TF32 or bf16 is far outside it; the bound grows with k, so at hundreds of terms it no
    longer tells TF32 from float32."""
    assert got.dtype == torch.float32 and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    u = 2.0 ** -24
    bound = terms * u / (1 - terms * u) * magnitude
    err = (got.double() - want).abs()
    assert bool((err <= bound).all()), f"{what}: error up to {(err / bound).max():.3g}x its float32 rounding bound"


def require_cpp():
    """Skip without the extension, unless MINIDL_REQUIRE_EXT=1 (CI), where its absence is a failure."""
    if not backend.cpp_available():
        if os.environ.get("MINIDL_REQUIRE_EXT") == "1":
            pytest.fail(f"MINIDL_REQUIRE_EXT=1 but the C++ extension is unavailable: {backend._cpp_error}")
        pytest.skip(f"C++ extension unavailable: {backend._cpp_error}")


@pytest.fixture(autouse=True)
def restore_grad_mode():
    """Examples run in-process turn autograd off globally; give every test the mode it started with."""
    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Run the test once per backend, restoring the previous backend afterwards."""
    if request.param == "cpp":
        require_cpp()
    previous = minidl.get_backend()
    minidl.set_backend(request.param)
    yield request.param
    minidl.set_backend(previous)


@pytest.fixture
def ops(backend_name):
    """The kernel module of the selected backend."""
    return backend.ops


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
