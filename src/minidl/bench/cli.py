"""The command line: options, the --json check, the run over thread counts and sections, the JSON file."""
import argparse
import json
import os
import sys
import time

import torch

import minidl

from .calls import run_calls
from .ceilings import run_ceilings
from .config import CONFIGS, DISK_SIZES, SECTIONS
from .machine import header, machine_info
from .measure import make_sync
from .conv import run_conv
from .layers import run_layers
from .ops import run_ops
from .report import progress, tables
from .train import run_training


def parse_args(argv):
    """The command line."""
    doc = sys.modules[__package__].__doc__  # the package's, which describes the method
    p = argparse.ArgumentParser(prog="python -m minidl.bench", description=doc.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a subset (no 4096 linear, fewer repeats, 1 thread)")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny sizes, for the tests
    p.add_argument("--threads", help="thread counts, comma-separated (default 1,2; 1 with --quick or --device cuda)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, help="repeats per measurement (default 9; 5 with --quick)")
    p.add_argument("--target", type=float, help="seconds per measurement loop (default 0.05; 0.02 with --quick)")
    p.add_argument("--json", default="bench.json", help="where to write the results (default bench.json)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        try:
            args.threads = [int(t) for t in args.threads.split(",")]
        except ValueError:
            p.error(f"--threads: expected positive integers separated by commas, got {args.threads!r}")
        if min(args.threads) < 1:
            p.error(f"--threads: expected positive integers separated by commas, got {args.threads}")
    for name in ("repeats", "target"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    # The run takes minutes: a --json path that can't be written fails now, not after it.
    problem = json_target_problem(args.json)
    if problem:
        p.exit(2, f"{p.prog}: error: --json {args.json}: {problem}\n")
    return args


def json_target_problem(path):
    """Why a results file cannot be written at path (None if it can), found by trying, as the run will."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist"
    if os.path.isdir(path):
        return "is a folder; give a file name, e.g. " + os.path.join(path, "bench.json")
    existed = os.path.exists(path)
    try:  # creates the file, or opens it without changing it; a FIFO without a reader fails, not hangs
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666))
    except OSError as e:
        return f"cannot be written ({e.strerror})"
    if not existed:
        os.remove(path)
    return None


def make_config(args):
    """The sizes and repeats for the chosen mode, with the command line's overrides."""
    cfg = dict(CONFIGS["smoke" if args.smoke else "quick" if args.quick else "full"])
    if args.device == "cuda":
        # A GPU's elementwise kernels need 2^26 elements to fill it and reach its bandwidth; the host
        # threads only launch work, so one thread count is enough.
        cfg["elementwise"] = cfg["elementwise"] + ([2 ** 26] if not args.smoke else [])
        cfg["threads"] = [1]
    if args.threads:
        cfg["threads"] = args.threads
    if args.repeats is not None:
        cfg["repeats"] = args.repeats
    if args.target is not None:
        cfg["target"] = args.target
    return cfg


def run_threads(cfg, args, threads, sync, checks):
    """Every selected section at one thread count; returns its records."""
    torch.set_num_threads(threads)
    recs = []
    if "ceilings" in args.sections:
        progress(f"ceilings, {threads} thread(s)")
        recs += run_ceilings(cfg, threads, args.device, sync)
        print(tables("ceilings", recs, threads, args.device), flush=True)
    sections = {
        "calls": lambda: run_calls(cfg, threads, args.device, sync),
        "ops": lambda: run_ops(cfg, threads, args.device, sync),
        "layers": lambda: run_layers(cfg, threads, args.device, sync),
        "conv": lambda: run_conv(cfg, threads, args.device, sync, checks),
        "train": lambda: run_training("train", [("disk", DISK_SIZES, b) for b in cfg["disk_batches"]],
                                      cfg, threads, args.device, sync, checks),
        "mlp": lambda: run_training("mlp", [("mlp", cfg["mlp_sizes"], cfg["mlp_batch"])],
                                    cfg, threads, args.device, sync, checks),
    }
    for name in ("calls", "ops", "layers", "conv", "train", "mlp"):
        if name in args.sections:
            new = sections[name]()
            print(tables(name, new, threads, args.device), flush=True)
            recs += new
    return recs


def main(argv=None):
    """Run the benchmark; print markdown, write JSON; returns the exit status."""
    args = parse_args(argv)
    cfg = make_config(args)
    info = machine_info(args.device, cfg["threads"])
    print(header(info), flush=True)
    sync, start = make_sync(args.device), time.perf_counter()
    previous_threads, previous_backend = torch.get_num_threads(), minidl.get_backend()
    results, checks = [], []
    try:
        for threads in cfg["threads"]:
            results += run_threads(cfg, args, threads, sync, checks)
    finally:
        torch.set_num_threads(previous_threads)
        minidl.set_backend(previous_backend)
    elapsed = time.perf_counter() - start
    summary = {"machine": info, "config": {**cfg, "sections": args.sections,
                                           "mode": "smoke" if args.smoke else "quick" if args.quick else "full"},
               "results": results, "loss_checks": checks, "elapsed_s": elapsed}
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nran in {elapsed:.0f} s; wrote {args.json}")
    return 0
