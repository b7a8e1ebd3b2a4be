"""Every minidl op on CUDA tensors once, at awkward sizes and alignments: run it under
`compute-sanitizer --tool memcheck` (tools/gpu_check.sh does) to catch out-of-bounds or
uninitialised accesses in the CUDA kernels. Prints "memcheck workload ok" at the end."""
import torch

import minidl

DEV = "cuda"


def main():
    torch.manual_seed(0)
    ops = torch.ops.minidl
    for dtype in (torch.float32, torch.float64):
        for n in (1, 3, 5, 7, 1023, 4097):
            for offset in (0, 1):  # offset 1: a view whose data is not 16-byte aligned
                x = torch.randn(n + offset, dtype=dtype, device=DEV)[offset:]
                g = torch.randn(n + offset, dtype=dtype, device=DEV)[offset:]
                for fwd, bwd in ((ops.tanh_forward, ops.tanh_backward), (ops.relu_forward, ops.relu_backward)):
                    y = fwd(x)
                    bwd(g, y)
        x = torch.randn(7, 5, dtype=dtype, device=DEV)
        w = torch.randn(3, 5, dtype=dtype, device=DEV)
        b = torch.randn(3, dtype=dtype, device=DEV)
        y = ops.linear_forward(x, w, b)
        gw, gb = torch.zeros_like(w), torch.zeros_like(b)
        ops.linear_backward(torch.randn_like(y), x, w, gw, gb)
    for act in (minidl.Tanh, minidl.ReLU):
        hidden = minidl.Linear(25, 25, device=DEV)  # used twice: SGD then steps its entries in turn
        for layers in ([minidl.Linear(2, 25, device=DEV), act(), hidden, act(), minidl.Linear(25, 2, device=DEV)],
                       [minidl.Linear(2, 25, device=DEV), act(), hidden, act(), hidden, act(),
                        minidl.Linear(25, 2, device=DEV)]):
            net = minidl.Sequential(*layers)
            loss, opt = minidl.LossMSE(), minidl.SGD(net.param(), lr=0.1, momentum=0.9, weight_decay=1e-3)
            for batch in (1, 3, 100):
                x, t = torch.randn(batch, 2, device=DEV), torch.randn(batch, 2, device=DEV)
                loss.forward(net.forward(x), t)
                net.backward(loss.backward())
                opt.step(zero_grad=batch != 3)
                if batch == 3:
                    opt.zero_grad()
    torch.cuda.synchronize()
    print("memcheck workload ok")


if __name__ == "__main__":
    with torch.no_grad():
        main()
