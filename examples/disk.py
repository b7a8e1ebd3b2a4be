"""The EE-559 mini-project test: classify points of [0,1]^2 as inside or outside a disk, with minidl only.

1,000 training and 1,000 test points, uniform in [0,1]^2; label 1 inside the disk of centre
(0.5, 0.5) and radius 1/sqrt(2 pi) (area 1/2), else 0. A 2-25-25-25-2 network, MSE on one-hot
targets, SGD with momentum; prints the loss per epoch and the final train and test errors.

    python examples/disk.py                     # one round, about a second
    python examples/disk.py --rounds 10         # mean +- std over 10 fresh rounds
    torchrun --standalone --nproc_per_node=2 examples/disk.py --distributed   # data-parallel, 2 processes
"""
import argparse
import math
import statistics
import time

import torch

import minidl as dl
from minidl import distributed


def generate_disk_set(n, generator, device="cpu"):
    """n points uniform in [0,1]^2, their labels (1 inside the disk) and one-hot targets."""
    x = torch.empty(n, 2).uniform_(0, 1, generator=generator)
    labels = (x - 0.5).pow(2).sum(1).lt(1 / (2 * math.pi)).long()
    targets = torch.empty(n, 2).zero_().scatter_(1, labels.view(-1, 1), 1.0)
    return x.to(device), labels.to(device), targets.to(device)


def build_network(activation, device):
    """2 inputs, three hidden layers of 25 units, 2 outputs."""
    act = {"relu": dl.ReLU, "tanh": dl.Tanh}[activation]
    return dl.Sequential(dl.Linear(2, 25, device=device), act(),
                         dl.Linear(25, 25, device=device), act(),
                         dl.Linear(25, 25, device=device), act(),
                         dl.Linear(25, 2, device=device))


def error_rate(net, x, labels):
    """Percentage of points whose largest output is not their label."""
    return net.forward(x).argmax(1).ne(labels).float().mean().item() * 100


def train_round(seed, args, log):
    """One round: fresh data and initialisation from `seed`; returns (train error %, test error %)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, labels, targets = generate_disk_set(1000, gen, args.device)
    x_test, labels_test, _ = generate_disk_set(1000, gen, args.device)
    # Standardise with the training set's statistics (the test set plays no part in any choice).
    mean, std = x.mean(0), x.std(0)
    x, x_test = (x - mean) / std, (x_test - mean) / std

    net = build_network(args.activation, args.device)
    rank, ranks = distributed.rank(), distributed.world_size()
    if args.distributed:  # each rank takes its part of every batch; backward averages the gradients
        net = distributed.DataParallel(net)
    criterion = dl.LossMSE()
    optimizer = dl.SGD(net.param(), lr=args.lr, momentum=args.momentum)
    n = x.shape[0]
    for epoch in range(args.epochs):
        if epoch == int(0.75 * args.epochs):  # one step decay of the learning rate for the last quarter
            optimizer.lr = args.lr / 10
        order = torch.randperm(n, generator=gen).to(args.device)
        total = 0.0
        for start in range(0, n, args.batch_size):
            whole = order[start:start + args.batch_size]
            batch = whole.tensor_split(ranks)[rank]
            optimizer.zero_grad()
            if batch.numel():
                loss = criterion.forward(net.forward(x[batch]), targets[batch])
                # the part's mean weighted by its share: the ranks' average is the whole batch's mean
                net.backward(criterion.backward(batch.numel() * ranks / whole.numel()))
                total += loss.item() * batch.numel()
            else:  # fewer rows than ranks: no forward (this network has no buffers to broadcast in one), but
                # this rank's zero gradient joins the average
                net.average_gradients()
            optimizer.step()
        if log and ((epoch + 1) % args.log_every == 0 or epoch == 0):
            total = all_ranks_sum(total)
            say(f"epoch {epoch + 1:4d}/{args.epochs}  loss {total / n:.5f}")
    return error_rate(net, x, labels), error_rate(net, x_test, labels_test)


def say(*text):
    """print, on rank 0 only."""
    if distributed.rank() == 0:
        print(*text)


def all_ranks_sum(value):
    """VALUE summed over the ranks (itself in one process)."""
    if distributed.world_size() == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(total)
    return total.item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["auto", "cpp", "python"], default="auto")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--activation", choices=["relu", "tanh"], default="relu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1, help="rounds with fresh data and initialisation")
    p.add_argument("--log-every", type=int, default=10, help="print the epoch's mean loss every N epochs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes that torchrun started (gloo on cpu, nccl on cuda)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "rounds", "log_every") + (("threads",) if args.threads is not None else ()):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0 or not 0 <= args.momentum < 1:
        p.error(f"expected --lr > 0 and 0 <= --momentum < 1, got --lr {args.lr} and --momentum {args.momentum}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        p.error(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.distributed:
        try:
            distributed.init(device=device)
        except distributed.DistributedError as e:
            p.error(f"--distributed: {e}")
        if device.type == "cuda":
            args.device = f"cuda:{torch.cuda.current_device()}"
    torch.set_grad_enabled(False)
    dl.set_backend(args.backend)
    say(f"minidl backend: {dl.get_backend()}, device: {args.device}")

    train_errors, test_errors = [], []
    for r in range(args.rounds):
        start = time.perf_counter()
        try:
            train_error, test_error = train_round(args.seed + r, args, log=args.rounds == 1)
        except FloatingPointError as e:  # LossMSE's check: its hint names the API, ours the options
            who = f"rank {distributed.rank()}: " if args.distributed else ""
            p.exit(1, f"{who}round {r + 1}: {str(e).split(';')[0]}; lower --lr or --momentum\n")
        train_errors.append(train_error)
        test_errors.append(test_error)
        say(f"round {r + 1}/{args.rounds}: train error {train_error:.2f} %, test error {test_error:.2f} % "
            f"({time.perf_counter() - start:.2f} s)")
    if args.rounds > 1:
        sd = statistics.stdev
        say(f"over {args.rounds} rounds: train error {statistics.mean(train_errors):.2f} ± {sd(train_errors):.2f} %, "
            f"test error {statistics.mean(test_errors):.2f} ± {sd(test_errors):.2f} %")
    if args.distributed:
        distributed.shutdown()
    return train_errors, test_errors


if __name__ == "__main__":
    main()
