"""KiTS metrics: the KiTS19 Dice scores and a KiTS21-style surface Dice in physical space.

KiTS19 (Heller et al. 2019, official ``starter_code/evaluation.py``): per case,
* kidney Dice on ``label > 0`` (kidney and tumor together),
* tumor Dice on ``label > 1``,
* composite = their mean.

Empty masks follow the official code's intent: when prediction and reference are both empty the
denominator is zero and the score is 0.0 (the official code catches ``ZeroDivisionError`` and returns
0.0). Note this differs from KiTS21, which scores an empty-vs-empty pair as 1.0; every KiTS19 case
has a tumor, so the convention only matters for synthetic or out-of-distribution cases.

Surface Dice at tolerance tau mm (Nikolov et al. 2021, used by KiTS21): the fraction of the two
boundaries lying within tau mm of the other boundary. Boundaries are the mask voxels that touch the
background (6-connectivity) and distances are Euclidean in mm, using the anisotropic spacing. Each
boundary voxel counts once (no surfel-area weighting). The same empty-mask convention applies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from kitsrt.errors import InputError
from kitsrt.io.masks import boundary, bounding_box

KIDNEY_THRESHOLD = 0  # kidney region: label > 0
TUMOR_THRESHOLD = 1  # tumor region: label > 1


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; 0.0 when both are empty (KiTS19 convention)."""
    denominator = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    if denominator == 0:
        return 0.0
    return 2.0 * int(np.count_nonzero(pred & ref)) / denominator


def _distance_to(surface: np.ndarray, spacing_kji: tuple[float, float, float]) -> np.ndarray:
    """Euclidean distance in mm from every voxel to the nearest voxel of ``surface``."""
    image = sitk.GetImageFromArray(surface.astype(np.uint8))
    image.SetSpacing(tuple(reversed(spacing_kji)))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return np.maximum(sitk.GetArrayViewFromImage(distance), 0.0)


def surface_dice(pred: np.ndarray, ref: np.ndarray, spacing_kji: tuple[float, float, float],
                 tolerance_mm: float) -> float:
    """Surface Dice of two boolean masks (axes (k, j, i), spacing in that order) at ``tolerance_mm``."""
    if not pred.any() or not ref.any():
        return 0.0  # both empty: KiTS19 convention; one empty: no surface agrees
    margin = int(np.ceil(tolerance_mm / min(spacing_kji))) + 2
    box = bounding_box(pred | ref, margin)
    pred_surface, ref_surface = boundary(pred[box]), boundary(ref[box])
    close_pred = np.count_nonzero(_distance_to(ref_surface, spacing_kji)[pred_surface] <= tolerance_mm)
    close_ref = np.count_nonzero(_distance_to(pred_surface, spacing_kji)[ref_surface] <= tolerance_mm)
    return (close_pred + close_ref) / (np.count_nonzero(pred_surface) + np.count_nonzero(ref_surface))


@dataclass(frozen=True)
class CaseScores:
    """KiTS scores of one case. Dice in [0, 1]; surface Dice at ``tolerance_mm``."""

    case: str
    kidney_dice: float
    tumor_dice: float
    composite_dice: float
    kidney_surface_dice: float
    tumor_surface_dice: float
    tolerance_mm: float

    def as_dict(self) -> dict:
        return asdict(self)


def check_tolerance(tolerance_mm: float) -> None:
    """A surface-Dice tolerance must be a finite, positive distance in mm."""
    if not (isinstance(tolerance_mm, (int, float)) and math.isfinite(tolerance_mm) and tolerance_mm > 0):
        raise InputError(f"surface-Dice tolerance {tolerance_mm!r} mm: expected a finite number above 0")


def score_case(pred_labels: np.ndarray, ref_labels: np.ndarray, spacing_kji: tuple[float, float, float],
               tolerance_mm: float = 2.0, case: str = "") -> CaseScores:
    """Score one predicted label map against its reference; both on the same grid, axes (k, j, i)."""
    check_tolerance(tolerance_mm)
    if pred_labels.shape != ref_labels.shape:
        raise InputError(f"prediction shape {pred_labels.shape} != reference shape {ref_labels.shape}")
    kidney_pred, kidney_ref = pred_labels > KIDNEY_THRESHOLD, ref_labels > KIDNEY_THRESHOLD
    tumor_pred, tumor_ref = pred_labels > TUMOR_THRESHOLD, ref_labels > TUMOR_THRESHOLD
    kidney, tumor = dice(kidney_pred, kidney_ref), dice(tumor_pred, tumor_ref)
    return CaseScores(
        case=case,
        kidney_dice=kidney,
        tumor_dice=tumor,
        composite_dice=(kidney + tumor) / 2.0,
        kidney_surface_dice=surface_dice(kidney_pred, kidney_ref, spacing_kji, tolerance_mm),
        tumor_surface_dice=surface_dice(tumor_pred, tumor_ref, spacing_kji, tolerance_mm),
        tolerance_mm=tolerance_mm,
    )
