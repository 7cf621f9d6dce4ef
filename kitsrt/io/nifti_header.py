"""The NIfTI-1 / NIfTI-2 header, read and checked by kitsrt itself before ITK sees the file.

ITK silently replaces a zero or NaN ``pixdim`` with 1 mm and accepts NaN in the sform, so those
fields are checked here, from the raw header. The header also says how many bytes of voxels follow
(``vox_offset`` + voxels x ``bitpix`` / 8, the *stored* type: an int16 file with ``scl_slope`` is
read by ITK as float32 but stores 2 bytes per voxel). A ``.nii.gz`` is recognised by its gzip
magic bytes, not its name; only the first 544 uncompressed bytes are inflated here.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
# NIfTI datatype code -> (name, bytes per voxel); types ITK cannot give kitsrt as a scalar are absent.
DATATYPES = {
    2: ("uint8", 1), 4: ("int16", 2), 8: ("int32", 4), 16: ("float32", 4), 64: ("float64", 8),
    256: ("int8", 1), 512: ("uint16", 2), 768: ("uint32", 4), 1024: ("int64", 8), 1280: ("uint64", 8),
    128: ("rgb24", 3), 2304: ("rgba32", 4), 32: ("complex64", 8), 1792: ("complex128", 16),
}
QUATERNION_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI header that decide geometry and payload size."""

    version: int                      # 1 or 2
    endian: str                       # "<" or ">"
    dims: tuple[int, ...]             # dim[1..dim[0]], voxels per axis
    datatype: int
    bytes_per_voxel: int              # stored bytes (before scl_slope / scl_inter)
    pixdim: tuple[float, ...]         # pixdim[1..dim[0]]
    vox_offset: float
    scl_slope: float
    scl_inter: float
    qform_code: int
    sform_code: int
    quatern_bcd: tuple[float, float, float]
    qoffset: tuple[float, float, float]
    srow: tuple[float, ...]           # 12 numbers: srow_x, srow_y, srow_z

    @property
    def voxel_count(self) -> int:
        return math.prod(self.dims)

    @property
    def float_dtype(self) -> np.dtype | None:
        """The stored NumPy dtype when it is a float type (which can hold NaN/Inf), else None."""
        name = {16: "f4", 64: "f8"}.get(self.datatype)
        return np.dtype(self.endian + name) if name else None

    @property
    def payload_bytes(self) -> int:
        """Bytes the file must hold from its start: the header, extensions, then every voxel."""
        return int(self.vox_offset) + self.voxel_count * self.bytes_per_voxel


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def read_head(path: Path, length: int = 544) -> bytes:
    """The first ``length`` uncompressed bytes of a plain or gzip file, inflating no more than that."""
    with open(path, "rb") as handle:
        start = handle.read(2)
        if start != GZIP_MAGIC:
            return start + handle.read(length - 2)
        handle.seek(0)
        inflater = zlib.decompressobj(wbits=31)
        head = b""
        while len(head) < length:
            chunk = handle.read(4096)
            if not chunk:
                break
            try:
                head += inflater.decompress(chunk, length - len(head))
            except zlib.error:
                break
            if inflater.eof:
                break
        return head


def count_non_finite(path: Path, header: NiftiHeader, chunk_bytes: int = 1 << 24) -> int:
    """NaN/Inf voxels stored in a float NIfTI file (ITK reads them as 0), counted in chunks."""
    dtype = header.float_dtype
    if dtype is None:
        return 0
    opener = gzip.open if is_gzip(path) else open
    remaining, bad = header.voxel_count * dtype.itemsize, 0
    chunk_bytes -= chunk_bytes % dtype.itemsize
    with opener(path, "rb") as stream:
        stream.seek(int(header.vox_offset))
        while remaining > 0:
            block = stream.read(min(chunk_bytes, remaining))
            if not block:
                break
            values = np.frombuffer(block[: len(block) - len(block) % dtype.itemsize], dtype=dtype)
            bad += values.size - int(np.count_nonzero(np.isfinite(values)))
            remaining -= len(block)
    return bad


def parse_nifti_header(head: bytes, where: Path) -> NiftiHeader:
    """Parse the first bytes of a NIfTI-1 or NIfTI-2 file (either byte order)."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            return _nifti1(head, endian)
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            return _nifti2(head, endian)
    raise InputError(f"{where}: cannot read it as an image: no NIfTI-1 or NIfTI-2 header at its start "
                     "(truncated, corrupt or another format)")


def _nifti1(head: bytes, e: str) -> NiftiHeader:
    def get(fmt, offset):
        return struct.unpack_from(e + fmt, head, offset)

    dim = get("8h", 40)
    datatype = get("h", 70)[0]
    return NiftiHeader(
        1, e, _dims(dim), datatype, DATATYPES.get(datatype, ("", 0))[1], get("8f", 76)[1:1 + _ndim(dim)],
        get("f", 108)[0], *get("2f", 112), *get("2h", 252), get("3f", 256), get("3f", 268), get("12f", 280))


def _nifti2(head: bytes, e: str) -> NiftiHeader:
    def get(fmt, offset):
        return struct.unpack_from(e + fmt, head, offset)

    dim = get("8q", 16)
    datatype = get("h", 12)[0]
    return NiftiHeader(
        2, e, _dims(dim), datatype, DATATYPES.get(datatype, ("", 0))[1], get("8d", 104)[1:1 + _ndim(dim)],
        float(get("q", 168)[0]), *get("2d", 176), *get("2i", 344), get("3d", 352), get("3d", 376),
        get("12d", 400))


def _ndim(dim: tuple[int, ...]) -> int:
    return dim[0] if 1 <= dim[0] <= 7 else 0


def _dims(dim: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(d) for d in dim[1:1 + _ndim(dim)])


def check_nifti_header(header: NiftiHeader, where: Path) -> None:
    """Refuse a header whose fields cannot describe a volume, before anything is allocated."""
    if not header.dims:
        raise InputError(f"{where}: NIfTI header has an invalid number of dimensions (dim[0] outside 1..7)")
    if min(header.dims) < 1:
        raise InputError(f"{where}: NIfTI header gives a size of {header.dims}; every size must be at least 1")
    if header.bytes_per_voxel == 0:
        raise InputError(f"{where}: NIfTI datatype {header.datatype} is not supported; "
                         "kitsrt reads integer and float voxels")
    spatial = header.pixdim[:3]
    if not all(math.isfinite(p) and p != 0 for p in spatial):
        raise InputError(f"{where}: NIfTI voxel spacing (pixdim) {tuple(spatial)} must be finite and non-zero; "
                         "fix the header (ITK would silently use 1 mm)")
    minimum = 352 if header.version == 1 else 544
    if not math.isfinite(header.vox_offset) or not minimum <= header.vox_offset <= 2**31:
        raise InputError(f"{where}: NIfTI vox_offset {header.vox_offset} is invalid (expected {minimum} "
                         "or more for a single-file .nii)")
    if not (math.isfinite(header.scl_slope) and math.isfinite(header.scl_inter)):
        raise InputError(f"{where}: NIfTI intensity scaling (scl_slope {header.scl_slope}, scl_inter "
                         f"{header.scl_inter}) is not finite")
    if header.qform_code > 0:
        values = header.quatern_bcd + header.qoffset
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{where}: NIfTI qform holds a non-finite number {values}")
        if sum(v * v for v in header.quatern_bcd) > 1 + QUATERNION_NORM_TOLERANCE:
            raise InputError(f"{where}: NIfTI qform quaternion {header.quatern_bcd} has a norm above 1; "
                             "it is not a rotation")
    if header.sform_code > 0 and not all(math.isfinite(v) for v in header.srow):
        raise InputError(f"{where}: NIfTI sform holds a non-finite number; fix the header's srow_x/y/z")
