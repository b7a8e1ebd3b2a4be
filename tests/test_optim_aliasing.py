"""Optimizer lists that name a tensor twice, or whose states share memory, step one entry after another:
the second entry sees the first's update, as when each steps alone (a multi-tensor update would race on
the shared memory on CUDA, or apply both steps to the state before either). Within one entry the param, its
gradient and its states must share no memory."""
import re

import pytest
import torch

from conftest import require_cpp


@pytest.mark.parametrize("shared", ["params", "exp_avgs", "exp_avg_sqs"])
def test_adam_steps_a_shared_tensor_in_list_order(ops, device, shared):
    torch.manual_seed(4)
    lists = {name: [torch.rand(7, device=device) for _ in range(2)] for name in ("params", "exp_avgs", "exp_avg_sqs")}
    lists[shared][1] = lists[shared][0]
    grads = [torch.randn(7, device=device) for _ in range(2)]
    ref = {name: [t.clone() for t in ts] for name, ts in lists.items()}
    ref[shared][1] = ref[shared][0]
    for i in range(2):
        ops.adam_step_([ref["params"][i]], [grads[i]], [ref["exp_avgs"][i]], [ref["exp_avg_sqs"][i]], 3, 0.1, 0.9,
                       0.999, 1e-8, 0.01)
    ops.adam_step_(lists["params"], grads, lists["exp_avgs"], lists["exp_avg_sqs"], 3, 0.1, 0.9, 0.999, 1e-8, 0.01)
    for name in lists:
        for a, b in zip(lists[name], ref[name]):
            if device == "cpu":
                assert torch.equal(a, b), name
            else:  # alone, a tensor takes CUDA's kernel, shared ATen's ops, which round otherwise; a race is a step off
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("transposed", [False, True])
def test_sgd_steps_a_shared_momentum_buffer_in_list_order(device, transposed):
    """On every path of the kernel (the CPU loop; ATen's for strided or GPU tensors), exactly as the fallback."""
    require_cpp()
    from minidl.kernels import cpp, python

    runs = []
    for k in (cpp, python):
        torch.manual_seed(18)
        ps = [torch.randn(6, 5, device=device) for _ in range(2)]
        ps = [p.t().contiguous().t() if transposed else p for p in ps]  # strided views: not the CPU loop
        gs = [torch.randn_like(p) for p in ps]
        v = torch.randn(6, 5, device=device)
        k.sgd_step_(ps, gs, [v, v], 0.1, 0.9, 0.01, False)
        runs.append(ps + [v])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


SGD, ADAM = ("sgd_step_", ("momentum_buffer",)), ("adam_step_", ("exp_avg", "exp_avg_sq"))
OPTIMIZER_CASES = [  # (op, state names, written, other): `written` shares memory with `other` in one entry
    (*SGD, "param", "grad"), (*SGD, "momentum_buffer", "grad"), (*SGD, "param", "momentum_buffer"),
    (*ADAM, "param", "grad"), (*ADAM, "exp_avg", "grad"), (*ADAM, "exp_avg", "exp_avg_sq"),
    (*ADAM, "param", "exp_avg_sq")]


@pytest.mark.parametrize("zero_grads", [False, True])
@pytest.mark.parametrize("op, states, first, second", OPTIMIZER_CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in OPTIMIZER_CASES])
def test_an_optimizer_entry_whose_tensors_share_memory_is_refused(backend_name, zero_grads, op, states, first, second):
    """Within one entry, one element apart in one buffer: before, the result depended on the order of the kernel's
    reads and writes, and the backends differed. (Entries sharing memory with each other step in turn, above.)"""
    from minidl import backend
    t = {"param": torch.randn(5), "grad": torch.randn(5), **{s: torch.rand(5) for s in states}}
    buffer = torch.randn(6)
    t[first], t[second] = buffer[:5], buffer[1:]
    before = {n: v.clone() for n, v in t.items()}
    both = "grad" != second or zero_grads  # the grad is written only with zero_grads
    what = (f"{first} and {second} to share no memory (the op writes both)" if both else
            f"{first} to share no memory with grad (the op writes {first} while it reads grad)")
    args = ([t["param"]], [t["grad"]], *([t[s]] for s in states))
    with pytest.raises(ValueError, match=re.escape(f"minidl.{op} (parameter 0): expected {what}")):
        if op == "sgd_step_":
            backend.ops.sgd_step_(*args, 0.1, 0.9, 0.0, zero_grads)
        else:
            backend.ops.adam_step_(*args, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, zero_grads)
    assert all(torch.equal(t[n], before[n]) for n in t)
