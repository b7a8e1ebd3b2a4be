"""python pairs_rank_faults.py MODE STUDY-OPTIONS, under torchrun: the study with a fault on rank 1.

MODE: kill (rank 1 is killed, as by the OOM killer, in its first run, once rank 0 has recorded a run),
raise (its first run raises FloatingPointError), bug (it raises RuntimeError, as a bug would), data (its data cannot be read), own-data (its --data-dir
is $RANK1_DATA_DIR, a copy at another path, and its runs must read that one), late (it starts the study
2 s after rank 0 has recorded its $RUNS runs: all of them)."""
import os
import signal
import sys
import time
from pathlib import Path

import minidl.pairs.__main__ as cli
from minidl.pairs import ranks, study

MODE = sys.argv.pop(1)
RUN_ONE, DATA_PROBLEM = ranks.run_one, cli.data_problem
FAULTY = os.environ.get("RANK") == "1"
READY = []  # this rank has passed the gate below


def gate():
    """Rank 0 waits, once, until rank 1 has a run or its data problem, so that it cannot finish every run
    before rank 1's fault (on a busy host rank 1 may start seconds late); rank 1 opens the gate."""
    if not READY:
        store = ranks.connect(60).store
        store.set("fault/ready", b"") if FAULTY else store.wait(["fault/ready"])
        READY.append(True)


def run_one(task, progress=None):
    if MODE != "late":
        gate()
    if FAULTY and MODE == "kill":
        ranks.connect(60).store.wait(["recorded/1"])
        os.kill(os.getpid(), signal.SIGKILL)
    if FAULTY and MODE == "raise":
        raise FloatingPointError("loss became nan (injected)")
    if FAULTY and MODE == "bug":
        raise RuntimeError("injected bug\nits second line")
    return RUN_ONE(task, progress)


def data_problem(args):
    if FAULTY and MODE == "data":
        gate()
    return "cannot read the MNIST data: injected" if FAULTY and MODE == "data" else DATA_PROBLEM(args)


def own_data(n, seed, data_dir):
    """The study's data, on rank 1 only from its own --data-dir."""
    own = str(Path(os.environ["RANK1_DATA_DIR"]).resolve())
    if data_dir != own:
        raise ValueError(f"rank 1 read the data in {data_dir}, not its own {own}")
    return GENERATE(n, seed=seed, data_dir=data_dir)


if FAULTY and MODE == "late":
    ranks.connect(60).store.wait([f"recorded/{os.environ['RUNS']}"])
    time.sleep(2)
GENERATE = study.generate_pair_sets
if FAULTY and MODE == "own-data":
    sys.argv[sys.argv.index("--data-dir") + 1] = os.environ["RANK1_DATA_DIR"]
    study.generate_pair_sets = own_data
ranks.run_one, cli.data_problem = run_one, data_problem
sys.exit(cli.main(sys.argv[1:]))
