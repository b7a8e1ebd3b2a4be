"""Optimizer lists that name a tensor twice, or whose states share memory, step one entry after another:
the second entry sees the first's update, as when each steps alone (a multi-tensor update would race on
the shared memory on CUDA, or apply both steps to the state before either)."""
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
