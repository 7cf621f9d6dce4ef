"""Back onto the scan's own grid, as the exact inverse of a region's plan
(``kitsrt.runtime.regions.RegionPlan``), by the two back-projection modes of ``pipeline.json``
``restore``.

* ``probabilities-linear`` (seed 002): softmax probabilities resampled linearly, then argmax;
* ``labels-nearest`` (seed 004): the label map resampled with nearest-neighbour interpolation.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Geometry
from kitsrt.io.resample import resample_onto
from kitsrt.runtime.preprocess import uncrop
from kitsrt.runtime.regions import RegionPlan, crop_grid

__all__ = ["crop_grid", "labels_of", "labels_on_grid", "labels_to_scan", "probabilities_on_grid", "probabilities_to_scan",
           "restore_labels"]


def labels_of(scores: np.ndarray) -> np.ndarray:
    """(C, z, y, x) class scores -> (z, y, x) uint8 index of the largest, the first where several tie:
    ``scores.argmax(axis=0)``, one channel at a time (numpy's argmax over a leading axis of 2-3 channels
    runs strided, several times slower)."""
    labels = np.zeros(scores.shape[1:], np.uint8)
    best = scores[0].copy()
    for channel in range(1, scores.shape[0]):
        higher = scores[channel] > best  # strict: an earlier channel wins a tie, as in argmax
        labels[higher] = channel
        np.maximum(best, scores[channel], out=best)
    return labels


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


def labels_on_grid(labels: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """Resample a (z, y, x) uint8 label map on ``source`` onto ``target`` with nearest-neighbour
    interpolation: (k, j, i) uint8; outside ``source`` is background."""
    image = source.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8)))
    return sitk.GetArrayFromImage(resample_onto(image, target, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))


def restore_labels(probs: np.ndarray, source: Geometry, target: Geometry, mode: str) -> np.ndarray:
    """(C, z, y, x) probabilities on ``source`` -> (k, j, i) uint8 labels on ``target`` by ``mode``
    (``probabilities-linear`` or ``labels-nearest``)."""
    if mode == "probabilities-linear":
        return labels_of(probabilities_on_grid(probs, source, target))
    if mode == "labels-nearest":
        return labels_on_grid(labels_of(probs), source, target)
    raise ValueError(f"unknown restore mode {mode!r}")


def probabilities_to_scan(probs: np.ndarray, plan: RegionPlan, mode: str) -> np.ndarray:
    """(C, z, y, x) probabilities of a network input -> (k, j, i) uint8 labels on ``plan.target``:
    the crop/pad undone (what was cropped away is background), then back-projected by ``mode``."""
    if plan.crop is not None:
        full = uncrop(probs, plan.crop, fill=0)
        outside = np.ones(plan.crop.source_shape, bool)
        outside[plan.crop.source] = False
        full[0][outside] = 1.0
        probs = full
    return restore_labels(probs, plan.grid, plan.target, mode)


def labels_to_scan(labels: np.ndarray, plan: RegionPlan) -> np.ndarray:
    """(z, y, x) uint8 labels of a network input -> (k, j, i) uint8 labels on ``plan.target``
    (crop/pad undone with background, then nearest neighbour)."""
    if plan.crop is not None:
        labels = uncrop(labels, plan.crop, fill=0)
    return labels_on_grid(labels, plan.grid, plan.target)
