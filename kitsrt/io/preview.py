"""PNG previews: axial and coronal slices of a CT, with a label map overlaid, in radiological view.

Slices are resampled from physical space (not read off array axes), so they show the patient the
same way whatever the file's axis order: axial with the patient's right on the image's left and
anterior at the top; coronal with superior at the top.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kitsrt.io.scan import Scan, write_image

DISPLAY_WINDOW_HU = (-160.0, 240.0)  # soft-tissue window, level 40, width 400
LABEL_COLORS = {1: (40, 200, 90), 2: (235, 60, 50)}  # kidney green, tumor red
OVERLAY_ALPHA = 0.45
PIXEL_MM = 0.8

# Columns of each view's direction matrix: image x, image y, and the (unit) slice normal, in LPS.
_VIEWS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}


def _plane(image: sitk.Image, center_mm, view: str, field_mm: float, interpolator) -> np.ndarray:
    u, v, n = (np.asarray(c) for c in _VIEWS[view])
    pixels = int(round(field_mm / PIXEL_MM))
    origin = np.asarray(center_mm) - (u + v) * field_mm / 2.0
    reference = sitk.Image([pixels, pixels, 1], image.GetPixelID())
    reference.SetSpacing((PIXEL_MM, PIXEL_MM, 1.0))
    reference.SetOrigin(tuple(origin))
    reference.SetDirection(tuple(np.stack([u, v, n], axis=1).ravel()))
    default = -1024.0 if interpolator == sitk.sitkLinear else 0.0
    plane = sitk.Resample(image, reference, sitk.Transform(), interpolator, default)
    return sitk.GetArrayFromImage(plane)[0]


def _compose(ct_plane: np.ndarray, label_plane: np.ndarray | None) -> np.ndarray:
    low, high = DISPLAY_WINDOW_HU
    grey = np.clip((ct_plane.astype(np.float32) - low) / (high - low), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if label_plane is not None:
        for label, color in LABEL_COLORS.items():
            hit = label_plane == label
            rgb[hit] = (1 - OVERLAY_ALPHA) * rgb[hit] + OVERLAY_ALPHA * np.asarray(color)
    return rgb.astype(np.uint8)


def render_views(ct: Scan, labels: Scan | None, centers_mm: list, field_mm: float = 380.0) -> np.ndarray:
    """An RGB uint8 mosaic: one row per centre point, axial on the left and coronal on the right."""
    rows = []
    for center in centers_mm:
        tiles = []
        for view in ("axial", "coronal"):
            ct_plane = _plane(ct.image, center, view, field_mm, sitk.sitkLinear)
            label_plane = None if labels is None else _plane(labels.image, center, view, field_mm,
                                                            sitk.sitkNearestNeighbor)
            tiles.append(_compose(ct_plane, label_plane))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def write_png(rgb: np.ndarray, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an (H, W, 3) uint8 array as PNG, atomically."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(rgb), isVector=True)
    return write_image(image, path, overwrite, allowed_suffixes=(".png",))


def volume_center_mm(scan: Scan) -> tuple[float, float, float]:
    geometry = scan.geometry
    return tuple(geometry.index_to_physical((np.asarray(geometry.size) - 1) / 2.0))
