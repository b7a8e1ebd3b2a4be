"""The study under torchrun (2 ranks, gloo-free: torchrun's store on 127.0.0.1): the same results as
one process, a killed rank resumed, a failing rank ending the job."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minidl.pairs.__main__ import main
from minidl.pairs.store import RUNS_FILE

from conftest import PACKAGE_ROOT, subprocess_env
from test_pairs_data import full_mnist_dir
from test_pairs_resume import complete_lines, load, untimed

TESTS = Path(__file__).resolve().parent
STUDY = ["--models", "mlp,convnet", "--rounds", "3", "--epochs", "1", "--n-pairs", "100", "--seed", "4",
         "--threads", "1", "--quiet", "--no-curves"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(out, *extra, fault=None, timeout=120, **env):
    """The study under torchrun with two ranks (rank 1 given FAULT, see pairs_rank_faults.py)."""
    program = ["-m", "minidl.pairs"] if fault is None else [str(TESTS / "pairs_rank_faults.py"), fault]
    return subprocess.run([*TORCHRUN, *program, *STUDY, "--out", str(out), *extra], capture_output=True,
                          text=True, env=subprocess_env(PYTHONWARNINGS="ignore", **env), cwd=PACKAGE_ROOT,
                          timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same study in one process."""
    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    try:
        assert main([*STUDY, "--jobs", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return untimed(load(out))


def recorded(out):
    """(model, round) of each line of OUT's rounds.jsonl."""
    return [(run["model"], run["round"]) for run in map(json.loads, complete_lines(out / RUNS_FILE))]


def test_a_study_under_torchrun_writes_what_one_process_writes(tmp_path, reference, capsys):
    capsys.readouterr()
    done = torchrun(tmp_path)
    assert done.returncode == 0, done.stderr
    assert untimed(load(tmp_path)) == reference  # config, summary and every run, timings aside
    assert sorted(recorded(tmp_path)) == sorted((m, r) for r in range(3) for m in ("mlp", "convnet"))
    assert done.stdout.count("| mlp |") == 1, "printed by rank 0 only"
    assert json.loads((tmp_path / "config.json").read_text())["execution"] == {"jobs": 1}


def test_a_killed_rank_ends_the_job_and_resume_runs_only_what_is_left(tmp_path, reference, capsys):
    killed = torchrun(tmp_path, fault="kill")
    assert killed.returncode != 0, "rank 1 should have been killed"
    kept = recorded(tmp_path)
    assert 1 <= len(set(kept)) == len(kept) < 6
    threads = torch.get_num_threads()
    try:  # the record is the same as one process's: resume it in this one
        assert main([*STUDY, "--jobs", "1", "--out", str(tmp_path), "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert f"skipping {len(kept)} finished run(s), {6 - len(kept)} to go" in capsys.readouterr().err
    assert recorded(tmp_path)[:len(kept)] == kept and sorted(recorded(tmp_path)) == sorted(
        (m, r) for r in range(3) for m in ("mlp", "convnet")), "a run recorded twice, or missing"
    assert untimed(load(tmp_path)) == reference


@pytest.mark.parametrize("fault, shown, hint", [
    ("raise", "FloatingPointError on rank 1: loss became nan (injected)", "--allow-nonfinite trains on regardless"),
    ("data", "DataError on rank 1: cannot read the MNIST data: injected",
     "give rank 1 readable data (its --data-dir), then rerun with --resume"),
    ("bug", "RuntimeError on rank 1: injected bug;", "rerun with --resume to finish"),
])
def test_a_failing_rank_ends_the_job_soon_with_its_error(tmp_path, fault, shown, hint):
    start = time.monotonic()
    failed = torchrun(tmp_path, "--rank-timeout", "600", fault=fault)
    seconds = time.monotonic() - start
    assert failed.returncode != 0
    assert seconds < 90, f"the job took {seconds:.0f} s to end: it waited for a timeout"
    errors = [line for line in failed.stderr.splitlines() if line.startswith("python -m minidl.pairs: error:")]
    lead = [line for line in errors if "finished run(s) are kept in" in line]  # rank 0's
    assert len(lead) == 1 and shown in lead[0], failed.stderr
    assert failed.stderr.count(hint) == 1, failed.stderr
    frames = failed.stderr.count('pairs_rank_faults.py", line')  # torchrun adds a traceback of its own
    assert frames == (fault == "bug") and failed.stderr.count("\nits second line") == (fault == "bug"), failed.stderr
    if fault == "bug":  # rank 0 prints the traceback, rank 1 one line
        assert "error: rank 1: RuntimeError: injected bug\n" in failed.stderr, failed.stderr
    assert not (tmp_path / "results.json").exists()


def test_jobs_is_refused_under_torchrun(monkeypatch, capsys):
    from minidl.pairs.options import parse_args

    for name, value in dict(RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as refused:
        parse_args([*STUDY, "--jobs", "2"])
    assert refused.value.code == 2
    assert "--jobs 2: under torchrun each rank runs one run at a time" in capsys.readouterr().err
    args, _ = parse_args(STUDY)
    assert (args.rank, args.world_size, args.jobs) == (1, 2, 1)


def test_each_rank_reads_the_data_in_its_own_data_dir(tmp_path):
    """Machines may hold their copies at different paths: rank 1 reads its own, not rank 0's."""
    copies = []
    for name in ("rank0-data", "rank1-data"):  # folders of links: each resolves to itself
        copy = tmp_path / name
        copy.mkdir()
        for f in full_mnist_dir().glob("*-ubyte*"):
            (copy / f.name).symlink_to(f.resolve())
        copies.append(copy)
    done = torchrun(tmp_path / "out", "--data-dir", str(copies[0]), fault="own-data", RANK1_DATA_DIR=str(copies[1]))
    assert done.returncode == 0, done.stderr  # before: "rank 1 read the data in .../rank0-data"
    assert sorted(recorded(tmp_path / "out")) == sorted((m, r) for r in range(3) for m in ("mlp", "convnet"))


def test_rank_0_serving_the_store_waits_for_a_late_rank(tmp_path):
    """Where rank 0 hosts the store (not torchrun's agent): a rank that arrives after every run is done
    still finds it, and the job ends well (before: rank 0 exited, and rank 1 lost the store)."""
    done = torchrun(tmp_path / "out", "--rank-timeout", "30", fault="late", RUNS="6",
                    TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    assert done.returncode == 0, done.stderr
    assert len(recorded(tmp_path / "out")) == 6
