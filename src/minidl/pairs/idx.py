"""Read MNIST files in the IDX format (raw or gzip-compressed) with torch."""

import gzip
import struct
import zlib
from pathlib import Path

import torch

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataFileError(ValueError):
    """A data file that exists but cannot be used; the message names it and what is wrong."""


def _read_bytes(path):
    """Return the (decompressed) bytes of a raw or .gz file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # corrupt or truncated gzip data
        raise DataFileError(f"{path}: cannot decompress, the file is corrupt or truncated ({e})") from None


def read_idx(path, magic, ndim):
    """Read one IDX file of unsigned bytes with the given magic number and rank."""
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise DataFileError(f"{path}: file too short ({len(data)} bytes) to hold an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataFileError(f"{path}: bad magic number 0x{found:08x}, expected 0x{magic:08x}")
    if len(data) < header:
        raise DataFileError(f"{path}: truncated header ({len(data)} bytes, expected {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = 1
    for n in shape:
        size *= n
    if len(data) != header + size:
        raise DataFileError(
            f"{path}: {len(data) - header} data bytes, expected {size} for shape {tuple(shape)}"
            + (" (truncated)" if len(data) < header + size else " (trailing bytes)")
        )
    if size == 0:  # frombuffer refuses an empty buffer; the callers say what is missing
        return torch.zeros(shape, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(*shape)


def read_images(path):
    """Read an IDX image file as a uint8 tensor N x 28 x 28."""
    images = read_idx(path, IMAGES_MAGIC, 3)
    if tuple(images.shape[1:]) != (28, 28):
        raise DataFileError(f"{path}: images are {tuple(images.shape[1:])}, expected (28, 28)")
    if len(images) == 0:
        raise DataFileError(f"{path}: the file holds no images")
    return images


def read_labels(path):
    """Read an IDX label file as an int64 tensor N with values 0-9."""
    labels = read_idx(path, LABELS_MAGIC, 1).long()
    if len(labels) == 0:
        raise DataFileError(f"{path}: the file holds no labels")
    if labels.numel() and labels.max() > 9:
        raise DataFileError(f"{path}: label {int(labels.max())} outside 0-9")
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
        raise DataFileError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    return images, labels
