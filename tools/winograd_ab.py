"""Winograd's F(2x2, 3x3) against im2col + GEMM for the CPU's 3x3 stride-1 convolutions, alternated in one process
(minidl._C._set_conv_winograd): the study's second convolution forward and backward, then a training step of
convnet and siamese_aux at batch 100. Medians over rounds; one thread unless --threads.

    PYTHONPATH=src python tools/winograd_ab.py [--rounds 5] [--threads 1]
"""
import argparse
import statistics
import time

import torch

import minidl._C
from minidl.kernels import cpp
from profile_step import study_step  # tools/, the script's own folder

ALGORITHMS = {"im2col": False, "winograd": True}


def per_call_ms(fn, calls):
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def layer_calls(images):
    """The second convolution (32 -> 64, 3x3, 6x6 -> 4x4, channels-last) at `images`: forward, backward."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, 32, 6, 6, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 32, 3, 3, generator=g)
    gy = torch.randn(images, 64, 4, 4, generator=g).contiguous(memory_format=torch.channels_last)
    gw = torch.zeros_like(w)
    return {"forward": lambda: cpp.conv2d_forward(x, w, None, [1, 1], [0, 0]),
            "backward": lambda: cpp.conv2d_backward(gy, x, w, gw, None, [1, 1], [0, 0], True)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cases = [(f"conv 32->64, {n} images, {what}", fn, 100) for n in (100, 200)
             for what, fn in layer_calls(n).items()]
    cases += [(f"{name} training step", study_step(name), 60) for name in ("convnet", "siamese_aux")]
    times = {(case, a): [] for case, _, _ in cases for a in ALGORITHMS}
    for _ in range(args.rounds):
        for case, fn, calls in cases:
            for algorithm, enabled in ALGORITHMS.items():
                old = minidl._C._set_conv_winograd(enabled)
                try:
                    times[case, algorithm].append(per_call_ms(fn, calls))
                finally:
                    minidl._C._set_conv_winograd(old)
    print(f"{args.threads} thread(s), medians of {args.rounds} alternated rounds (ms)\n")
    print("| case | im2col | winograd | im2col / winograd |\n| --- | ---: | ---: | ---: |")
    for case, _, _ in cases:
        a, b = (statistics.median(times[case, k]) for k in ALGORITHMS)
        print(f"| {case} | {a:.3f} | {b:.3f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
