"""Post-processing of one VOI's label crop (seed 002: "largest connected component")."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kitsrt.runtime.pipeline import PostprocessSpec

KIDNEY, TUMOR = 1, 2


def components_by_size(mask: np.ndarray) -> np.ndarray:
    """Connected components (26-connectivity) of a (k, j, i) mask, labelled 1.. by decreasing size."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(image, True)))


def _touches(mask: np.ndarray, other: np.ndarray) -> bool:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    grown = sitk.GetArrayFromImage(sitk.BinaryDilate(image, [1, 1, 1], sitk.sitkBox))
    return bool((grown.astype(bool) & other).any())


def clean_voi_labels(labels: np.ndarray, spec: PostprocessSpec) -> np.ndarray:
    """Keep the largest kidney(+tumor) component of the VOI, then drop tumor components that do not
    touch kidney tissue. Returns a new uint8 array."""
    out = labels.astype(np.uint8, copy=True)
    if spec.largest_component_per_kidney and out.any():
        out[components_by_size(out > 0) != 1] = 0
    if spec.tumor_must_touch_kidney and (out == TUMOR).any():
        kidney = out == KIDNEY
        tumors = components_by_size(out == TUMOR)
        for lesion in range(1, int(tumors.max()) + 1):
            inside = tumors == lesion
            if not _touches(inside, kidney):
                out[inside] = 0
    return out


def count_components(mask: np.ndarray) -> int:
    return int(components_by_size(mask).max()) if mask.any() else 0
