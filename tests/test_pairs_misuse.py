"""The study misused: corrupt data files, unusable --out, a disk that fills up, seeds and thread
counts beyond the machine, non-finite losses. Each ends in one clear line, never a traceback."""

import errno
import gzip
import json
import math
import os

import pytest
import torch

from minidl.pairs import idx, plots
from minidl.pairs.__main__ import main
from minidl.pairs.options import available_cores
from minidl.pairs.store import CONFIG_FILE, RUNS_FILE

from test_pairs_data import idx_bytes, write_mnist
from test_pairs_resume import complete_lines, load, untimed


def strict_json(text):
    """json.loads that refuses NaN and Infinity, as every JSON parser but Python's does."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def tiny(out, *extra):
    """Run a tiny study in this process; return main's status."""
    return main(["--models", "mlp", "--rounds", "2", "--epochs", "1", "--n-pairs", "50", "--jobs", "1",
                 "--threads", "1", "--quiet", "--no-curves", "--out", str(out), *extra])


def cli_error(capsys, *args):
    """Run main(ARGS) that must fail with status 2; return its one error line."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_every_flipped_byte_of_a_gzipped_idx_file_reads_right_or_names_the_file(tmp_path):
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = gzip.compress(idx_bytes(images, 0x803), mtime=0)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    failures = 0
    for at in range(len(data)):
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
        try:
            got = idx.read_images(path)
        except idx.DataFileError as e:  # before: zlib.error, EOFError, gzip.BadGzipFile tracebacks
            assert str(e).startswith(f"{path}: "), e
            failures += 1
        else:  # a byte of the header gzip ignores (its time stamp, OS): the data read is intact
            assert torch.equal(got, images), f"flipped byte {at} changed the images silently"
    assert failures > len(data) - 12


def test_a_corrupt_file_in_data_dir_is_named_not_blamed_on_n_pairs(tmp_path, capsys):
    write_mnist(tmp_path, n_train=40, n_test=20)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF  # inside the deflate stream
    path.write_bytes(bytes(data))
    line = cli_error(capsys, "--data-dir", str(tmp_path), "--n-pairs", "5", "--out", str(tmp_path / "out"))
    assert line.startswith(f"python -m minidl.pairs: error: cannot read the MNIST data: {path}: cannot "
                           "decompress, the file is corrupt or truncated (")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind, name", [("images", "t10k-images-idx3-ubyte"), ("labels", "t10k-labels-idx1-ubyte")])
def test_a_file_with_no_images_or_labels_is_named(tmp_path, capsys, kind, name):
    write_mnist(tmp_path, n_train=40, n_test=20, gz=False)
    empty = torch.zeros((0, 28, 28) if kind == "images" else (0,), dtype=torch.uint8)
    (tmp_path / name).write_bytes(idx_bytes(empty, 0x803 if kind == "images" else 0x801))
    line = cli_error(capsys, "--data-dir", str(tmp_path), "--n-pairs", "5", "--out", str(tmp_path / "out"))
    assert line == (f"python -m minidl.pairs: error: cannot read the MNIST data: {tmp_path / name}: "
                    f"the file holds no {kind}")


def test_an_unreadable_idx_file_is_named(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(torch.zeros((2, 28, 28), dtype=torch.uint8), 0x803))
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("this user reads files without read permission (root)")
    with pytest.raises(idx.DataFileError, match=rf"{path}: cannot read it \(Permission denied\)"):
        idx.read_images(path)


@pytest.mark.parametrize("out", ["/proc/minidl-study", "/proc/self/minidl/study"])
def test_an_out_folder_that_cannot_be_made_is_refused_before_training(capsys, out):
    assert tiny(out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m minidl.pairs: error: --out {out}: cannot create the folder or "
                          "write in it (") and err.count("\n") == 1


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert tiny(tmp_path / "file") == 2
    assert capsys.readouterr().err == f"python -m minidl.pairs: error: --out {tmp_path / 'file'} exists and is not a directory\n"


def test_a_read_only_out_is_refused_before_training(tmp_path, capsys):
    tmp_path.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("this user writes in read-only folders (root)")
        assert tiny(tmp_path) == 2
        assert capsys.readouterr().err == (f"python -m minidl.pairs: error: --out {tmp_path}: cannot create "
                                           "the folder or write in it (Permission denied)\n")
    finally:
        tmp_path.chmod(0o755)


def test_a_full_disk_while_plotting_keeps_the_runs_and_resume_writes_the_results(tmp_path, capsys, monkeypatch):
    def no_space(fig, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    assert tiny(tmp_path / "reference") == 0
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(plots, "_save", no_space)
        capsys.readouterr()
        assert tiny(out) == 1
    err = capsys.readouterr().err
    assert err == (f"python -m minidl.pairs: error: cannot write the results: [Errno 28] No space left on "
                   f"device: '{out / 'test_error_boxplot.png'}'; 2 finished run(s) are kept in "
                   f"{out / RUNS_FILE}; rerun with --resume to write them\n")
    assert tiny(out, "--resume") == 0
    assert "skipping 2 finished run(s), 0 to go" in capsys.readouterr().err
    assert untimed(load(out)) == untimed(load(tmp_path / "reference"))
    assert (out / "learning_curves.png").stat().st_size > 5000


def test_a_seed_beyond_torch_is_refused_naming_the_largest(tmp_path, capsys):
    largest = (2 ** 63 - 2) // 1000  # --rounds 2: seeds largest*1000 and largest*1000 + 1
    line = cli_error(capsys, "--seed", str(2 ** 64), "--rounds", "2", "--out", str(tmp_path))
    assert line == (f"python -m minidl.pairs: error: --seed {2 ** 64} is too large: round seeds are "
                    f"seed*1000 + round and must stay below 2**63; with --rounds 2 the largest --seed "
                    f"is {largest}")
    assert cli_error(capsys, "--seed", str(largest + 1), "--rounds", "2", "--out", str(tmp_path)).endswith(
        f"the largest --seed is {largest}")
    assert tiny(tmp_path / "out", "--seed", str(largest)) == 0  # and the largest trains
    assert [run["seed"] for run in load(tmp_path / "out")["runs"]] == [largest * 1000, largest * 1000 + 1]


def test_threads_beyond_the_cores_are_refused_naming_the_maximum(tmp_path, capsys):
    cores = available_cores()
    line = cli_error(capsys, "--threads", "100000", "--out", str(tmp_path))
    assert line == f"python -m minidl.pairs: error: --threads 100000: at most {cores}, the cores this process may use"
    assert cli_error(capsys, "--threads", str(cores + 1), "--out", str(tmp_path)).endswith(f"at most {cores}, "
                                                                                           "the cores this process may use")
    assert not list(tmp_path.iterdir())


def test_allow_nonfinite_writes_strict_json_with_null(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--models", "siamese_aux", "--rounds", "1", "--epochs", "2", "--n-pairs", "200", "--lr", "1e20",
                 "--jobs", "1", "--threads", "1", "--quiet", "--allow-nonfinite", "--out", str(out)]) == 0
    saved = strict_json((out / "results.json").read_text())  # before: NaN, which is not JSON
    [run] = saved["runs"]
    assert None in run["train_loss_curve"]
    assert all(value is None or math.isfinite(value) for value in run["train_loss_curve"])
    for line in complete_lines(out / RUNS_FILE):
        assert strict_json(line)["train_loss_curve"] == run["train_loss_curve"]
    strict_json((out / CONFIG_FILE).read_text())
    assert "null" in (out / "results.csv").read_text() and "NaN" not in (out / "results.csv").read_text()
    assert (out / "learning_curves.png").stat().st_size > 5000
    capsys.readouterr()
    assert main(["--models", "siamese_aux", "--rounds", "1", "--epochs", "2", "--n-pairs", "200", "--lr", "1e20",
                 "--quiet", "--allow-nonfinite", "--out", str(out), "--resume"]) == 0  # nulls read back
    assert strict_json((out / "results.json").read_text())["runs"] == saved["runs"]
