"""The CUDA ops' errors: tensors on mixed devices (op, module) and unsupported dtypes name the op.

The helpers, and the skip of the whole module without a GPU or CUDA kernels: cuda_support.py.
"""
import pytest
import torch

import minidl

from cuda_support import BACKWARD, CUDA, UNARY, cuda_kernels, mdl  # noqa: F401 (cuda_kernels: the skip)


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
