"""Times the convnet block MaxPool2d(2) -> BatchNorm2d -> ReLU, forward + backward, float32 channels-last, one
thread: the fused op vs the unfused minidl ops vs torch (autograd). Medians of alternating calls, in ms.

    PYTHONPATH=src python tools/measure_block.py [--calls 60]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import minidl  # noqa: F401  (registers torch.ops.minidl)
from minidl.kernels import cpp

SHAPES = [(100, 32, 12, 12), (200, 32, 12, 12), (100, 64, 4, 4), (200, 64, 4, 4)]
K = [2, 2]


def runners(shape):
    n, c, h, w = shape
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    g = torch.randn(n, c, h // 2, w // 2).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.rand(c) + 0.5, torch.randn(c)
    rm, rv, gw, gb = torch.zeros(c), torch.ones(c), torch.zeros(c), torch.zeros(c)

    def fused():
        y, p, a, m, s = cpp.pool_norm_relu_forward(x, K, K, weight, bias, rm, rv, True, 0.1, 1e-5)
        return cpp.pool_norm_relu_backward(g, x, y, p, a, K, K, weight, m, s, gw, gb, True)

    def unfused():
        p, idx = cpp.maxpool2d_forward(x, K, K)
        z, m, s = cpp.batch_norm_forward(p, weight, bias, rm, rv, True, 0.1, 1e-5)
        y = cpp.relu_forward(z)
        gz = cpp.relu_backward(g, y)
        gp = cpp.batch_norm_backward(gz, p, weight, m, s, gw, gb, True)
        return cpp.maxpool2d_backward(gp, x, idx, K, K)

    tw, tb = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    trm, trv = rm.clone(), rv.clone()

    def torch_chain():
        xr = x.detach().requires_grad_()
        with torch.enable_grad():
            y = F.relu(F.batch_norm(F.max_pool2d(xr, 2), trm, trv, tw, tb, True, 0.1, 1e-5))
            y.backward(g)
        return xr.grad

    return {"fused": fused, "unfused": unfused, "torch": torch_chain}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    print(f"{'shape':>20} {'fused':>8} {'unfused':>8} {'torch':>8}   (ms, fwd+bwd, median of {args.calls})")
    for shape in SHAPES:
        run = runners(shape)
        times = {k: [] for k in run}
        for f in run.values():
            f()
        for _ in range(args.calls):
            for k, f in run.items():  # alternate, so that noise falls on every variant alike
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{str(shape):>20} {med['fused']:8.3f} {med['unfused']:8.3f} {med['torch']:8.3f}")


if __name__ == "__main__":
    main()
