"""The C++ kernels' cache of large freed CPU blocks: reuse, limits, aliasing, threads, errors."""
import io
import os
import subprocess
import sys
import threading

import pytest
import torch

import minidl
from conftest import require_cpp, subprocess_env

BIG = 2 ** 21  # float32 elements: 8 MiB, above the 256 KiB from which outputs are cached


@pytest.fixture
def cpp_ops():
    require_cpp()
    from minidl.kernels import cpp
    limit = minidl.cpu_cache_info().limit_bytes
    minidl.empty_cpu_cache()
    yield cpp
    minidl.set_cpu_cache_limit(limit)
    minidl.empty_cpu_cache()


def test_a_freed_output_is_reused(cpp_ops):
    x = torch.randn(BIG)
    y = cpp_ops.relu_forward(x)
    first, before = y.data_ptr(), minidl.cpu_cache_info()
    del y
    assert minidl.cpu_cache_info().cached_bytes == before.cached_bytes + 8 * 2 ** 20
    y = cpp_ops.tanh_forward(x)
    after = minidl.cpu_cache_info()
    assert y.data_ptr() == first
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    torch.testing.assert_close(y, torch.tanh(x))


def test_live_outputs_never_share_memory(cpp_ops):
    xs = [torch.randn(BIG) for _ in range(3)]
    ys = [cpp_ops.relu_forward(x) for x in xs]
    assert len({y.data_ptr() for y in ys}) == 3
    for x, y in zip(xs, ys):
        assert torch.equal(y, torch.relu(x))


def test_small_outputs_bypass_the_cache(cpp_ops):
    start = minidl.cpu_cache_info()
    y = cpp_ops.relu_forward(torch.randn(250, 250))  # 250,000 bytes: just under 256 KiB
    del y
    assert minidl.cpu_cache_info() == start


def test_a_mid_sized_output_is_kept_in_64_kib_steps(cpp_ops):
    x = torch.randn(75_000)  # 300,000 bytes: a block of 5 x 64 KiB
    y = cpp_ops.relu_forward(x)
    first, before = y.data_ptr(), minidl.cpu_cache_info()
    del y
    assert minidl.cpu_cache_info().cached_bytes == before.cached_bytes + 5 * 2 ** 16
    y = cpp_ops.tanh_forward(torch.randn(80_000))  # 320,000 bytes: the same block
    assert y.data_ptr() == first and minidl.cpu_cache_info().hits == before.hits + 1
    z = cpp_ops.relu_forward(torch.randn(90_000))  # 360,000 bytes: 6 x 64 KiB, a new block
    assert z.data_ptr() != first and minidl.cpu_cache_info().misses == before.misses + 1


def test_every_large_output_comes_from_the_cache(cpp_ops):
    x, g = torch.randn(512, 4096), torch.randn(512, 4096)
    start = minidl.cpu_cache_info()
    cpp_ops.tanh_backward(g, cpp_ops.tanh_forward(x))
    cpp_ops.relu_backward(g, cpp_ops.relu_forward(x))
    _, grad = cpp_ops.mse_forward(x, g)
    end = minidl.cpu_cache_info()
    assert (end.hits + end.misses) - (start.hits + start.misses) == 5
    torch.testing.assert_close(grad, 2 * (x - g) / x.numel())


def test_the_limit_bounds_what_is_kept(cpp_ops):
    minidl.set_cpu_cache_limit(16 * 2 ** 20)
    ys = [cpp_ops.relu_forward(torch.randn(BIG)) for _ in range(3)]
    del ys
    assert minidl.cpu_cache_info().cached_bytes == 16 * 2 ** 20
    minidl.set_cpu_cache_limit(8 * 2 ** 20)  # lowering the limit releases the excess at once
    assert minidl.cpu_cache_info().cached_bytes == 8 * 2 ** 20
    minidl.empty_cpu_cache()
    assert minidl.cpu_cache_info().cached_bytes == 0


def test_a_zero_limit_turns_the_cache_off(cpp_ops):
    minidl.set_cpu_cache_limit(0)
    start = minidl.cpu_cache_info()
    x = torch.randn(BIG)
    y = cpp_ops.relu_forward(x)
    del y
    assert minidl.cpu_cache_info() == start
    assert torch.equal(cpp_ops.relu_forward(x), torch.relu(x))


def test_cached_outputs_behave_like_any_tensor(cpp_ops):
    x = torch.randn(BIG)
    y = cpp_ops.relu_forward(x)
    y.resize_(2 * BIG)  # the storage grows through the same allocator, keeping its contents
    assert torch.equal(y[:BIG], torch.relu(x))
    buf = io.BytesIO()
    torch.save(y[:BIG].clone(), buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf), torch.relu(x))
    assert y.numpy().shape == (2 * BIG,)


def test_threads_sharing_the_cache_get_right_answers(cpp_ops):
    errors = []

    def work(seed):
        gen = torch.Generator().manual_seed(seed)
        for _ in range(20):
            x = torch.randn(BIG, generator=gen)
            if not torch.equal(cpp_ops.relu_forward(x), torch.relu(x)):
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_a_bad_limit_is_refused(bad):
    with pytest.raises(ValueError, match=r"minidl.set_cpu_cache_limit: expected a whole number of bytes >= 0"):
        minidl.set_cpu_cache_limit(bad)


def _limit_with_env(value):
    code = "import minidl; print(minidl.cpu_cache_info().limit_bytes)"
    return subprocess.run([sys.executable, "-c", code], env=subprocess_env(MINIDL_CPU_CACHE_MB=value),
                          capture_output=True, text=True, check=True)


def test_the_environment_sets_the_limit():
    require_cpp()
    assert _limit_with_env("64").stdout.split() == [str(64 * 2 ** 20)]
    assert _limit_with_env("0").stdout.split() == ["0"]


def test_a_bad_environment_value_warns_and_keeps_the_default():
    require_cpp()
    run = _limit_with_env("lots")
    assert run.stdout.split() == [str(256 * 2 ** 20)]
    assert "MINIDL_CPU_CACHE_MB must be a whole number of MiB >= 0, got 'lots'" in run.stderr


_POKE = """
import ctypes, sys, torch
from minidl.kernels import cpp
y = cpp.relu_forward(torch.randn(2 ** 21 + 3))  # 8 MiB + 12 bytes, in a block rounded up to 10 MiB
end, byte = y.data_ptr() + 4 * y.numel(), ctypes.create_string_buffer(1)
if sys.argv[1] == "inside":
    ctypes.memmove(byte, end - 1, 1)
elif sys.argv[1] == "past the end":
    ctypes.memmove(byte, end, 1)
else:  # after free: the block now sits in the cache
    del y
    ctypes.memmove(byte, end - 1, 1)
"""


@pytest.mark.parametrize("where", ["inside", "past the end", "after free"])
def test_the_sanitizer_sees_into_cached_blocks(where):
    """The cache maps its blocks itself, out of AddressSanitizer's sight: it marks what lies past a
    tensor's bytes, and every block it keeps, as unaddressable, so that overflows and uses after
    free there are still reported (only in the sanitized build of tools/sanitize.sh)."""
    require_cpp()
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("needs the AddressSanitizer build (tools/sanitize.sh)")
    run = subprocess.run([sys.executable, "-c", _POKE, where], env=subprocess_env(), capture_output=True, text=True)
    if where == "inside":
        assert run.returncode == 0, run.stderr[-2000:]
    else:
        assert run.returncode != 0 and "use-after-poison" in run.stderr, run.stderr[-2000:]
