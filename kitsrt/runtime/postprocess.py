"""Post-processing as an ordered list of rules (``pipeline.json`` ``postprocess``) on a label map.

Rules (``kitsrt.runtime.pipeline``): ``largest-components`` (seed 002: the largest kidney(+tumor)
component of a VOI; seed 004: the three largest structures over 10 mL), ``drop-unless-touching``
(tumor kept only where it touches kidney), ``fill-holes``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kitsrt.runtime.pipeline import DropUnlessTouching, FillHoles, LargestComponents

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


def apply_rules(labels: np.ndarray, rules, voxel_volume_ml: float) -> np.ndarray:
    """Apply ``rules`` in order to a (k, j, i) label map whose voxels hold ``voxel_volume_ml`` each.
    Returns a new uint8 array."""
    out = labels.astype(np.uint8, copy=True)
    for rule in rules:
        if isinstance(rule, LargestComponents):
            largest_components(out, rule, voxel_volume_ml)
        elif isinstance(rule, DropUnlessTouching):
            drop_unless_touching(out, rule)
        elif isinstance(rule, FillHoles):
            fill_holes(out, rule)
        else:  # pragma: no cover - the spec's union admits nothing else
            raise TypeError(f"unknown post-processing rule {rule!r}")
    return out


def count_components(mask: np.ndarray) -> int:
    return int(components_by_size(mask).max()) if mask.any() else 0
