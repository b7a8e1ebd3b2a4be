"""Where streaming stores start to pay: relu and tanh forward + backward, streaming on vs off.

    python tools/streaming_threshold.py [--threads 1 2] [--sizes 20 21 22 23 24] [--repeats 9]

Prints, per size and thread count, the median time with streaming stores for every output over
the median without (timed in turn by minidl.bench.measure, so both see the same machine): below 1
means streaming is faster.
csrc/cpu/runtime/streaming.cpp picks its kDefaultMinBytes from this table (docs/streaming_threshold.md).
"""
import argparse

import torch

import minidl._C as C
from minidl import bench


def streaming_variant(name, isa, forward, backward, x, g):
    """forward + backward with the streaming setting `isa` (min 0 bytes) set before every call."""
    def step():
        C._set_streaming(isa, 0)  # a C call: nanoseconds beside these milliseconds
        backward(g, forward(x))
    return bench.Variant(name, step)


def ratios(log2_n, repeats):
    """{op: median time streaming / median time without}, the variants timed in turn by minidl.bench."""
    n = 1 << log2_n
    x, g = torch.randn(n), torch.randn(n)
    best = C._streaming_setting()[2]
    variants = [streaming_variant(f"{op} {isa}", isa, getattr(C.direct, f"{op}_forward"),
                                  getattr(C.direct, f"{op}_backward"), x, g)
                for op in ("relu", "tanh") for isa in (best, "none")]
    stats = bench.measure(variants, repeats, target=0.05, sync=lambda: None)
    return {op: stats[f"{op} {best}"]["median_s"] / stats[f"{op} none"]["median_s"] for op in ("relu", "tanh")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 21, 22, 23, 24], help="log2 of the element count")
    args = parser.parse_args()
    old = C._streaming_setting()
    if old[2] == "none":
        raise SystemExit("this CPU or build has no streaming stores")
    print(f"streaming with {old[2]}; time with streaming / time without (median of {args.repeats})\n")
    print("| threads | elements | output  | relu fwd+bwd | tanh fwd+bwd |")
    print("|---------|----------|---------|--------------|--------------|")
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for log2_n in args.sizes:
                r = ratios(log2_n, args.repeats)
                nbytes = 4 << log2_n
                size = (f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB" if nbytes >= 1 << 10
                        else f"{nbytes} B")
                print(f"| {threads:<7} | 2^{log2_n:<6} | {size:>7} | {r['relu']:<12.3f} | {r['tanh']:<12.3f} |", flush=True)
    finally:
        C._set_streaming(old[0], old[1])


if __name__ == "__main__":
    main()
