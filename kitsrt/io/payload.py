"""Does a file really hold the bytes its header promises? Answered without decompressing it whole.

ITK zero-fills a short file without complaint, and a small compressed file can expand to gigabytes
(a "gzip bomb"). Both are caught from the header's promise and the file's real size:

* plain data: the file (or the external data file) must be at least as long as promised;
* deflate (gzip, zlib): one deflate byte expands to at most 1032 bytes, so a promise above
  1032 x the compressed size is impossible: refused without inflating anything. A gzip file then
  ends with ISIZE, the length of its last member modulo 2**32: when it matches the promise (one
  member, the usual case) the file is whole. Otherwise (a cut file, or several gzip members) the
  members are inflated in 1 MiB steps, counting bytes and keeping none, and counting stops as soon
  as the promise is met, so a bomb never costs more than the promised (budgeted) size in time and
  nothing in memory.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from kitsrt.errors import InputError

MAX_DEFLATE_RATIO = 1032
_STEP = 1 << 20


def check_plain_payload(path: Path, promised_bytes: int, offset: int = 0, header: Path | None = None) -> None:
    """An uncompressed file must hold ``promised_bytes`` after ``offset`` (``header``: the file naming it)."""
    available = path.stat().st_size - offset
    if available < promised_bytes:
        where = f"{header}: its data file {path.name}" if header is not None and header != path else str(path)
        raise InputError(f"{where} is truncated: the header promises {promised_bytes} bytes of voxels, "
                         f"the file holds {max(available, 0)}; copy or export it again")


def check_deflate_bound(path: Path, promised_bytes: int, compressed_bytes: int) -> None:
    """Refuse a promise no deflate stream of ``compressed_bytes`` can keep (before inflating)."""
    if promised_bytes > MAX_DEFLATE_RATIO * compressed_bytes + 1024:
        raise InputError(f"{path}: its header promises {promised_bytes} bytes of voxels but the compressed "
                         f"data is {compressed_bytes} bytes, more than deflate can expand "
                         f"({MAX_DEFLATE_RATIO}:1): a truncated file or a forged header (gzip bomb); refused")


BOMB_MIN_BYTES = 256 << 20


def check_compression_ratio(path: Path, promised_bytes: int, compressed_bytes: int, limit: float | None) -> None:
    """Refuse (before inflating) more than ``BOMB_MIN_BYTES`` (256 MiB) of data that would expand
    more than ``limit`` times: real CT, noisy everywhere, compresses about 2-10:1; a large scan
    expanding over 100:1 is constant or a bomb. Small constant volumes (test scans) cost little."""
    ratio = promised_bytes / max(compressed_bytes, 1)
    if limit is not None and ratio > limit and promised_bytes > BOMB_MIN_BYTES:
        raise InputError(f"{path}: would expand {ratio:.0f}:1 when decompressed (limit {limit:g}:1 for a CT "
                         "scan): mostly constant data or a gzip bomb; refused before decompressing")


def check_gzip_payload(path: Path, promised_bytes: int, max_ratio: float | None = None) -> None:
    """A gzip file (one or several members) must inflate to at least ``promised_bytes``."""
    size = path.stat().st_size
    check_deflate_bound(path, promised_bytes, size)
    check_compression_ratio(path, promised_bytes, size, max_ratio)
    with open(path, "rb") as raw:
        raw.seek(max(size - 4, 0))
        tail = raw.read(4)
    if len(tail) == 4 and struct.unpack("<I", tail)[0] == promised_bytes % 2**32:
        return
    inflated = inflated_length(path, stop_at=promised_bytes)
    if inflated < promised_bytes:
        raise InputError(f"{path}: file is truncated: its header promises {promised_bytes} bytes, the gzip "
                         f"data inflates to {inflated}; copy or export it again")


def inflated_length(path: Path, stop_at: int) -> int:
    """Bytes the gzip members of ``path`` inflate to, counting no further than ``stop_at``."""
    total, pending = 0, b""
    inflater = zlib.decompressobj(wbits=31)
    with open(path, "rb") as raw:
        while total < stop_at:
            if not pending:
                pending = raw.read(_STEP)
                if not pending:
                    break
            if inflater.eof:
                if not pending.strip(b"\0"):  # zero padding after the last member
                    pending = b""
                    continue
                inflater = zlib.decompressobj(wbits=31)
            try:
                total += len(inflater.decompress(pending, _STEP))
            except zlib.error as exc:
                raise InputError(f"{path}: gzip data is corrupt ({exc}); copy or export it again") from None
            pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    return total
