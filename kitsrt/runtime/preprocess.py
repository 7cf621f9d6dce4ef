"""Preprocessing shared by training, calibration and inference: physical grids, resampling, crop/pad.

Networks see volumes on *canonical grids*: LPS-aligned (identity direction), a target spacing per
physical axis (x, y, z), array axes (z, y, x). A canonical grid is defined by a physical box, so the same code serves the whole
scan at 6 mm and one kidney's VOI at 1 mm, whatever the scan's own axis order. Training, calibration
and the runtime all call these functions, so a model never sees data prepared differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Geometry
from kitsrt.io.resample import resample_onto
from kitsrt.runtime.pipeline import WindowSymmetric

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


def _per_axis(spacing_mm: float | tuple[float, float, float]) -> np.ndarray:
    return np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))


def canonical_grid(box: Box, spacing_mm: float | tuple[float, float, float], multiple_of: int = 1) -> Geometry:
    """An LPS-aligned grid of ``spacing_mm`` voxels (one value, or one per axis x, y, z) covering
    ``box``, its size padded up to a multiple of ``multiple_of`` (the network's divisibility) and
    centred on the box."""
    spacing = _per_axis(spacing_mm)
    needed = np.floor(box.extent_mm / spacing).astype(int) + 1
    size = (np.ceil(needed / multiple_of) * multiple_of).astype(int)
    return centred_grid(box, spacing, tuple(int(s) for s in size))


def centred_grid(box: Box, spacing_mm: float | tuple[float, float, float], size_xyz: tuple[int, int, int]) -> Geometry:
    """An LPS-aligned grid of exactly ``size_xyz`` voxels of ``spacing_mm``, centred on ``box``."""
    spacing = _per_axis(spacing_mm)
    center = (np.asarray(box.low) + np.asarray(box.high)) / 2.0
    origin = center - (np.asarray(size_xyz) - 1) * spacing / 2.0
    return Geometry(tuple(int(s) for s in size_xyz), tuple(float(s) for s in spacing),
                    tuple(float(o) for o in origin), IDENTITY)


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


def _target_spacing_per_image_axis(image: sitk.Image, spacing_mm) -> list[float]:
    """The target spacing (one value, or one per physical axis x, y, z) along each image axis: that
    of the physical axis the image axis runs closest to."""
    spacing = _per_axis(spacing_mm)
    nearest = np.abs(np.asarray(image.GetDirection()).reshape(3, 3)).argmax(axis=0)
    return [float(spacing[nearest[a]]) for a in range(3)]


def block_average(image: sitk.Image, spacing_mm: float | tuple[float, float, float]) -> sitk.Image:
    """Average voxels in integer blocks about ``spacing_mm`` wide (one value, or one per physical axis
    x, y, z; a box anti-aliasing filter before resampling onto a coarser grid), laid out
    symmetrically on every axis (``symmetric_blocks``), so the result does not depend on the file's
    index directions. Returns ``image`` itself when no axis is coarsened."""
    targets = _target_spacing_per_image_axis(image, spacing_mm)
    plans = [symmetric_blocks(n, max(int(t / s), 1)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), targets)]
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
    source = block_average(image, grid.spacing_mm) if anti_alias else image
    return sitk.GetArrayFromImage(resample_onto(source, grid, sitk.sitkLinear, default_hu, sitk.sitkFloat32))


def resample_labels(labels: sitk.Image, grid: Geometry) -> np.ndarray:
    """Resample a label map onto ``grid`` with nearest-neighbour interpolation, uint8 (z, y, x)."""
    return sitk.GetArrayFromImage(resample_onto(labels, grid, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))


def window_and_scale(hu: np.ndarray, hu_window: tuple[float, float]) -> np.ndarray:
    """Clip HU to ``hu_window`` and scale linearly to [-1, 1] (float32), as the seed 002 recipe says."""
    return WindowSymmetric(hu_window=hu_window).apply(hu)


@dataclass(frozen=True)
class CropPlan:
    """What ``centre_crop_or_pad`` did: the input's and the output's shapes and, per axis, the slices
    of the input that were kept and where they went in the output. ``uncrop`` inverts it exactly."""

    source_shape: tuple[int, ...]
    shape: tuple[int, ...]
    source: tuple[slice, ...]
    target: tuple[slice, ...]


def centre_crop_or_pad(volume: np.ndarray, shape: tuple[int, ...], fill: float) -> tuple[np.ndarray, CropPlan]:
    """Crop (z, y, x) ``volume`` about its centre, or pad it with ``fill``, to exactly ``shape``.
    Example: a 200-long axis to 168 keeps 16..184; a 100-long axis to 168 lands at 34..134."""
    source, target = [], []
    for n, want in zip(volume.shape, shape):
        offset = abs(n - want) // 2
        if n >= want:
            source.append(slice(offset, offset + want))
            target.append(slice(0, want))
        else:
            source.append(slice(0, n))
            target.append(slice(offset, offset + n))
    out = np.full(shape, fill, dtype=volume.dtype)
    out[tuple(target)] = volume[tuple(source)]
    return out, CropPlan(tuple(volume.shape), tuple(shape), tuple(source), tuple(target))


def uncrop(array: np.ndarray, plan: CropPlan, fill: float = 0) -> np.ndarray:
    """The inverse of ``centre_crop_or_pad`` on the last three axes of ``array``: values back on the
    original (z, y, x) shape; what was cropped away becomes ``fill``."""
    lead = array.shape[:-3]
    out = np.full((*lead, *plan.source_shape), fill, dtype=array.dtype)
    out[(..., *plan.source)] = array[(..., *plan.target)]
    return out


def network_input(volume: np.ndarray) -> np.ndarray:
    """(z, y, x) float32 volume -> (1, 1, z, y, x) contiguous batch of one."""
    return np.ascontiguousarray(volume[None, None], dtype=np.float32)
