"""The seed 002 cascade as short, pure steps: scan -> coarse 6 mm -> VOIs -> fine 1 mm -> labels.

Every step works from spacing and direction: networks see canonical LPS grids, each VOI is cut
from the *original* scan and only that crop is resampled to 1 mm, and probabilities go back onto
the crop's own original-resolution grid before the argmax. No full-scan float32 copy at 1 mm exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from kitsrt.engines.base import Backend
from kitsrt.io import Geometry, Scan
from kitsrt.runtime.pipeline import FinePolicy, PipelineSpec, StageSpec
from kitsrt.runtime.postprocess import clean_voi_labels, components_by_size
from kitsrt.runtime.preprocess import (
    Box,
    canonical_grid,
    network_input,
    resample_image,
    resample_onto,
    scan_box,
    window_and_scale,
)
from kitsrt.runtime.sliding_window import sliding_window
from kitsrt.runtime.voi import kidney_boxes


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def run_network(backend: Backend, stage: StageSpec, volume: np.ndarray) -> np.ndarray:
    """(z, y, x) scaled input -> (C, z, y, x) logits."""
    return backend.infer({stage.input_name: network_input(volume)})[stage.output_name][0]


@dataclass(frozen=True)
class CoarseResult:
    grid: Geometry
    volume: np.ndarray  # (z, y, x) the scaled network input
    labels: np.ndarray  # (z, y, x) argmax on the coarse grid
    body_mid_x_mm: float  # LPS x of the body's centre of mass (for left/right)


def coarse_stage(scan: Scan, spec: PipelineSpec, backend: Backend, timings: dict) -> CoarseResult:
    stage = spec.coarse
    with timings.timer("coarse_preprocess"):
        grid = canonical_grid(scan_box(scan.geometry), stage.spacing_mm, stage.divisibility)
        hu = resample_image(scan.image, grid)
        body = hu > -500
        xs = grid.origin_mm[0] + grid.spacing_mm[0] * np.arange(grid.size[0])
        mid_x = float((body.sum(axis=(0, 1)) * xs).sum() / max(body.sum(), 1))
        volume = window_and_scale(hu, stage.hu_window)
    with timings.timer("coarse_net"):
        labels = run_network(backend, stage, volume).argmax(axis=0).astype(np.uint8)
    return CoarseResult(grid, volume, labels, mid_x)


def find_vois(coarse: CoarseResult, scan: Scan, spec: PipelineSpec) -> list[Box]:
    """One box per kidney from the coarse mask, clipped to the scan."""
    bounds = scan_box(scan.geometry)
    boxes = [b.intersect(bounds) for b in kidney_boxes(coarse.labels > 0, coarse.grid, spec.roi)]
    return [b for b in boxes if np.all(b.extent_mm > 0)]


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


def fine_logits(volume: np.ndarray, stage: StageSpec, policy: FinePolicy, backend: Backend) -> np.ndarray:
    """Whole-VOI inference when it fits the budget, else a Gaussian-blended sliding window."""
    if volume.size <= policy.max_voxels:
        return run_network(backend, stage, volume)
    return sliding_window(volume, policy.patch_size, policy.overlap, policy.sigma_scale,
                          lambda tile: backend.infer({stage.input_name: tile})[stage.output_name])


def probabilities_on_grid(probs: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """Resample (C, z, y, x) probabilities on ``source`` linearly onto ``target``: (C, k, j, i).

    Linear interpolation preserves the sum over classes, so only the foreground channels are
    resampled (one scalar image each, cheaper than one vector image) and background is 1 - their sum;
    outside ``source`` everything is background.
    """
    out = np.empty((probs.shape[0], *target.array_shape), np.float32)
    for channel in range(1, probs.shape[0]):
        image = source.apply_to(sitk.GetImageFromArray(probs[channel]))
        resampled = resample_onto(image, target, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        out[channel] = sitk.GetArrayViewFromImage(resampled)  # copied while ``resampled`` is alive
    out[0] = 1.0 - out[1:].sum(axis=0)
    return out


@dataclass(frozen=True)
class VoiResult:
    box: Box
    slices: tuple[slice, ...]
    labels: np.ndarray  # (k, j, i) on the crop of the original grid, post-processed


def foreground_faces(labels: np.ndarray, box: Box, bounds: Box, tolerance_mm: float = 1.0) -> list[tuple[int, int]]:
    """Faces of a VOI (labels on its canonical (z, y, x) grid) that foreground touches and that can
    still move outwards (not yet at the scan's bounds). Faces as (x/y/z axis, -1 low or +1 high)."""
    faces = []
    for array_axis, axis in ((0, 2), (1, 1), (2, 0)):
        for side, index in ((-1, 0), (1, -1)):
            edge = np.take(labels, index, axis=array_axis)
            room = box.low[axis] - bounds.low[axis] if side < 0 else bounds.high[axis] - box.high[axis]
            if room > tolerance_mm and edge.any():
                faces.append((axis, side))
    return faces


def fine_stage(scan: Scan, box: Box, spec: PipelineSpec, backend: Backend, timings) -> VoiResult:
    """Segment one VOI; where its largest kidney(+tumor) component reaches a face of the VOI, move
    that face out and run again (up to ``roi.grow_steps`` times), so a kidney or a large exophytic
    tumor that the coarse stage under-reached is not cut off."""
    stage, bounds = spec.fine, scan_box(scan.geometry)
    for attempt in range(spec.roi.grow_steps + 1):
        with timings.timer("fine_preprocess"):
            grid = canonical_grid(box, stage.spacing_mm, stage.divisibility)
            volume = window_and_scale(resample_image(scan.image, grid, anti_alias=False), stage.hu_window)
        with timings.timer("fine_net"):
            logits = fine_logits(volume, stage, spec.fine_policy, backend)
        if attempt == spec.roi.grow_steps:
            break
        kidney = components_by_size(logits.argmax(axis=0) > 0) == 1  # the VOI's own kidney, not stray blobs
        faces = foreground_faces(kidney, box, bounds)
        if not faces:
            break
        box = box.grown_faces(faces, spec.roi.grow_mm).intersect(bounds)
    with timings.timer("postprocess"):
        slices, crop = crop_grid(scan.geometry, box)
        probs = probabilities_on_grid(softmax(logits), grid, crop)
        labels = clean_voi_labels(probs.argmax(axis=0).astype(np.uint8), spec.postprocess)
    return VoiResult(box, slices, labels)


def paste(vois: list[VoiResult], geometry: Geometry) -> np.ndarray:
    """A full-size (k, j, i) uint8 label map with every VOI's labels in place (tumor wins overlaps)."""
    full = np.zeros(geometry.array_shape, np.uint8)
    for voi in vois:
        np.maximum(full[voi.slices], voi.labels, out=full[voi.slices])
    return full
