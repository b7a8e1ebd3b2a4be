"""The CUDA kernels run on the current stream and on the tensors' device.

The helpers, and the skip of the whole module without a GPU or CUDA kernels: cuda_support.py.
"""
import pytest
import torch

from minidl.kernels import python as py_ops

from cuda_support import (BACKWARD, EXACT, TOL, UNARY, cuda_kernels, mdl, randn,  # noqa: F401 (cuda_kernels: the skip)
                          saved_output)


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
