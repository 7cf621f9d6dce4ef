"""MetaImage (.mha/.mhd) and NRRD (.nrrd/.nhdr) headers: where the voxels are and how they are encoded.

Both formats may keep their voxels in another file named by the header (``ElementDataFile``,
``data file``). That file is confined to the header's folder (after resolving links) unless the
caller allows otherwise, and must be a regular file: a header must not make kitsrt read
``/etc/passwd``, a device or a FIFO. Lists and numbered patterns of data files are not supported.
Only the first 64 KiB of a file are read to find its header.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from kitsrt.errors import InputError

HEADER_LIMIT_BYTES = 1 << 16


@dataclass(frozen=True)
class DataLocation:
    """Where a header's voxels are: ``file`` from byte ``offset``; ``encoding`` raw, deflate or other."""

    file: Path
    offset: int
    encoding: str


def _header_lines(path: Path) -> tuple[list[tuple[str, str]], int]:
    """(key, value) pairs of a text header and the byte length of the header."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_LIMIT_BYTES)
    pairs, position = [], 0
    for raw_line in head.splitlines(keepends=True):
        position += len(raw_line)
        line = raw_line.decode("latin-1").strip()
        if not line:
            if path.suffix.lower() in (".nrrd", ".nhdr"):
                return pairs, position
            continue
        separator = ":" if pairs or not line.startswith("NRRD") else None
        if separator is None or line.startswith("#"):
            continue
        if "=" in line and (":" not in line or line.index("=") < line.index(":")):
            key, _, value = line.partition("=")
        else:
            key, _, value = line.partition(":")
        pairs.append((key.strip().lower(), value.lstrip("=").strip()))
        if key.strip().lower() == "elementdatafile":
            return pairs, position
    if len(head) == HEADER_LIMIT_BYTES and path.suffix.lower() in (".mha", ".nrrd"):
        raise InputError(f"{path}: no end of header in its first {HEADER_LIMIT_BYTES} bytes; corrupt file")
    return pairs, position


MAX_DIMENSION = 4
# MetaImage keys holding numbers, and how many (in multiples of NDims; 2 means NDims x NDims).
META_VECTORS = {"dimsize": 1, "elementspacing": 1, "elementsize": 1, "offset": 1, "origin": 1, "position": 1,
                "centerofrotation": 1, "transformmatrix": 2, "rotation": 2, "orientation": 2}


def _numbers(text: str) -> list[float] | None:
    try:
        return [float(v) for v in text.replace(",", " ").replace("(", " ").replace(")", " ").split()]
    except ValueError:
        return None


def _integer(text: str, low: int, high: int) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?[0-9]{1,12}", text) and low <= int(text) <= high else None


def check_text_header(pairs: list[tuple[str, str]], path: Path) -> None:
    """Refuse counts and sizes that are not small positive integers before ITK parses them (ITK's
    MetaImage reader crashes the process on ``NDims = 99999999999``)."""
    keys = dict(pairs)
    if path.suffix.lower() in (".mha", ".mhd"):
        ndims = _integer(keys.get("ndims", ""), 1, MAX_DIMENSION)
        if ndims is None:
            raise InputError(f"{path}: MetaImage NDims {keys.get('ndims', '(missing)')[:40]!r} is not 1..{MAX_DIMENSION}")
        for key, power in META_VECTORS.items():
            if key in keys:
                values = _numbers(keys[key])
                if values is None or len(values) != ndims ** power:
                    raise InputError(f"{path}: MetaImage {key} {keys[key][:60]!r} is not {ndims ** power} numbers")
        sizes, channels = _numbers(keys.get("dimsize", "")), keys.get("elementnumberofchannels", "1")
        count = _integer(channels, 1, 4)
        if count is None:
            raise InputError(f"{path}: MetaImage ElementNumberOfChannels {channels[:40]!r} is not 1..4")
    else:
        ndims = _integer(keys.get("dimension", ""), 1, MAX_DIMENSION)
        if ndims is None:
            raise InputError(f"{path}: NRRD dimension {keys.get('dimension', '(missing)')[:40]!r} is not 1..{MAX_DIMENSION}")
        sizes = _numbers(keys.get("sizes", ""))
        if sizes is None or len(sizes) != ndims:
            raise InputError(f"{path}: NRRD sizes {keys.get('sizes', '(missing)')[:60]!r} are not {ndims} integers")
    if not sizes or any(not math.isfinite(s) or s != int(s) or not 1 <= s <= 2**31 - 1 for s in sizes):
        raise InputError(f"{path}: image sizes {sizes} must be whole numbers from 1 to 2**31-1")


def data_location(path: Path, allow_external: bool = False) -> DataLocation:
    """Check the header's counts and sizes, then find, confine and check its data file."""
    pairs, header_bytes = _header_lines(path)
    check_text_header(pairs, path)
    keys = dict(pairs)
    if path.suffix.lower() in (".mha", ".mhd"):
        name = keys.get("elementdatafile", "")
        compressed = keys.get("compresseddata", "false").lower() == "true"
        encoding = "deflate" if compressed else "raw"
        skip = keys.get("headersize", "0")
    else:
        name = keys.get("data file", keys.get("datafile", ""))
        value = keys.get("encoding", "raw").lower()
        encoding = {"raw": "raw", "gzip": "deflate", "gz": "deflate"}.get(value, value)
        skip = keys.get("byte skip", "0")
    if not name or name.upper() == "LOCAL":
        return DataLocation(path, header_bytes, encoding)
    if name.upper().startswith("LIST") or "%" in name:
        raise InputError(f"{path}: its header names a list or pattern of data files ({name[:60]}); "
                         "not supported, convert the image to one file (.nii.gz, .nrrd or .mha)")
    data = confined(path, name, allow_external)
    offset = _integer(skip, 0, 2**62) or 0
    return DataLocation(data, offset, encoding)


def confined(header: Path, name: str, allow_external: bool) -> Path:
    """The data file ``name`` of ``header``, refused outside the header's folder or when not a regular file."""
    from kitsrt.io.validate import require_regular_file

    if any(ord(c) < 32 for c in name):
        raise InputError(f"{header}: the data file name in its header holds control characters; corrupt header")
    folder = header.resolve().parent
    data = (folder / name).resolve()
    if not allow_external and not data.is_relative_to(folder):
        raise InputError(f"{header}: its header points to a data file outside its folder ({name[:80]}); "
                         "refused: move the data file next to the header")
    if not data.exists():
        raise InputError(f"{header}: the data file its header names is missing ({name[:80]})")
    require_regular_file(data, f"{header}: its data file {name[:80]}")
    return data
