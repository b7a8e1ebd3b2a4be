"""One study at a time per output folder: an exclusive flock held for the study's whole life."""

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = "study.lock"


class OutFolderError(RuntimeError):
    """The output folder cannot be created or written, or another study holds its lock."""


def _holder(path):
    """'PID on HOST' as the holder wrote it into the lock file ('unknown' if unreadable)."""
    try:
        return Path(path).read_text(encoding="utf-8").strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


def _acquire(path):
    """Open and flock PATH; retry if the holder removed the file between our open and our lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # OSError here: not writable
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutFolderError(
                    f"--out {path.parent} is in use by another study (pid {_holder(path)}); "
                    f"wait for it to end, or choose another --out") from None
            raise OutFolderError(f"--out {path.parent}: cannot lock {path.name} ({e.strerror})") from None
        try:  # the file we locked must still be the one at PATH (see release below)
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def locked_folder(out_dir):
    """Create OUT_DIR, hold its lock file (with this pid and host in it, for a folder shared between
    machines) until the block ends, then remove it."""
    out_dir = Path(out_dir)
    path = out_dir / LOCK_FILE
    if out_dir.exists() and not out_dir.is_dir():
        raise OutFolderError(f"--out {out_dir} exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path)
    except OSError as e:
        raise OutFolderError(f"--out {out_dir}: cannot create the folder or write in it "
                             f"({e.strerror or e})") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
        yield path
    finally:
        # unlink while still locked: a process that opened the old file then sees it is gone
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
