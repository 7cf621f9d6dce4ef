"""Preprocessing shared by training, calibration and inference: physical grids, resampling, HU window.

Networks see volumes on *canonical grids*: LPS-aligned (identity direction), isotropic spacing, array
axes (z, y, x). A canonical grid is defined by a physical box, so the same code serves the whole
scan at 6 mm and one kidney's VOI at 1 mm, whatever the scan's own axis order. Training, calibration
and the runtime all call these functions, so a model never sees data prepared differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Geometry

AIR_HU = -1024.0
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in physical LPS space, mm: ``low`` and ``high`` corners as (x, y, z)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    @property
    def extent_mm(self) -> np.ndarray:
        return np.asarray(self.high) - np.asarray(self.low)

    def grown(self, margin_mm: float) -> Box:
        return Box(tuple(np.asarray(self.low) - margin_mm), tuple(np.asarray(self.high) + margin_mm))

    def grown_faces(self, faces: list[tuple[int, int]], margin_mm: float) -> Box:
        """Move the given faces out by ``margin_mm``; a face is (axis 0=x 1=y 2=z, side -1 low / +1 high)."""
        low, high = np.asarray(self.low, float), np.asarray(self.high, float)
        for axis, side in faces:
            if side < 0:
                low[axis] -= margin_mm
            else:
                high[axis] += margin_mm
        return Box(tuple(low), tuple(high))

    def intersect(self, other: Box) -> Box:
        return Box(tuple(np.maximum(self.low, other.low)), tuple(np.minimum(self.high, other.high)))


def scan_box(geometry: Geometry) -> Box:
    """The physical box spanned by a scan's voxel centres."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
    points = geometry.index_to_physical(corners * (np.asarray(geometry.size) - 1))
    return Box(tuple(points.min(axis=0)), tuple(points.max(axis=0)))


def canonical_grid(box: Box, spacing_mm: float, multiple_of: int = 1) -> Geometry:
    """An LPS-aligned grid of ``spacing_mm`` voxels covering ``box``, its size padded up to a multiple
    of ``multiple_of`` (the network's divisibility) and centred on the box."""
    needed = np.floor(box.extent_mm / spacing_mm).astype(int) + 1
    size = (np.ceil(needed / multiple_of) * multiple_of).astype(int)
    center = (np.asarray(box.low) + np.asarray(box.high)) / 2.0
    origin = center - (size - 1) * spacing_mm / 2.0
    return Geometry(tuple(int(s) for s in size), (float(spacing_mm),) * 3, tuple(float(o) for o in origin),
                    IDENTITY)


def resample_onto(image: sitk.Image, grid: Geometry, interpolator, default: float, pixel_id: int) -> sitk.Image:
    """Resample ``image`` onto ``grid`` (identity transform), without allocating a reference image."""
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(list(grid.size))
    resampler.SetOutputSpacing(grid.spacing_mm)
    resampler.SetOutputOrigin(grid.origin_mm)
    resampler.SetOutputDirection(grid.direction)
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(default)
    resampler.SetOutputPixelType(pixel_id)
    return resampler.Execute(image)


def symmetric_blocks(size: int, factor: int) -> tuple[int, int]:
    """(block size, voxels dropped at *each* end) to average one axis of ``size`` voxels in blocks of
    about ``factor``, laid out symmetrically about the axis's middle.

    ``BinShrink`` starts its blocks at index 0 and drops the leftover voxels at the far end, so which
    end loses data depends on the index direction, and a flipped file gives another result. Dropping
    the same number at both ends needs an even leftover: with an odd leftover and an odd block, one
    more block is dropped (odd + odd is even); an even block with an odd leftover becomes odd (one
    voxel smaller, or 3 instead of 2). Example: 57 voxels, factor 4 -> leftover 1 is odd -> block 3,
    leftover 0 -> (3, 0).
    """
    for block in (factor,) if factor % 2 else (factor, 3 if factor == 2 else factor - 1):
        leftover = size % block
        if leftover % 2 == 0 and size - leftover >= block:
            return block, leftover // 2
        if block % 2 and size - leftover - block >= block:
            return block, (leftover + block) // 2
    return 1, 0


def block_average(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Average voxels in integer blocks about ``spacing_mm`` wide (a box anti-aliasing filter before
    resampling onto a coarser grid), laid out symmetrically on every axis (``symmetric_blocks``), so
    the result does not depend on the file's index directions. Returns ``image`` itself when no axis
    is coarsened."""
    plans = [symmetric_blocks(n, max(int(spacing_mm / s), 1)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    blocks, crops = [p[0] for p in plans], [p[1] for p in plans]
    if max(blocks) == 1:
        return image
    source = sitk.Crop(image, crops, crops) if max(crops) > 0 else image
    return sitk.BinShrink(source, blocks)


def resample_image(image: sitk.Image, grid: Geometry, default_hu: float = AIR_HU,
                   anti_alias: bool = True) -> np.ndarray:
    """Resample a CT onto ``grid`` (linear) as float32 (z, y, x).

    When the grid is much coarser than the scan, voxels are first averaged in symmetric integer
    blocks (``block_average``): a cheap box anti-aliasing filter that also shrinks the data the
    resampler reads.
    """
    source = block_average(image, grid.spacing_mm[0]) if anti_alias else image
    return sitk.GetArrayFromImage(resample_onto(source, grid, sitk.sitkLinear, default_hu, sitk.sitkFloat32))


def resample_labels(labels: sitk.Image, grid: Geometry) -> np.ndarray:
    """Resample a label map onto ``grid`` with nearest-neighbour interpolation, uint8 (z, y, x)."""
    return sitk.GetArrayFromImage(resample_onto(labels, grid, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))


def window_and_scale(hu: np.ndarray, hu_window: tuple[float, float]) -> np.ndarray:
    """Clip HU to ``hu_window`` and scale linearly to [-1, 1] (float32), as the seed 002 recipe says."""
    low, high = hu_window
    out = np.clip(hu, low, high, dtype=np.float32)
    out -= (low + high) / 2.0
    out *= 2.0 / (high - low)
    return out


def network_input(volume: np.ndarray) -> np.ndarray:
    """(z, y, x) float32 volume -> (1, 1, z, y, x) contiguous batch of one."""
    return np.ascontiguousarray(volume[None, None], dtype=np.float32)
