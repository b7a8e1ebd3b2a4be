"""dl.save and dl.load: files written atomically, so an interrupted save never replaces a good file."""
import os
import pickle
import secrets
import stat
import zipfile

import torch

# torch.save's format before torch 1.6 (still readable by torch.load): a pickle of this magic number first.
_LEGACY_PREFIX = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]


def _open_temporary(target):
    """(fd, path) of a new file beside target, with the mode that writing target directly would give."""
    folder, name = os.path.split(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # an existing file keeps its mode
    except FileNotFoundError:
        mode = None  # a new file: 0o666 less the umask, as open() gives
    while True:
        tmp = os.path.join(folder, f"{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except BaseException:
                os.close(fd)
                os.remove(tmp)
                raise
        return fd, tmp


def save(obj, path):
    """Write obj (e.g. a state_dict) to path: a temporary file in the same folder, fsync, then rename over path."""
    # Through a symlink, the file it points to is written and the link stays.
    target = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"minidl.save: folder {folder!r} does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(f"minidl.save: {os.fspath(path)!r} is a folder; expected a file path")
    fd, tmp = _open_temporary(target)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)  # atomic on POSIX: readers see the old file or the new one, never a mix
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _not_a_checkpoint(path):
    """Why the file at path is not something torch.save wrote, or None when it looks like one."""
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_PREFIX))
    if head == _LEGACY_PREFIX:
        return None
    if head[:2] != b"PK":
        return f"it does not begin like one ({size} bytes, first bytes {head[:8]!r})"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return f"it is a damaged or truncated archive ({size} bytes: {e})"
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "it is a zip archive without the data.pkl of torch.save"
    return None


def load(path, map_location=None, weights_only=True):
    """Read what save wrote; tensors and plain containers only unless weights_only=False (trusted files)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"minidl.load: no file at {path!r}")
    why = _not_a_checkpoint(path)
    if why is not None:
        raise ValueError(f"minidl.load: {path!r} is not a minidl/torch checkpoint (written by minidl.save "
                         f"or torch.save): {why}")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except EOFError:
        raise ValueError(f"minidl.load: {path!r} is not a minidl/torch checkpoint: it ends early "
                         f"(a truncated file)") from None
