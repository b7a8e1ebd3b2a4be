"""Read MNIST files in the IDX format (raw or gzip-compressed) with torch."""

import gzip
import struct
from pathlib import Path

import torch

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path):
    """Return the (decompressed) bytes of a raw or .gz file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # gzip raises these on corrupt or truncated data
        raise ValueError(f"{path}: cannot decompress ({e})") from e


def read_idx(path, magic, ndim):
    """Read one IDX file of unsigned bytes with the given magic number and rank."""
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise ValueError(f"{path}: file too short ({len(data)} bytes) to hold an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise ValueError(f"{path}: bad magic number 0x{found:08x}, expected 0x{magic:08x}")
    if len(data) < header:
        raise ValueError(f"{path}: truncated header ({len(data)} bytes, expected {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = 1
    for n in shape:
        size *= n
    if len(data) != header + size:
        raise ValueError(
            f"{path}: {len(data) - header} data bytes, expected {size} for shape {tuple(shape)}"
            + (" (truncated)" if len(data) < header + size else " (trailing bytes)")
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(*shape)


def read_images(path):
    """Read an IDX image file as a uint8 tensor N x 28 x 28."""
    images = read_idx(path, IMAGES_MAGIC, 3)
    if tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"{path}: images are {tuple(images.shape[1:])}, expected (28, 28)")
    return images


def read_labels(path):
    """Read an IDX label file as an int64 tensor N with values 0-9."""
    labels = read_idx(path, LABELS_MAGIC, 1).long()
    if labels.numel() and labels.max() > 9:
        raise ValueError(f"{path}: label {int(labels.max())} outside 0-9")
    return labels


def find_file(data_dir, name):
    """Locate NAME or NAME.gz in DATA_DIR or DATA_DIR/MNIST/raw (torchvision layout)."""
    data_dir = Path(data_dir)
    for folder in (data_dir, data_dir / "MNIST" / "raw"):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"MNIST file {name}[.gz] not found in {data_dir} or {data_dir / 'MNIST' / 'raw'}"
    )


def load_mnist_split(data_dir, split):
    """Return (images uint8 N x 28 x 28, labels int64 N) of the 'train' or 'test' split."""
    image_name, label_name = MNIST_FILES[split]
    image_path = find_file(data_dir, image_name)
    label_path = find_file(data_dir, label_name)
    images, labels = read_images(image_path), read_labels(label_path)
    if len(images) != len(labels):
        raise ValueError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    return images, labels
