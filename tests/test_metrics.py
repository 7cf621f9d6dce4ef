"""KiTS19 Dice and surface Dice against cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kitsrt.eval.metrics import dice, score_case, surface_dice


def test_dice_by_hand():
    pred = np.zeros(10, bool)
    ref = np.zeros(10, bool)
    pred[0:4] = True  # 4 voxels
    ref[1:7] = True  # 6 voxels, 3 shared
    assert dice(pred, ref) == pytest.approx(2 * 3 / 10)


def test_empty_masks_follow_kits19_convention():
    empty = np.zeros(5, bool)
    some = np.ones(5, bool)
    assert dice(empty, empty) == 0.0
    assert dice(empty, some) == 0.0


def test_kidney_counts_tumor_and_composite_is_the_mean():
    ref = np.zeros((1, 1, 8), np.uint8)
    ref[..., 0:4] = 1
    ref[..., 4:6] = 2  # kidney region = 6 voxels, tumor = 2
    pred = np.zeros_like(ref)
    pred[..., 0:6] = 1  # kidney region exact, tumor missed (labelled kidney)
    s = score_case(pred, ref, (1.0, 1.0, 1.0))
    assert s.kidney_dice == pytest.approx(1.0)
    assert s.tumor_dice == 0.0
    assert s.composite_dice == pytest.approx(0.5)


def _cubes():
    pred = np.zeros((10, 10, 10), bool)
    ref = np.zeros((10, 10, 10), bool)
    pred[2:6, 2:6, 2:6] = True
    ref[3:7, 2:6, 2:6] = True  # shifted one voxel along array axis 0
    return pred, ref


def test_surface_dice_uses_physical_anisotropic_spacing():
    pred, ref = _cubes()
    # 56 boundary voxels each. With 3 mm along the shift, the 16 voxels of each cube's far face lie
    # 3 mm from the other surface: outside a 2 mm tolerance, inside a 3 mm one.
    assert surface_dice(pred, ref, (3.0, 1.0, 1.0), tolerance_mm=2.0) == pytest.approx(80 / 112)
    assert surface_dice(pred, ref, (3.0, 1.0, 1.0), tolerance_mm=3.0) == pytest.approx(1.0)
    # With 1 mm along the shift every boundary voxel is within 1 mm.
    assert surface_dice(pred, ref, (1.0, 1.0, 1.0), tolerance_mm=1.0) == pytest.approx(1.0)


def test_surface_dice_of_identical_masks_is_one_and_of_disjoint_is_zero():
    pred, _ = _cubes()
    far = np.zeros_like(pred)
    far[2:6, 2:6, 8:10] = True  # two voxels (2 mm) away from pred's nearest face
    assert surface_dice(pred, pred, (2.0, 0.8, 0.8), 0.5) == 1.0
    assert surface_dice(pred, far, (1.0, 1.0, 1.0), 1.0) == 0.0
    assert surface_dice(pred, np.zeros_like(pred), (1.0, 1.0, 1.0), 1.0) == 0.0
