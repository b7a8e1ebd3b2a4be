"""First-layer convolutions on one CPU thread: minidl's direct loops vs its im2col path vs torch.

Forward, and the weight gradient (input_grad=False), for the study's first layers, channels-last
input and weight; each time a median of alternating calls. Usage:
PYTHONPATH=src python tools/conv_direct_bench.py [--calls 100] [--shapes 200x1,100x2] [--dtype float32]
"""
import argparse
import statistics
import time

import torch

import minidl._C  # noqa: F401  (registers torch.ops.minidl)


def median_ms(fns, calls):
    """Each fn called `calls` times, the fns alternating; the median per fn in ms."""
    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(calls):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [1e3 * statistics.median(t) for t in times]


def minidl_fwd(enabled, x, w, b):
    def f():
        minidl._C._set_conv_direct(enabled)
        torch.ops.minidl.conv2d_forward(x, w, b, [1, 1], [0, 0])
    return f


def minidl_wgrad(enabled, gy, x, w, gw, gb):
    def f():
        minidl._C._set_conv_direct(enabled)
        torch.ops.minidl.conv2d_backward(gy, x, w, gw, gb, [1, 1], [0, 0], False)
    return f


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--shapes", default="200x1,100x2", help="batch x channels of the 14x14 inputs")
    p.add_argument("--out", type=int, default=32)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, a.dtype)
    cl = torch.channels_last

    def channels_last(t):  # channels-last strides even for one channel (as the study's models give)
        return torch.empty_like(t, memory_format=cl).copy_(t)

    print(f"{'shape':>16} {'pass':>6} {'direct':>8} {'im2col':>8} {'torch':>8}  (ms, median of {a.calls})")
    for shape in a.shapes.split(","):
        n, c = map(int, shape.split("x"))
        k = a.kernel
        x = channels_last(torch.randn(n, c, 14, 14, dtype=dtype))
        w = channels_last(torch.randn(a.out, c, k, k, dtype=dtype))
        b = torch.randn(a.out, dtype=dtype)
        gy = channels_last(torch.randn(n, a.out, 15 - k, 15 - k, dtype=dtype))
        gw, gb = torch.zeros_like(w), torch.zeros_like(b)
        fwd = median_ms([minidl_fwd(True, x, w, b), minidl_fwd(False, x, w, b),
                         lambda: torch.nn.functional.conv2d(x, w, b)], a.calls)
        mask = [False, True, True]
        wgrad = median_ms([minidl_wgrad(True, gy, x, w, gw, gb), minidl_wgrad(False, gy, x, w, gw, gb),
                           lambda: torch.ops.aten.convolution_backward(gy, x, w, [a.out], [1, 1], [0, 0], [1, 1],
                                                                       False, [0, 0], 1, mask)], a.calls)
        label = f"({n},{c},14,14)->{a.out}"
        for name, ms in (("fwd", fwd), ("wgrad", wgrad)):
            print(f"{label:>16} {name:>6} " + " ".join(f"{t:8.3f}" for t in ms))
    minidl._C._set_conv_direct(True)


if __name__ == "__main__":
    main()
