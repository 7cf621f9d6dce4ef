"""Single-frame DICOM CT series: write a Scan as one (phantoms), and read a series' headers.

Needs the ``dicom`` extra (pydicom), imported lazily. Reading the *voxels* of a DICOM series is
``kitsrt.io.read_scan``'s job; this module only reads the instance headers that a derived object
(a DICOM SEG) must reference: SOP and series UIDs, plane positions and orientations.

Grid to DICOM, for a Scan whose slices lie along index axis k (axis order as in ``kitsrt.io.scan``):
rows are index axis j and columns index axis i, so ImageOrientationPatient is (direction of i,
direction of j), PixelSpacing is (spacing j, spacing i) and slice k sits at origin + k * spacing_k *
(direction of k). When the direction of k points against row x column, InstanceNumber runs against
the slice normal ("reversed slice order"), as some scanners write it.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import numpy as np

from kitsrt.errors import BackendUnavailable, InputError
from kitsrt.io.files import temporary_sibling
from kitsrt.io.scan import Scan

CT_STORED_OFFSET_HU = 1024  # stored = HU + 1024 as uint16; RescaleIntercept -1024, RescaleSlope 1


def require_pydicom():
    """Import pydicom, or say how to install it."""
    try:
        import pydicom
    except ImportError:
        raise BackendUnavailable("DICOM support needs pydicom and highdicom: pip install 'kitsrt[dicom]'") from None
    return pydicom


def _ds_numbers(values) -> list:
    """Decimal strings of at most 16 characters (the DS limit), as precise as fits."""
    from pydicom.valuerep import format_number_as_ds

    return [format_number_as_ds(float(v)) for v in values]


def ct_series_datasets(scan: Scan, patient_name: str = "KITSRT^PHANTOM", series_description: str = "kitsrt phantom",
                       contrast_agent: str = ""):
    """One CT Image Storage dataset per slice k of ``scan`` (values in HU), with fresh UIDs.

    Pixel data is uint16 (HU + 1024, clipped) with RescaleIntercept -1024. The only patient attribute
    filled in is ``patient_name`` (a phantom name); IDs, birth date and sex stay empty. A non-empty
    ``contrast_agent`` is recorded as Contrast/Bolus Agent (0018,0010).
    """
    require_pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    geometry = scan.geometry
    direction = geometry.direction_matrix
    stored = np.clip(np.rint(np.asarray(scan.array, dtype=np.float64)) + CT_STORED_OFFSET_HU, 0, 65535)
    stored = stored.astype(np.uint16)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    now = datetime.datetime.now()
    spacing_i, spacing_j, spacing_k = geometry.spacing_mm
    datasets = []
    for k in range(geometry.size[2]):
        position = np.asarray(geometry.origin_mm) + k * spacing_k * direction[:, 2]
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = CTImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, "", "", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
        ds.Modality, ds.Manufacturer, ds.SeriesDescription = "CT", "kitsrt", series_description
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, k + 1, 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator, ds.KVP = "", ""
        ds.ImagePositionPatient = _ds_numbers(position)
        ds.ImageOrientationPatient = _ds_numbers(np.concatenate([direction[:, 0], direction[:, 1]]))
        ds.PixelSpacing = _ds_numbers([spacing_j, spacing_i])
        ds.SliceThickness = _ds_numbers([spacing_k])[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = geometry.size[1], geometry.size[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(-CT_STORED_OFFSET_HU), "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        if contrast_agent:
            ds.ContrastBolusAgent = contrast_agent
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        datasets.append(ds)
    return datasets


def write_ct_series(scan: Scan, folder: str | os.PathLike, overwrite: bool = False,
                    patient_name: str = "KITSRT^PHANTOM", contrast_agent: str = "") -> Path:
    """Write ``scan`` (HU) as a DICOM CT series, one ``slice_NNNN.dcm`` per slice k, into ``folder``.

    The folder is filled under a temporary name and renamed, so it appears whole or not at all.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise InputError(f"{folder}: output already exists; pass --overwrite to replace it")
    if not folder.parent.exists():
        raise InputError(f"{folder.parent}: output folder does not exist")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; a DICOM series is written as a folder")
    datasets = ct_series_datasets(scan, patient_name, contrast_agent=contrast_agent)
    with temporary_sibling(folder) as tmp:
        tmp.mkdir()
        for ds in datasets:
            ds.save_as(tmp / f"slice_{ds.InstanceNumber:04d}.dcm", enforce_file_format=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    return folder


def read_series_headers(folder: str | os.PathLike) -> dict[str, list]:
    """Headers (no pixel data) of the DICOM image instances in ``folder``, by SeriesInstanceUID.

    Files that are not DICOM, and instances without a plane position (not a cross-sectional
    image), are left out.
    """
    pydicom = require_pydicom()
    series: dict[str, list] = {}
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and "SeriesInstanceUID" in ds:
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return series


def slice_normal(ds) -> np.ndarray:
    """Unit normal (LPS) of an instance's plane: row direction x column direction."""
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def sorted_along_normal(headers: list) -> list:
    """Instances sorted by position along their slice normal (ascending), then InstanceNumber."""
    normal = slice_normal(headers[0])
    return sorted(headers, key=lambda ds: (float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)),
                                           int(getattr(ds, "InstanceNumber", 0) or 0)))
