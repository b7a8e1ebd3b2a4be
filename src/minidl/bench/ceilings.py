"""The machine's limits: GEMM rate (torch.mm) and copy bandwidth (Tensor.copy_)."""
import torch

from .measure import Variant, measure, record


def gemm_ceiling(n, device):
    """(variant, flops): torch.mm of two n x n float32 matrices into a preallocated output."""
    a, b, c = (torch.randn(n, n, device=device) for _ in range(3))
    return Variant("ceiling", lambda: torch.mm(a, b, out=c)), 2 * n ** 3


def copy_ceiling(n, device):
    """(variant, bytes read + written): Tensor.copy_ of n float32 elements into a preallocated tensor."""
    src, dst = torch.randn(n, device=device), torch.zeros(n, device=device)
    return Variant("ceiling", lambda: dst.copy_(src)), 2 * 4 * n


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
