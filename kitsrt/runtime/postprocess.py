"""Post-processing as an ordered list of rules (``pipeline.json`` ``postprocess``) on a label map.

Rules (``kitsrt.runtime.pipeline``): ``largest-components`` (seed 002: the largest kidney(+tumor)
component of a VOI; seed 004: the three largest structures over 10 mL), ``drop-unless-touching``
(tumor kept only where it touches kidney), ``fill-holes``, ``kidney-and-nearby-tumor`` (the VOI's
kidney and the tumors within a margin of it).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kitsrt.io.masks import bounding_box
from kitsrt.runtime.pipeline import DropUnlessTouching, FillHoles, KidneyAndNearbyTumor, LargestComponents

KIDNEY, TUMOR = 1, 2


def components_by_size(mask: np.ndarray) -> np.ndarray:
    """Connected components (26-connectivity) of a (k, j, i) mask, labelled 1.. by decreasing size."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(image, True)))


def grown_by_one(mask: np.ndarray) -> np.ndarray:
    """``mask`` dilated by one voxel in all 26 directions (a 3x3x3 box), as bool."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayViewFromImage(sitk.BinaryDilate(image, [1, 1, 1], sitk.sitkBox)).astype(bool)


def largest_components(labels: np.ndarray, rule: LargestComponents, voxel_volume_ml: float) -> None:
    """In place: keep the ``rule.count`` largest components of ``rule.labels`` of at least
    ``rule.min_volume_ml``."""
    mask = np.isin(labels, rule.labels)
    if not mask.any():
        return
    components = components_by_size(mask)
    keep = (components >= 1) & (components <= rule.count)
    if rule.min_volume_ml > 0:
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes * voxel_volume_ml < rule.min_volume_ml)
        keep &= ~np.isin(components, small)
    labels[mask & ~keep] = 0


def drop_unless_touching(labels: np.ndarray, rule: DropUnlessTouching) -> None:
    """In place: drop each component of ``rule.label`` that does not touch ``rule.touching``."""
    if not (labels == rule.label).any():
        return
    found = components_by_size(labels == rule.label)
    near_other = grown_by_one(labels == rule.touching)  # a component touches ``other`` iff it meets this
    touching = np.unique(found[near_other & (found > 0)])
    labels[(found > 0) & ~np.isin(found, touching)] = 0


def fill_holes(labels: np.ndarray, rule: FillHoles) -> None:
    """In place: background voxels enclosed by ``rule.labels`` (in 3-D) become ``rule.fill_with``."""
    mask = np.isin(labels, rule.labels)
    if not mask.any():
        return
    filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(mask.astype(np.uint8)),
                                                        fullyConnected=True))
    labels[(filled > 0) & ~mask & (labels == 0)] = rule.fill_with


def distance_near(target: np.ndarray, around: np.ndarray, spacing_mm, reach_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """Distance (mm, centre to centre; <= 0 inside) to ``target`` over the bounding box of ``around``
    grown by ``reach_mm``: (the box's (k, j, i) slices, the distances on it); ``spacing_mm`` in ITK
    order (i, j, k). Exact wherever the true distance is at most ``reach_mm`` (the nearest ``target``
    voxel then lies inside the box); elsewhere it is more than ``reach_mm`` too. ``around`` not empty."""
    margin = int(np.ceil(reach_mm / min(float(s) for s in spacing_mm))) + 1
    box = bounding_box(around, margin)
    image = sitk.GetImageFromArray(target[box].astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_mm))
    return box, sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(  # a copy: the image is a temporary
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))


def kidney_and_nearby_tumor(labels: np.ndarray, rule: KidneyAndNearbyTumor, spacing_mm) -> None:
    """In place: keep the largest kidney+tumor component holding kidney tissue, and the tumor
    components within ``rule.margin_mm`` of that component's kidney tissue; ``spacing_mm`` in ITK
    order (i, j, k)."""
    union = (labels == rule.kidney) | (labels == rule.tumor)
    components = components_by_size(union)
    with_kidney = np.unique(components[labels == rule.kidney])
    if with_kidney.size == 0:
        labels[union] = 0
        return
    kidney = (components == with_kidney.min()) & (labels == rule.kidney)  # 1 = largest
    keep = components == with_kidney.min()
    tumors = components_by_size(labels == rule.tumor)
    touching = float(np.linalg.norm(spacing_mm)) + 1e-6  # a 26-neighbour of kidney tissue
    near = np.zeros(0, tumors.dtype)
    # A voxel outside the kidney is at least one voxel spacing from it: with a smaller margin no tumor
    # is "near" (those touching the kidney are already in its component), so no distance is needed.
    reachable = rule.margin_mm + 1e-6 >= min(float(s) for s in spacing_mm)
    if tumors.any() and reachable:  # distances only around the tumors: decisions up to the reach are exact
        box, distance = distance_near(kidney, tumors > 0, spacing_mm, max(rule.margin_mm + 1e-6, touching))
        near_tumors = tumors[box]
        near = np.unique(near_tumors[(near_tumors > 0) & (distance <= rule.margin_mm + 1e-6)])
        keep |= np.isin(tumors, near[near > 0])
    labels[union & ~keep] = 0
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    sizes = np.bincount(tumors.ravel())
    for speck in near[(near > 0) & (sizes[near] * voxel_ml < rule.min_tumor_ml)]:
        inside = near_tumors == speck
        labels[box][inside] = rule.kidney if distance[inside].min() <= touching else 0


def apply_rules(labels: np.ndarray, rules, voxel_volume_ml: float, spacing_mm=None) -> np.ndarray:
    """Apply ``rules`` in order to a (k, j, i) label map whose voxels hold ``voxel_volume_ml`` each
    (``spacing_mm``, ITK order (i, j, k), for rules that measure distances). Returns a new uint8 array.

    The rules run on the bounding box of the labelled voxels grown by one voxel of background: every
    rule looks only at labelled voxels, their 26-neighbours and the background they enclose, and
    components keep their raster order, so the result is that of the whole array, for less work."""
    out = labels.astype(np.uint8, copy=True)
    box = bounding_box(out > 0, margin=1)
    if box is None:
        return out  # nothing labelled: no rule changes anything
    region = np.ascontiguousarray(out[box])
    _apply_in_place(region, rules, voxel_volume_ml, spacing_mm)
    out[box] = region
    return out


def _apply_in_place(out: np.ndarray, rules, voxel_volume_ml: float, spacing_mm) -> None:
    for rule in rules:
        if isinstance(rule, KidneyAndNearbyTumor):
            if spacing_mm is None:
                raise ValueError("kidney-and-nearby-tumor needs the voxel spacing")
            kidney_and_nearby_tumor(out, rule, spacing_mm)
            continue
        if isinstance(rule, LargestComponents):
            largest_components(out, rule, voxel_volume_ml)
        elif isinstance(rule, DropUnlessTouching):
            drop_unless_touching(out, rule)
        elif isinstance(rule, FillHoles):
            fill_holes(out, rule)
        else:  # pragma: no cover - the spec's union admits nothing else
            raise TypeError(f"unknown post-processing rule {rule!r}")


def count_components(mask: np.ndarray) -> int:
    return int(components_by_size(mask).max()) if mask.any() else 0
