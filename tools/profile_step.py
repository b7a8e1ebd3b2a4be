"""Where one minidl training step of a study model goes, per op: torch.profiler's self CPU time of every
ATen and minidl op, or (--clock wall) the wall time inside each of minidl's kernel calls.

    python tools/profile_step.py convnet [--steps 100] [--threads 1] [--backend python] [--clock wall]

The wall clock suits the Python fallback, whose many small ops the profiler adds work to.
"""
import argparse
import collections
import resource
import time

import torch
from torch.profiler import profile

import minidl
from minidl import backend
from minidl.pairs import MODELS, build_model
from minidl.pairs.train import TrainConfig
from minidl.pairs.trainers import MinidlTrainer


def study_step(model):
    """One training step of a study model at batch 100 as the study takes it (an epoch of one batch), seeded."""
    torch.manual_seed(0)
    trainer = MinidlTrainer(build_model(model, "minidl"), TrainConfig(cosine=False), "cpu")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 2, 14, 14, generator=g), torch.randint(0, 2, (100,), generator=g)
    c, order = torch.randint(0, 10, (100, 2), generator=g), torch.arange(100)
    return lambda: trainer.epoch(x, y, c, order)


def profiled(run, steps):
    """[(op, calls, seconds)] of self CPU time under torch.profiler, and their total."""
    with profile() as prof:
        run(steps)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    rows = [(e.key, e.count, e.self_cpu_time_total / 1e6) for e in events]
    return rows, sum(r[2] for r in rows)


def timed_kernels(run, steps):
    """[(kernel, calls, seconds)] of wall time inside each call of the backend's kernels (a kernel called
    by another counts in its caller), and the steps' whole wall time."""
    ops, spent, calls, depth = backend.ops, collections.Counter(), collections.Counter(), [0]
    originals = {name: getattr(ops, name) for name in dir(ops)
                 if not name.startswith("_") and callable(getattr(ops, name))}

    def wrapped(name, fn):
        def call(*args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[name] += time.perf_counter() - start
                    calls[name] += 1
        return call
    for name, fn in originals.items():
        setattr(ops, name, wrapped(name, fn))
    try:
        start = time.perf_counter()
        run(steps)
        total = time.perf_counter() - start
    finally:
        for name, fn in originals.items():
            setattr(ops, name, fn)
    rows = sorted(((name, calls[name], s) for name, s in spent.items()), key=lambda r: -r[2])
    outside = total - sum(r[2] for r in rows)
    return rows + [("(outside the kernels: modules, trainer, torch ops)", steps, outside)], total


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=list(MODELS))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", choices=["cpp", "python"], default=None, help="default: minidl's own choice")
    p.add_argument("--clock", choices=["profiler", "wall"], default="profiler")
    args = p.parse_args()
    if args.backend:
        minidl.set_backend(args.backend)
    torch.set_num_threads(args.threads)
    step = study_step(args.model)

    def run(steps):
        for _ in range(steps):
            step()
    run(20)  # warm up: caches, allocator, Adam's state
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    rows, total = (profiled if args.clock == "profiler" else timed_kernels)(run, args.steps)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
    what = ("of op time per step (self CPU time under the profiler" if args.clock == "profiler"
            else "of wall time per step (time inside each kernel call")
    ms = 1000 / args.steps
    print(f"{args.model}, batch 100, {args.threads} thread(s), {minidl.get_backend()} kernels: "
          f"{total * ms:.2f} ms {what}, {args.steps} steps); {faults:.0f} page faults per step\n")
    print("| op | calls / step | ms / step | share |\n| --- | ---: | ---: | ---: |")
    for name, count, seconds in rows[:12] + ([rows[-1]] if args.clock == "wall" and len(rows) > 12 else []):
        print(f"| {name} | {count // args.steps} | {seconds * ms:.3f} | {100 * seconds / total:.0f} % |")


if __name__ == "__main__":
    main()
