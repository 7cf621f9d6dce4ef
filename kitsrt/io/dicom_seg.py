"""DICOM Segmentation (SEG) objects for kitsrt label maps, with highdicom; and back again.

A label map (0 background, 1 kidney, 2 tumor; axes (k, j, i) on a scan's grid) becomes a BINARY
SEG with one segment per label: 1 "Kidney" (SNOMED CT 64033007), 2 "Kidney tumor" (Neoplasm,
108369006, in the kidney). Frame n of the SEG is the label map sampled on exactly the pixels of one
source instance, so every frame references the source SOP instance it lies on, and carries that
instance's plane position; frames without any voxel of a segment are omitted.

Reading back (``labels_from_seg``) uses only the SEG itself: each frame is pasted onto the target
grid at its own plane position and orientation, so a SEG that is shifted, flipped or has frames on
the wrong slices does not rebuild the label map.

Needs the ``dicom`` extra (highdicom, pydicom), imported lazily.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kitsrt.errors import BackendUnavailable, InputError
from kitsrt.io.files import move_into_place, temporary_sibling
from kitsrt.io.dicom_series import read_series_headers, sorted_along_normal
from kitsrt.io.scan import Geometry

KIDNEY, TUMOR = 1, 2
GRID_TOLERANCE_VOXELS = 0.01


@dataclass(frozen=True)
class SegAlgorithm:
    """What made the segmentation: recorded in every segment's Segmentation Algorithm Identification."""

    name: str  # e.g. the pipeline name, "vbnet-cascade-seed002"
    version: str  # kitsrt version
    model_sha256: dict = field(default_factory=dict)  # model file -> SHA-256
    demo: bool = False  # the model card says it is a demo, not a clinical model


def require_highdicom():
    try:
        import highdicom
    except ImportError:
        raise BackendUnavailable("DICOM SEG output needs highdicom: pip install 'kitsrt[dicom]'") from None
    return highdicom


def segment_descriptions(algorithm: SegAlgorithm) -> list:
    """The two segments with SNOMED CT codes and the algorithm identification."""
    hd = require_highdicom()
    from pydicom.sr.codedict import codes

    parameters = {"kitsrt": algorithm.version, **{f"sha256 {name}": digest for name, digest in
                                                  sorted(algorithm.model_sha256.items())}}
    if algorithm.demo:
        parameters["demo"] = "demo model, not for clinical use"
    identification = hd.AlgorithmIdentificationSequence(
        name=f"kitsrt {algorithm.name}" + (" (demo)" if algorithm.demo else ""),
        family=codes.cid7162.ArtificialIntelligence, version=algorithm.version, source="kitsrt",
        parameters=parameters)
    common = dict(algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                  algorithm_identification=identification)
    kidney = hd.seg.SegmentDescription(
        segment_number=KIDNEY, segment_label="Kidney", segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Kidney, tracking_id="kidney", tracking_uid=hd.UID(), **common)
    tumor = hd.seg.SegmentDescription(
        segment_number=TUMOR, segment_label="Kidney tumor",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, anatomic_regions=[codes.SCT.Kidney],
        tracking_id="kidney tumor", tracking_uid=hd.UID(), **common)
    return [kidney, tumor]


def _pixel_indices(ds, geometry: Geometry, where: str) -> np.ndarray:
    """Integer (i, j, k) grid indices (rows, columns, 3) of every pixel of one image plane.

    ``ds`` needs ImagePositionPatient, ImageOrientationPatient, PixelSpacing, Rows and Columns.
    Raises InputError when the plane's pixels are not voxels of ``geometry``.
    """
    position = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    row_spacing_mm, column_spacing_mm = (float(v) for v in ds.PixelSpacing)
    origin_index = geometry.physical_to_index(position[None])[0]
    column_step = geometry.physical_to_index((position + column_spacing_mm * orientation[:3])[None])[0] - origin_index
    row_step = geometry.physical_to_index((position + row_spacing_mm * orientation[3:])[None])[0] - origin_index
    for vector in (origin_index, column_step, row_step):
        if np.abs(vector - np.rint(vector)).max() > GRID_TOLERANCE_VOXELS:
            raise InputError(f"{where}: its pixels are not voxels of the scan grid (positions, orientation "
                             "or spacing differ); the series and the label map do not match")
    rows, columns = int(ds.Rows), int(ds.Columns)
    indices = (np.rint(origin_index).astype(np.int64)
               + np.arange(rows)[:, None, None] * np.rint(row_step).astype(np.int64)
               + np.arange(columns)[None, :, None] * np.rint(column_step).astype(np.int64))
    if indices.min() < 0 or np.any(indices.max(axis=(0, 1)) >= np.asarray(geometry.size)):
        raise InputError(f"{where}: the image plane reaches outside the scan grid; the series and the "
                         "label map do not match")
    return indices


def frames_on_instances(labels: np.ndarray, geometry: Geometry, instances: list) -> np.ndarray:
    """The label map (axes (k, j, i)) sampled on each instance's pixels: (instances, rows, columns)."""
    frames = []
    for ds in instances:
        ijk = _pixel_indices(ds, geometry, f"instance {ds.SOPInstanceUID}")
        frames.append(labels[ijk[..., 2], ijk[..., 1], ijk[..., 0]])
    return np.stack(frames).astype(np.uint8)


def source_instances(series_folder: str | os.PathLike, geometry: Geometry, series_uid: str | None = None) -> list:
    """Headers of the series in ``series_folder`` (``series_uid``, or the one whose slices lie on
    ``geometry``), sorted along the slice normal. The series was read and checked by ``read_scan``;
    this only finds its instances again to reference them."""
    series = read_series_headers(series_folder)
    if series_uid is not None:
        series = {series_uid: series.get(series_uid, [])}
    matching = []
    for uid, headers in series.items():
        if not headers:
            continue
        ordered = sorted_along_normal(headers)
        try:
            for ds in (ordered[0], ordered[-1]):
                _pixel_indices(ds, geometry, f"{series_folder}")
        except InputError:
            continue
        matching.append(ordered)
    if not matching:
        raise InputError(f"{series_folder}: no DICOM series there lies on the scan's grid; the scan was "
                         "not read from this folder")
    if len(matching) > 1:
        raise InputError(f"{series_folder}: {len(matching)} DICOM series lie on the scan's grid; "
                         "put one series per folder")
    return matching[0]


def build_seg(labels: np.ndarray, geometry: Geometry, instances: list, algorithm: SegAlgorithm,
              series_number: int = 901):
    """A highdicom BINARY Segmentation of ``labels`` (uint8 (k, j, i), values 0/1/2) whose frames are
    the source ``instances`` (pydicom headers, sorted) they lie on. Empty frames are omitted."""
    hd = require_highdicom()
    from kitsrt._version import __version__

    if labels.max(initial=0) > TUMOR:
        raise InputError(f"label map holds value {int(labels.max())}; a SEG holds 1 kidney and 2 tumor only")
    frames = frames_on_instances(labels, geometry, instances)
    return hd.seg.Segmentation(
        source_images=instances, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(algorithm), series_instance_uid=hd.UID(),
        series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="kitsrt",
        manufacturer_model_name=algorithm.name + (" (demo)" if algorithm.demo else ""),
        software_versions=f"kitsrt {__version__}", device_serial_number="none",
        series_description="kitsrt kidney and tumor" + (" (demo model)" if algorithm.demo else ""),
        content_label="KIDNEYS", content_description="kidney and kidney tumor segmentation by kitsrt",
        omit_empty_frames=bool(frames.any()))  # a SEG needs frames: an empty result keeps them all


def write_seg(seg, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a Segmentation through a temporary name and a rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise InputError(f"{path.parent}: output folder does not exist")
    with temporary_sibling(path) as tmp:
        seg.save_as(tmp)
        move_into_place(tmp, path, overwrite)
    return path


def labels_from_seg(seg, geometry: Geometry) -> np.ndarray:
    """Rebuild a label map (uint8, axes (k, j, i)) on ``geometry`` from a SEG (a path or a dataset)
    of kitsrt's two segments, using each frame's own plane position, orientation and spacing."""
    hd = require_highdicom()
    from pydicom.dataset import Dataset

    seg = hd.seg.segread(seg) if not isinstance(seg, Dataset) else hd.seg.Segmentation.from_dataset(seg)
    shared = seg.SharedFunctionalGroupsSequence[0]
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    labels = np.zeros(geometry.array_shape, dtype=np.uint8)
    for number, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        plane = Dataset()
        plane.ImagePositionPatient = frame.PlanePositionSequence[0].ImagePositionPatient
        plane.ImageOrientationPatient = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        plane.PixelSpacing = shared.PixelMeasuresSequence[0].PixelSpacing
        plane.Rows, plane.Columns = seg.Rows, seg.Columns
        segment = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        ijk = _pixel_indices(plane, geometry, f"SEG frame {number + 1}")[pixels[number] > 0]
        labels[ijk[:, 2], ijk[:, 1], ijk[:, 0]] = segment
    return labels
