"""What the ranks of tests/test_distributed.py run, in processes of their own (spawned: importable)."""
import datetime
import os
import time

import torch
import torch.distributed

import minidl as dl
from minidl import distributed

STEPS = 4
BATCH = 12  # halves of 6 on two ranks


def build(kind, dtype, seed):
    """The disk network, or a small convnet (needs the conv stack); initialised from SEED."""
    torch.manual_seed(seed)
    if kind == "disk":
        return dl.Sequential(dl.Linear(2, 25, dtype=dtype), dl.ReLU(), dl.Linear(25, 25, dtype=dtype), dl.ReLU(),
                             dl.Linear(25, 25, dtype=dtype), dl.Tanh(), dl.Linear(25, 2, dtype=dtype))
    return dl.Sequential(dl.Conv2d(1, 4, 3, dtype=dtype), dl.ReLU(), dl.MaxPool2d(2), dl.Flatten(),
                         dl.Linear(4 * 3 * 3, 2, dtype=dtype))


def batch(kind, dtype):
    """A fixed batch of inputs and targets (the same on every rank)."""
    generator = torch.Generator().manual_seed(7)
    shape = (BATCH, 2) if kind == "disk" else (BATCH, 1, 8, 8)
    x = torch.rand(shape, generator=generator, dtype=torch.float64).to(dtype)
    return x, torch.rand((BATCH, 2), generator=generator, dtype=torch.float64).to(dtype)


def optimizer(name, net):
    if name == "adam":
        return dl.Adam(net.param(), lr=1e-2)
    return dl.SGD(net.param(), lr=0.1, momentum=0.9)


def train(net, opt, x, target, steps=STEPS):
    """STEPS steps of MSE; the parameters after each."""
    criterion, history = dl.LossMSE(), []
    for _ in range(steps):
        criterion.forward(net.forward(x), target)
        net.zero_grad()
        net.backward(criterion.backward())
        opt.step()
        history.append([p.clone() for p, _ in net.param()])
    return history


def join(rank, world, init_file, timeout=30):
    """Start the default group through a file rendezvous (no port to pick)."""
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    distributed.init(init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timeout)


def train_ranks(rank, world, init_file, out, scenarios):
    """Each (kind, dtype, optimizer) scenario: this rank's part of the batch, parameters saved per step."""
    join(rank, world, init_file)
    results = {}
    for kind, dtype, opt_name in scenarios:
        net = distributed.DataParallel(build(kind, dtype, seed=100 + rank))  # rank 0's initialisation wins
        x, target = batch(kind, dtype)
        part = lambda t: t.tensor_split(world)[rank]
        results[(kind, str(dtype), opt_name)] = train(net, optimizer(opt_name, net), part(x), part(target))
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    distributed.shutdown()


def buffer_ranks(rank, world, init_file, out, broadcast):
    """Two training steps of a network with batch norm on this rank's half of the batch, a training forward
    of the whole batch, then an evaluation of it: the buffers after the steps and at the end, and its output."""
    join(rank, world, init_file)
    torch.manual_seed(100 + rank)
    net = distributed.DataParallel(dl.Sequential(dl.Linear(2, 4), dl.BatchNorm1d(4), dl.Tanh(), dl.Linear(4, 2)),
                                   broadcast_buffers=broadcast)
    x, target = batch("disk", torch.float32)
    part = lambda t: t.tensor_split(world)[rank]
    train(net, optimizer("sgd", net), part(x), part(target), steps=2)
    trained = {name: t.clone() for name, t in net.named_buffers()}
    net.forward(x)  # the same batch on both ranks: the same update of whatever statistics each starts from
    y = net.eval().forward(x)
    torch.save({"trained": trained, "evaluated": dict(net.named_buffers()), "y": y}, os.path.join(out, f"rank{rank}.pt"))
    distributed.shutdown()


class Mixed(dl.Module):
    """Parameters of mixed sizes and dtypes, whose backward writes rank-dependent gradients."""

    SHAPES = [((1000,), torch.float64), ((3, 5), torch.float32), ((7,), torch.float64),
              ((300, 300), torch.float32), ((40,), torch.float32)]

    def __init__(self):
        self.tensors = [torch.zeros(shape, dtype=dtype) for shape, dtype in self.SHAPES]
        self.grads = [torch.zeros_like(t) for t in self.tensors]

    def named_param(self):
        return [(str(i), t, g) for i, (t, g) in enumerate(zip(self.tensors, self.grads))]

    def forward_ctx(self, ctx, x):
        return x

    def backward_ctx(self, ctx, grad):
        rank = torch.distributed.get_rank()
        for i, g in enumerate(self.grads):  # accumulated, as every module's
            g.add_(torch.arange(g.numel(), dtype=g.dtype).view(g.shape) * (rank + 1) + i)
        return grad


def bucket_ranks(rank, world, init_file, out, cap_mb):
    """Average Mixed's gradients, counting the all-reduce calls; then two backwards, the first in
    no_sync (local only), the second averaging their sum."""
    join(rank, world, init_file)
    net = distributed.DataParallel(Mixed(), bucket_cap_mb=cap_mb)
    calls, all_reduce = [], torch.distributed.all_reduce
    torch.distributed.all_reduce = lambda tensor, *a, **k: calls.append(tensor.dtype) or all_reduce(tensor, *a, **k)
    try:
        net.forward(torch.zeros(1))
        net.backward(torch.zeros(1))
    finally:
        torch.distributed.all_reduce = all_reduce
    buckets = [(b.dtype, b.indices) for b in net.buckets]
    averaged = [g.clone() for g in net.module.grads]
    net.zero_grad()
    with net.no_sync():
        net.forward(torch.zeros(1))
        net.backward(torch.zeros(1))
    local = [g.clone() for g in net.module.grads]
    net.forward(torch.zeros(1))
    net.backward(torch.zeros(1))
    torch.save({"grads": averaged, "calls": calls, "buckets": buckets, "local": local,
                "accumulated": net.module.grads}, os.path.join(out, f"rank{rank}.pt"))
    distributed.shutdown()


def failing_ranks(rank, world, init_file, out, mode):
    """Rank 1 raises (MODE 'raise') or stalls outside any collective ('stall') before the first
    all-reduce; rank 0 must fail soon, not wait for it forever."""
    join(rank, world, init_file, timeout=5)
    net = distributed.DataParallel(build("disk", torch.float64, seed=0))
    rank0_done = torch.distributed.FileStore(init_file + ".done", world)
    if rank == 1:
        if mode == "raise":
            raise ValueError("rank 1 found bad data")
        rank0_done.wait(["rank 0 done"], datetime.timedelta(seconds=120))
        return
    start = time.monotonic()
    try:
        net.forward(torch.zeros(4, 2, dtype=torch.float64))
        net.backward(torch.zeros(4, 2, dtype=torch.float64))
    finally:
        with open(os.path.join(out, "rank0_waited"), "w") as f:
            f.write(str(time.monotonic() - start))
        rank0_done.set("rank 0 done", "1")
