"""The IDX reader: valid files in every layout, and clear errors on bad ones."""

import gzip
import struct

import pytest
import torch

from minidl.pairs import idx

from test_pairs_data import full_mnist_dir, idx_bytes, write_mnist


def images(n=3, size=28):
    return torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))


@pytest.mark.parametrize("gz", [False, True])
def test_roundtrip(tmp_path, gz):
    x = images()
    y = torch.tensor([3, 0, 9], dtype=torch.uint8)
    for name, t, magic in (("i", x, 0x803), ("l", y, 0x801)):
        raw = idx_bytes(t, magic)
        (tmp_path / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    suffix = ".gz" if gz else ""
    assert torch.equal(idx.read_images(tmp_path / ("i" + suffix)), x)
    labels = idx.read_labels(tmp_path / ("l" + suffix))
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 0, 9]


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_load_split_in_both_layouts(tmp_path, layout):
    folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    written = write_mnist(folder, n_train=7, n_test=4, gz=False)
    for split, key in (("train", "train"), ("test", "t10k")):
        x, y = idx.load_mnist_split(tmp_path, split)
        assert torch.equal(x, written[key][0]) and torch.equal(y, written[key][1])


def test_bad_magic_is_named(tmp_path):
    path = tmp_path / "bad-images"
    path.write_bytes(idx_bytes(images(), 0x801))  # label magic on an image file
    with pytest.raises(ValueError, match=r"bad-images: bad magic number 0x00000801, expected 0x00000803"):
        idx.read_images(path)


def test_label_file_given_as_images(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(torch.zeros(5, dtype=torch.uint8), 0x801))
    with pytest.raises(ValueError, match="labels: bad magic"):
        idx.read_images(path)


def test_truncated_data(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(idx_bytes(images(), 0x803)[:-10]))
    with pytest.raises(ValueError, match=r"short.gz: 2342 data bytes, expected 2352 .*truncated"):
        idx.read_images(path)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(images(), 0x803) + b"\0")
    with pytest.raises(ValueError, match="trailing bytes"):
        idx.read_images(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "header"
    path.write_bytes(struct.pack(">II", 0x803, 3))
    with pytest.raises(ValueError, match="header: truncated header"):
        idx.read_images(path)
    path.write_bytes(b"\0\0")
    with pytest.raises(ValueError, match="too short"):
        idx.read_images(path)


def test_wrong_image_size(tmp_path):
    path = tmp_path / "small"
    path.write_bytes(idx_bytes(images(size=14), 0x803))
    with pytest.raises(ValueError, match=r"small: images are \(14, 14\), expected \(28, 28\)"):
        idx.read_images(path)


def test_label_out_of_range(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(torch.tensor([1, 12], dtype=torch.uint8), 0x801))
    with pytest.raises(ValueError, match="labels: label 12 outside 0-9"):
        idx.read_labels(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(images(), 0x803))[:40])
    with pytest.raises(ValueError, match="broken.gz: cannot decompress"):
        idx.read_images(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        idx.read_images(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\[.gz\] not found"):
        idx.find_file(tmp_path, "t10k-labels-idx1-ubyte")


def test_count_mismatch_between_images_and_labels(tmp_path):
    write_mnist(tmp_path, n_train=5, n_test=4, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(3, dtype=torch.uint8), 0x801))
    with pytest.raises(ValueError, match="holds 4 images but .* holds 3 labels"):
        idx.load_mnist_split(tmp_path, "test")


def test_full_mnist_files():
    folder = full_mnist_dir()
    x, y = idx.load_mnist_split(folder, "test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert y.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x, y = idx.load_mnist_split(folder, "train")
    assert x.shape == (60000, 28, 28) and y.bincount().sum() == 60000
