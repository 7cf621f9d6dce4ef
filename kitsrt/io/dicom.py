"""DICOM series found by content, checked slice by slice, then read with their exact geometry.

A folder is a DICOM folder when GDCM finds a series in it (``ImageSeriesReader.GetGDCMSeriesIDs``),
whatever the files are called: PACS exports name them ``IM0001`` or after their SOP Instance UID,
with no ``.dcm`` suffix. Before any voxel is read, every file's header is checked: one orientation,
one image size, no two slices at the same position, no missing slice (even spacing along the slice
normal). A folder with several series reads the CT series that fits best, or the one asked for.

Only identifiers of the data are kept (Study, Series and SOP Instance UIDs, modality), never the
patient's name, ID or birth date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kitsrt.errors import InputError

ORIENTATION_TOLERANCE = 1e-4  # direction cosines
SPACING_TOLERANCE = 0.1  # relative deviation of one slice step from the median step
_TAGS = {
    "modality": "0008|0060",
    "image_type": "0008|0008",
    "orientation": "0020|0037",
    "position": "0020|0032",
    "sop_uid": "0008|0018",
    "study_uid": "0020|000d",
    "series_uid": "0020|000e",
    "rows": "0028|0010",
    "columns": "0028|0011",
    "frames": "0028|0008",
    "contrast_agent": "0018|0010",
}


@dataclass(frozen=True)
class DicomInfo:
    """What a report keeps of the DICOM series a scan came from: identifiers, never patient data."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]  # in slice order (index axis k)
    modality: str
    contrast_agent: str  # (0018,0010) Contrast/Bolus Agent; "" when absent
    selection: str  # which series was read and why

    def as_dict(self) -> dict:
        return {"study_instance_uid": self.study_instance_uid,
                "series_instance_uid": self.series_instance_uid,
                "sop_instance_uids": list(self.sop_instance_uids), "modality": self.modality,
                "contrast_agent": self.contrast_agent, "selection": self.selection}


@dataclass(frozen=True)
class SeriesHeaders:
    """Header facts of one series, one entry per file, in GDCM's file order."""

    uid: str
    files: tuple[str, ...]
    tags: tuple[dict, ...]  # per file: the values of ``_TAGS`` present in it

    @property
    def modality(self) -> str:
        return self.tags[0].get("modality", "").strip()

    @property
    def is_localizer(self) -> bool:
        return any("LOCALIZER" in t.get("image_type", "").upper() for t in self.tags)

    def describe(self) -> str:
        problem = series_problem(self)
        return (f"{self.uid} ({self.modality or 'no modality'}, {len(self.files)} file(s)"
                + (f", {problem}" if problem else "") + ")")


def folder_series(folder: Path) -> list[str]:
    """Series Instance UIDs that GDCM finds in ``folder`` (not recursive); [] when none."""
    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def is_dicom_folder(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one DICOM series, whatever its files are named."""
    return Path(folder).is_dir() and bool(folder_series(Path(folder)))


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split("\\") if v.strip()]
    except ValueError:
        return []


def read_headers(folder: Path, uid: str) -> SeriesHeaders:
    """Read the header (no pixels, no private tags) of every file of one series."""
    files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    tags = []
    reader = sitk.ImageFileReader()
    reader.LoadPrivateTagsOff()
    for name in files:
        reader.SetFileName(name)
        reader.ReadImageInformation()
        tags.append({key: reader.GetMetaData(tag) for key, tag in _TAGS.items() if reader.HasMetaDataKey(tag)})
    return SeriesHeaders(uid, files, tuple(tags))


def _slice_normal(orientation: list[float]) -> np.ndarray:
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return np.cross(row, column)


def slice_positions_mm(headers: SeriesHeaders) -> np.ndarray:
    """Each file's position along the slice normal (mm), in file order."""
    normal = _slice_normal(_numbers(headers.tags[0]["orientation"]))
    return np.array([np.dot(_numbers(t["position"]), normal) for t in headers.tags])


def series_problem(headers: SeriesHeaders) -> str | None:
    """Why this series cannot be read as one evenly spaced volume, or None when it can."""
    if len(headers.files) == 1:
        return None if int(headers.tags[0].get("frames", "1").strip() or 1) > 1 else "a single slice"
    if any(len(_numbers(t.get("orientation", ""))) != 6 or len(_numbers(t.get("position", ""))) != 3
           for t in headers.tags):
        return "slices without Image Orientation/Position (Patient)"
    orientations = np.array([_numbers(t["orientation"]) for t in headers.tags])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOLERANCE:
        count = int((np.abs(orientations - orientations[0]).max(axis=1) > ORIENTATION_TOLERANCE).sum())
        return f"mixed orientations ({count} of {len(orientations)} slices differ from the first)"
    if len({(t.get("rows"), t.get("columns")) for t in headers.tags}) > 1:
        return "slices of different image sizes"
    positions = np.sort(slice_positions_mm(headers))
    steps = np.diff(positions)
    median = float(np.median(steps))
    if steps.min() < max(0.01 * median, 1e-3):
        at = positions[int(np.argmin(steps))]
        return f"duplicate slice position at {at:.2f} mm along the slice normal"
    worst = int(np.argmax(np.abs(steps - median)))
    if abs(steps[worst] - median) > SPACING_TOLERANCE * median:
        kind = "a gap (missing slice?)" if steps[worst] > median else "uneven slice spacing"
        return (f"{kind}: {steps[worst]:.2f} mm between slices at {positions[worst]:.2f} and "
                f"{positions[worst + 1]:.2f} mm where the others are {median:.2f} mm apart")
    return None


def choose_series(folder: Path, series: list[SeriesHeaders], requested: str | None) -> tuple[SeriesHeaders, str]:
    """The series to read and why.

    ``requested`` (``--series UID``) wins when it is present and readable. Otherwise the candidates are
    the CT series (or series without a modality) that are not localizers and read as one evenly spaced
    volume; the one with the most slices is taken. Two candidates with as many slices (two contrast
    phases, say) are ambiguous: an error lists them and asks for ``--series``.
    """
    listing = "; ".join(s.describe() for s in series)
    if requested is not None:
        match = [s for s in series if s.uid == requested]
        if not match:
            raise InputError(f"{folder}: no DICOM series {requested}; the folder holds: {listing}")
        problem = series_problem(match[0])
        if problem:
            raise InputError(f"{folder}: DICOM series {requested} cannot be read as one volume: {problem}; "
                             "export the whole series again")
        return match[0], f"series {requested} asked for with --series"
    fitting = [s for s in series if s.modality in ("CT", "") and not s.is_localizer and series_problem(s) is None]
    if not fitting:
        if len(series) == 1:
            raise InputError(f"{folder}: DICOM series {series[0].uid} cannot be read as one volume: "
                             f"{series_problem(series[0]) or 'not CT'}; export the whole series again")
        raise InputError(f"{folder}: none of its {len(series)} DICOM series is a CT volume that can be read "
                         f"({listing}); export a complete CT series or pick one with --series UID")
    fitting.sort(key=lambda s: len(s.files), reverse=True)
    if len(fitting) > 1 and len(fitting[1].files) == len(fitting[0].files):
        tied = "; ".join(s.describe() for s in fitting if len(s.files) == len(fitting[0].files))
        raise InputError(f"{folder}: several CT series fit equally ({tied}); pick one with --series UID")
    chosen = fitting[0]
    if len(series) == 1:
        return chosen, "the only series in the folder"
    others = ", ".join(s.describe() for s in series if s is not chosen)
    return chosen, (f"the CT series with the most slices of one orientation and even spacing "
                    f"({len(chosen.files)} slices); not read: {others}")


def read_dicom_series(folder: Path, series_uid: str | None = None) -> tuple[sitk.Image, DicomInfo]:
    """Read one checked series from ``folder`` in slice order. Raises InputError naming the folder."""
    uids = folder_series(folder)
    if not uids:
        raise InputError(f"{folder}: folder holds no image: no DICOM series and no file kitsrt reads; "
                         "give a DICOM series folder or an image file (.nii.gz, .nrrd, .mha)")
    chosen, why = choose_series(folder, [read_headers(folder, uid) for uid in uids], series_uid)
    order = np.argsort(slice_positions_mm(chosen), kind="stable") if len(chosen.files) > 1 else [0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([chosen.files[i] for i in order])
    image = reader.Execute()
    info = DicomInfo(study_instance_uid=chosen.tags[0].get("study_uid", "").strip(),
                     series_instance_uid=chosen.uid,
                     sop_instance_uids=tuple(chosen.tags[i].get("sop_uid", "").strip() for i in order),
                     modality=chosen.modality,
                     contrast_agent=chosen.tags[0].get("contrast_agent", "").strip(), selection=why)
    return image, info
