"""A study under faults: a worker process that dies mid-run, and Ctrl-C."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from minidl.pairs import study
from minidl.pairs.__main__ import main
from minidl.pairs.pool import TaskError, run_in_processes
from minidl.pairs.store import RUNS_FILE

from conftest import PACKAGE_ROOT, subprocess_env
from test_pairs_resume import complete_lines, load, untimed

TESTS = Path(__file__).resolve().parent
STUDY = ["--models", "mlp,convnet", "--rounds", "3", "--epochs", "1", "--n-pairs", "100", "--seed", "5",
         "--threads", "1", "--quiet", "--no-curves"]
RUN_ONE = study.run_one  # the real one, imported before any patching


def run_one_or_die(task, progress=None):
    """study.run_one, except that the run 'convnet round 1' kills its own process (as the OOM killer)."""
    name, round_index, _ = task
    if (name, round_index) == ("convnet", 1):
        os.kill(os.getpid(), signal.SIGKILL)
    return RUN_ONE(task, progress)


def square_or_fail(x):
    """x * x; 3 raises a ValueError, 4 an exception that cannot be pickled back."""
    if x == 3:
        raise ValueError("three")
    if x == 4:
        error = RuntimeError("four")
        error.unpicklable = lambda: None
        raise error
    return x * x


# python -c DRIVER ARGS: the study, with worker processes that run run_one_or_die
DRIVER = ("import sys, minidl.pairs.study as study, test_pairs_faults as faults; "
          "study.run_one = faults.run_one_or_die; "
          "from minidl.pairs.__main__ import main; sys.exit(main(sys.argv[1:]))")


def env():
    """A child's environment that imports this minidl and this folder's test modules."""
    child = subprocess_env(PYTHONWARNINGS="ignore")
    child["PYTHONPATH"] = str(TESTS) + os.pathsep + child["PYTHONPATH"]
    return child


def recorded(out):
    """(model, round) of each run in OUT's rounds.jsonl."""
    return [(run["model"], run["round"]) for run in map(json.loads, complete_lines(out / RUNS_FILE))]


def test_a_dead_worker_stops_the_study_naming_its_run_and_resume_completes_it(tmp_path, capsys):
    out = tmp_path / "out"
    died = subprocess.run([sys.executable, "-c", DRIVER, *STUDY, "--jobs", "2", "--out", str(out)],
                          capture_output=True, text=True, env=env(), cwd=PACKAGE_ROOT, timeout=300)
    # before: multiprocessing.Pool waited forever for the lost run (the timeout above fired)
    assert died.returncode == 1, died.stderr
    kept = recorded(out)
    [line] = died.stderr.splitlines()
    assert line.startswith("python -m minidl.pairs: error: a worker process died (killed by SIGKILL) "
                           "running convnet round 1")
    assert line.endswith(f"; {len(kept)} finished run(s) are kept in {out / RUNS_FILE}; "
                         "rerun with --resume to finish")
    # the two runs that ended before it was handed out are recorded; the lost ones are not
    stopped = line.split("; also stopped: ")[1].split(";")[0].split(", ") if "also stopped" in line else []
    assert len(kept) >= 2 and ("convnet", 1) not in kept
    assert not {f"{model} round {r}" for model, r in kept} & set(stopped)
    assert not (out / "results.json").exists() and not (out / "study.lock").exists()

    resumed = subprocess.run([sys.executable, "-m", "minidl.pairs", *STUDY, "--jobs", "2", "--out", str(out),
                              "--resume"], capture_output=True, text=True, env=env(), cwd=PACKAGE_ROOT,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipping {len(kept)} finished run(s), {6 - len(kept)} to go" in resumed.stderr
    threads = torch.get_num_threads()
    try:
        assert main([*STUDY, "--jobs", "1", "--out", str(tmp_path / "reference")]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    reference = untimed(load(tmp_path / "reference"))
    assert untimed(load(out))["runs"] == reference["runs"]
    assert untimed(load(out))["summary"] == reference["summary"]


def group_is_gone(group, timeout=30):
    """Whether no process of GROUP is left within TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def wait_for_first_run(process, out, timeout=120):
    """Wait until PROCESS's study has recorded a run in OUT; fail if it ends or takes too long first."""
    deadline = time.monotonic() + timeout
    while not complete_lines(out / RUNS_FILE):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no run recorded in time"
        time.sleep(0.01)


def default_sigint():
    """Ctrl-C's default action in the child, as in a terminal's foreground job: a shell's background job (pytest
    started with &) ignores SIGINT, the children inherit that, and Python keeps an inherited SIG_IGN."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("jobs", ["1", "2"])  # runs in this process, or in workers
def test_ctrl_c_prints_one_line_exits_130_and_stops_the_workers(tmp_path, jobs):
    out = tmp_path / "out"
    longer = [*STUDY, "--rounds", "20", "--epochs", "3", "--n-pairs", "1000"]
    process = subprocess.Popen([sys.executable, "-m", "minidl.pairs", *longer, "--jobs", jobs,
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env(), cwd=PACKAGE_ROOT, start_new_session=True,
                               preexec_fn=default_sigint)
    try:
        wait_for_first_run(process, out)
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
        _, err = process.communicate(timeout=60)
        assert group_is_gone(process.pid), "a worker process outlived the study"
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of a failed test
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    kept = len(complete_lines(out / RUNS_FILE))
    assert 1 <= kept < 40, "the study ended before Ctrl-C"
    assert err.strip().splitlines() == [
        f"interrupted; {kept} finished run(s) are kept in {out / RUNS_FILE}; rerun with --resume to finish"]
    assert not (out / "study.lock").exists()


def test_workers_of_a_killed_study_end_quietly(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "minidl.pairs", *STUDY, "--rounds", "20", "--jobs", "2",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env(), cwd=PACKAGE_ROOT, start_new_session=True,
                               preexec_fn=default_sigint)
    try:
        wait_for_first_run(process, out)
        process.kill()  # the study alone, as the OOM killer would: its workers lose their parent
        _, err = process.communicate(timeout=120)  # ends when the workers close their stderr
        assert group_is_gone(process.pid), "a worker process outlived its study"
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of a failed test
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in err, err  # before: BrokenPipeError from each worker's next reply


@pytest.mark.parametrize("tasks, error, message", [
    ([1, 2, 3], ValueError, "^three$"),
    ([1, 2, 4], TaskError, r"(?s)^Traceback .*RuntimeError: four\n$"),
])
def test_a_task_error_in_a_worker_is_raised_in_the_parent(tasks, error, message):
    results = []
    with pytest.raises(error, match=message):
        for result in run_in_processes(square_or_fail, tasks, jobs=2):
            results.append(result)
    assert set(results) <= {1, 4}


def square_then_exit_soon(x):
    """x * x; its worker process then exits 0.1 s later, as one killed after its last task would."""
    threading.Timer(0.1, os._exit, (3,)).start()
    return x * x


def test_a_worker_that_dies_after_its_last_task_loses_nothing():
    results = []
    for result in run_in_processes(square_then_exit_soon, [2, 3], jobs=2):
        results.append(result)
        time.sleep(0.5)  # meanwhile its worker dies, before it is told there is nothing left
    assert sorted(results) == [4, 9]  # before: a KeyError from the error path that found no task


def test_a_study_in_this_process_gives_back_its_thread_count(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # whatever the host has: the study runs at 1, then must restore 2
    try:
        assert main([*STUDY, "--rounds", "1", "--jobs", "1", "--out", str(tmp_path)]) == 0
        assert torch.get_num_threads() == 2  # before: left at 1 for every later test in the process
    finally:
        torch.set_num_threads(threads)
