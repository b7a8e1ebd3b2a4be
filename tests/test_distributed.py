"""minidl.distributed: DataParallel on two gloo ranks equals one process on the whole batch."""
import multiprocessing
import time

import pytest
import torch

import minidl as dl
from minidl import distributed

import distributed_workers as workers

WORLD = 2
HAS_ADAM = hasattr(dl, "Adam")
HAS_CONV = all(hasattr(dl, name) for name in ("Conv2d", "MaxPool2d", "Flatten"))


def run_ranks(fn, tmp_path, *args, timeout=60):
    """Run fn(rank, WORLD, rendezvous file, tmp_path, *args) in WORLD spawned processes; their exit codes.
    Each is waited for on its own: a rank that fails does not end the others, as a launcher would."""
    context = multiprocessing.get_context("spawn")
    init_file = tmp_path / "rendezvous"
    processes = [context.Process(target=fn, args=(rank, WORLD, str(init_file), str(tmp_path), *args))
                 for rank in range(WORLD)]
    for p in processes:
        p.start()
    deadline = time.monotonic() + timeout
    try:
        for p in processes:
            p.join(max(0.0, deadline - time.monotonic()))
        hung = [rank for rank, p in enumerate(processes) if p.is_alive()]
        assert not hung, f"rank(s) {hung} still running after {timeout} s"
    finally:
        for p in processes:
            if p.is_alive():
                p.kill()
                p.join()
    return [p.exitcode for p in processes]


SCENARIOS = [("disk", torch.float64, "sgd"), ("disk", torch.float32, "sgd")]
SCENARIOS += [("disk", torch.float64, "adam"), ("disk", torch.float32, "adam")] if HAS_ADAM else []
SCENARIOS += [("conv", torch.float64, "sgd"), ("conv", torch.float32, "sgd")] if HAS_CONV else []
SCENARIOS += [("conv", torch.float64, "adam")] if HAS_CONV and HAS_ADAM else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every scenario trained on two ranks (one spawn for all): {rank: {scenario: parameters per step}}."""
    tmp = tmp_path_factory.mktemp("dp")
    codes = run_ranks(workers.train_ranks, tmp, SCENARIOS)
    assert codes == [0] * WORLD, f"exit codes {codes} (tracebacks above)"
    return {rank: torch.load(tmp / f"rank{rank}.pt") for rank in range(WORLD)}


def one_process(kind, dtype, opt_name):
    """The same steps in this process, on the whole batch, from rank 0's initialisation."""
    torch.set_grad_enabled(False)
    net = workers.build(kind, dtype, seed=100)
    x, target = workers.batch(kind, dtype)
    return workers.train(net, workers.optimizer(opt_name, net), x, target)


@pytest.mark.parametrize("kind", ["disk", pytest.param("conv", marks=pytest.mark.skipif(
    not HAS_CONV, reason="the conv stack (dl.Conv2d, dl.MaxPool2d, dl.Flatten) is not on this branch yet"))])
@pytest.mark.parametrize("opt_name", ["sgd", pytest.param("adam", marks=pytest.mark.skipif(
    not HAS_ADAM, reason="dl.Adam is not on this branch yet"))])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_two_ranks_on_half_batches_step_as_one_process_on_the_whole(trained, kind, opt_name, dtype):
    key = (kind, str(dtype), opt_name)
    if key not in trained[0]:
        pytest.skip(f"{key} not trained (needs both the conv stack and Adam)")
    reference = one_process(kind, dtype, opt_name)
    # float64: equal to rounding (the halves' sums are added in another order); float32: close
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for step, want in enumerate(reference):
        for i, w in enumerate(want):
            for rank in range(WORLD):
                torch.testing.assert_close(trained[rank][key][step][i], w, **tol,
                                           msg=lambda m: f"rank {rank}, step {step + 1}, parameter {i}: {m}")
        for a, b in zip(trained[0][key][step], trained[1][key][step]):
            assert torch.equal(a, b), f"the ranks' parameters differ after step {step + 1}"
    moved = [not torch.equal(a, b) for a, b in zip(reference[0], reference[-1])]
    assert all(moved), "a parameter did not change: the test would not see a wrong gradient"


def test_gradients_of_mixed_sizes_and_dtypes_are_averaged_one_all_reduce_per_bucket(tmp_path):
    cap_mb = 0.01  # 10,486 bytes: the 300 x 300 float32 alone, the float64s apart from the float32s
    assert run_ranks(workers.bucket_ranks, tmp_path, cap_mb) == [0] * WORLD
    want_buckets = [(b.dtype, b.indices) for b in distributed.make_buckets(
        [torch.zeros(shape, dtype=dtype) for shape, dtype in workers.Mixed.SHAPES], int(cap_mb * 2 ** 20))]
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["buckets"] == want_buckets
        assert got["calls"] == [dtype for dtype, _ in want_buckets], "one all-reduce per bucket"
        for i, g in enumerate(got["grads"]):
            own = lambda r: (torch.arange(g.numel(), dtype=g.dtype) * (r + 1) + i).view(g.shape)
            ranks_mean = sum(own(r) for r in range(WORLD)) / WORLD
            assert torch.equal(g, ranks_mean), f"gradient {i}"
            assert torch.equal(got["local"][i], own(rank)), f"gradient {i} was averaged inside no_sync"
            assert torch.equal(got["accumulated"][i], 2 * ranks_mean), f"gradient {i} after no_sync"


@pytest.mark.parametrize("broadcast", [True, False])
def test_each_training_forward_gives_every_rank_rank_0s_buffers(tmp_path, broadcast):
    """As DistributedDataParallel's broadcast_buffers: batch norm's running statistics, updated by each rank
    from its own half, are rank 0's at the start of every training forward; after one on the same batch the
    ranks hold the same statistics and evaluate alike."""
    assert run_ranks(workers.buffer_ranks, tmp_path, broadcast) == [0] * WORLD
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    mean = "1.running_mean"
    assert not torch.equal(ranks[0]["trained"][mean], ranks[1]["trained"][mean]), "each rank updates from its half"
    alike = torch.equal(ranks[0]["y"], ranks[1]["y"]) and all(
        torch.equal(t, ranks[1]["evaluated"][name]) for name, t in ranks[0]["evaluated"].items())
    assert alike == broadcast


@pytest.mark.parametrize("mode", ["raise", "stall"])
def test_a_rank_that_raises_or_stalls_does_not_leave_the_other_waiting(tmp_path, mode):
    codes = run_ranks(workers.failing_ranks, tmp_path, mode, timeout=60)
    assert codes[0] != 0 and (codes[1] != 0) == (mode == "raise"), codes
    waited = float((tmp_path / "rank0_waited").read_text())
    assert waited < 5 + 10, f"rank 0 waited {waited:.1f} s in its all-reduce (timeout 5 s)"


@pytest.fixture
def one_rank(tmp_path):
    """A gloo group of one rank in this process."""
    distributed.init(init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    distributed.shutdown()


def test_data_parallel_is_the_module_for_parameters_state_and_mode(one_rank):
    torch.set_grad_enabled(False)
    net = workers.build("disk", torch.float32, seed=0)
    dp = distributed.DataParallel(net)
    assert dp.param() == net.param() and list(dp.state_dict()) == list(net.state_dict())
    assert all(a is b for a, b in zip(dp.state_dict().values(), net.state_dict().values()))
    assert dp.eval() is dp and not dp.training and not net.training and not net[0].training
    dp.train()
    assert net.training and repr(dp) == f"DataParallel({net!r})"
    dp.load_state_dict(workers.build("disk", torch.float32, seed=1).state_dict())
    assert torch.equal(net[0].weight, workers.build("disk", torch.float32, seed=1)[0].weight)
    x = torch.rand(5, 2)
    assert torch.equal(dp.forward(x), net.forward(x))
    assert [b.dtype for b in dp.buckets] == [torch.float32]
    dp.to(dtype=torch.float64)  # buckets follow the gradients
    dp.forward(x.double())
    dp.backward(torch.ones(5, 2, dtype=torch.float64))
    assert [b.dtype for b in dp.buckets] == [torch.float64]
    with pytest.raises(RuntimeError, match=r"DataParallel\(Sequential.*\.backward: called more times than forward"):
        dp.backward(torch.ones(5, 2, dtype=torch.float64))


def test_buckets_group_by_dtype_and_respect_the_cap():
    tensors = [torch.zeros(n, dtype=dtype) for n, dtype in
               [(10, torch.float32), (10, torch.float64), (10, torch.float32), (100, torch.float32),
                (5, torch.float64)]]
    buckets = distributed.make_buckets(tensors, cap_bytes=200)
    assert sorted(i for b in buckets for i in b.indices) == list(range(5))
    for b in buckets:
        assert {tensors[i].dtype for i in b.indices} == {b.dtype}
        assert b.nbytes <= 200 or len(b.indices) == 1
    assert [b.indices for b in buckets] == [[3], [4, 1], [2, 0]]  # from the last tensor, as backward fills them
    assert len(distributed.make_buckets(tensors)) == 2  # default cap: one bucket per dtype


def test_init_without_torchrun_says_how_to_start(monkeypatch):
    for name in distributed.TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(distributed.DistributedError, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set: "
                                                            "start the program with torchrun"):
        distributed.init()


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="mpi"), "unknown backend 'mpi'; valid: gloo, nccl"),
    (dict(device="meta"), "no backend for device 'meta'"),
    (dict(init_method="file:///nowhere"), "needs rank and world_size"),
])
def test_init_refuses_what_it_cannot_start(kwargs, message):
    with pytest.raises(distributed.DistributedError, match=message):
        distributed.init(**kwargs)


@pytest.mark.skipif(torch.distributed.is_nccl_available(), reason="this torch has nccl")
def test_init_names_a_missing_backend():
    with pytest.raises(distributed.DistributedError, match="backend nccl is not available in this torch"):
        distributed.init(device="cuda")


def test_data_parallel_needs_a_process_group():
    with pytest.raises(distributed.DistributedError, match="call minidl.distributed.init"):
        distributed.DataParallel(dl.Linear(2, 2))


@pytest.mark.parametrize("batch_size", ["20", "3"])  # 3: parts of 2 and 1 rows, and a last batch of 1 (1000 = 333 * 3 + 1)
def test_disk_example_under_torchrun_prints_once_what_one_process_prints(capsys, batch_size):
    import re
    import subprocess
    import sys

    from conftest import PACKAGE_ROOT, subprocess_env
    from test_examples import EXAMPLES, _load

    argv = ["--epochs", "4", "--log-every", "1", "--threads", "1", "--batch-size", batch_size]
    _load("disk").main(argv)
    alone = capsys.readouterr().out.splitlines()
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            str(EXAMPLES / "disk.py"), "--distributed", *argv], capture_output=True, text=True,
                           env=subprocess_env(PYTHONWARNINGS="ignore"), cwd=PACKAGE_ROOT, timeout=120)
    assert ranks.returncode == 0, ranks.stderr
    together = ranks.stdout.splitlines()
    assert len(together) == len(alone), "every line once: rank 0 prints, the others do not"
    numbers = lambda line: [float(x) for x in re.findall(r"\d+\.\d+", line.split("(")[0])]
    for a, b in zip(alone, together):
        assert re.sub(r"[\d.]+", "#", a) == re.sub(r"[\d.]+", "#", b)
        # float32 sums of two halves against one whole: the 5-digit losses agree to rounding
        assert numbers(b) == pytest.approx(numbers(a), rel=1e-4), (a, b)
