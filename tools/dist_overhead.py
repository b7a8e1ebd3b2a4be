"""The cost of DataParallel's gradient averaging against the training step itself, under torchrun.

    torchrun --standalone --nproc_per_node=2 tools/dist_overhead.py [--threads 1]

For each network, each rank trains on its half of the batch: the step (forward, backward, SGD) with
the averaging off (no_sync), the same step with it on, the averaging alone, and torch's all-reduce
of a flat tensor as large as all the gradients (what packing costs on top); each variant timed
in blocks of steps that start together on every rank (a barrier before each), variants alternated,
medians over the blocks. Rank 0 prints a markdown table.
"""
import argparse
import statistics
import time

import torch
import torch.distributed as dist

import minidl as dl
from minidl import distributed

NETWORKS = {  # name: (layer widths, batch over all ranks, steps per timed block)
    "disk 2-25-25-25-2": ([2, 25, 25, 25, 2], 100, 50),
    "MLP 784-1024-1024-10": ([784, 1024, 1024, 10], 256, 4),
}


def mlp(widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers += [dl.Linear(a, b)] + ([dl.ReLU()] if i < len(widths) - 2 else [])
    return dl.Sequential(*layers)


def timed_block(fn, steps):
    """Seconds per call of FN over STEPS calls, started together on every rank."""
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def measure(widths, batch, steps, cap_mb, blocks):
    """(parameters, buckets, {variant: median seconds}) for one network and bucket size."""
    torch.manual_seed(0)
    net = distributed.DataParallel(mlp(widths), bucket_cap_mb=cap_mb)
    opt, criterion = dl.SGD(net.param(), lr=1e-3), dl.LossMSE()
    x, target = torch.rand(batch // distributed.world_size(), widths[0]), torch.rand(batch // distributed.world_size(), widths[-1])

    def step():
        criterion.forward(net.forward(x), target)
        net.backward(criterion.backward(), input_grad=False)
        opt.step(zero_grad=True)

    def local_step():
        with net.no_sync():
            step()

    flat = torch.zeros(sum(sum(b.sizes) for b in net.buckets))
    variants = {"step without averaging": local_step, "step with averaging": step,
                "averaging alone": net.average_gradients, "all-reduce alone": lambda: dist.all_reduce(flat)}
    times = {name: [] for name in variants}
    for block in range(blocks + 1):
        for name, fn in variants.items():
            seconds = timed_block(fn, steps)
            if block:  # the first block warms up
                times[name].append(seconds)
    parameters = sum(p.numel() for p, _ in net.param())
    return parameters, len(net.buckets), {name: statistics.median(t) for name, t in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    p.add_argument("--blocks", type=int, default=15, help="timed blocks per variant (default 15)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    distributed.init()
    rows = []
    for name, (widths, batch, steps) in NETWORKS.items():
        for cap_mb in (25, 1):
            parameters, buckets, t = measure(widths, batch, steps, cap_mb, args.blocks)
            if buckets == 1 and cap_mb != 25:
                continue  # the same as the default
            local, full, alone, raw = (t[k] * 1e6 for k in ("step without averaging", "step with averaging",
                                                            "averaging alone", "all-reduce alone"))
            rows.append(f"| {name}, batch {batch} | {parameters:,} | {buckets} ({cap_mb} MB) | {local:,.0f} µs "
                        f"| {full:,.0f} µs | {alone:,.0f} µs | {raw:,.0f} µs | {100 * (full - local) / local:.0f} % |")
    if distributed.rank() == 0:
        print(f"{distributed.world_size()} ranks, backend {dist.get_backend()}, {args.threads} thread(s) each, "
              f"torch {torch.__version__}, minidl backend {dl.get_backend()}\n")
        print("| network | parameters | buckets (cap) | step, no averaging | step with averaging "
              "| averaging alone | one all-reduce of all gradients, torch alone | overhead |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        print("\n".join(rows))
    distributed.shutdown()


if __name__ == "__main__":
    main()
