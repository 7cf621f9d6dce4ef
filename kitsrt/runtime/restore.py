"""Back onto the scan's own grid: the original-resolution crop under a box, and the two
back-projection modes of ``pipeline.json`` ``restore``.

* ``probabilities-linear`` (seed 002): softmax probabilities resampled linearly, then argmax;
* ``labels-nearest`` (seed 004): the label map resampled with nearest-neighbour interpolation.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Geometry
from kitsrt.runtime.preprocess import Box, resample_onto


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
        return probabilities_on_grid(probs, source, target).argmax(axis=0).astype(np.uint8)
    if mode == "labels-nearest":
        return labels_on_grid(probs.argmax(axis=0).astype(np.uint8), source, target)
    raise ValueError(f"unknown restore mode {mode!r}")
