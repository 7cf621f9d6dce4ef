"""Write a Scan as a DICOM series (one file per slice along index axis k), for the tests only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Scan


def write_dicom_series(scan: Scan, folder: Path, series_uid: str, names=None, modality: str = "CT",
                       slices=None, positions_mm=None, study_uid: str = "1.2.826.0.1.3680043.2.1125.7") -> list[Path]:
    """One file per k slice of ``scan`` into ``folder``; ``names(k)`` gives each file's name (default
    ``IM%04d``, no suffix), ``slices`` the k indices to write (default all), ``positions_mm`` overrides
    Image Position (Patient) per written slice. Returns the written paths."""
    folder.mkdir(parents=True, exist_ok=True)
    geometry, volume = scan.geometry, scan.array
    d = geometry.direction_matrix
    orientation = "\\".join(f"{v:.6f}" for v in (*d[:, 0], *d[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")  # names without a .dcm suffix
    writer.KeepOriginalImageUIDOn()  # else every slice gets a new series UID
    paths = []
    for n, k in enumerate(range(geometry.size[2]) if slices is None else slices):
        plane = sitk.GetImageFromArray(np.ascontiguousarray(volume[k:k + 1]))
        position = geometry.index_to_physical([[0, 0, k]])[0] if positions_mm is None else positions_mm[n]
        plane.SetSpacing(geometry.spacing_mm)
        plane.SetDirection(geometry.direction)
        plane.SetOrigin(tuple(float(p) for p in position))
        tags = {"0008|0060": modality, "0020|000e": series_uid, "0020|000d": study_uid,
                "0020|0013": str(k + 1), "0020|0037": orientation,
                "0020|0032": "\\".join(f"{p:.4f}" for p in position),
                "0018|0050": f"{geometry.spacing_mm[2]:g}", "0008|0018": f"{series_uid}.{k + 1}",
                "0010|0010": "Doe^Jane", "0010|0020": "PATIENT-ID-123"}
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        path = folder / (names(k) if names else f"IM{k + 1:04d}")
        writer.SetFileName(str(path))
        writer.Execute(plane)
        paths.append(path)
    return paths
