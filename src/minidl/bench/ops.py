"""The ops section: each op forward + backward, minidl's backends against torch with autograd."""
import torch
import torch.nn.functional as F

import minidl
from minidl import backend

from .ceilings import copy_ceiling, gemm_ceiling
from .measure import Variant, add_speedups, backend_names, measure, record, split_ceiling
from .report import progress


def kernel_modules():
    """[(name, ops)]: the kernels of each backend that loads here (cpp where the extension does, python)."""
    previous, mods = minidl.get_backend(), []
    try:
        for name in backend_names():
            minidl.set_backend(name)
            mods.append((name, backend.ops))
    finally:
        minidl.set_backend(previous)
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
