"""The timing method (see the package docstring): calibrated loops, variants timed in turn, medians."""
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

import minidl


@dataclass
class Variant:
    """One implementation to time: a no-argument callable, and the mode it runs in."""

    name: str
    fn: Callable[[], object]
    backend: Optional[str] = None  # the minidl backend to select before timing it
    grad: bool = False  # autograd on (torch) or off (minidl)


def make_sync(device):
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def timed(fn, n, sync):
    """Seconds taken by n calls of fn, the device's queue drained before and after."""
    sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return time.perf_counter() - start


def calibrate(fn, target, sync, max_inner=1_000_000):
    """Warm fn up; return how many calls make one measurement last about `target` seconds."""
    n, t = 1, timed(fn, 1, sync)
    if t >= target:  # a slow call, or a first one that paid for set-up (cuBLAS handles, lazy kernel
        t = timed(fn, 1, sync)  # loading on a GPU): only a second slow call means one call per loop
        if t >= target:
            return 1
    while t < target / 2 and n < max_inner:
        n = min(max_inner, max(2 * n, int(n * target / 2 / max(t, 1e-9))))
        t = timed(fn, n, sync)
    return max(1, min(max_inner, round(n * target / t)))


def backend_names():
    """The minidl backends that load here: cpp where the extension does, and python."""
    return (["cpp"] if minidl.cpp_available() else []) + ["python"]


class Mode:
    """Context: select a variant's minidl backend and grad mode."""

    def __init__(self, variant):
        self.variant, self.grad_ctx = variant, torch.set_grad_enabled(variant.grad)

    def __enter__(self):
        if self.variant.backend is not None:
            minidl.set_backend(self.variant.backend)
        self.grad_ctx.__enter__()

    def __exit__(self, *exc):
        self.grad_ctx.__exit__(*exc)


def measure(variants, repeats, target, sync):
    """Time each variant `repeats` times, all variants in turn within each repeat; {name: stats}."""
    inner = {}
    for v in variants:
        with Mode(v):
            inner[v.name] = calibrate(v.fn, target, sync)
    times = {v.name: [] for v in variants}
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(variants)
            for v in variants[k:] + variants[:k]:  # rotate the order: no variant always goes first
                with Mode(v):
                    v.fn()  # untimed: the timed calls then follow a call of their own (see Method)
                    times[v.name].append(timed(v.fn, inner[v.name], sync) / inner[v.name])
    finally:
        if gc_enabled:
            gc.enable()
    return {name: {"repeats_s": ts, "median_s": statistics.median(ts), "inner": inner[name]}
            for name, ts in times.items()}


def split_ceiling(stats, work, ceiling_work, key):
    """Remove the ceiling's stats; add `key` to the others: the median over repeats of
    100 * (work / variant time) / (ceiling_work / ceiling time)."""
    ceiling = stats.pop("ceiling")
    for s in stats.values():
        s[key] = 100 * statistics.median((work / t) / (ceiling_work / tc)
                                         for t, tc in zip(s["repeats_s"], ceiling["repeats_s"]))
        s["ceiling_median_s"] = ceiling["median_s"]


def add_speedups(stats, reference="torch"):
    """Add x_vs_torch: the median over repeats of reference time / variant time."""
    if reference not in stats:
        return
    ref = stats[reference]["repeats_s"]
    for s in stats.values():
        s["x_vs_torch"] = statistics.median(a / b for a, b in zip(ref, s["repeats_s"]))


def record(section, case, threads, device, stats, **info):
    """Flat JSON records, one per variant."""
    return [dict(section=section, case=case, threads=threads, device=device, variant=name, **info, **s)
            for name, s in stats.items()]
