"""Command line: python -m minidl.pairs [--rounds 10] [--models a,b] ... runs the study."""

import os
import sys
import time
import warnings

from .data import generate_pair_sets
from .idx import DataFileError
from .lock import OutFolderError, locked_folder
from .options import default_threads, missing_message, missing_modules, parse_args, study_config
from .pool import WorkerDiedError
from .ranks import LeadRunner, RankFailedError, connect, follow, use_local_gpu
from .store import (RUNS_FILE, append_run, check_out_dir, check_resumable, check_runs, load_config,
                    read_runs, start_study)
from .study import markdown_table, run_study, summarise, write_results


class StudyError(Exception):
    """A study that cannot go on: its message is printed as one line, with this exit status."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def kept(args):
    """'N finished run(s) are kept in OUT/rounds.jsonl'."""
    try:
        count = len(read_runs(args.out))
    except (OSError, ValueError):
        count = "the"
    return f"{count} finished run(s) are kept in {args.out / RUNS_FILE}"


def finished_runs(args, config):
    """Runs already recorded in --out (with --resume), torn last line cut off with a warning."""
    if not args.resume:
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = read_runs(args.out, repair=True)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    check_runs(args.out, runs, config)
    wanted = set(config.tasks())
    runs = [run for run in runs if (run["model"], run["round"]) in wanted]
    print(f"resuming {args.out}: skipping {len(runs)} finished run(s), "
          f"{len(wanted) - len(runs)} to go", file=sys.stderr)
    return runs


def resolve_threads(args):
    """--threads as given, else the resumed study's (its results depend on it), else the default."""
    if args.threads is None and args.resume:
        try:
            args.threads = load_config(args.out)["study"].get("threads")
        except ValueError:  # no readable study: check_out_dir and check_resumable say so
            pass
    if args.threads is None:
        args.threads = default_threads(args)


def data_problem(args):
    """Why this process cannot use the data (missing, corrupt, too small), or None."""
    try:
        generate_pair_sets(args.n_pairs, seed=0, data_dir=args.data_dir)
    except (FileNotFoundError, ModuleNotFoundError, DataFileError) as e:
        return f"cannot read the MNIST data: {e}"
    except ValueError as e:
        return f"cannot draw --n-pairs {args.n_pairs} pairs: {e}"
    return None


def check_data(args, parser):
    """Fail fast, in this process, on data that is missing, corrupt or too small."""
    problem = data_problem(args)
    if problem:
        parser.error(problem)


def prepare(args, parser):
    """Validate everything that can be checked before training, in the locked --out; return
    (config, finished runs)."""
    resolve_threads(args)
    config = study_config(args)
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


def run_recorded(args, config, finished, runner=None):
    """Run the study (or have RUNNER(args, config, finished, record, progress) run it), each new run
    appended to --out's rounds.jsonl as it ends; return all runs."""
    from tqdm import tqdm

    todo = args.rounds * len(args.models) - len(finished)
    record = lambda run: append_run(args.out, run, config)
    with tqdm(total=todo * args.epochs, unit="epoch", disable=args.quiet, file=sys.stderr,
              desc=f"{len(args.models)} models x {args.rounds} rounds") as bar:
        if runner is not None:
            return runner(args, config, finished, record, bar.update)
        return run_study(config, progress=bar.update, finished=finished, record=record)


def study(args, parser, runner=None):
    """Run the study in the locked --out: table on stdout, results and plots written."""
    from .plots import plot_results

    config, finished = prepare(args, parser)
    start = time.perf_counter()
    try:
        runs = run_recorded(args, config, finished, runner)
    except FloatingPointError as e:
        raise StudyError(f"FloatingPointError: {e}; {kept(args)}; --allow-nonfinite trains on "
                         f"regardless") from None
    except WorkerDiedError as e:
        raise StudyError(f"{e}; {kept(args)}; rerun with --resume to finish") from None
    except RankFailedError as e:
        hint = {"FloatingPointError": "--allow-nonfinite trains on regardless",
                "DataError": f"give rank {e.rank} readable data (its --data-dir), then rerun with --resume"}
        line, _, trace = str(e).partition("\n")  # a bug's traceback follows the line
        raise StudyError(f"{e.kind} on {line}; {kept(args)}; {hint.get(e.kind, 'rerun with --resume to finish')}"
                         + (f"\n{trace}" if trace else "")) from None
    rows = summarise(runs, args.models)
    print(markdown_table(rows))
    try:
        paths = write_results(runs, rows, config, args.out) + plot_results(runs, args.models, args.out)
    except OSError as e:
        raise StudyError(f"cannot write the results: {e}; {kept(args)}; rerun with --resume "
                         f"to write them") from None
    if not args.quiet:
        seconds = time.perf_counter() - start
        where = f"{args.world_size} ranks" if args.world_size > 1 else f"{args.jobs} process(es)"
        print(f"\n{len(runs) - len(finished)} run(s) of {args.rounds} round(s) x "
              f"{len(args.models)} model(s) in {seconds:.1f} s ({where}, "
              f"{args.threads} thread(s) each, {args.device}, {args.framework}); wrote "
              + ", ".join(str(p) for p in paths))


def run(args, parser, runner=None):
    """Check the requirements and the data, then run the study holding --out's lock."""
    missing = missing_modules(args)
    if missing:
        raise StudyError(missing_message(missing), status=2)
    check_data(args, parser)
    try:
        with locked_folder(args.out):
            study(args, parser, runner)
    except OutFolderError as e:
        raise StudyError(str(e), status=2) from None
    except OSError as e:  # a disk that fills up, a folder made read-only meanwhile...
        raise StudyError(f"{e}; {kept(args)}") from None


def main(argv=None):
    """Run the study (recording each finished run), print the table, write results and plots;
    return the exit status. Every error is one line on stderr: status 2 for what was asked (as
    argparse), 1 for what went wrong while running, 130 for Ctrl-C. Under torchrun (several
    ranks), the runs are spread over the ranks, and rank 0 alone writes --out and prints."""
    args, parser = parse_args(argv)
    if args.world_size > 1:
        return main_ranked(args, parser)
    return report(args, parser, run)


def main_ranked(args, parser):
    """This rank's part of a study under torchrun; its exit status."""
    try:
        channel = connect(args.rank_timeout)
    except (RuntimeError, TimeoutError) as e:
        print(f"{parser.prog}: error: rank {args.rank}: cannot reach torchrun's store: {e}", file=sys.stderr)
        return 1
    use_local_gpu(args.local_rank)
    if args.rank != 0:
        try:
            return follow(args, channel, data_problem, parser.prog)
        except KeyboardInterrupt:  # rank 0 says what is kept
            return 130
    runner, status = LeadRunner(channel), 2  # parser.error's status, unless report returns
    try:
        status = report(args, parser, lambda args, parser: run(args, parser, runner))
    finally:
        if not channel.published:  # the study never started: the other ranks end with this status
            channel.publish_plan(("stop", status))
        channel.stop()
        if channel.hosting and not runner.running():  # serve the store until the others are done with it
            channel.wait_left(args.world_size - 1, args.rank_timeout if status == 0 else min(args.rank_timeout, 60))
    if runner.running():  # rank 0's runs thread, stopped mid-run by an error: do not wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def report(args, parser, body):
    """BODY(args, parser), its errors printed as one line; the exit status."""
    try:
        body(args, parser)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {kept(args)}; rerun with --resume to finish", file=sys.stderr)
        return 130
    except StudyError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return e.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
