"""Times a training step of examples/digits.py's convnet on an NCHW batch, with Conv2d's channels-last conversion
on (minidl's default) and off (the output following the input, torch's rule), alternated in one process.

    PYTHONPATH=src python tools/layout_ab.py [--rounds 5] [--steps 50] [--channels 1] [--threads 1]
"""
import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch

import minidl as dl
from minidl.nn import conv

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits.py"


def load_example():
    spec = importlib.util.spec_from_file_location("digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--channels", type=int, default=1, help="input channels (the first convolution's)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    for name in ("rounds", "steps", "channels", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    net = load_example().build_network("cpu", args.channels)
    criterion, optimizer = dl.CrossEntropyLoss(), dl.Adam(net.param(), lr=1e-3)
    x, y = torch.randn(100, args.channels, 14, 14), torch.randint(0, 10, (100,))

    def step():
        criterion.forward(net.forward(x), y)
        optimizer.zero_grad()
        net.backward(criterion.backward())
        optimizer.step()

    convert = conv.channels_last
    variants = {"channels-last (default)": convert, "as the input (NCHW)": lambda t: t}
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            conv.channels_last = fn
            for _ in range(5):
                step()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    conv.channels_last = convert
    print(f"digits convnet, batch 100, {args.channels}-channel NCHW input, {args.threads} thread(s), "
          f"{dl.get_backend()} kernels: ms per training step, median of {args.rounds} rounds\n")
    print("| Conv2d computes in | ms / step | min | max |\n| --- | ---: | ---: | ---: |")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {min(ts):.2f} | {max(ts):.2f} |")
    first, second = (statistics.median(ts) for ts in times.values())
    print(f"\nratio: {second / first:.2f}x")


if __name__ == "__main__":
    main()
