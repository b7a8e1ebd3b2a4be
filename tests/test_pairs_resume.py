"""Nothing lost: each finished run is recorded durably, a killed study resumes, old results are kept apart."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from minidl.pairs.__main__ import main
from minidl.pairs.store import (RUNS_FILE, StudyStateError, TruncatedRecordWarning, append_run,
                                atomic_write_text, read_runs)

from conftest import PACKAGE_ROOT, subprocess_env

TIMING = ("seconds", "recorded_at")  # all that may differ between equal studies


def untimed(results):
    """results.json without the timings: config, summary and runs."""
    strip = lambda rows: [{k: v for k, v in row.items() if k not in TIMING} for row in rows]
    return {"config": results["config"], "summary": strip(results["summary"]), "runs": strip(results["runs"])}


def load(out):
    """The parsed results.json of a study folder."""
    return json.loads((out / "results.json").read_text())


def complete_lines(path):
    """The newline-terminated lines of PATH (none if it does not exist yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return data.split(b"\n")[:-1]


STUDY = ["--models", "mlp,convnet", "--rounds", "4", "--epochs", "2", "--n-pairs", "1000",
         "--seed", "3", "--jobs", "1", "--threads", "1", "--quiet"]  # 8 runs in one process


def study_process(out, *extra):
    """Start python -m minidl.pairs with the STUDY options."""
    return subprocess.Popen([sys.executable, "-m", "minidl.pairs", *STUDY, "--out", str(out), *extra],
                            env=subprocess_env(PYTHONWARNINGS="ignore"), cwd=PACKAGE_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after_first_run(process, runs_file, timeout=45):
    """SIGKILL PROCESS as soon as RUNS_FILE holds a complete line; return the lines then."""
    deadline = time.monotonic() + timeout
    while not complete_lines(runs_file):
        assert process.poll() is None, f"study ended before it was killed: {process.communicate()}"
        assert time.monotonic() < deadline, "no run recorded in time"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    return complete_lines(runs_file)


def test_killed_study_resumes_without_redoing_runs_and_equals_an_uninterrupted_one(tmp_path, capsys):
    killed = tmp_path / "killed"
    before = kill_after_first_run(study_process(killed), killed / RUNS_FILE)
    print(f"killed after {len(before)} of 8 runs", file=sys.stderr)
    assert 1 <= len(before) < 8, f"{len(before)} runs recorded: the kill came too late"
    assert (killed / RUNS_FILE).read_bytes().endswith(b"\n")  # no torn line to repair
    survivors = [json.loads(line) for line in before]  # intact
    assert [(r["model"], r["round"]) for r in survivors] == [
        ("mlp", 0), ("convnet", 0), ("mlp", 1), ("convnet", 1), ("mlp", 2), ("convnet", 2),
        ("mlp", 3)][:len(before)]
    assert not (killed / "results.json").exists()

    resumed = study_process(killed, "--resume")
    threads = torch.get_num_threads()
    try:  # meanwhile, the same study uninterrupted, in this process
        assert main([*STUDY, "--out", str(tmp_path / "reference")]) == 0
    finally:
        torch.set_num_threads(threads)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert f"skipping {len(before)} finished run(s), {8 - len(before)} to go" in err
    after = complete_lines(killed / RUNS_FILE)
    assert len(after) == 8 and after[:len(before)] == before  # not redone: same lines, same stamps
    saved = load(killed)
    assert [r["recorded_at"] for r in saved["runs"][:len(before)]] == [r["recorded_at"] for r in survivors]

    assert untimed(saved) == untimed(load(tmp_path / "reference"))  # bitwise-equal errors and curves
    strip_seconds = lambda table: [line.rsplit("|", 2)[0] for line in table.splitlines()]
    assert strip_seconds(out) == strip_seconds(capsys.readouterr().out)


def record(i, model="mlp"):
    """A run record with every key a study writes."""
    return {"model": model, "round": i, "seed": i, "parameters": 10, "train_error": 0.1 * i,
            "test_error": 0.2, "seconds": 1.0, "train_loss_curve": [0.5], "train_error_curve": [],
            "test_error_curve": []}


def test_truncated_last_line_is_ignored_with_a_warning_and_cut_off(tmp_path):
    for i in range(2):
        append_run(tmp_path, record(i))
    path = tmp_path / RUNS_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"model": "mlp", "round": 2, "se')  # crash mid-write
    with pytest.warns(TruncatedRecordWarning, match=r"ignoring truncated last line 3 \(32 bytes"):
        runs = read_runs(tmp_path)
    assert [run["round"] for run in runs] == [0, 1] and runs[1]["train_error"] == 0.1
    assert path.read_bytes() != whole  # left alone without repair...
    with pytest.warns(TruncatedRecordWarning, match="cut it off"):
        read_runs(tmp_path, repair=True)
    assert path.read_bytes() == whole  # ...cut back to the last complete line with it
    append_run(tmp_path, record(2))
    assert [run["round"] for run in read_runs(tmp_path)] == [0, 1, 2]


def test_a_torn_line_that_ends_in_a_newline_is_also_dropped(tmp_path):
    append_run(tmp_path, record(0))
    with open(tmp_path / RUNS_FILE, "ab") as f:
        f.write(b"\0\0\0\n")  # a file system that extended the file but lost the data
    with pytest.warns(TruncatedRecordWarning):
        assert len(read_runs(tmp_path, repair=True)) == 1
    assert len(complete_lines(tmp_path / RUNS_FILE)) == 1


@pytest.mark.parametrize("content, message", [
    (b'{"model": "mlp"\n' + json.dumps(record(1)).encode() + b"\n", r"line 1 is corrupt .* not the last line"),
    (b"[1, 2]\n", r"line 1: expected a JSON object, got list"),
    (b'{"model": "mlp", "round": 0}\n', r"line 1: run record lacks seed, parameters"),
])
def test_other_damage_is_an_error_not_a_silent_loss(tmp_path, content, message):
    (tmp_path / RUNS_FILE).write_bytes(content)
    with pytest.raises(StudyStateError, match=message):
        read_runs(tmp_path)


def test_atomic_write_leaves_the_old_file_on_failure_and_no_temporary_files(tmp_path):
    path = tmp_path / "results.md"
    atomic_write_text(path, "old\n")
    with pytest.raises(TypeError):
        atomic_write_text(path, None)  # fails while writing
    assert path.read_text() == "old\n"
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["results.md"]


def tiny(out, *extra):
    """Run a tiny study in this process; return main's status."""
    return main(["--models", "mlp", "--rounds", "2", "--epochs", "1", "--n-pairs", "50", "--jobs", "1",
                 "--threads", "1", "--quiet", "--no-curves", "--out", str(out), *extra])


def test_out_dir_with_a_study_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert tiny(out) == 0
    first = load(out)
    with pytest.raises(SystemExit) as exit_info:
        tiny(out)
    assert exit_info.value.code == 2
    assert "already holds a study; pass --resume to continue it or --overwrite" in capsys.readouterr().err

    with pytest.raises(SystemExit):  # --resume refuses other options and names them
        tiny(out, "--resume", "--seed", "1", "--lr", "0.1")
    err = capsys.readouterr().err
    assert "--resume: options differ from the study in" in err
    assert "seed: stored 0, now 1; train.lr: stored 0.005, now 0.1" in err
    with pytest.raises(SystemExit):  # rounds may grow, not shrink
        main(["--models", "mlp", "--rounds", "1", "--epochs", "1", "--n-pairs", "50", "--quiet",
              "--no-curves", "--out", str(out), "--resume"])
    assert "rounds: stored 2, now 1" in capsys.readouterr().err

    (out / "notes.txt").write_text("mine")
    assert tiny(out, "--overwrite") == 0  # afresh: the same seed gives the same results
    assert untimed(load(out)) == untimed(first) and (out / "notes.txt").read_text() == "mine"
    assert len(complete_lines(out / RUNS_FILE)) == 2


def test_resume_with_more_rounds_runs_only_the_new_ones(tmp_path, capsys):
    out = tmp_path / "out"
    assert tiny(out) == 0
    assert tiny(tmp_path / "four", "--rounds", "4") == 0
    capsys.readouterr()
    assert tiny(out, "--resume", "--rounds", "4", "--allow-nonfinite") == 0
    assert "skipping 2 finished run(s), 2 to go" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["study"]["rounds"] == 4
    assert untimed(load(out))["runs"] == untimed(load(tmp_path / "four"))["runs"]


def test_resume_repairs_a_torn_last_line_with_a_warning(tmp_path, capsys):
    out = tmp_path / "out"
    assert tiny(out) == 0
    whole = load(out)
    lines = (out / RUNS_FILE).read_bytes().split(b"\n")
    (out / RUNS_FILE).write_bytes(lines[0] + b"\n" + lines[1][:40])  # killed writing run 2
    for name in ("results.json", "results.md"):
        (out / name).unlink()
    capsys.readouterr()
    assert tiny(out, "--resume") == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "ignoring truncated last line 2 (40 bytes" in err
    assert "skipping 1 finished run(s), 1 to go" in err
    assert untimed(load(out)) == untimed(whole)


def test_results_are_recorded_per_framework(tmp_path, capsys):
    out = tmp_path / "out"
    assert tiny(out) == 0  # minidl, the default
    assert json.loads((out / "config.json").read_text())["study"]["train"]["framework"] == "minidl"
    assert {json.loads(line)["options"]["train.framework"] for line in complete_lines(out / RUNS_FILE)} == {"minidl"}
    assert {run["framework"] for run in load(out)["runs"]} == {"minidl"}
    assert (out / "results.csv").read_text().splitlines()[1].startswith("minidl,mlp,0,")
    with pytest.raises(SystemExit):  # one folder, one framework
        tiny(out, "--resume", "--framework", "torch")
    assert "train.framework: stored 'minidl', now 'torch'" in capsys.readouterr().err
    assert tiny(tmp_path / "torch", "--framework", "torch") == 0
    assert load(tmp_path / "torch")["config"]["train"]["framework"] == "torch"


def test_a_study_from_before_the_framework_option_resumes_as_torch(tmp_path, capsys):
    """Studies written before --framework existed ran torch.nn: they hold no framework anywhere."""
    out = tmp_path / "out"
    assert tiny(out, "--framework", "torch", "--rounds", "1") == 0
    config = json.loads((out / "config.json").read_text())
    del config["study"]["train"]["framework"]
    (out / "config.json").write_text(json.dumps(config))
    lines = [json.loads(line) for line in complete_lines(out / RUNS_FILE)]
    assert all("train.framework" not in run["options"] for run in lines)  # torch's fingerprint is the old one
    for run in lines:
        del run["framework"]
    (out / RUNS_FILE).write_text("".join(json.dumps(run) + "\n" for run in lines))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        tiny(out, "--resume", "--rounds", "2")
    assert "train.framework: stored 'torch', now 'minidl'" in capsys.readouterr().err
    assert tiny(out, "--resume", "--rounds", "2", "--framework", "torch") == 0
    assert "skipping 1 finished run(s), 1 to go" in capsys.readouterr().err
    assert (out / "results.csv").read_text().splitlines()[1].startswith("torch,mlp,0,")
