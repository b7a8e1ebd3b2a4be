"""Train every model over several rounds of fresh pairs, in parallel processes, and summarise."""

import contextlib
import csv
import os
import statistics
from dataclasses import asdict, dataclass, field
from typing import Optional
from pathlib import Path

import torch

from .data import generate_pair_sets
from .models import MODELS, build_model, count_parameters
from .pool import run_in_processes
from .store import RUN_KEYS, atomic_open, atomic_write_text, json_text
from .train import TrainConfig, train_model


@dataclass
class StudyConfig:
    """What to compare, on how much data, how often, and with how many processes."""

    models: tuple = ("mlp", "convnet", "siamese", "convnet_aux", "siamese_aux")
    rounds: int = 10
    n_pairs: int = 1000
    seed: int = 0
    data_dir: Optional[str] = None
    jobs: int = 1
    threads: int = 1  # torch threads per process
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self):
        """Raise ValueError on a bad option (TrainConfig's included)."""
        unknown = [name for name in self.models if name not in MODELS]
        if unknown or not self.models or isinstance(self.models, str):
            raise ValueError(f"StudyConfig: unknown model(s) {', '.join(unknown) or '(none given)'}"
                             f"; valid: {', '.join(MODELS)}")
        for name in ("rounds", "n_pairs", "jobs", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StudyConfig: {name} must be an int >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"StudyConfig: seed must be an int >= 0, got {self.seed!r}")
        self.train.validate()

    def tasks(self):
        """(model, round) of every run, in table order: round by round, models in the given order."""
        return [(name, r) for r in range(self.rounds) for name in self.models]


def round_seed(seed, round_index):
    """Seed of one round: all models of a round see the same pairs and the same shuffles."""
    return seed * 1000 + round_index


@contextlib.contextmanager
def torch_threads(count):
    """Run the block with COUNT torch threads, then give the caller back its own count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_one(task, progress=None):
    """Train one model for one round; TASK is (name, round, StudyConfig)."""
    name, round_index, config = task
    seed = round_seed(config.seed, round_index)
    data = generate_pair_sets(config.n_pairs, seed=seed, data_dir=config.data_dir)
    with torch.random.fork_rng(devices=[]):  # same init per (model, seed); caller's RNG untouched
        torch.manual_seed(seed)
        model = build_model(name, config.train.framework)
    try:
        with torch_threads(config.threads):  # the figures depend on it
            result = train_model(model, data, config.train, seed=seed, progress=progress)
    except FloatingPointError as e:  # say which run failed
        raise FloatingPointError(f"{name} round {round_index} (seed {seed}): {e}") from None
    return {"model": name, "round": round_index, "seed": seed, "framework": config.train.framework,
            "parameters": count_parameters(model), **result}


def run_study(config, progress=None, finished=(), record=None):
    """All runs in table order, FINISHED ones not redone; RECORD(run) -> run as each new one ends."""
    config.validate()
    done = {(run["model"], run["round"]): run for run in finished}
    tasks = [(name, r, config) for name, r in config.tasks() if (name, r) not in done]
    runs = [done[key] for key in config.tasks() if key in done]
    with contextlib.closing(_results(tasks, config, progress)) as results:  # workers stop with it
        for result in results:
            runs.append(record(result) if record else result)
    order = {name: i for i, name in enumerate(config.models)}
    return sorted(runs, key=lambda run: (run["round"], order[run["model"]]))


def _results(tasks, config, progress):
    """Yield the result of each task as it finishes, in this process or in a pool."""
    if config.jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield run_one(task, progress and (lambda: progress(1)))
        return
    with contextlib.closing(run_in_processes(run_one, tasks, config.jobs, name=task_name)) as results:
        for result in results:
            if progress:
                progress(config.train.epochs)
            yield result


def task_name(task):
    """'convnet round 3' for the task (name, round, config)."""
    return f"{task[0]} round {task[1]}"


def summarise(runs, models):
    """Per model: parameters, mean and std of train and test error (%), mean seconds per run."""

    def mean_std(values):
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    rows = []
    for name in models:
        mine = [run for run in runs if run["model"] == name]
        train = mean_std([100 * run["train_error"] for run in mine])
        test = mean_std([100 * run["test_error"] for run in mine])
        rows.append({"model": name, "parameters": mine[0]["parameters"], "rounds": len(mine),
                     "train_error_mean": train[0], "train_error_std": train[1],
                     "test_error_mean": test[0], "test_error_std": test[1],
                     "seconds": statistics.mean(run["seconds"] for run in mine)})
    return rows


def markdown_table(rows):
    """The summary as a markdown table, errors in percent."""
    lines = ["| model | parameters | train error (%) | test error (%) | seconds / run |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['parameters']:,} "
            f"| {row['train_error_mean']:.2f} ± {row['train_error_std']:.2f} "
            f"| {row['test_error_mean']:.2f} ± {row['test_error_std']:.2f} "
            f"| {row['seconds']:.2f} |")
    return "\n".join(lines)


CSV_FIELDS = ["framework", *RUN_KEYS]


def write_results(runs, rows, config, out_dir):
    """Write results.json (config, summary, every run), results.csv (one row a run), results.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = asdict(config)
    settings["models"] = list(config.models)
    atomic_write_text(out_dir / "results.json",
                      json_text({"config": settings, "summary": rows, "runs": runs}, indent=1))
    with atomic_open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for run in runs:  # curves go in one cell each, as JSON lists
            run = {"framework": "torch", **run}  # runs recorded before the framework option were torch's
            writer.writerow({key: json_text(run[key]) if key.endswith("_curve") else run[key]
                             for key in CSV_FIELDS})
    atomic_write_text(out_dir / "results.md", markdown_table(rows) + "\n")
    return [out_dir / name for name in ("results.json", "results.csv", "results.md")]


def default_jobs(device, rounds, n_models):
    """One process per core on CPU (runs are single-threaded), one on CUDA."""
    if device != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, rounds * n_models))
