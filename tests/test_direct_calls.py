"""minidl._C.direct (what the cpp backend calls) against torch.ops.minidl (what opcheck checks): same kernels."""
import threading
import time
import warnings

import pytest
import torch

from conftest import require_cpp
from op_cases import op_cases  # every op, both dtypes: the cases opcheck runs


def _clone(value):
    """Tensors (also inside lists) copied, so that two calls start from equal, unshared inputs."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


@pytest.mark.parametrize("index", range(len(op_cases("cpu"))))
def test_direct_call_equals_torch_ops(device, index):
    require_cpp()
    import minidl._C

    name, args = op_cases(device)[index]
    via_ops, via_direct = _clone(list(args)), _clone(list(args))
    out_ops = getattr(torch.ops.minidl, name).default(*via_ops)
    out_direct = getattr(minidl._C.direct, name)(*via_direct)
    expected, got = _tensors(out_ops) + _tensors(via_ops), _tensors(out_direct) + _tensors(via_direct)
    assert len(expected) == len(got) and len(got) > 0
    for e, g in zip(expected, got):  # the results and every argument the op mutates
        assert e.shape == g.shape and e.dtype == g.dtype and e.device == g.device
        assert torch.equal(e, g), f"{name}: direct call differs from torch.ops.minidl.{name}"


@pytest.mark.parametrize("index", range(len(op_cases("cpu"))))
def test_direct_call_dispatches_meta_tensors_to_the_fake_kernels(index):
    require_cpp()
    import minidl._C

    name, args = op_cases("meta")[index]
    out_ops = getattr(torch.ops.minidl, name).default(*args)
    out_direct = getattr(minidl._C.direct, name)(*args)
    expected, got = _tensors(out_ops), _tensors(out_direct)
    assert [t.shape for t in got] == [t.shape for t in expected]
    if not expected:  # an op that only mutates its arguments (mlp_backward, sgd_step_) returns None
        assert out_ops is None and out_direct is None
    assert all(t.device.type == "meta" for t in got)


def test_direct_call_errors_are_the_ops_errors():
    require_cpp()
    import minidl._C

    big = 1 << 17  # over the size from which direct calls release the GIL
    bad = [("relu_forward", (torch.zeros(3, dtype=torch.int64),)),
           ("relu_forward", (torch.zeros(big, dtype=torch.int64),)),
           ("relu_backward", (torch.zeros(big), torch.zeros(big + 1))),
           ("relu_backward", (torch.zeros(3, device="meta"), torch.zeros(4, device="meta"))),
           ("linear_forward", (torch.zeros(3, 4), torch.zeros(5, 3), None)),
           ("mlp_forward", (torch.zeros(3, 4), [torch.zeros(5, 4)], [], [1])),
           ("sgd_step_", ([torch.zeros(2)], [torch.zeros(3)], [], 0.1, 0.0, 0.0, False))]
    for name, args in bad:
        with pytest.raises(Exception) as from_ops:
            getattr(torch.ops.minidl, name).default(*args)
        with pytest.raises(Exception) as from_direct:
            getattr(minidl._C.direct, name)(*args)
        assert type(from_direct.value) is type(from_ops.value), (name, from_direct.value, from_ops.value)
        assert str(from_direct.value).startswith(f"minidl.{name}")
        assert str(from_direct.value).splitlines()[0] == str(from_ops.value).splitlines()[0]


def test_direct_calls_trace_with_symbolic_shapes():
    """Tracing with symbolic sizes (as torch.compile does) records the registered op."""
    require_cpp()
    import minidl._C
    from torch.fx.experimental.proxy_tensor import make_fx

    graph = make_fx(lambda x: minidl._C.direct.tanh_forward(x), tracing_mode="symbolic")(torch.randn(1 << 17))
    assert any(node.target is torch.ops.minidl.tanh_forward.default for node in graph.graph.nodes)


def test_ops_record_no_autograd_graph():
    """minidl's ops are differentiated by minidl's own backward, never by torch.autograd: no graph in grad mode
    (inputs that require grad are refused there: tests/test_not_recorded.py), nor under no_grad."""
    require_cpp()
    import minidl._C

    x = torch.randn(4, 3, requires_grad=True)
    for mode, given in ((torch.enable_grad, x.detach()), (torch.no_grad, x)):
        with mode(), warnings.catch_warnings():
            warnings.simplefilter("error")
            for call in (torch.ops.minidl.tanh_forward.default, minidl._C.direct.tanh_forward):
                y = call(given)
                assert not y.requires_grad and y.grad_fn is None
                torch.testing.assert_close(y, x.detach().tanh())


def test_large_direct_calls_let_other_python_threads_run():
    """Kernels over many elements release the GIL (small ones keep it: releasing would cost more).
    A thread that holds the GIL would stall the other one for the whole call; released, the other
    thread's longest pause stays far shorter than the call."""
    require_cpp()
    import minidl._C

    x = torch.randn(1 << 25)
    longest, done = [0.0], threading.Event()
    # One thread for the kernel: on a loaded machine (pytest -n 8) a kernel on every core would
    # also starve the spinning thread of a core, whoever holds the GIL.
    threads = torch.get_num_threads()

    def spin():
        last = time.perf_counter()
        while not done.is_set():
            now = time.perf_counter()
            longest[0], last = max(longest[0], now - last), now

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        torch.set_num_threads(1)
        time.sleep(0.01)
        results = []
        for _ in range(3):  # a busy machine may deschedule the thread during one call
            longest[0] = 0.0
            start = time.perf_counter()
            minidl._C.direct.tanh_forward(x)
            call = time.perf_counter() - start
            results.append((longest[0], call))
            if longest[0] < call / 4:
                break
    finally:
        torch.set_num_threads(threads)
        done.set()
        thread.join()
    assert any(pause < call / 4 for pause, call in results), f"(longest pause, call) in seconds: {results}"
