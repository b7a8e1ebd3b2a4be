"""The calls section: what one cpp op call costs through torch.ops.minidl and through minidl._C.direct."""
import importlib

import torch

import minidl

from .config import DISK_SIZES, MOMENTUM
from .measure import Variant, add_speedups, measure, record
from .nets import build_minidl_net, mlp_arguments
from .report import progress


def tensors_in(args):
    """The tensors among call arguments, also those inside lists."""
    return [t for a in args for t in (a if isinstance(a, list) else [a]) if isinstance(t, torch.Tensor)]


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
        "mlp_forward": (x, *mlp_arguments(net)),
        "sgd_step_": (params, grads, buffers, 1e-9, MOMENTUM, 0.0, True),
    }
    return [(f"{name} ({len(tensors_in(a))} tensors)",
             [Variant("torch.ops", lambda n=name, a=a: getattr(torch.ops.minidl, n).default(*a)),
              Variant("direct", lambda n=name, a=a: getattr(direct, n)(*a))])
            for name, a in args.items()]


def run_calls(cfg, threads, device, sync):
    """Per-call cost of the cpp ops: torch.ops.minidl vs minidl._C.direct, on the same kernels."""
    if not minidl.cpp_available():
        return []
    out = []
    for case, variants in call_variants(device):
        progress(f"call {case}, {threads} thread(s)")
        stats = measure(variants, cfg["repeats"], cfg["target"], sync)
        add_speedups(stats, reference="torch.ops")
        out += record("calls", case, threads, device, stats, reference="torch.ops")
    return out
