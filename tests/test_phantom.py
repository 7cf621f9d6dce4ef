"""CT phantoms: exact geometry, determinism, plausible HU, and the real KiTS19 label maps."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import kits19_label, needs_kits19
from kitsrt.io import read_label_map
from kitsrt.phantom import OUTSIDE_FOV_HU, procedural_label_map, synthesize_ct


def test_phantom_shares_the_label_grid(small_case):
    labels, ct = small_case
    assert ct.geometry == labels.geometry
    assert ct.array.dtype == np.int16


def test_phantom_is_deterministic_per_seed(small_case):
    labels, ct = small_case
    np.testing.assert_array_equal(synthesize_ct(labels, seed=5).array, ct.array)
    assert not np.array_equal(synthesize_ct(labels, seed=6).array, ct.array)


def test_phantom_intensities_look_like_contrast_ct(small_case):
    labels, ct = small_case
    hu, lab = ct.array.astype(np.float32), labels.array
    assert (hu == OUTSIDE_FOV_HU).any()  # background outside the reconstruction circle
    assert 100 < hu[lab == 1].mean() < 250  # enhanced parenchyma
    assert -200 < hu[lab == 2].mean() < 200
    soft = hu[(lab == 0) & (hu > -150) & (hu < 300)]
    assert soft.size > 0.1 * lab.size  # plenty of distracting soft tissue around the kidneys
    assert hu.min() >= -1024 and hu.max() <= 3071


def test_procedural_labels_have_two_kidneys_and_sane_volumes():
    labels = procedural_label_map((128, 128, 48), (3.0, 3.0, 5.0), seed=2)
    volume_ml = np.bincount(labels.array.ravel(), minlength=3) * labels.geometry.voxel_volume_ml
    assert 150 < volume_ml[1] + volume_ml[2] < 700  # two kidneys of ~100-300 mL each
    left = labels.array[..., : 64] > 0
    right = labels.array[..., 64:] > 0
    assert left.any() and right.any()


@needs_kits19
@pytest.mark.parametrize("case", ["case_00021", "case_00142"])
def test_phantom_of_real_label_map_keeps_its_exact_geometry(case):
    labels = read_label_map(kits19_label(case))
    ct = synthesize_ct(labels, seed=0)
    assert ct.geometry == labels.geometry
    kidney = ct.array[labels.array == 1].astype(np.float32)
    assert 100 < kidney.mean() < 250
