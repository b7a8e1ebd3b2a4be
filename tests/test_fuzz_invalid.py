"""Property tests (hypothesis): invalid input is rejected alike by both backends, and the regressions the
fuzzer found in the C++ kernels (fuzz_support.py says what is drawn and checked)."""
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from conftest import require_cpp
from minidl.kernels import python as python_kernels
from fuzz_support import DTYPES, F32, F64, FUZZ, _backends, _bits_equal, assert_same


# --- invalid input -----------------------------------------------------------------------------
BAD_DTYPES = [torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.bool, torch.complex64]


def _valid_call(data, op, dtype):
    """(args, names of tensor positions): a valid call of `op`, built from small contiguous tensors."""
    r = lambda *s: torch.randn(*s, dtype=dtype)  # noqa: E731
    n, i, o = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    if op == "linear_forward":
        return [r(n, i), r(o, i), r(o)]
    if op == "linear_backward":
        return [r(n, o), r(n, i), r(o, i), torch.zeros(o, i, dtype=dtype), torch.zeros(o, dtype=dtype)]
    if op in ("tanh_forward", "relu_forward"):
        return [r(n, i)]
    if op in ("tanh_backward", "relu_backward", "mse_forward"):
        return [r(n, i), r(n, i)]
    if op == "mlp_forward":
        return [r(n, i), [r(o, i), r(2, o)], [r(o), r(2)], [1, 2]]
    if op == "mlp_backward":
        return [r(n, 2), r(n, i), [r(n, o), r(n, 2)], [r(o, i), r(2, o)],
                [torch.zeros(o, i, dtype=dtype), torch.zeros(2, o, dtype=dtype)],
                [torch.zeros(o, dtype=dtype), torch.zeros(2, dtype=dtype)], [2, 0], torch.zeros(n, i, dtype=dtype)]
    if op == "sgd_step_":
        return [[r(o, i), r(o)], [r(o, i), r(o)], [torch.zeros(o, i, dtype=dtype), torch.zeros(o, dtype=dtype)],
                0.1, 0.9, 0.01]
    raise AssertionError(op)


def _tensor_slots(args):
    """Paths (i,) or (i, j) of every tensor in args."""
    slots = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            slots.append((i,))
        elif isinstance(a, list):
            slots += [(i, j) for j, t in enumerate(a) if isinstance(t, torch.Tensor)]
    return slots


def _get(args, slot):
    return args[slot[0]] if len(slot) == 1 else args[slot[0]][slot[1]]


def _set(args, slot, value):
    if len(slot) == 1:
        args[slot[0]] = value
    else:
        args[slot[0]][slot[1]] = value


def _corrupt(data, op, args, dtype):
    """Make one thing wrong: a dtype, a shape, a list length or an activation code."""
    slots = _tensor_slots(args)
    lists = [i for i, a in enumerate(args) if isinstance(a, list) and a and isinstance(a[0], torch.Tensor)]
    codes = [i for i, a in enumerate(args) if isinstance(a, list) and a and isinstance(a[0], int)]
    kinds = ["dtype", "other float", "shape", "rank"] + (["list length"] if lists else []) + (["code"] if codes else [])
    kind = data.draw(st.sampled_from(kinds), label="corruption")
    if kind in ("dtype", "other float", "shape", "rank"):
        slot = data.draw(st.sampled_from(slots), label="argument")
        t = _get(args, slot)
        if kind == "dtype":
            _set(args, slot, t.to(data.draw(st.sampled_from(BAD_DTYPES), label="bad dtype")))
        elif kind == "other float":
            _set(args, slot, t.to(F64 if dtype == F32 else F32))
        elif kind == "shape":
            if t.dim() == 0:
                _set(args, slot, t.reshape(1).expand(2).clone())
            else:
                d = data.draw(st.integers(0, t.dim() - 1), label="dim")
                shape = list(t.shape)
                shape[d] += data.draw(st.sampled_from([-1, 1, 3]), label="delta")
                _set(args, slot, torch.zeros([max(s, 0) for s in shape], dtype=t.dtype))
        else:
            extra = data.draw(st.booleans(), label="add a dimension")
            _set(args, slot, t.unsqueeze(0) if extra or t.dim() == 0 else t.reshape(-1) if t.dim() > 1 else t[0])
    elif kind == "list length":
        i = data.draw(st.sampled_from(lists), label="list")
        args[i] = args[i][:-1] if data.draw(st.booleans(), label="shorter") else args[i] + [args[i][-1].clone()]
    else:
        i = codes[0]
        j = data.draw(st.integers(0, len(args[i]) - 1), label="position")
        args[i] = list(args[i])
        args[i][j] = data.draw(st.sampled_from([-1, 3, 7]), label="code")
    return kind


def _copy(args):
    return [[t.clone() if isinstance(t, torch.Tensor) else t for t in a] if isinstance(a, list)
            else a.clone() if isinstance(a, torch.Tensor) else a for a in args]


def _same_state(a, b):
    sa, sb = _tensor_slots(a), _tensor_slots(b)
    return sa == sb and all(_bits_equal(_get(a, s).view(-1), _get(b, s).view(-1)) if _get(a, s).dtype in (F32, F64)
                            else torch.equal(_get(a, s), _get(b, s)) for s in sa)


OPS = ["linear_forward", "linear_backward", "tanh_forward", "tanh_backward", "relu_forward", "relu_backward",
       "mlp_forward", "mlp_backward", "mse_forward", "sgd_step_"]


@pytest.mark.parametrize("op", OPS)
@FUZZ
@given(data=st.data())
def test_invalid_input_is_rejected_alike(op, data):
    dtype = data.draw(DTYPES, label="dtype")
    args = _valid_call(data, op, dtype)
    kind = _corrupt(data, op, args, dtype)
    raised = {}
    for name, k in _backends():
        call_args = _copy(args)
        try:
            getattr(k, op)(*call_args)
        except (TypeError, ValueError, RuntimeError) as e:
            raised[name] = type(e)
            message = str(e)
            assert f"minidl.{op}" in message, (name, message)
            # Nothing changed before the error: every kernel checks all its arguments first.
            assert _same_state(call_args, args), f"{name} {op} modified its arguments, then raised"
        else:
            raised[name] = None
    # Some corruptions leave a valid call (another batch size, any shape for tanh): then both must
    # accept it. Otherwise both raise, the same class.
    assert len(set(raised.values())) == 1, (kind, raised)
    event(f"{kind}: {'accepted' if None in raised.values() else 'rejected'}")


# --- regressions: what the fuzzer found in the C++ kernels, fixed since ---
def test_mse_float32_overflow_agrees():
    require_cpp()
    from minidl.kernels import cpp
    o, t = torch.tensor([2e19, 0.0]), torch.zeros(2)  # (2e19)^2 = 4e38 > float32 max; the mean 2e38 is not
    assert_same(cpp.mse_forward(o, t)[0], python_kernels.mse_forward(o, t)[0], "mse loss")


def test_linear_backward_invalid_grad_bias_leaves_grad_weight():
    require_cpp()
    from minidl.kernels import cpp
    gw = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="grad_bias"):
        cpp.linear_backward(torch.ones(4, 2), torch.ones(4, 3), torch.ones(2, 3), gw, torch.zeros(5))
    assert gw.abs().sum() == 0, gw


def test_sgd_step_invalid_param_leaves_the_others():
    require_cpp()
    from minidl.kernels import cpp
    p = [torch.ones(3), torch.ones(2)]
    with pytest.raises(TypeError, match="parameter 1"):
        cpp.sgd_step_(p, [torch.ones(3), torch.ones(2, dtype=F64)], [], 0.1, 0.0, 0.0)
    assert torch.equal(p[0], torch.ones(3)), p[0]


def test_sgd_step_without_params():
    """A model without parameters (Sequential(ReLU())) steps as a no-op on both backends."""
    require_cpp()
    from minidl.kernels import cpp
    python_kernels.sgd_step_([], [], [], 0.1, 0.9, 0.0)
    cpp.sgd_step_([], [], [], 0.1, 0.9, 0.0)


def test_tanh_float32_keeps_negative_zero():
    require_cpp()
    from minidl.kernels import cpp
    assert cpp.tanh_forward(torch.tensor([-0.0])).signbit().item()
