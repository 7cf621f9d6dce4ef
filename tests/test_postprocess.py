"""drop-unless-touching keeps exactly the lesions that touch kidney in 26-connectivity, in one pass."""

from __future__ import annotations

import numpy as np
import pytest

from kitsrt.runtime.pipeline import DropUnlessTouching
from kitsrt.runtime.postprocess import apply_rules


def test_keeps_touching_lesions_and_drops_the_others():
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[4:12, 4:12, 4:12] = 1  # kidney
    labels[12:14, 12:14, 12:14] = 2  # touches the kidney's corner only diagonally: kept
    labels[6:8, 6:8, 12:15] = 2  # shares a face: kept
    labels[4:6, 14:16, 4:6] = 2  # two voxels away (one background voxel between): dropped
    labels[20:23, 20:23, 20:23] = 2  # far away: dropped
    out = apply_rules(labels, (DropUnlessTouching(label=2, touching=1),), 0.001)
    assert (out[12:14, 12:14, 12:14] == 2).all() and (out[6:8, 6:8, 12:15] == 2).all()
    assert not out[4:6, 14:16, 4:6].any() and not out[20:23, 20:23, 20:23].any()
    assert ((out == 1) == (labels == 1)).all()


def _nearby_tumor_on_the_whole_crop(labels, rule, spacing_mm):
    """kidney-and-nearby-tumor with its distance map over the whole crop (the rule's first version)."""
    import SimpleITK as sitk

    from kitsrt.runtime.postprocess import components_by_size

    labels = labels.copy()
    union = (labels == 1) | (labels == 2)
    components = components_by_size(union)
    with_kidney = np.unique(components[labels == 1])
    kidney = (components == with_kidney.min()) & (labels == 1)
    image = sitk.GetImageFromArray(kidney.astype(np.uint8))
    image.SetSpacing(spacing_mm)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(image, insideIsPositive=False,
                                                                   squaredDistance=False, useImageSpacing=True))
    keep = components == with_kidney.min()
    tumors = components_by_size(labels == 2)
    near = np.unique(tumors[(tumors > 0) & (distance <= rule.margin_mm + 1e-6)])
    keep |= np.isin(tumors, near[near > 0])
    labels[union & ~keep] = 0
    sizes = np.bincount(tumors.ravel())
    touching = float(np.linalg.norm(spacing_mm)) + 1e-6
    for speck in near[(near > 0) & (sizes[near] * np.prod(spacing_mm) / 1000 < rule.min_tumor_ml)]:
        inside = tumors == speck
        labels[inside] = 1 if distance[inside].min() <= touching else 0
    return labels


@pytest.mark.parametrize("margin_mm", [0.0, 3.0, 9.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_nearby_tumor_distances_on_the_tumors_box_decide_as_on_the_whole_crop(margin_mm, seed):
    """The rule measures distances only around the tumors (plus its reach): the same labels as with a
    distance map over the whole crop, for margins below, near and above a voxel's size."""
    from kitsrt.runtime.pipeline import KidneyAndNearbyTumor

    rng = np.random.default_rng(seed)
    labels = np.zeros((30, 40, 50), np.uint8)
    labels[8:22, 10:30, 12:36] = 1  # kidney
    for _ in range(12):  # tumor blobs and specks, some touching, some a few mm off, some far away
        k, j, i = rng.integers(0, (29, 39, 49))
        size = rng.integers(1, 4, 3)
        labels[k:k + size[0], j:j + size[1], i:i + size[2]] = 2
    spacing = (0.8, 0.8, 2.0)  # ITK order (i, j, k)
    rule = KidneyAndNearbyTumor(margin_mm=margin_mm, min_tumor_ml=0.02)
    want = _nearby_tumor_on_the_whole_crop(labels, rule, spacing)
    got = apply_rules(labels, (rule,), float(np.prod(spacing)) / 1000, spacing)
    assert (want != labels).any()  # the rule did something to check
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rules_on_the_labelled_box_give_the_whole_array_result(seed):
    """``apply_rules`` runs the rules on the bounding box of the labelled voxels (plus one voxel): the
    same labels as running them on the whole array, for every rule, with blobs at the array's faces,
    enclosed holes and ties in component size."""
    from kitsrt.runtime.pipeline import FillHoles, KidneyAndNearbyTumor, LargestComponents
    from kitsrt.runtime.postprocess import _apply_in_place

    rng = np.random.default_rng(seed)
    labels = np.zeros((40, 36, 44), np.uint8)
    labels[10:24, 8:26, 12:34] = 1
    labels[14:20, 12:20, 18:26] = 0  # an enclosed hole
    for _ in range(10):
        k, j, i = rng.integers(0, (38, 34, 42))
        size = rng.integers(1, 4, 3)
        labels[k:k + size[0], j:j + size[1], i:i + size[2]] = rng.integers(1, 3)
    labels[0:2, 0:2, 0:2] = 1  # at a corner of the array
    labels[30:32, 30:32, 40:42] = 1  # two equal blobs: a tie in size
    labels[5:7, 30:32, 2:4] = 1
    spacing = (0.8, 0.8, 2.0)
    rules = (LargestComponents(labels=(1, 2), count=3, min_volume_ml=0.001), DropUnlessTouching(label=2, touching=1),
             FillHoles(labels=(1, 2), fill_with=1), KidneyAndNearbyTumor(margin_mm=3.0, min_tumor_ml=0.01))
    for rule in rules:
        whole = labels.copy()
        _apply_in_place(whole, (rule,), 0.00128, spacing)
        assert (whole != labels).any() or isinstance(rule, DropUnlessTouching)
        np.testing.assert_array_equal(apply_rules(labels, (rule,), 0.00128, spacing), whole)
    assert not apply_rules(np.zeros((4, 4, 4), np.uint8), rules, 0.001, spacing).any()
