"""Where one minidl training step of a study model goes, per op (torch.profiler's self CPU time).

    python tools/profile_step.py convnet [--steps 100] [--threads 1]
"""
import argparse

import torch
from torch.profiler import profile

from minidl.pairs import MODELS, build_model
from minidl.pairs.train import TrainConfig
from minidl.pairs.trainers import MinidlTrainer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=list(MODELS))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    trainer = MinidlTrainer(build_model(args.model, "minidl"), TrainConfig(cosine=False), "cpu")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 2, 14, 14, generator=g), torch.randint(0, 2, (100,), generator=g)
    c, order = torch.randint(0, 10, (100, 2), generator=g), torch.arange(100)
    for _ in range(20):  # warm up: caches, allocator, Adam's state
        trainer.epoch(x, y, c, order)
    with profile() as prof:
        for _ in range(args.steps):
            trainer.epoch(x, y, c, order)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / args.steps / 1000
    print(f"{args.model}, batch 100, {args.threads} thread(s): {total:.2f} ms of op time per step "
          f"(self CPU time under the profiler, {args.steps} steps)\n")
    print("| op | calls / step | ms / step | share |\n| --- | ---: | ---: | ---: |")
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)
    for e in rows[:12]:
        ms = e.self_cpu_time_total / args.steps / 1000
        print(f"| {e.key} | {e.count // args.steps} | {ms:.3f} | {100 * ms / total:.0f} % |")


if __name__ == "__main__":
    main()
