"""Cheap checks that a NIfTI file holds all its voxels, before ITK silently zero-fills a short one.

ITK reads a truncated ``.nii.gz`` without complaint. A gzip stream ends with ISIZE, the length of
the uncompressed data modulo 2**32; for a whole file it equals the NIfTI header's ``vox_offset``
plus the voxel bytes. A cut file ends in the middle of compressed data, so its last four bytes are
almost never that number. This costs two small reads instead of a second full decompression.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def _vox_offset(header: bytes) -> int | None:
    """vox_offset of a NIfTI-1 or NIfTI-2 header (either byte order); None if not NIfTI."""
    for endian in "<>":
        if len(header) >= 112 and struct.unpack(endian + "i", header[:4])[0] == 348:
            return int(struct.unpack(endian + "f", header[108:112])[0])
        if len(header) >= 176 and struct.unpack(endian + "i", header[:4])[0] == 540:
            return int(struct.unpack(endian + "q", header[168:176])[0])
    return None


def nifti_is_truncated(path: Path, size: tuple[int, ...], bytes_per_voxel: int) -> bool:
    """True when a .nii or .nii.gz file is shorter than its header says."""
    name = path.name.lower()
    data_bytes = int(np.prod(size, dtype=np.int64)) * bytes_per_voxel
    if name.endswith(".nii.gz"):
        try:
            with gzip.open(path, "rb") as stream:
                offset = _vox_offset(stream.read(540))
        except (OSError, EOFError):
            return True
        if offset is None:
            return False
        with open(path, "rb") as raw:
            raw.seek(-4, 2)
            isize = struct.unpack("<I", raw.read(4))[0]
        return isize != (offset + data_bytes) % 2**32
    if name.endswith(".nii"):
        with open(path, "rb") as raw:
            offset = _vox_offset(raw.read(540))
        return offset is not None and path.stat().st_size < offset + data_bytes
    return False
