"""Outputs written whole or not at all: a temporary sibling, then a rename.

Every temporary file is registered while it exists, so that ``remove_temporary_files`` (run by the
SIGTERM/SIGINT handler that ``install_signal_cleanup`` installs) leaves none behind. A SIGKILL still
can; such files start with a dot and contain ``.partial-``, and scan discovery ignores them.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kitsrt.errors import InputError

TEMP_MARKER = ".partial-"
_live_temporaries: set[Path] = set()
_lock = threading.Lock()


def temporary_name(path: Path, suffix: str = "") -> Path:
    """A new registered temporary name beside ``path`` (``.NAME.partial-XXXXXXXX[suffix]``), for a
    file or a folder; the caller renames it into place or ``discard_temporary``s it."""
    tmp = Path(path).with_name(f".{Path(path).name}{TEMP_MARKER}{uuid.uuid4().hex[:8]}{suffix}")
    with _lock:
        _live_temporaries.add(tmp)
    return tmp


def discard_temporary(tmp: Path) -> None:
    """Remove a temporary file or folder if it is still there, and forget it."""
    _remove(tmp)
    with _lock:
        _live_temporaries.discard(tmp)


@contextmanager
def temporary_sibling(path: Path, suffix: str = "") -> Iterator[Path]:
    """A registered temporary name beside ``path``, removed (file or folder) on exit."""
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
    finally:
        discard_temporary(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_temporary_files() -> int:
    """Delete every temporary output file still registered; returns how many were removed."""
    with _lock:
        pending = list(_live_temporaries)
    removed = 0
    for tmp in pending:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)
            removed += 1
    return removed


def install_signal_cleanup() -> None:
    """On SIGTERM or SIGINT: remove temporary outputs, then exit with 128 + the signal number (no
    traceback). Only the main thread may install handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        remove_temporary_files()
        raise SystemExit(128 + signum)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, handler)


def is_temporary(path: Path) -> bool:
    """A temporary output of kitsrt (or a leftover of a killed run)."""
    return path.name.startswith(".") and TEMP_MARKER in path.name


def write_text_atomic(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a small text file through a temporary name and a rename."""
    return write_bytes_atomic(text.encode(), path, overwrite)


def write_bytes_atomic(data: bytes, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a file through a temporary name and a rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: output folder does not exist or is not a folder")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the output")
    with temporary_sibling(path) as tmp:
        try:
            tmp.write_bytes(data)
            move_into_place(tmp, path, overwrite)
        except OSError as exc:
            raise InputError(f"{path}: could not write it: {exc.strerror or exc}") from None
    return path


NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished file ``tmp`` to ``path``. Without ``overwrite`` an existing ``path`` is
    refused atomically (InputError), so of two writers racing for one name exactly one wins: the name
    is taken with a hard link (fails if it exists), or, where the file system has no hard links, claimed
    with an exclusive create before the rename."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        try:
            os.link(tmp, path)
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.replace(tmp, path)
            return
    except FileExistsError:
        raise InputError(f"{path}: output already exists; pass --overwrite to replace it") from None
    os.unlink(tmp)


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()
