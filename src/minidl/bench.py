"""Benchmarks: minidl's kernels and training steps against PyTorch, and the machine's own ceilings.

    python -m minidl.bench                      # everything, 1 and 2 threads (about 3 minutes)
    python -m minidl.bench --quick              # a subset at 1 thread, under a minute
    python -m minidl.bench --sections ops,train --threads 2 --json out.json
    python -m minidl.bench --device cuda        # on the GPU (adds 2^26 elements; timings synchronise)

Sections: ceilings (GEMM and copy), calls (one cpp op call through torch.ops.minidl vs through
minidl._C.direct, the per-call cost that small networks pay), ops (each op forward + backward),
train (the disk network's training step), mlp (an MLP 784-1024-1024-10's training step, beside the
same step without its SGD update and the step's matrix products alone).

Method. Every measurement is a perf_counter loop of `inner` calls (chosen so that one loop lasts
about `--target` seconds) after a warm-up; it is repeated, and the median is reported. The
variants being compared (minidl cpp, minidl python, torch) are timed in turn within each repeat,
in a rotating order, so that the host's drift in speed hits them all alike; each loop follows one
untimed call of its own variant, so that every timed call comes after a call like it, as in a
training loop, never first after another variant (whose data has pushed its own out of the
caches: in one run, an MLP step's first call after a switch took 20 % longer than the next ones); "x vs torch" is the
median over repeats of the per-repeat ratio torch time / variant time (> 1: faster than torch).
Fractions of the machine's limit ("% GEMM peak", "% copy BW") come from a ceiling timed in the
same rotation as the variants (a torch.mm of n^3 for matrix work, a Tensor.copy_ of the same
number of elements for elementwise work), as the median over repeats of the per-repeat ratio: a
shared host that slows down for a while slows the ceiling alike. The ceilings section reports the
same two ceilings on their own (best repeat), at each thread count.

minidl runs with autograd off (torch.no_grad, as its README does); torch runs with autograd on and
resets .grad to None before each backward (what optimizer.zero_grad() does by default), so that
it writes gradients rather than accumulating them. Prints markdown tables; writes every raw repeat
and median to JSON (--json, default bench.json).
"""
import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a script (python minidl/bench.py): keep minidl/ itself off sys.path, so that its files
    # cannot shadow top-level modules, and import the installed minidl.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import argparse
import datetime
import gc
import importlib
import json
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import minidl
from minidl import backend as _backend
from minidl.kernels import python as _python_kernels

SECTIONS = ("ceilings", "calls", "ops", "train", "mlp")
DISK_SIZES = (2, 25, 25, 25, 2)
MLP_SIZES = (784, 1024, 1024, 10)
LR, MOMENTUM = 0.01, 0.9
CHECK_STEPS, CHECK_RTOL, CHECK_ATOL = 3, 1e-4, 1e-6

# Sizes and repeats per mode. Linear cases are (batch, in, out); a case whose fwd+bwd does more than
# `big_flop` flops runs `big_repeats` times.
CONFIGS = {
    "full": dict(
        linear=[(1, 25, 25), (100, 25, 25), (1000, 25, 25), (256, 1024, 1024), (4096, 4096, 4096)],
        elementwise=[2 ** 10, 2 ** 16, 2 ** 24], disk_batches=[1, 100, 1000], mlp_batch=256,
        mlp_sizes=MLP_SIZES, gemm_n=2048, copy_n=2 ** 26, repeats=9, big_repeats=3, big_flop=1e11,
        target=0.05, threads=[1, 2]),
    "quick": dict(
        linear=[(1, 25, 25), (100, 25, 25), (1000, 25, 25), (256, 1024, 1024)],
        elementwise=[2 ** 10, 2 ** 16, 2 ** 24], disk_batches=[1, 100, 1000], mlp_batch=256,
        mlp_sizes=MLP_SIZES, gemm_n=2048, copy_n=2 ** 26, repeats=5, big_repeats=3, big_flop=1e11,
        target=0.02, threads=[1]),
    "smoke": dict(  # for the tests: tiny sizes, seconds in all
        linear=[(1, 25, 25), (100, 25, 25)], elementwise=[2 ** 10], disk_batches=[1, 100],
        mlp_batch=8, mlp_sizes=(784, 64, 64, 10), gemm_n=128, copy_n=2 ** 16, repeats=2,
        big_repeats=2, big_flop=1e11, target=0.001, threads=[1]),
}


# ---------------------------------------------------------------------------------------------
# Timing


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


class _Mode:
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
        with _Mode(v):
            inner[v.name] = calibrate(v.fn, target, sync)
    times = {v.name: [] for v in variants}
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(variants)
            for v in variants[k:] + variants[:k]:  # rotate the order: no variant always goes first
                with _Mode(v):
                    v.fn()  # untimed: the timed calls then follow a call of their own (see Method)
                    times[v.name].append(timed(v.fn, inner[v.name], sync) / inner[v.name])
    finally:
        if gc_enabled:
            gc.enable()
    return {name: {"repeats_s": ts, "median_s": statistics.median(ts), "inner": inner[name]}
            for name, ts in times.items()}


def gemm_ceiling(n, device):
    """(variant, flops): torch.mm of two n x n float32 matrices into a preallocated output."""
    a, b, c = (torch.randn(n, n, device=device) for _ in range(3))
    return Variant("ceiling", lambda: torch.mm(a, b, out=c)), 2 * n ** 3


def copy_ceiling(n, device):
    """(variant, bytes read + written): Tensor.copy_ of n float32 elements into a preallocated tensor."""
    src, dst = torch.randn(n, device=device), torch.zeros(n, device=device)
    return Variant("ceiling", lambda: dst.copy_(src)), 2 * 4 * n


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


# ---------------------------------------------------------------------------------------------
# What is timed


def kernel_modules():
    """[(name, kernel module)]: minidl's cpp kernels (when the extension loads) and the Python fallback."""
    mods = []
    if _backend.cpp_available():
        mods.append(("cpp", importlib.import_module("minidl.kernels.cpp")))
    mods.append(("python", _python_kernels))
    return mods


def linear_variants(batch, n_in, n_out, device):
    """Linear forward + backward: minidl kernels and torch.nn.functional.linear with autograd."""
    x, gy = torch.randn(batch, n_in, device=device), torch.randn(batch, n_out, device=device)
    w = torch.randn(n_out, n_in, device=device) / n_in ** 0.5
    b = torch.randn(n_out, device=device)
    variants = []
    for name, k in kernel_modules():
        gw, gb = torch.zeros_like(w), torch.zeros_like(b)

        def step(k=k, gw=gw, gb=gb):
            k.linear_forward(x, w, b)
            return k.linear_backward(gy, x, w, gw, gb)
        variants.append(Variant(name, step))
    tx, tw, tb = (t.clone().requires_grad_() for t in (x, w, b))

    def torch_step():
        tx.grad = tw.grad = tb.grad = None
        F.linear(tx, tw, tb).backward(gy)
    variants.append(Variant("torch", torch_step, grad=True))
    return variants


def elementwise_variants(op, n, device):
    """tanh or relu forward + backward: minidl kernels and torch.tanh / torch.relu with autograd."""
    x, gy = torch.randn(n, device=device), torch.randn(n, device=device)
    variants = []
    for name, k in kernel_modules():
        fwd, bwd = getattr(k, f"{op}_forward"), getattr(k, f"{op}_backward")
        variants.append(Variant(name, lambda fwd=fwd, bwd=bwd: bwd(gy, fwd(x))))
    tx, torch_op = x.clone().requires_grad_(), getattr(torch, op)

    def torch_step():
        tx.grad = None
        torch_op(tx).backward(gy)
    variants.append(Variant("torch", torch_step, grad=True))
    return variants


def build_minidl_net(sizes, device, seed):
    """Linear layers of the given widths, ReLU between them, the last one plain; seeded initialisation."""
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(minidl.Linear(a, b, device=device))
        if i < len(sizes) - 2:
            mods.append(minidl.ReLU())
    return minidl.Sequential(*mods)


def torch_copy(net):
    """The torch.nn twin of a minidl Sequential of Linear and ReLU, with the same weights."""
    mods = []
    for m in net.modules:
        if isinstance(m, minidl.Linear):
            lin = torch.nn.Linear(m.in_features, m.out_features, device=m.weight.device)
            with torch.no_grad():
                lin.weight.copy_(m.weight)
                lin.bias.copy_(m.bias)
            mods.append(lin)
        else:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def minidl_step_fn(net, x, t, update=True):
    """One minidl training step (forward, loss, backward, SGD step); returns the loss. With update=False,
    no SGD step: timed beside the whole step, it shows what the update costs (gradients then keep
    accumulating and the weights never change)."""
    crit, opt = minidl.LossMSE(), minidl.SGD(net.param(), lr=LR, momentum=MOMENTUM)

    def step():  # gradients start at zero; step(zero_grad=True) zeroes them for the next step in its pass
        loss = crit.forward(net.forward(x), t)
        net.backward(crit.backward(), input_grad=False)
        if update:
            opt.step(zero_grad=True)
        return loss
    return step


def torch_step_fn(net, x, t):
    """One torch.nn + autograd + torch.optim.SGD training step; returns the loss."""
    crit, opt = torch.nn.MSELoss(), torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        loss = crit(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


def matmuls_fn(sizes, batch, device):
    """Only the matrix products of a training step, each through torch.mm or addmm_ in the shapes and
    layouts of minidl's step: y = x @ W.T forward, gW += g.T @ x and gx = g @ W backward (the first
    layer's gx left out), into preallocated tensors. What BLAS alone allows the step on this machine."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    xs = [torch.rand(batch, n_in, device=device) for n_in, _ in pairs]
    ws = [torch.randn(n_out, n_in, device=device) for n_in, n_out in pairs]
    gws = [torch.zeros_like(w) for w in ws]
    ys = [torch.empty(batch, n_out, device=device) for _, n_out in pairs]
    gs = [torch.randn(batch, n_out, device=device) for _, n_out in pairs]
    gxs = [None] + [torch.empty_like(x) for x in xs[1:]]  # the first layer's gx is left out

    def run():
        for x, w, y in zip(xs, ws, ys):
            torch.mm(x, w.t(), out=y)
        for k in reversed(range(len(pairs))):
            gws[k].addmm_(gs[k].t(), xs[k])
            if k > 0:
                torch.mm(gs[k], ws[k], out=gxs[k])
    return run


def train_variants(sizes, batch, device, seed=0, without_update=False):
    """Training-step variants (minidl cpp, minidl python, torch) from the same initial weights; with
    without_update, also "cpp fwd+bwd" (the cpp step without its SGD update) where the extension loads,
    and "matmuls alone" (the step's matrix products and nothing else, see matmuls_fn)."""
    x, t = torch.rand(batch, sizes[0], device=device), torch.rand(batch, sizes[-1], device=device)
    variants = []
    names = [name for name, _ in kernel_modules()]
    for name in names:
        variants.append(Variant(name, minidl_step_fn(build_minidl_net(sizes, device, seed), x, t), backend=name))
    if without_update and "cpp" in names:
        variants.append(Variant("cpp fwd+bwd", minidl_step_fn(build_minidl_net(sizes, device, seed), x, t, update=False),
                                backend="cpp"))
    if without_update:
        variants.append(Variant("matmuls alone", matmuls_fn(sizes, batch, device)))
    variants.append(Variant("torch", torch_step_fn(torch_copy(build_minidl_net(sizes, device, seed)), x, t),
                            grad=True))
    return variants


def check_losses(variants, steps=CHECK_STEPS):
    """Run `steps` steps of each variant; assert they give the same losses. Returns the check's record."""
    losses = {}
    for v in variants:
        with _Mode(v):
            losses[v.name] = [v.fn().detach().item() for _ in range(steps)]
    ref = torch.tensor(losses[variants[-1].name])
    ok = all(torch.allclose(torch.tensor(ls), ref, rtol=CHECK_RTOL, atol=CHECK_ATOL) for ls in losses.values())
    assert ok, f"training-step losses differ between variants: {losses}"
    return {"losses": losses, "steps": steps, "rtol": CHECK_RTOL, "ok": ok}


def step_flops(sizes, batch):
    """Matmul flops of one training step: forward, weight gradients, and input gradients but the first layer's."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * batch * (2 * sum(macs) + sum(macs[1:]))


# ---------------------------------------------------------------------------------------------
# Sections: each returns a list of result records


def record(section, case, threads, device, stats, **info):
    """Flat JSON records, one per variant."""
    return [dict(section=section, case=case, threads=threads, device=device, variant=name, **info, **s)
            for name, s in stats.items()]


def run_ceilings(cfg, threads, device, sync):
    """GEMM GFLOP/s (torch.mm, n^3, float32) and copy bandwidth (bytes read + written per second)."""
    n, m = cfg["gemm_n"], cfg["copy_n"]
    gemm_variant, flop = gemm_ceiling(n, device)
    gemm = {"torch.mm": measure([gemm_variant], cfg["repeats"], cfg["target"], sync)["ceiling"]}
    del gemm_variant
    copy_variant, nbytes = copy_ceiling(m, device)
    copy = {"copy_": measure([copy_variant], cfg["repeats"], cfg["target"], sync)["ceiling"]}
    del copy_variant
    # A ceiling is what the machine can do: its rate is taken from the best repeat, not the median.
    gemm_rate = flop / min(gemm["torch.mm"]["repeats_s"]) / 1e9
    copy_rate = nbytes / min(copy["copy_"]["repeats_s"]) / 1e9
    return (record("ceilings", f"gemm {n}^3", threads, device, gemm, gflops=gemm_rate) +
            record("ceilings", f"copy {m} float32", threads, device, copy, gbs=copy_rate))


def call_variants(device):
    """[(call, [Variant])]: the cpp ops the disk network's step makes, at batch 1, called through
    torch.ops.minidl (boxed) and through minidl._C.direct (what the cpp backend uses)."""
    direct = importlib.import_module("minidl._C").direct
    net = build_minidl_net(DISK_SIZES, device, 0)
    x, h = torch.rand(1, DISK_SIZES[0], device=device), torch.rand(1, DISK_SIZES[1], device=device)
    params, grads = [p for p, _ in net.param()], [g for _, g in net.param()]
    buffers = [torch.zeros_like(p) for p in params]
    args = {
        "relu_forward": (h,),
        "mlp_forward": (x, net._weights, net._biases, net._codes),
        "sgd_step_": (params, grads, buffers, 1e-9, MOMENTUM, 0.0, True),
    }
    return [(f"{name} ({len(_tensors_in(a))} tensors)",
             [Variant("torch.ops", lambda n=name, a=a: getattr(torch.ops.minidl, n).default(*a)),
              Variant("direct", lambda n=name, a=a: getattr(direct, n)(*a))])
            for name, a in args.items()]


def _tensors_in(args):
    """The tensors among call arguments, also those inside lists."""
    return [t for a in args for t in (a if isinstance(a, list) else [a]) if isinstance(t, torch.Tensor)]


def run_calls(cfg, threads, device, sync):
    """Per-call cost of the cpp ops: torch.ops.minidl vs minidl._C.direct, on the same kernels."""
    if not _backend.cpp_available():
        return []
    out = []
    for case, variants in call_variants(device):
        progress(f"call {case}, {threads} thread(s)")
        stats = measure(variants, cfg["repeats"], cfg["target"], sync)
        add_speedups(stats, reference="torch.ops")
        out += record("calls", case, threads, device, stats, reference="torch.ops")
    return out


def run_ops(cfg, threads, device, sync):
    """Each op forward + backward: minidl cpp vs minidl python vs torch with autograd."""
    out = []
    gemm, gemm_flop = gemm_ceiling(cfg["gemm_n"], device)
    for batch, n_in, n_out in cfg["linear"]:
        flop = 6 * batch * n_in * n_out
        repeats = cfg["big_repeats"] if flop > cfg["big_flop"] else cfg["repeats"]
        case = f"{batch}x{n_in}->{n_out}"
        progress(f"linear {case}, {threads} thread(s)")
        stats = measure(linear_variants(batch, n_in, n_out, device) + [gemm], repeats, cfg["target"], sync)
        split_ceiling(stats, flop, gemm_flop, "pct_gemm_peak")
        add_speedups(stats)
        for s in stats.values():
            s["gflops"] = flop / s["median_s"] / 1e9
        out += record("ops", case, threads, device, stats, op="linear", flop=flop)
    for op in ("tanh", "relu"):
        for n in cfg["elementwise"]:
            progress(f"{op} {n}, {threads} thread(s)")
            copy, copy_bytes = copy_ceiling(n, device)
            stats = measure(elementwise_variants(op, n, device) + [copy], cfg["repeats"], cfg["target"], sync)
            nbytes = 5 * 4 * n  # forward reads x, writes y; backward reads gy and y, writes gx
            split_ceiling(stats, nbytes, copy_bytes, "pct_copy_bw")
            add_speedups(stats)
            for s in stats.values():
                s["gelems"] = n / s["median_s"] / 1e9
                s["gbs"] = nbytes / s["median_s"] / 1e9
            out += record("ops", f"{op} {n}", threads, device, stats, op=op, n=n, bytes=nbytes)
    return out


def run_training(section, nets, cfg, threads, device, sync, checks):
    """Training steps of each (name, sizes, batch) net: check the losses agree, then time them."""
    out = []
    gemm, gemm_flop = gemm_ceiling(cfg["gemm_n"], device)
    for name, sizes, batch in nets:
        case = f"{name} b{batch}"
        progress(f"{case}, {threads} thread(s)")
        check = check_losses(train_variants(sizes, batch, device))
        checks.append(dict(case=case, threads=threads, device=device, **check))
        print(f"loss check {case} ({threads} thread(s)): " + ", ".join(
            f"{v} {ls[-1]:.6g}" for v, ls in check["losses"].items())
            + f" after {check['steps']} steps: {'ok' if check['ok'] else 'MISMATCH'} (rtol {CHECK_RTOL:g})")
        variants = train_variants(sizes, batch, device, without_update=section == "mlp")
        stats = measure(variants + [gemm], cfg["repeats"], cfg["target"], sync)
        flop = step_flops(sizes, batch)
        split_ceiling(stats, flop, gemm_flop, "pct_gemm_peak")
        add_speedups(stats)
        for s in stats.values():
            s["gflops"] = flop / s["median_s"] / 1e9
        out += record(section, case, threads, device, stats, net="-".join(map(str, sizes)), batch=batch, flop=flop)
    return out


# ---------------------------------------------------------------------------------------------
# Output


def fmt_time(seconds):
    """A duration with a readable unit."""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt(value, spec=".3g"):
    """A number, or '-' for None."""
    return "-" if value is None else format(value, spec)


def spread(s):
    """(max - min) / median of the repeats, in percent."""
    return f"{100 * (max(s['repeats_s']) - min(s['repeats_s'])) / s['median_s']:.0f}%"


def md_table(headers, rows):
    """A markdown table, columns padded to line up."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def tables(section, recs, threads, device):
    """Markdown for one section's records at one thread count."""
    title = f"\n### {section} ({device}, {threads} thread{'s' if threads > 1 else ''})\n"
    if section == "ceilings":
        rows = [(r["case"], fmt_time(r["median_s"]), fmt_time(min(r["repeats_s"])), spread(r),
                 f"{r['gflops']:.1f} GFLOP/s" if "gflops" in r else f"{r['gbs']:.1f} GB/s") for r in recs]
        return title + md_table(["ceiling", "median", "best", "spread", "rate (best repeat)"], rows)
    if section == "calls":
        rows = [(r["case"], r["variant"], fmt_time(r["median_s"]), spread(r), fmt(r.get("x_vs_torch"), ".2f"))
                for r in recs]
        return title + "\nOne call of a cpp op on the disk network's tensors (batch 1)\n\n" + md_table(
            ["call", "path", "median", "spread", "× vs torch.ops"], rows)
    if section == "ops":
        lin = [r for r in recs if r["op"] == "linear"]
        ew = [r for r in recs if r["op"] != "linear"]
        out = title + "\nLinear forward + backward (6·N·in·out flops)\n\n" + md_table(
            ["N×in→out", "variant", "median", "spread", "GFLOP/s", "% GEMM peak", "× vs torch"],
            [(r["case"], r["variant"], fmt_time(r["median_s"]), spread(r), fmt(r["gflops"]),
              fmt(r["pct_gemm_peak"], ".1f"), fmt(r.get("x_vs_torch"), ".2f")) for r in lin])
        if ew:
            out += "\n\nElementwise forward + backward (bytes: 5 float32 per element)\n\n" + md_table(
                ["op", "n", "variant", "median", "spread", "G elem/s", "GB/s", "% copy BW", "× vs torch"],
                [(r["op"], r["n"], r["variant"], fmt_time(r["median_s"]), spread(r), fmt(r["gelems"]),
                  fmt(r["gbs"]), fmt(r["pct_copy_bw"], ".1f"), fmt(r.get("x_vs_torch"), ".2f")) for r in ew])
        return out
    head = "Training step (forward, MSE loss, backward, SGD momentum step)"
    if any(r["variant"] == "cpp fwd+bwd" for r in recs):
        head += "; cpp fwd+bwd: the cpp step without its SGD update"
    if any(r["variant"] == "matmuls alone" for r in recs):
        head += "; matmuls alone: only the step's matrix products, through torch.mm and addmm_"
    return title + f"\n{head}\n\n" + md_table(
        ["net", "batch", "variant", "median", "spread", "steps/s", "GFLOP/s", "% GEMM peak", "× vs torch"],
        [(r["net"], r["batch"], r["variant"], fmt_time(r["median_s"]), spread(r), f"{1 / r['median_s']:.0f}",
          fmt(r["gflops"]), fmt(r["pct_gemm_peak"], ".1f"), fmt(r.get("x_vs_torch"), ".2f")) for r in recs])


def progress(msg):
    """A progress line on stderr."""
    print(f"  ... {msg}", file=sys.stderr, flush=True)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device, threads):
    """What ran where: CPU, cores, torch, minidl backends, threads, date."""
    info = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "minidl": minidl.__version__, "minidl_file": os.path.dirname(minidl.__file__),
        "cpp_available": _backend.cpp_available(), "cpp_error": _backend._cpp_error, "device": device,
        "threads": threads, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def header(info):
    """The machine-info header, in markdown."""
    cpp = "yes" if info["cpp_available"] else f"no ({info['cpp_error']})"
    lines = ["# minidl benchmark", "",
             f"- CPU: {info['cpu']}, {info['cores']} cores" + (f"; GPU: {info['gpu']}" if "gpu" in info else ""),
             f"- torch {info['torch']}, Python {info['python']}, minidl {info['minidl']} ({info['minidl_file']})",
             f"- minidl backends: cpp {cpp}; python yes",
             f"- device {info['device']}, threads {','.join(map(str, info['threads']))}, {info['date']}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m minidl.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a subset (no 4096 linear, fewer repeats, 1 thread)")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny sizes, for the tests
    p.add_argument("--threads", help="thread counts, comma-separated (default 1,2; 1 with --quick or --device cuda)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, help="repeats per measurement (default 9; 5 with --quick)")
    p.add_argument("--target", type=float, help="seconds per measurement loop (default 0.05; 0.02 with --quick)")
    p.add_argument("--json", default="bench.json", help="where to write the results (default bench.json)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        try:
            args.threads = [int(t) for t in args.threads.split(",")]
        except ValueError:
            p.error(f"--threads: expected positive integers separated by commas, got {args.threads!r}")
        if min(args.threads) < 1:
            p.error(f"--threads: expected positive integers separated by commas, got {args.threads}")
    for name in ("repeats", "target"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    # The run takes minutes: a --json path that can't be written fails now, not after it.
    folder = os.path.dirname(os.path.abspath(args.json))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        p.error(f"--json {args.json}: folder {folder} does not exist or is not writable")
    return args


def make_config(args):
    """The sizes and repeats for the chosen mode, with the command line's overrides."""
    cfg = dict(CONFIGS["smoke" if args.smoke else "quick" if args.quick else "full"])
    if args.device == "cuda":
        # A GPU's elementwise kernels need 2^26 elements to fill it and reach its bandwidth; the host
        # threads only launch work, so one thread count is enough.
        cfg["elementwise"] = cfg["elementwise"] + ([2 ** 26] if not args.smoke else [])
        cfg["threads"] = [1]
    if args.threads:
        cfg["threads"] = args.threads
    if args.repeats is not None:
        cfg["repeats"] = args.repeats
    if args.target is not None:
        cfg["target"] = args.target
    return cfg


def run_threads(cfg, args, threads, sync, checks):
    """Every selected section at one thread count; returns its records."""
    torch.set_num_threads(threads)
    recs = []
    if "ceilings" in args.sections:
        progress(f"ceilings, {threads} thread(s)")
        recs += run_ceilings(cfg, threads, args.device, sync)
        print(tables("ceilings", recs, threads, args.device), flush=True)
    sections = {
        "calls": lambda: run_calls(cfg, threads, args.device, sync),
        "ops": lambda: run_ops(cfg, threads, args.device, sync),
        "train": lambda: run_training("train", [("disk", DISK_SIZES, b) for b in cfg["disk_batches"]],
                                      cfg, threads, args.device, sync, checks),
        "mlp": lambda: run_training("mlp", [("mlp", cfg["mlp_sizes"], cfg["mlp_batch"])],
                                    cfg, threads, args.device, sync, checks),
    }
    for name in ("calls", "ops", "train", "mlp"):
        if name in args.sections:
            new = sections[name]()
            print(tables(name, new, threads, args.device), flush=True)
            recs += new
    return recs


def main(argv=None):
    """Run the benchmark; print markdown, write JSON; returns the exit status."""
    args = parse_args(argv)
    cfg = make_config(args)
    info = machine_info(args.device, cfg["threads"])
    print(header(info), flush=True)
    sync, start = make_sync(args.device), time.perf_counter()
    previous_threads, previous_backend = torch.get_num_threads(), minidl.get_backend()
    results, checks = [], []
    try:
        for threads in cfg["threads"]:
            results += run_threads(cfg, args, threads, sync, checks)
    finally:
        torch.set_num_threads(previous_threads)
        minidl.set_backend(previous_backend)
    elapsed = time.perf_counter() - start
    summary = {"machine": info, "config": {**cfg, "sections": args.sections,
                                           "mode": "smoke" if args.smoke else "quick" if args.quick else "full"},
               "results": results, "loss_checks": checks, "elapsed_s": elapsed}
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nran in {elapsed:.0f} s; wrote {os.path.abspath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
