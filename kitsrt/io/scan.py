"""Scans and label maps in memory, read from and written to disk with their exact geometry.

Axis order, stated once for all of kitsrt:

* ``Geometry`` speaks ITK's language: ``size``, ``spacing_mm`` and ``origin_mm`` are in index order
  (i, j, k), and ``direction`` is the row-major 3x3 matrix whose *columns* are the physical (LPS)
  directions of the index axes i, j and k.
* ``Scan.array`` is the NumPy view SimpleITK gives, so its axes are the index axes reversed:
  ``array[k, j, i]``. ``Geometry.array_spacing_mm`` gives the spacing in that order.

Nothing in kitsrt assumes which axis is the slice axis: KiTS19 files store the slices along index
axis i (array axis 2), most DICOM-derived files along k. Code works from spacing and direction, and
resamples onto explicit grids instead of reorienting the volume.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kitsrt.errors import InputError
from kitsrt.io.files import move_into_place, temporary_sibling
from kitsrt.io.dicom import DicomInfo, read_dicom_series
from kitsrt.io.nifti_header import (
    check_nifti_header,
    count_non_finite,
    is_gzip,
    parse_nifti_header,
    read_head,
)
from kitsrt.io.payload import (
    check_compression_ratio,
    check_deflate_bound,
    check_gzip_payload,
    check_plain_payload,
)
from kitsrt.io.text_header import data_location
from kitsrt.io.validate import (
    MAX_VOXELS,
    check_finite_values,
    check_geometry,
    check_voxel_budget,
    require_regular_file,
)

CT_MAX_COMPRESSION_RATIO = 100.0  # CT is noisy everywhere: 2-10:1 in practice
SUPPORTED_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
# Single-file formats only, so that one rename makes the output appear whole.
OUTPUT_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
# NIfTI stores origin, spacing and the direction quaternion as float32; NRRD and MetaImage as text
# with full double precision, so only they can hold any input's geometry exactly.
LOSSY_GEOMETRY_SUFFIXES = (".nii", ".nii.gz")
# ITK's defaults (itk::ImageToImageFilter): origins and spacings must agree within 1e-6 x the first
# spacing, direction cosines within 1e-6, or ITK refuses to combine two images.
ITK_COORDINATE_TOLERANCE = 1e-6
ITK_DIRECTION_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Geometry:
    """Where every voxel of a 3-D grid lies in physical (LPS, mm) space. Index order (i, j, k)."""

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 numbers, row-major; columns are the index axes

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(
            size=tuple(int(s) for s in image.GetSize()),
            spacing_mm=tuple(float(s) for s in image.GetSpacing()),
            origin_mm=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Shape of the NumPy array on this grid: (k, j, i)."""
        return tuple(reversed(self.size))

    @property
    def array_spacing_mm(self) -> tuple[float, float, float]:
        """Spacing in NumPy axis order (k, j, i)."""
        return tuple(reversed(self.spacing_mm))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    def index_to_physical(self, index_ijk: np.ndarray) -> np.ndarray:
        """Physical points (N, 3) of continuous indices (N, 3) in (i, j, k) order."""
        scaled = np.asarray(index_ijk, dtype=np.float64) * np.asarray(self.spacing_mm)
        return scaled @ self.direction_matrix.T + np.asarray(self.origin_mm)

    def physical_to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) indices (N, 3) of physical points (N, 3)."""
        rel = np.asarray(points_mm, dtype=np.float64) - np.asarray(self.origin_mm)
        return (rel @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing_mm)

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Stamp this geometry on ``image`` (whose size must match) and return it."""
        if tuple(image.GetSize()) != self.size:
            raise InputError(f"image size {image.GetSize()} does not match geometry size {self.size}")
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
        return image


@dataclass(frozen=True)
class Scan:
    """A 3-D scalar image: a SimpleITK image whose pixels are exposed as a read-only NumPy view."""

    image: sitk.Image
    source: str = ""
    dicom: DicomInfo | None = None  # identifiers of the DICOM series it was read from

    @classmethod
    def from_array(cls, array: np.ndarray, geometry: Geometry, source: str = "") -> Scan:
        """Wrap an array in (k, j, i) order on ``geometry``. The array is copied into ITK memory."""
        if tuple(array.shape) != geometry.array_shape:
            raise InputError(f"array shape {array.shape} != geometry array shape {geometry.array_shape}")
        return cls(geometry.apply_to(sitk.GetImageFromArray(array, isVector=False)), source)

    @property
    def geometry(self) -> Geometry:
        return Geometry.of(self.image)

    @property
    def array(self) -> np.ndarray:
        """A read-only view (no copy) of the voxels, axes (k, j, i). The view keeps the image alive,
        so ``synthesize_ct(...).array`` is safe even though the Scan itself is a temporary."""
        return _view_owning(self.image)


class _ImageBuffer:
    """Exposes an image's voxels through the array interface while holding a reference to it."""

    def __init__(self, image: sitk.Image):
        self.image = image
        view = sitk.GetArrayViewFromImage(image)
        interface = dict(view.__array_interface__)
        interface["data"] = (interface["data"][0], True)  # read-only
        self.__array_interface__ = interface


def _view_owning(image: sitk.Image) -> np.ndarray:
    return np.asarray(_ImageBuffer(image))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _check_volume(dimension: int, components: int, size: tuple[int, ...], path) -> None:
    if dimension != 3:
        raise InputError(f"{path}: image is {dimension}-D; kitsrt needs a single 3-D volume")
    if components != 1:
        raise InputError(f"{path}: image has {components} components per voxel; "
                         "kitsrt needs a scalar (grey-level) volume")
    if min(size) < 2:
        raise InputError(f"{path}: image size {tuple(size)} is a single slice; kitsrt needs a 3-D volume")


def read_scan(path: str | os.PathLike, series_uid: str | None = None, *, allow_external_data: bool = False,
              max_voxels: int = MAX_VOXELS, max_compression_ratio: float | None = None) -> Scan:
    """Read a NIfTI, NRRD or MetaImage file, or a DICOM series from a folder (found by content; with
    several series, the best-fitting CT series or ``series_uid``: see ``kitsrt.io.dicom``).

    Raises InputError, naming the file and the problem, for anything that is not a readable 3-D
    scalar volume on a sane grid with finite values (bounds in ``kitsrt.io.validate``). Only
    regular files are opened; every header field is checked, and the header's promise checked
    against the file's real payload, before any voxel is read. MetaImage/NRRD data files must lie
    in the header's folder unless ``allow_external_data``. Compressed data promising to expand
    more than ``max_compression_ratio`` times is refused before it is decompressed (CT scans are
    read with ``CT_MAX_COMPRESSION_RATIO``; label maps, mostly zeros, compress far more).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    dicom = None
    try:
        if path.is_dir():
            image, dicom = read_dicom_series(path, series_uid)
        else:
            require_regular_file(path)
            reader = _check_file_header(path, allow_external_data, max_voxels, max_compression_ratio)
            image = reader.Execute()
            _check_nifti_values(path)
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read it as an image (truncated, corrupt or unsupported format): "
                         f"{itk_message(exc)}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    check_image(image, path)
    return Scan(image, source=str(path), dicom=dicom)


SCALAR_PIXEL_TYPES = (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32,
                      sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64, sitk.sitkFloat32, sitk.sitkFloat64)


def check_image(image: sitk.Image, where) -> None:
    """Everything a 3-D scalar image must satisfy before kitsrt works on it: dimension, scalar
    integer or float pixels, a sane grid (see ``kitsrt.io.validate``) and no NaN/Inf voxels."""
    if not isinstance(image, sitk.Image):
        raise InputError(f"{where}: expected a SimpleITK image inside the Scan, got {type(image).__name__}")
    _check_volume(image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSize(), where)
    if image.GetPixelID() not in SCALAR_PIXEL_TYPES:
        raise InputError(f"{where}: pixel type {image.GetPixelIDTypeAsString()} is not supported; "
                         "kitsrt needs integer or float grey levels")
    check_geometry(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), where)
    check_finite_values(sitk.GetArrayViewFromImage(image), where)


def itk_message(exc: BaseException) -> str:
    """ITK's multi-line exception text condensed to its one meaningful line (at most 200 characters)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    detail = next((ln.split("ERROR:", 1)[1] for ln in lines if "ERROR:" in ln), None)
    if detail is None or not detail.strip():
        detail = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "unknown ITK error")
    detail = re.sub(r"\w+\(0x[0-9a-f]+\):\s*", "", detail)   # ITK object addresses
    return " ".join(detail.split())[:200]


def _check_nifti_values(path: Path) -> None:
    """ITK reads NaN/Inf in a float NIfTI as 0: count them in the file itself."""
    if _suffix(path) in (".nii", ".nii.gz"):
        header = parse_nifti_header(read_head(path), path)
        bad = count_non_finite(path, header)
        if bad:
            raise InputError(f"{path}: {bad} of {header.voxel_count} voxels are NaN or infinite; kitsrt does "
                             "not segment them: replace them (e.g. with -1024 HU) and run again")


def _check_file_header(path: Path, allow_external_data: bool, max_voxels: int,
                       max_ratio: float | None) -> sitk.ImageFileReader:
    """Check a file's header and payload, then return ITK's reader with only the header read."""
    suffix = _suffix(path)
    nifti = None
    if suffix in (".nii", ".nii.gz"):
        nifti = parse_nifti_header(read_head(path), path)
        check_nifti_header(nifti, path)
        check_voxel_budget(nifti.dims, nifti.bytes_per_voxel, path, max_voxels)
    location = data_location(path, allow_external_data) if suffix in (".mha", ".mhd", ".nrrd", ".nhdr") else None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size, components = reader.GetSize(), reader.GetNumberOfComponents()
    _check_volume(reader.GetDimension(), components, size, path)
    stored_bytes = sitk.Image(1, 1, 1, reader.GetPixelID()).GetSizeOfPixelComponent() * components
    check_voxel_budget(size, stored_bytes, path, max_voxels)
    check_geometry(size, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(), path)
    if nifti is not None:
        if is_gzip(path):
            check_gzip_payload(path, nifti.payload_bytes, max_ratio)
        else:
            check_plain_payload(path, nifti.payload_bytes)
    elif location is not None:
        promised = int(np.prod(size, dtype=np.int64)) * stored_bytes
        available = location.file.stat().st_size - location.offset
        if location.encoding == "raw":
            check_plain_payload(location.file, promised, location.offset, path)
        elif location.encoding == "deflate":
            check_deflate_bound(path, promised, available)
            check_compression_ratio(path, promised, available, max_ratio)
    return reader


def header_voxel_count(path: str | os.PathLike) -> int | None:
    """Voxels an image file's header promises (ITK reads the header only); None for a folder or a
    header ITK cannot read (the reader will say why)."""
    path = Path(path)
    try:
        require_regular_file(path)
        if _suffix(path) in (".nii", ".nii.gz"):
            header = parse_nifti_header(read_head(path), path)
            return header.voxel_count
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return int(np.prod(reader.GetSize(), dtype=np.int64))
    except (InputError, RuntimeError, OSError):
        return None


def read_ct(path: str | os.PathLike, series_uid: str | None = None) -> Scan:
    """Read a CT scan: ``read_scan`` with the CT compression-ratio limit (bomb guard)."""
    return read_scan(path, series_uid, max_compression_ratio=CT_MAX_COMPRESSION_RATIO)


LABEL_VALUES = (0, 1, 2)  # background, kidney, tumor


def read_label_map(path: str | os.PathLike) -> Scan:
    """Read a label map: like ``read_scan``, and its voxels must be integers in {0, 1, 2}
    (background, kidney, tumor). Returned as uint8."""
    scan = read_scan(path)
    values = scan.array
    if scan.image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64) and not np.array_equal(
            values, np.round(values)):
        raise InputError(f"{path}: label map holds non-integer values; expected integer labels "
                         "0 background, 1 kidney, 2 tumor")
    low, high = values.min(), values.max()
    if low < min(LABEL_VALUES) or high > max(LABEL_VALUES):
        raise InputError(f"{path}: label map holds values from {low:g} to {high:g}; expected only "
                         "0 background, 1 kidney, 2 tumor (is this a CT image instead of a label map?)")
    if scan.image.GetPixelID() == sitk.sitkUInt8:
        return scan
    return Scan(sitk.Cast(scan.image, sitk.sitkUInt8), source=scan.source)


@dataclass(frozen=True)
class GeometryDrift:
    """How far a written file's grid lies from the intended one: the largest absolute difference of
    origin (mm), spacing (mm) and direction cosines, and ITK's tolerance for that grid."""

    origin_mm: float
    spacing_mm: float
    direction: float
    tolerance_mm: float

    @property
    def within_itk_tolerance(self) -> bool:
        return (max(self.origin_mm, self.spacing_mm) <= self.tolerance_mm
                and self.direction <= ITK_DIRECTION_TOLERANCE)

    def as_dict(self) -> dict:
        return {"origin_error_mm": self.origin_mm, "spacing_error_mm": self.spacing_mm,
                "direction_error": self.direction, "itk_tolerance_mm": self.tolerance_mm}


def geometry_drift(actual: Geometry, expected: Geometry) -> GeometryDrift:
    """Compare two grids of the same size the way ITK does before combining two images."""
    if actual.size != expected.size:
        raise ValueError(f"sizes differ: {actual.size} vs {expected.size}")

    def worst(a, b) -> float:
        return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

    return GeometryDrift(worst(actual.origin_mm, expected.origin_mm), worst(actual.spacing_mm, expected.spacing_mm),
                         worst(actual.direction, expected.direction),
                         abs(ITK_COORDINATE_TOLERANCE * expected.spacing_mm[0]))


def read_geometry(path: str | os.PathLike) -> Geometry:
    """The grid of an image file, from its header only."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return Geometry(tuple(int(s) for s in reader.GetSize()), tuple(reader.GetSpacing()),
                    tuple(reader.GetOrigin()), tuple(reader.GetDirection()))


def check_written_geometry(path: str | os.PathLike, expected: Geometry,
                           name: str | os.PathLike | None = None) -> GeometryDrift:
    """Read back a written file's header and compare its grid with ``expected``.

    A lossless format (NRRD, MetaImage) must match within ITK's tolerance, or the file is removed and
    InputError raised (naming ``name``, the final path, when ``path`` is its temporary file); for NIfTI
    the drift is returned for the caller to report (float32 geometry).
    """
    path = Path(path)
    drift = geometry_drift(read_geometry(path), expected)
    if not drift.within_itk_tolerance and _suffix(path) not in LOSSY_GEOMETRY_SUFFIXES:
        path.unlink(missing_ok=True)
        path = Path(name) if name is not None else path
        raise InputError(f"{path}: written grid differs from the input's (origin by {drift.origin_mm:.3g} mm, "
                         f"direction by {drift.direction:.3g}); removed it. Write .nrrd instead")
    return drift


def check_output_path(path: str | os.PathLike, overwrite: bool,
                      allowed_suffixes: tuple[str, ...] = OUTPUT_SUFFIXES) -> Path:
    """Validate an output path before any work is done: known format, folder exists, no clobbering."""
    path = Path(path)
    if _suffix(path) not in allowed_suffixes:
        raise InputError(f"{path}: unsupported output format; use one of {', '.join(allowed_suffixes)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the output")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: output folder does not exist or is not a folder")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{path.parent}: output folder is not writable")
    return path


def write_image(image: sitk.Image, path: str | os.PathLike, overwrite: bool = False,
                allowed_suffixes: tuple[str, ...] = OUTPUT_SUFFIXES) -> Path:
    """Write atomically: to a temporary file in the same folder, then rename over ``path``."""
    path = check_output_path(path, overwrite, allowed_suffixes)
    with temporary_sibling(path, _suffix(path)) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=_suffix(path) in (".nii.gz", ".nrrd", ".mha"))
            if image.GetDimension() == 3:  # checked before the rename: a bad file never replaces a good one
                check_written_geometry(tmp, Geometry.of(image), name=path)
            move_into_place(tmp, path, overwrite)
        except RuntimeError as exc:
            raise InputError(f"{path}: could not write it: {itk_message(exc)}") from None
        except OSError as exc:
            raise InputError(f"{path}: could not write it: {exc.strerror or exc}") from None
    return path


def write_label_map(labels: np.ndarray, reference: Geometry, path: str | os.PathLike,
                    overwrite: bool = False) -> Path:
    """Write a uint8 label map (axes (k, j, i)) on exactly ``reference``'s grid, atomically."""
    image = Scan.from_array(np.ascontiguousarray(labels, dtype=np.uint8), reference).image
    return write_image(image, path, overwrite)
