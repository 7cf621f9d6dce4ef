"""Small outputs (reports, scores, manifests, engines), written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from kitsrt.errors import InputError


def write_text_atomic(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a small text file through a temporary name and a rename."""
    return write_bytes_atomic(text.encode(), path, overwrite)


def write_bytes_atomic(data: bytes, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a file through a temporary name and a rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise InputError(f"{path.parent}: output folder does not exist")
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()
