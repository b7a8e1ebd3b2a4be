"""One study per --out at a time, and --resume only with runs recorded under the same options."""

import json
import socket
import subprocess
import sys

import pytest

from minidl.pairs.__main__ import main
from minidl.pairs.store import (CONFIG_FILE, RUNS_FILE, StudyStateError, check_resumable,
                                fingerprint, start_study)
from minidl.pairs.study import StudyConfig
from minidl.pairs.train import TrainConfig

from conftest import PACKAGE_ROOT, subprocess_env
from test_pairs_resume import complete_lines, load, untimed

HOLD = ("import sys; from minidl.pairs.lock import locked_folder\n"
        "with locked_folder(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()")


def tiny(out, *extra):
    """Run a tiny study in this process; return main's status."""
    return main(["--models", "mlp", "--rounds", "2", "--epochs", "1", "--n-pairs", "50", "--jobs", "1",
                 "--threads", "1", "--quiet", "--no-curves", "--out", str(out), *extra])


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_a_second_study_on_a_folder_in_use_fails_at_once_naming_the_holder(tmp_path, capsys, flag):
    out = tmp_path / "out"
    assert tiny(out) == 0
    before = (out / RUNS_FILE).read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=subprocess_env(), cwd=PACKAGE_ROOT)
    try:
        assert holder.stdout.readline() == "held\n"
        capsys.readouterr()
        assert tiny(out, flag, "--rounds", "3") == 2
        assert capsys.readouterr().err == (
            f"python -m minidl.pairs: error: --out {out} is in use by another study (pid {holder.pid} on "
            f"{socket.gethostname()}); "
            "wait for it to end, or choose another --out\n")
        assert (out / RUNS_FILE).read_bytes() == before  # nothing deleted, nothing added
    finally:
        holder.communicate("", timeout=30)
    assert not (out / "study.lock").exists()  # the holder removed it
    assert tiny(out, flag, "--rounds", "3") == 0  # and the folder is free again


def test_each_run_records_the_fingerprint_of_its_options(tmp_path):
    assert tiny(tmp_path / "a") == 0 and tiny(tmp_path / "b", "--lr", "0.01") == 0
    assert tiny(tmp_path / "c", "--rounds", "3", "--models", "mlp,convnet") == 0
    stamp = lambda out: {json.loads(line)["fingerprint"] for line in complete_lines(out / RUNS_FILE)}
    config = lambda out: json.loads((out / CONFIG_FILE).read_text())["fingerprint"]
    assert stamp(tmp_path / "a") == {config(tmp_path / "a")}
    assert config(tmp_path / "a") != config(tmp_path / "b")  # lr decides the results
    options = json.loads(complete_lines(tmp_path / "b" / RUNS_FILE)[0])["options"]
    assert options["train.lr"] == 0.01 and options["threads"] == 1 and "rounds" not in options
    assert config(tmp_path / "a") == config(tmp_path / "c")  # rounds and models do not decide a run's
    assert untimed(load(tmp_path / "a"))["runs"] == untimed(load(tmp_path / "c"))["runs"][::2][:2]


def test_resume_refuses_a_run_recorded_under_other_options(tmp_path, capsys):
    assert tiny(tmp_path / "a") == 0
    assert tiny(tmp_path / "b", "--rounds", "3", "--seed", "1") == 0
    stranger = complete_lines(tmp_path / "b" / RUNS_FILE)[2]  # mlp round 2, under --seed 1
    with open(tmp_path / "a" / RUNS_FILE, "ab") as f:
        f.write(stranger + b"\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        tiny(tmp_path / "a", "--resume", "--rounds", "3")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    expected = json.loads((tmp_path / "a" / CONFIG_FILE).read_text())["fingerprint"]
    assert (f"{tmp_path / 'a' / RUNS_FILE} line 3: mlp round 2 was recorded under other options than "
            f"this study's (seed: stored 1, now 0; fingerprint {json.loads(stranger)['fingerprint']}, "
            f"now {expected}): it comes from another study") in err


def test_resume_refuses_a_run_recorded_twice(tmp_path, capsys):
    assert tiny(tmp_path) == 0
    first = complete_lines(tmp_path / RUNS_FILE)[0]
    with open(tmp_path / RUNS_FILE, "ab") as f:
        f.write(first + b"\n")  # as a --resume racing the study it resumed once did
    capsys.readouterr()
    with pytest.raises(SystemExit):
        tiny(tmp_path, "--resume")
    assert f"{tmp_path / RUNS_FILE} line 3: mlp round 0 is recorded twice" in capsys.readouterr().err


def test_threads_decide_the_results_so_resume_refuses_to_change_them(tmp_path):
    start_study(tmp_path, StudyConfig(threads=1))
    with pytest.raises(StudyStateError, match=r"--jobs and --allow-nonfinite may change\): threads: "
                                              r"stored 1, now 2$"):
        check_resumable(tmp_path, StudyConfig(threads=2))
    check_resumable(tmp_path, StudyConfig(threads=1, jobs=4, train=TrainConfig(check_finite=False)))
    assert fingerprint(StudyConfig(threads=1)) != fingerprint(StudyConfig(threads=2))
    assert fingerprint(StudyConfig(threads=1)) == fingerprint(StudyConfig(threads=1, jobs=3, rounds=7))


def test_resume_without_threads_keeps_the_studys(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--models", "convnet", "--rounds", "1", "--epochs", "1", "--n-pairs", "50", "--threads", "1",
                 "--quiet", "--no-curves", "--out", str(out)]) == 0
    # without --threads the default would be all cores for one job; the study's 1 is kept instead
    assert main(["--models", "convnet", "--rounds", "2", "--epochs", "1", "--n-pairs", "50", "--jobs", "1",
                 "--quiet", "--no-curves", "--out", str(out), "--resume"]) == 0
    assert "skipping 1 finished run(s), 1 to go" in capsys.readouterr().err
    assert json.loads((out / CONFIG_FILE).read_text())["study"]["threads"] == 1
    assert load(out)["config"]["threads"] == 1
