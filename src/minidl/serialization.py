"""dl.save and dl.load: files written atomically, so an interrupted save never replaces a good file."""
import os
import tempfile

import torch


def save(obj, path):
    """Write obj (e.g. a state_dict) to path: a temporary file in the same folder, fsync, then rename over path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"minidl.save: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never a mix
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load(path, map_location=None, weights_only=True):
    """Read what save wrote; tensors and plain containers only unless weights_only=False (trusted files)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"minidl.load: no file at {path!r}")
    return torch.load(path, map_location=map_location, weights_only=weights_only)
