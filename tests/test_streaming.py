"""Streaming (non-temporal) stores for large float32 outputs: the same bits as the cached loops."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import require_cpp, subprocess_env

DEFAULT_MIN_BYTES = 32 << 20
ISAS = {"avx512": ["avx512", "avx2"], "avx2": ["avx2"], "none": []}


@pytest.fixture
def C():
    require_cpp()
    import minidl._C as ext
    isa, min_bytes, _, _ = ext._streaming_setting()
    yield ext
    ext._set_streaming(isa, min_bytes)


def loops(C, isa):
    """How many loop calls ran with `isa`'s streaming loops ("none": the normal-store fallback)."""
    return C._streaming_setting()[3][isa]


@pytest.fixture
def isas(C):
    """The instruction sets this CPU can stream with, best first; skips where there is none."""
    streamable = ISAS[C._streaming_setting()[2]]
    if not streamable:
        pytest.skip("this CPU or build has no streaming stores")
    return streamable


def with_payload(bits):
    return torch.tensor([bits], dtype=torch.int32).view(torch.float32)


def special_values(n, seed):
    """Normal values with NaN (signed, with payloads), +-0, +-inf and subnormals mixed in."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    specials = torch.cat([torch.tensor([float("nan"), 0.0, -0.0, float("inf"), -float("inf"), 1e-40, -1e-40, 1.0]),
                          with_payload(0x7FC00123), with_payload(-0x7FFFFF)])  # the latter: -NaN, payload 1
    picks = torch.randint(0, max(n, 1), (n // 7,), generator=gen)
    x[picks] = specials[torch.randint(0, len(specials), (n // 7,), generator=gen)]
    return x


def same_bits(a, b, nan_payloads=True):
    """Equal bit for bit (the sign of zero included); NaN payloads too unless nan_payloads=False."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not nan_payloads:
        nan = a.isnan()
        if not torch.equal(nan, b.isnan()):
            return False
        a, b = a.masked_fill(nan, 0.0), b.masked_fill(nan, 0.0)
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


# Which NaN a product of two NaNs returns depends on the operand order the compiler picks, in
# either loop; relu and its gradient only select values, so they keep payloads exactly.
OPS = [("relu_forward", True), ("relu_backward", True), ("tanh_backward", False)]


def all_ops(C, x, g):
    d = C.direct
    y_tanh = d.tanh_forward(x)
    return [d.relu_forward(x), d.relu_backward(g, d.relu_forward(x)), d.tanh_backward(g, y_tanh)]


def test_default_setting_streams_from_32_mib_with_the_best_isa(C):
    isa, min_bytes, best, _ = C._streaming_setting()
    assert (isa, min_bytes) == (best, DEFAULT_MIN_BYTES)
    assert best in ISAS


@pytest.mark.parametrize("threads", [1, 2])
def test_streaming_loops_give_the_cached_loops_bits(C, isas, threads):
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if torch.get_num_threads() != threads:
            pytest.skip(f"cannot run {threads} threads here")
        # Sizes around the vector widths, and sizes whose second thread's chunk starts unaligned
        # (at::parallel_for splits 2 * 32768 + k elements, 32768 being the grain of csrc/cpu/runtime/grain.h,
        # into halves of 32768 + k/2 or so).
        sizes = list(range(0, 70)) + [1000, 65536 + 2, 65536 + 17, 65536 + 31, 200003]
        for n in sizes:
            x, g = special_values(n, seed=n), special_values(n, seed=n + 1)
            C._set_streaming("none", 0)
            want = all_ops(C, x, g)
            for isa in isas:
                C._set_streaming(isa, 0)
                before = loops(C, isa)
                got = all_ops(C, x, g)
                if n > 0:
                    assert loops(C, isa) >= before + 4, f"{isa}, n={n}: the {isa} loops did not run"
                for (name, payloads), a, b in zip(OPS, got, want):
                    assert same_bits(a, b, payloads), f"{name} with {isa} streaming stores, n={n}, {threads} thread(s)"
    finally:
        torch.set_num_threads(old_threads)


def test_streamed_results_match_torch(C, isas):
    x, g = special_values(100003, seed=5), special_values(100003, seed=6)
    for isa in isas:
        C._set_streaming(isa, 0)
        relu, relu_grad, tanh_grad = all_ops(C, x, g)
        y = C.direct.tanh_forward(x)
        assert same_bits(relu, torch.relu(x))
        assert same_bits(relu_grad, torch.ops.aten.threshold_backward(g, torch.relu(x), 0.0))
        assert same_bits(tanh_grad, g * (1 - y * y), nan_payloads=False)


def test_only_outputs_from_min_bytes_stream(C, isas):
    x = torch.randn(1024)  # 4096 bytes of output
    d = C.direct
    best = C._streaming_setting()[2]
    C._set_streaming(best, 4097)
    before = loops(C, best)
    d.relu_forward(x)
    d.relu_backward(x, x)
    d.tanh_backward(x, x)
    d.relu_forward(x.double())
    assert loops(C, best) == before
    C._set_streaming(best, 4096)
    d.relu_forward(x)
    d.relu_backward(x, x)
    d.tanh_backward(x, x)
    d.tanh_forward(x)  # bound by its arithmetic: never streams
    d.relu_forward(x.double())  # float32 only
    assert loops(C, best) == before + 3


# The small-layer loops apply every activation and its gradient in place; the BLAS path's first
# activation gradient (the caller's gradient, not overwritten) is its only new tensor.
@pytest.mark.parametrize("batch, streamed", [(3, 0), (300, 1)])
def test_fused_stack_trains_alike_with_and_without_streaming(C, isas, batch, streamed):
    """The fused ops' activation helpers stream where they write a new tensor and store normally
    where they overwrite their input (activation_out(y, y), a gradient into itself); same bits."""
    import minidl as dl
    previous = dl.get_backend()
    dl.set_backend("cpp")
    try:
        results = {}
        for isa in ["none"] + isas:
            C._set_streaming(isa, 0)
            torch.manual_seed(3)
            net = dl.Sequential(dl.Linear(20, 64), dl.ReLU(), dl.Linear(64, 64), dl.Tanh(), dl.Linear(64, 5),
                                dl.Tanh())
            assert net.fused is not None  # the fused path
            x, gy = torch.randn(batch, 20), torch.randn(batch, 5)
            before = loops(C, isa)
            y = net.forward(x)
            gx = net.backward(gy)
            if isa != "none":
                assert loops(C, isa) == before + streamed, f"{isa}: streamed {loops(C, isa) - before} loops"
            results[isa] = [y, gx] + [g.clone() for _, g in net.param()]
        for isa in isas:
            for a, b in zip(results[isa], results["none"]):
                assert same_bits(a, b), f"{isa}, batch {batch}"
    finally:
        dl.set_backend(previous)


def test_bad_settings_name_what_was_expected(C):
    with pytest.raises(ValueError, match="expected isa 'avx512', 'avx2' or 'none', got 'sse'"):
        C._set_streaming("sse", 0)
    with pytest.raises(ValueError, match="expected min_bytes >= 0, got -1"):
        C._set_streaming("none", -1)
    best = C._streaming_setting()[2]
    if best != "avx512":
        with pytest.raises(ValueError, match=f"streams with at most '{best}', got 'avx512'"):
            C._set_streaming("avx512", 0)
    assert C._streaming_setting()[:2] == (best, DEFAULT_MIN_BYTES)
    assert set(C._streaming_setting()[3]) == {"avx512", "avx2", "none"}


def test_threshold_tool_prints_a_row_per_size_and_thread_count(isas):
    tool = Path(__file__).resolve().parents[1] / "tools" / "streaming_threshold.py"
    run = subprocess.run([sys.executable, str(tool), "--threads", "1", "--sizes", "12", "13", "--repeats", "1"],
                         env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 1 ")]
    assert [row.split("|")[2].strip() for row in rows] == ["2^12", "2^13"], run.stdout
    for row in rows:
        relu, tanh = (float(cell) for cell in row.split("|")[4:6])
        assert relu > 0 and tanh > 0
