"""The seed 002 cascade as short, pure steps: scan -> coarse 6 mm -> VOIs -> fine 1 mm -> labels.

Every step works from spacing and direction: networks see canonical LPS grids, each VOI is cut
from the *original* scan and only that crop is resampled to 1 mm, and probabilities go back onto
the crop's own original-resolution grid before the argmax. No full-scan float32 copy at 1 mm exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kitsrt.engines.base import Backend
from kitsrt.io import Geometry, Scan
from kitsrt.runtime.inference import infer_volume, softmax
from kitsrt.runtime.kinds.base import KindResult, Role, network_role
from kitsrt.runtime.pipeline import CascadeSpec
from kitsrt.runtime.postprocess import apply_rules, components_by_size
from kitsrt.runtime.preprocess import Box, scan_box
from kitsrt.runtime.regions import air_value, region_hu, stage_input
from kitsrt.runtime.report import voi_entry
from kitsrt.runtime.restore import labels_of, probabilities_to_scan
from kitsrt.runtime.timing import Timings
from kitsrt.runtime.voi import kidney_boxes


@dataclass(frozen=True)
class CoarseResult:
    grid: Geometry
    volume: np.ndarray  # (z, y, x) the scaled network input
    labels: np.ndarray  # (z, y, x) argmax on the coarse grid
    body_mid_x_mm: float  # LPS x of the body's centre of mass (for left/right)


def coarse_stage(scan: Scan, spec: CascadeSpec, backend: Backend, timings: Timings) -> CoarseResult:
    stage = spec.coarse
    with timings.timer("coarse_preprocess"):
        hu, plan = region_hu(scan, scan_box(scan.geometry), stage)
        grid = plan.grid
        body = hu > -500
        xs = grid.origin_mm[0] + grid.spacing_mm[0] * np.arange(grid.size[0])
        mid_x = float((body.sum(axis=(0, 1)) * xs).sum() / max(body.sum(), 1))
        volume = stage.normalization.apply(hu)
    with timings.timer("coarse_net"):
        labels = labels_of(infer_volume(volume, stage, backend))
    return CoarseResult(grid, volume, labels, mid_x)


def find_vois(coarse: CoarseResult, scan: Scan, spec: CascadeSpec) -> list[Box]:
    """One box per kidney from the coarse mask, clipped to the scan."""
    bounds = scan_box(scan.geometry)
    boxes = [b.intersect(bounds) for b in kidney_boxes(coarse.labels > 0, coarse.grid, spec.roi)]
    return [b for b in boxes if np.all(b.extent_mm > 0)]


@dataclass(frozen=True)
class VoiResult:
    box: Box
    slices: tuple[slice, ...]
    labels: np.ndarray  # (k, j, i) on the crop of the original grid, post-processed
    growth_steps: int = 0  # how often the VOI grew because its kidney reached a face


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


def own_kidney(labels: np.ndarray) -> np.ndarray:
    """Kidney tissue (label 1) of the largest kidney+tumor component that holds any: the VOI's own
    kidney, not a stray tumor blob or a fragment elsewhere. (z, y, x) bool."""
    components = components_by_size(labels > 0)
    with_kidney = np.unique(components[labels == 1])
    if with_kidney.size == 0:
        return np.zeros(labels.shape, bool)
    return (components == with_kidney.min()) & (labels == 1)


def capped(box: Box, grown: Box, max_extent_mm: float | None) -> Box:
    """``grown`` with each axis's growth cut back so that no extent exceeds ``max_extent_mm`` (an axis
    already wider keeps its size); both moved faces share the cut equally."""
    if max_extent_mm is None:
        return grown
    low, high = np.asarray(grown.low, float), np.asarray(grown.high, float)
    for axis in range(3):
        allowed = max(max_extent_mm - (box.high[axis] - box.low[axis]), 0.0)
        moved_low, moved_high = box.low[axis] - low[axis], high[axis] - box.high[axis]
        if moved_low + moved_high <= allowed:
            continue
        share = allowed / (moved_low + moved_high)
        low[axis], high[axis] = box.low[axis] - moved_low * share, box.high[axis] + moved_high * share
    return Box(tuple(low), tuple(high))


def fine_stage(scan: Scan, box: Box, spec: CascadeSpec, backend: Backend, timings: Timings) -> VoiResult:
    """Segment one VOI; where its own kidney tissue (``own_kidney``, not a stray tumor blob) reaches
    a face of the VOI, move that face out and run again (up to ``roi.grow_steps`` times, never wider
    than ``roi.max_extent_mm``), so a kidney the coarse stage under-reached is not cut off."""
    stage, bounds = spec.fine, scan_box(scan.geometry)
    steps = 0
    for attempt in range(spec.roi.grow_steps + 1):
        with timings.timer("fine_preprocess"):
            volume, plan = stage_input(scan, box, stage)
        with timings.timer("fine_net"):
            logits = infer_volume(volume, stage, backend)
        if attempt == spec.roi.grow_steps:
            break
        faces = foreground_faces(own_kidney(labels_of(logits)), box, bounds)
        grown = capped(box, box.grown_faces(faces, spec.roi.grow_mm).intersect(bounds), spec.roi.max_extent_mm)
        if not faces or np.allclose(grown.low, box.low) and np.allclose(grown.high, box.high):
            break
        box, steps = grown, steps + 1
    with timings.timer("postprocess"):
        labels = probabilities_to_scan(softmax(logits), plan, spec.restore)
        labels = apply_rules(labels, spec.postprocess, scan.geometry.voxel_volume_ml, scan.geometry.spacing_mm)
    return VoiResult(box, plan.slices, labels, steps)


def paste(vois: list[VoiResult], geometry: Geometry) -> np.ndarray:
    """A full-size (k, j, i) uint8 label map with every VOI's labels in place (tumor wins overlaps)."""
    full = np.zeros(geometry.array_shape, np.uint8)
    for voi in vois:
        np.maximum(full[voi.slices], voi.labels, out=full[voi.slices])
    return full


def run(scan: Scan, spec: CascadeSpec, backends: dict[str, Backend], timings: Timings) -> KindResult:
    """The seed 002 cascade on one scan: coarse -> VOIs -> fine per VOI -> labels on the scan's grid."""
    coarse = coarse_stage(scan, spec, backends["coarse"], timings)
    with timings.timer("voi"):
        boxes = find_vois(coarse, scan, spec)
    vois = [fine_stage(scan, box, spec, backends["fine"], timings) for box in boxes]
    with timings.timer("postprocess"):
        labels = paste(vois, scan.geometry)
    with timings.timer("measure"):
        regions = [voi_entry(voi, scan, coarse.body_mid_x_mm) for voi in vois]
    return KindResult(labels, regions, {"boxes": tuple(v.box for v in vois)})


def roles(spec: CascadeSpec) -> dict[str, Role]:
    """``coarse`` and ``fine``, each fed batch 1 over its ``min_shape``..``max_shape``, argmax labels."""
    return {name: network_role(name, net, spec.labels, air_value(net)) for name, net in spec.networks().items()}


def network_inputs(scan: Scan, spec: CascadeSpec, backends: dict[str, Backend],
                   tiles_per_case: int | None = None) -> dict[str, list[np.ndarray]]:
    """The inputs ``run`` feeds each network for ``scan``: the whole scan on the coarse grid, and
    every VOI as the fine network finally ran it (after growth), both cut by ``stage_input``. Runs the
    cascade once (FP32 ``backends``) to place and grow the VOIs. (z, y, x) float32 each."""
    boxes = run(scan, spec, backends, Timings()).extra["boxes"]
    coarse, _ = stage_input(scan, scan_box(scan.geometry), spec.coarse)
    return {"coarse": [coarse], "fine": [stage_input(scan, box, spec.fine)[0] for box in boxes]}
