"""Every minidl op on CUDA tensors once (the op tests' cases, then the dense ops at awkward sizes and
alignments), and a training step of each study model: run it under `compute-sanitizer --tool memcheck`
with PYTORCH_NO_CUDA_MEMORY_CACHING=1, so that every tensor is its own allocation (tools/gpu_check.sh
does), to catch out-of-bounds or uninitialised accesses in the CUDA kernels. Prints "memcheck workload
ok" at the end."""
import os
import sys

import torch

import minidl
from minidl.pairs.models import MODELS, build_model
from minidl.pairs.train import TrainConfig
from minidl.pairs.trainers import MinidlTrainer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from op_cases import op_cases  # noqa: E402  (the tests' folder is not a package)

DEV = "cuda"


def study_steps():
    """One training step of each study model, as the study takes it, on a batch of 7 (memcheck is slow)."""
    for name in MODELS:
        trainer = MinidlTrainer(build_model(name, "minidl"), TrainConfig(cosine=False), DEV)  # moves it
        x, y = torch.randn(7, 2, 14, 14, device=DEV), torch.randint(0, 2, (7,), device=DEV)
        c = torch.randint(0, 10, (7, 2), device=DEV)
        trainer.epoch(x, y, c, torch.arange(7, device=DEV))


def main():
    torch.manual_seed(0)
    ops = torch.ops.minidl
    for name, args in op_cases(DEV):
        getattr(ops, name)(*args)
    study_steps()
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
