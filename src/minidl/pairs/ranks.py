"""The study over the ranks of a torchrun job, on one machine or several.

Rank 0 does what a one-process study does with --out (lock, checks, config.json, rounds.jsonl,
results) and is the only rank that touches it: the other nodes need no shared folder. Every rank,
rank 0 included (in a thread), claims runs one at a time from a counter in torchrun's key-value
store, runs them exactly as a one-process study would (each seeded on its own), and sends each
finished run, or its error, to rank 0, which appends the run to rounds.jsonl as it arrives. Every
wait on another rank has a timeout: a rank that fails ends the job, it does not hang it."""

import contextlib
import dataclasses
import datetime
import os
import pickle
import sys
import threading
import time
import traceback

import torch
import torch.distributed as dist

from .. import distributed
from .study import run_one

PREFIX = "minidl.pairs"


class RankFailedError(RuntimeError):
    """Another rank stopped the study; KIND names its exception ('FloatingPointError', ...)."""

    def __init__(self, rank, kind, message):
        super().__init__(f"rank {rank}: {message}")
        self.rank, self.kind = rank, kind


class Channel:
    """Messages between the ranks of one job, through torchrun's store (one client per thread)."""

    def __init__(self, store, rank, timeout, hosting=False):
        self.store, self.rank, self.timeout = store, rank, timeout
        self.hosting = hosting  # this process serves the store: it must outlive every other rank's use
        self.published = False

    def clone(self):
        """A channel with a client of its own, for another thread (a client serialises its calls)."""
        return Channel(self.store.clone(), self.rank, self.timeout, self.hosting)

    def _get(self, key, timeout=None):
        timeout = datetime.timedelta(seconds=timeout or self.timeout)
        try:
            self.store.wait([key], timeout)
        except dist.DistStoreError:
            raise TimeoutError(f"rank {self.rank} waited {timeout.total_seconds():.0f} s for another rank "
                               f"({key}); --rank-timeout sets how long") from None
        return pickle.loads(self.store.get(key))

    def publish_plan(self, plan):
        """Rank 0: ('go', config, todo) or ('stop', exit status)."""
        self.store.set("plan", pickle.dumps(plan))
        self.published = True

    def plan(self):
        return self._get("plan")

    def claim(self):
        """The index of the next unclaimed run (counting from 0, over every rank)."""
        return self.store.add("claimed", 1) - 1

    def send(self, kind, value):
        """To rank 0: ('done', run) or ('error', (exception name, message))."""
        number = self.store.add("sent", 1)
        self.store.set(f"message/{number}", pickle.dumps((kind, self.rank, value)))

    def receive(self, number):
        """Rank 0: the NUMBERth message (from 1), whichever rank sent it."""
        return self._get(f"message/{number}")

    def stop(self):
        """Rank 0: the study is over (ended or failed); ranks waiting to report an error may exit."""
        self.store.set("stopped", pickle.dumps(True))

    def stopped(self):
        """Whether rank 0 has ended the study: then no rank claims another run."""
        return self.store.check(["stopped"])

    def leave(self):
        """This rank is done with the store (where rank 0 hosts it, rank 0 waits for this)."""
        with contextlib.suppress(dist.DistError):  # the store may be gone already: nothing left to say
            self.store.add("left", 1)

    def wait_left(self, others, timeout):
        """Rank 0, hosting the store: wait (at most TIMEOUT seconds) until OTHERS ranks have left it."""
        deadline = time.monotonic() + timeout
        while self.store.add("left", 0) < others and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait_stopped(self, timeout):
        try:
            self._get("stopped", timeout)
        except (TimeoutError, dist.DistError):  # no answer, or rank 0 gone already: nothing to wait for
            pass


def connect(timeout):
    """A Channel over a client of torchrun's store, under keys of this job and attempt only."""
    rank, world, _, _ = distributed.torchrun_env()
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # else rank 0 hosts it, as env:// does
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=rank == 0 and not agent, timeout=datetime.timedelta(seconds=timeout),
                          wait_for_workers=False)
    job = f"{os.environ.get('TORCHELASTIC_RUN_ID', 'job')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return Channel(dist.PrefixStore(f"{PREFIX}/{job}/", store), rank, timeout, hosting=rank == 0 and not agent)


def use_local_gpu(local_rank):
    """On CUDA, 'cuda' means this rank's own GPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())


def first_line(error):
    """The first line of ERROR's message."""
    return (str(error).splitlines() or [""])[0]


def describe(error):
    """(exception name, message) of ERROR: its message, or for a bug its first line, then its traceback."""
    if isinstance(error, (FloatingPointError, OSError, ValueError)):
        return type(error).__name__, str(error)
    return type(error).__name__, first_line(error) + "\n" + "".join(traceback.format_exception(error)).rstrip()


def work(channel, config, todo):
    """Claim runs until none is left, sending each finished run to rank 0; on an error send it and
    return it (the runs are independent: a failure stops the study, as in one process)."""
    while not channel.stopped() and (index := channel.claim()) < len(todo):
        name, round_index = todo[index]
        try:
            run = run_one((name, round_index, config))
        except Exception as e:
            channel.send("error", describe(e))
            return e
        channel.send("done", run)
    return None


class LeadRunner:
    """Rank 0's part: publish the runs to do, run its share in a thread, and record every rank's
    runs as they arrive; called as a runner of __main__.run_recorded."""

    def __init__(self, channel):
        self.channel, self.thread = channel, None

    def __call__(self, args, config, finished, record, progress):
        """All runs, FINISHED and new, in table order; RECORD(run) -> run as each new one arrives."""
        done = {(run["model"], run["round"]) for run in finished}
        todo = [task for task in config.tasks() if task not in done]
        self.channel.publish_plan(("go", config, todo))
        self.thread = threading.Thread(target=work, args=(self.channel.clone(), config, todo),
                                       daemon=True, name="rank 0 runs")
        self.thread.start()
        runs = list(finished)
        for number in range(1, len(todo) + 1):
            kind, rank, value = self.channel.receive(number)
            if kind == "error":
                raise RankFailedError(rank, *value)
            runs.append(record(value))
            self.channel.store.set(f"recorded/{number}", b"")  # for any rank to wait on (tests do)
            progress(config.train.epochs)
        order = {name: i for i, name in enumerate(config.models)}
        return sorted(runs, key=lambda run: (run["round"], order[run["model"]]))

    def running(self):
        """Whether rank 0's own runs thread is still busy (stopped mid-run by another rank's error)."""
        return self.thread is not None and self.thread.is_alive()


def follow(args, channel, data_problem, prog):
    """A rank other than 0: check its own data, then claim and run until no run is left; exit status."""
    try:
        status = take_part(args, channel, data_problem, prog)
    except dist.DistError as e:  # rank 0 and its store gone (it failed, or was killed)
        print(f"{prog}: error: rank {args.rank} lost torchrun's store: {e}".splitlines()[0], file=sys.stderr)
        return 1
    channel.leave()
    return status


def take_part(args, channel, data_problem, prog):
    """follow's work, its exit status."""
    problem = data_problem(args)
    if problem:
        channel.send("error", ("DataError", problem))
        return fail(channel, prog, problem, status=2)
    try:
        kind, *plan = channel.plan()
    except TimeoutError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    if kind == "stop":  # rank 0 refused the study and said why
        return plan[0]
    config, todo = plan
    if args.data_dir is not None:  # rank 0's path is on its machine: read this machine's copy, checked above
        config = dataclasses.replace(config, data_dir=str(args.data_dir.resolve()))
    error = work(channel, config, todo)
    if error is not None:  # rank 0 prints a bug's traceback: this rank says one line
        return fail(channel, prog, f"{type(error).__name__}: {first_line(error)}")
    return 0


def fail(channel, prog, message, status=1):
    """Print this rank's error once rank 0 has recorded what it could (or after a while), then exit."""
    channel.wait_stopped(min(channel.timeout, 60))
    print(f"{prog}: error: rank {channel.rank}: {message}", file=sys.stderr)
    return status
