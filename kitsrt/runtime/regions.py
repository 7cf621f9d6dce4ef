"""One entry point for every network input: ``stage_input(scan, region, network)``.

Training, calibration, the precision gate, the benchmark and the runtime all build a network's input
through this module, so a model never sees data prepared differently. Each call records a
``RegionPlan`` (nnU-Net's "properties"): the canonical grid the region was resampled onto, the
centre crop/pad applied to it, and the scan's own sub-grid under the region, so that restoring an
output onto the scan (``kitsrt.runtime.restore.restore_region``) is the exact inverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kitsrt.io import Geometry, Scan
from kitsrt.runtime.pipeline import NetworkSpec
from kitsrt.runtime.preprocess import (
    AIR_HU,
    Box,
    CropPlan,
    canonical_grid,
    centre_crop_or_pad,
    resample_image,
    resample_labels,
)


@dataclass(frozen=True)
class RegionPlan:
    """What was done to cut one network input out of a scan.

    ``grid``: the LPS-aligned grid the scan was resampled onto (its array is (z, y, x));
    ``crop``: the centre crop/pad then applied to that array (None: none);
    ``slices``: the (k, j, i) array slices of the scan the region covers;
    ``target``: the scan's own sub-grid under ``slices`` (same spacing and direction).
    """

    grid: Geometry
    crop: CropPlan | None
    slices: tuple[slice, slice, slice]
    target: Geometry

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(z, y, x) shape of the network input."""
        return self.crop.shape if self.crop else self.grid.array_shape


def crop_grid(geometry: Geometry, box: Box) -> tuple[tuple[slice, ...], Geometry]:
    """The original-resolution sub-grid of ``geometry`` covering ``box``: array slices (k, j, i)
    and the crop's own geometry (same spacing and direction, shifted origin)."""
    corners = np.array([[x, y, z] for x in (box.low[0], box.high[0]) for y in (box.low[1], box.high[1])
                        for z in (box.low[2], box.high[2])])
    index = geometry.physical_to_index(corners)
    low = np.clip(np.floor(index.min(axis=0)).astype(int), 0, np.asarray(geometry.size) - 1)
    high = np.clip(np.ceil(index.max(axis=0)).astype(int), 0, np.asarray(geometry.size) - 1)
    size = tuple(int(s) for s in high - low + 1)
    origin = tuple(float(o) for o in geometry.index_to_physical(low[None].astype(float))[0])
    slices = tuple(slice(int(low[a]), int(high[a]) + 1) for a in (2, 1, 0))
    return slices, Geometry(size, geometry.spacing_mm, origin, geometry.direction)


def region_hu(scan: Scan, region: Box, network: NetworkSpec,
              crop_shape: tuple[int, int, int] | None = None) -> tuple[np.ndarray, RegionPlan]:
    """The scan's HU under ``region`` (a physical box) on the network's canonical grid, centre
    cropped / padded with air to ``crop_shape`` (z, y, x) when given: float32 (z, y, x), and its plan."""
    grid = canonical_grid(region, network.spacing_mm, network.divisibility)
    hu = resample_image(scan.image, grid, anti_alias=network.anti_alias)
    crop = None
    if crop_shape is not None:
        hu, crop = centre_crop_or_pad(hu, tuple(crop_shape), AIR_HU)
    slices, target = crop_grid(scan.geometry, region)
    return hu, RegionPlan(grid, crop, slices, target)


def stage_input(scan: Scan, region: Box, network: NetworkSpec,
                crop_shape: tuple[int, int, int] | None = None) -> tuple[np.ndarray, RegionPlan]:
    """The network input for ``region`` of ``scan``: (z, y, x) float32, normalised as the network's
    spec says, and the plan that restores outputs onto the scan."""
    hu, plan = region_hu(scan, region, network, crop_shape)
    return network.normalization.apply(hu), plan


def stage_labels(labels: Scan, plan: RegionPlan) -> np.ndarray:
    """A reference label map on exactly the grid (and crop) of a network input: uint8 (z, y, x),
    nearest-neighbour; what the training target of that input is."""
    out = resample_labels(labels.image, plan.grid)
    if plan.crop is not None:
        out, _ = centre_crop_or_pad(out, plan.crop.shape, 0)
    return out


def air_value(network: NetworkSpec) -> float:
    """What air (-1024 HU) becomes after the network's normalisation: the value of padding."""
    return float(network.normalization.apply(np.array([AIR_HU], np.float32))[0])


def mask_volume(volume: np.ndarray, mask: np.ndarray, network: NetworkSpec) -> np.ndarray:
    """``volume`` (a network input) with everything outside ``mask`` set to the normalised value of
    air: seed 004's "kidney-masked volume" fed to the tumor network."""
    return np.where(mask, volume, np.float32(air_value(network))).astype(np.float32)
