"""What the MLP's SGD update costs when its data was last touched some milliseconds before.

    python tools/update_idle_cost.py [--gaps 0 0.5 1 2 5 20] [--repeats 40] [--rounds 3] [--threads 1] [--json PATH]

The SGD momentum update of minidl.bench's MLP 784-1024-1024-10 (parameters and momentum buffers
read and written, gradients read: 37 MB) runs after the CPU has spun for `gap` milliseconds without
touching memory; a gap of 0 is the update run back to back. In the benchmark's training step
about 15-16 ms pass between two updates (docs/benchmark.md, 1 thread). Each gap gets `repeats` updates in a row (so that each one
follows an update with the same gap), the gaps in turn, `rounds` times; prints the median update
time per gap, and writes every time to JSON with --json.
"""
import argparse
import json
import statistics
import time

import torch

import minidl
from minidl import bench


def spin(seconds):
    """Busy-wait: the core stays awake and touches no memory."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def update_times(gaps_ms, repeats, rounds):
    """{gap: [seconds per update]}, and the bytes one update moves."""
    net = bench.build_minidl_net(bench.MLP_SIZES, "cpu", seed=0)
    pairs = net.param()
    for _, g in pairs:
        g.normal_(0, 1e-3)
    opt = minidl.SGD(pairs, lr=1e-4, momentum=bench.MOMENTUM)
    opt.step()  # makes the momentum buffers
    # p and v read and written, g read. The gradients stay as they are: zeroed ones would let the
    # momentum decay into subnormal floats, which are slow.
    nbytes = 5 * 4 * sum(p.numel() for p, _ in pairs)
    times = {gap: [] for gap in gaps_ms}
    for _ in range(rounds):
        for gap in gaps_ms:
            for _ in range(repeats):
                spin(gap / 1e3)
                start = time.perf_counter()
                opt.step()
                times[gap].append(time.perf_counter() - start)
    return times, nbytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaps", type=float, nargs="+", default=[0, 0.5, 1, 2, 5, 20], help="milliseconds")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write every time to this file")
    args = parser.parse_args(argv)
    if min(args.repeats, args.rounds, args.threads) < 1 or min(args.gaps) < 0:
        parser.error("--repeats, --rounds and --threads must be positive, and --gaps not negative")
    args.gaps = list(dict.fromkeys(args.gaps))  # a gap given twice is one row
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        times, nbytes = update_times(args.gaps, args.repeats, args.rounds)
    base = statistics.median(times[args.gaps[0]])
    print(f"SGD momentum update of the MLP {'-'.join(map(str, bench.MLP_SIZES))} ({nbytes / 1e6:.1f} MB), "
          f"{args.threads} thread(s), median of {args.rounds} x {args.repeats}\n")
    print(f"| idle before (ms) | update  | GB/s  | × gap {args.gaps[0]:g} ms |")
    print("|------------------|---------|-------|------------|")
    for gap, ts in times.items():
        m = statistics.median(ts)
        print(f"| {gap:<16g} | {bench.fmt_time(m):<7} | {nbytes / m / 1e9:<5.1f} | {m / base:<10.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bytes": nbytes, "threads": args.threads, "repeats": args.repeats, "rounds": args.rounds,
                       "times_s": {str(g): ts for g, ts in times.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
