"""From a kidney mask to volumes of interest (VOIs): one physical box per kidney, with a margin.

Works on any grid (the coarse 6 mm output at inference, the reference label map in training), and
returns boxes in physical LPS mm, so the fine stage can crop the *original* scan wherever it lies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Geometry, Scan
from kitsrt.runtime.pipeline import RoiPolicy
from kitsrt.runtime.preprocess import Box


@dataclass(frozen=True)
class Component:
    """A connected component of a mask: voxel count, physical centroid (x, y, z) and box."""

    voxels: int
    centroid_mm: tuple[float, float, float]
    box: Box


def components(mask: np.ndarray, geometry: Geometry, min_volume_ml: float = 0.0) -> list[Component]:
    """Connected components (26-connectivity) of a (k, j, i) mask, largest first, with their
    physical boxes spanning the outer faces of the voxels (half a voxel beyond their centres)."""
    image = Scan.from_array(mask.astype(np.uint8), geometry).image
    min_voxels = int(np.ceil(min_volume_ml / geometry.voxel_volume_ml)) if min_volume_ml > 0 else 0
    labelled = sitk.RelabelComponent(sitk.ConnectedComponent(image, True), minimumObjectSize=min_voxels)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labelled)
    found = []
    for label in stats.GetLabels():
        x0, y0, z0, nx, ny, nz = stats.GetBoundingBox(label)
        corners = np.array([[i, j, k] for i in (x0 - 0.5, x0 + nx - 0.5) for j in (y0 - 0.5, y0 + ny - 0.5)
                            for k in (z0 - 0.5, z0 + nz - 0.5)])
        points = geometry.index_to_physical(corners)
        found.append(Component(int(stats.GetNumberOfPixels(label)), tuple(stats.GetCentroid(label)),
                               Box(tuple(points.min(axis=0)), tuple(points.max(axis=0)))))
    return found


def kidney_boxes(mask: np.ndarray, geometry: Geometry, roi: RoiPolicy) -> list[Box]:
    """VOIs for the ``roi.components`` largest kidney components, grown by ``roi.margin_mm`` and
    ordered from the patient's right to left (increasing LPS x)."""
    kept = components(mask, geometry, roi.min_volume_ml)[: roi.components]
    kept.sort(key=lambda c: c.centroid_mm[0])
    return [c.box.grown(roi.margin_mm) for c in kept]


def side_of(box: Box, body_mid_x: float) -> str:
    """'right' or 'left' in patient terms: LPS x grows towards the patient's left."""
    center_x = (box.low[0] + box.high[0]) / 2.0
    return "left" if center_x > body_mid_x else "right"
