"""python -m minidl.pairs: a tiny study end to end, and bad arguments."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from minidl.pairs.__main__ import main
from minidl.pairs.study import StudyConfig, run_one
from minidl.pairs.train import TrainConfig

from conftest import PACKAGE_ROOT, subprocess_env
from test_pairs_data import write_mnist



def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minidl.pairs", *args], capture_output=True,
                          text=True, env=subprocess_env(), cwd=PACKAGE_ROOT, timeout=300)


def test_tiny_study_writes_table_json_csv_and_plots(tmp_path):
    out = tmp_path / "out"
    result = run_cli("--rounds", "1", "--epochs", "1", "--models", "mlp", "--models", "siamese_aux",
                     "--n-pairs", "200", "--jobs", "2", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| model | parameters | train error (%) | test error (%)")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["mlp", "siamese_aux"]
    assert (out / "results.md").read_text().strip() == result.stdout.strip()

    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["models"] == ["mlp", "siamese_aux"] and saved["config"]["n_pairs"] == 200
    assert [(r["model"], r["round"], r["seed"]) for r in saved["runs"]] == [("mlp", 0, 0), ("siamese_aux", 0, 0)]
    for run, row in zip(saved["runs"], saved["summary"]):
        assert len(run["train_loss_curve"]) == len(run["test_error_curve"]) == 1
        assert 0 <= run["test_error"] <= 1 and run["test_error"] == run["test_error_curve"][0]
        assert row["test_error_mean"] == pytest.approx(100 * run["test_error"])
        assert f"{100 * run['test_error']:.2f} ± 0.00" in lines[2 + saved["runs"].index(run)]

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["model"] for row in rows] == ["mlp", "siamese_aux"]
    assert float(rows[1]["test_error"]) == saved["runs"][1]["test_error"]
    assert json.loads(rows[0]["train_error_curve"]) == saved["runs"][0]["train_error_curve"]

    for name in ("test_error_boxplot.png", "learning_curves.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    # a worker process reproduces exactly what this process computes from the same seed, on the
    # device that the CLI's --device auto chose and with its thread count (as results.json records
    # them: the default threads, cores / jobs, differ between hosts, and the conv figures with them)
    threads = torch.get_num_threads()
    try:
        device = saved["config"]["train"]["device"]
        config = StudyConfig(n_pairs=200, threads=saved["config"]["threads"],
                             train=TrainConfig(epochs=1, device=device))
        here = run_one(("siamese_aux", 0, config))
    finally:
        torch.set_num_threads(threads)
    assert here["train_loss_curve"] == saved["runs"][1]["train_loss_curve"]
    assert here["test_error"] == saved["runs"][1]["test_error"]


def test_study_on_an_idx_folder_in_process(tmp_path, capsys):
    write_mnist(tmp_path / "mnist" / "MNIST" / "raw", n_train=80, n_test=40)
    out = tmp_path / "out"
    code = main(["--data-dir", str(tmp_path / "mnist"), "--n-pairs", "20", "--rounds", "2", "--epochs", "2",
                 "--models", "convnet,convnet_aux", "--jobs", "1", "--threads", "1", "--quiet",
                 "--no-curves", "--out", str(out)])
    assert code == 0
    saved = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in saved["runs"]] == [
        ("convnet", 0), ("convnet_aux", 0), ("convnet", 1), ("convnet_aux", 1)]
    assert all(r["test_error_curve"] == [] and len(r["train_loss_curve"]) == 2 for r in saved["runs"])
    assert (out / "learning_curves.png").stat().st_size > 5000
    assert "| convnet_aux |" in capsys.readouterr().out


def test_bad_arguments_in_a_subprocess_give_no_traceback():
    result = run_cli("--models", "nope", "--rounds", "1")
    assert result.returncode == 2
    assert "error: unknown model(s) nope" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
