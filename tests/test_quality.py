"""Measurements (volumes, longest diameters, centres in LPS mm) and quality flags, on hand-made
label maps whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kitsrt.io import Geometry
from kitsrt.runtime.measure import lesions, longest_diameter_mm, organ, slice_axis
from kitsrt.io import DicomInfo
from kitsrt.runtime.quality import QualitySpec, header_warnings, package_warnings, scan_warnings, side_warnings

GRID = Geometry((40, 30, 20), (1.0, 1.0, 2.0), (-20.0, 10.0, 100.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
QUALITY = QualitySpec(kidney_volume_ml=(60, 400), max_tumors_per_side=3, max_tumor_to_kidney_ratio=1.0,
                      max_tumor_distance_mm=10, midline_tolerance_mm=0, enhanced_kidney_min_hu=100)
TRAINING = {"contrast_enhanced": True, "spacing_mm": {"in_plane": [0.4375, 0.977], "slice": [0.5, 5.0]}}


@pytest.mark.parametrize("shape", [(5, 10, 15), (20, 30, 40)])  # 510 and 4,688 boundary voxels
def test_longest_diameter_of_a_box_is_its_diagonal(shape):
    mask = np.zeros((24, 34, 44), bool)
    mask[2:2 + shape[0], 2:2 + shape[1], 2:2 + shape[2]] = True
    spacing_kji = np.array([2.0, 1.0, 0.5])
    geometry = Geometry((44, 34, 24), tuple(spacing_kji[::-1]), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    expected = float(np.linalg.norm((np.array(shape) - 1) * spacing_kji))
    assert organ(mask, geometry)["length_mm"] == pytest.approx(expected, abs=0.05)
    assert organ(mask, geometry)["volume_ml"] == pytest.approx(mask.sum() * 1.0 / 1000, abs=0.01)


def test_longest_diameter_of_scattered_points_is_exact():
    points = np.random.default_rng(0).normal(size=(4000, 3)) * (30, 10, 5)
    brute = max(np.linalg.norm(points[i] - points, axis=1).max() for i in range(len(points)))
    assert longest_diameter_mm(points) == pytest.approx(brute, rel=1e-3)


def test_lesions_largest_first_with_centres_in_lps():
    labels = np.zeros(GRID.array_shape, np.uint8)
    labels[2:4, 5:9, 5:9] = 2  # 2 x 4 x 4 voxels of 2 mm^3: 0.064 mL
    labels[10:15, 20:25, 30:35] = 2  # 5 x 5 x 5 voxels: 0.25 mL
    kidney = np.zeros_like(labels, bool)
    kidney[10:15, 20:25, 10:20] = True  # 10 voxels (10 mm) in x before the larger lesion
    found, count = lesions(labels, GRID, label=2, near=kidney)
    assert count == 2
    assert [f["volume_ml"] for f in found] == [0.25, 0.06]
    assert found[0]["centre_mm"] == [-20 + 32, 10 + 22, 100 + 2 * 12]  # (x, y, z) = origin + index * spacing
    assert found[0]["longest_diameter_mm"] == pytest.approx(np.linalg.norm([4, 4, 8]), abs=0.05)
    assert found[0]["distance_to_kidney_mm"] == 11.0  # x index 19 to 30, centre to centre
    assert lesions(labels, GRID, label=2, near=np.zeros_like(kidney))[0][0]["distance_to_kidney_mm"] is None
    assert organ(kidney, GRID)["centre_mm"] == [-20 + 14.5, 10 + 22, 100 + 2 * 12]


def _region(**changes):
    region = {"side": "right", "kidney": {"volume_ml": 150.0, "length_mm": 110.0}, "kidney_ml": 150.0,
              "tumor_ml": 20.0, "tumor_count": 1, "crosses_midline_mm": 0.0, "kidney_median_hu": 180.0,
              "lesions": [{"volume_ml": 20.0, "longest_diameter_mm": 35.0, "centre_mm": [0, 0, 0],
                           "distance_to_kidney_mm": 1.0}]}
    region.update(changes)
    return region


def test_a_plausible_region_has_no_warning():
    assert side_warnings(_region(), QUALITY) == []


@pytest.mark.parametrize("changes,code", [
    ({"kidney": {"volume_ml": 8.0, "length_mm": 30.0}, "kidney_ml": 8.0, "tumor_ml": 2.0}, "kidney_volume_implausible"),
    ({"tumor_ml": 1871.0}, "tumor_larger_than_kidney"),
    ({"lesions": [{"volume_ml": 1.0, "longest_diameter_mm": 5.0, "centre_mm": [0, 0, 0],
                   "distance_to_kidney_mm": 1.0}] * 5, "tumor_count": 5}, "too_many_tumors"),
    ({"tumor_count": 4000, "lesions_not_listed": 3975}, "too_many_tumors"),  # counted, most not listed
    ({"lesions": [{"volume_ml": 1.0, "longest_diameter_mm": 5.0, "centre_mm": [0, 0, 0],
                   "distance_to_kidney_mm": 42.0}]}, "tumor_far_from_kidney"),
    ({"crosses_midline_mm": 35.0}, "voi_crosses_midline"),
])
def test_implausible_region_is_flagged(changes, code):
    found = side_warnings(_region(**changes), QUALITY)
    assert [w["code"] for w in found] == [code]
    assert found[0]["message"] and found[0]["values"]["side"] == "right"


def test_scan_level_flags():
    labels = np.zeros(GRID.array_shape, np.uint8)
    labels[0, 10:12, 10:12] = 1  # kidney on the first axial slice (array axis 0 is k, the S-I axis here)
    one_side = [_region(kidney_median_hu=35.0)]
    coarse = Geometry(GRID.size, (0.8, 0.8, 6.0), GRID.origin_mm, GRID.direction)
    found = scan_warnings(one_side, labels, coarse, QUALITY, TRAINING)
    assert [w["code"] for w in found] == ["kidney_missing", "kidney_cut_by_scan", "no_contrast_enhancement",
                                         "spacing_outside_training"]
    assert found[-1]["values"] == {"axis": "slice", "spacing_mm": [6.0], "trained_mm": [0.5, 5.0]}
    fine = Geometry(GRID.size, (0.8, 0.8, 2.0), GRID.origin_mm, GRID.direction)
    assert scan_warnings([_region(), _region(side="left")], np.zeros_like(labels), fine, QUALITY, TRAINING) == []
    assert [w["code"] for w in scan_warnings([], np.zeros_like(labels), GRID, QUALITY, {})] == ["no_kidney"]


def test_slice_axis_follows_the_direction_not_the_array_order():
    slices_first = Geometry((20, 30, 40), (5.0, 1.0, 1.0), (0, 0, 0), (0, 0, 1, 0, 1, 0, 1, 0, 0))
    assert slice_axis(GRID) == 2 and slice_axis(slices_first) == 0


def test_package_warnings_carry_the_disclaimer():
    assert [w["code"] for w in package_warnings(QUALITY, "Demo model: NOT clinical")] == ["demo_model"]
    assert [w["code"] for w in package_warnings(None, "")] == ["no_quality_limits"]


def test_dicom_header_without_contrast_agent_is_flagged_for_an_enhanced_model():
    info = DicomInfo("1.2", "1.2.3", ("1.2.3.1",), "CT", "", "the only series in the folder")
    assert [w["code"] for w in header_warnings(info, TRAINING)] == ["no_contrast_agent_recorded"]
    enhanced = DicomInfo("1.2", "1.2.3", ("1.2.3.1",), "CT", "IOPAMIDOL", "the only series in the folder")
    assert header_warnings(enhanced, TRAINING) == [] and header_warnings(None, TRAINING) == []
    assert header_warnings(info, {"contrast_enhanced": False}) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diameter_from_row_ends_is_that_of_every_voxel(seed):
    """The report measures a mask's diameter on the two end voxels of each row only: on random blobs
    (oblique grid, anisotropic voxels) that is exactly the largest distance between any two voxels."""
    from kitsrt.runtime.measure import _row_end_points_mm

    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.arange(n) for n in (12, 16, 20)], indexing="ij")
    mask = np.zeros((12, 16, 20), bool)
    for _ in range(3):
        centre, radii = rng.uniform((3, 4, 5), (9, 12, 15)), rng.uniform(2, 6, 3)
        mask |= ((k - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2 + ((i - centre[2]) / radii[2]) ** 2 <= 1
    angle = 0.3
    direction = (np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1)
    geometry = Geometry((20, 16, 12), (0.8, 1.1, 2.5), (5.0, -3.0, 40.0), direction)
    kk, jj, ii = np.nonzero(mask)
    every = geometry.index_to_physical(np.stack([ii, jj, kk], axis=1).astype(float))
    brute = max(np.linalg.norm(every[n] - every, axis=1).max() for n in range(len(every)))
    ends = _row_end_points_mm(mask, geometry)
    assert len(ends) < len(every) / 2
    assert longest_diameter_mm(ends) == pytest.approx(brute, rel=1e-12)


def test_diameter_heuristic_keeps_the_same_points_in_chunks():
    """Projecting a few points at a time picks the same extreme points as all at once (first on ties)."""
    from kitsrt.runtime.measure import _extreme_points, _fibonacci_directions

    points = np.round(np.random.default_rng(3).normal(size=(5000, 3)) * (30, 10, 5))  # rounded: many ties
    directions = _fibonacci_directions(64)
    projections = points @ directions.T
    whole = np.unique(np.concatenate([projections.argmin(axis=0), projections.argmax(axis=0)]))
    np.testing.assert_array_equal(_extreme_points(points, directions, chunk=333), whole)


@pytest.mark.parametrize("pairs, shifts", [(0, 0), (1 << 16, 0), (0, 64), (0, 3)])
def test_distance_to_kidney_from_a_local_window_equals_the_whole_crop_map(pairs, shifts, monkeypatch):
    """Every way of measuring in the window (a map, every voxel pair, shifts, few shifts then a map)."""
    import SimpleITK as sitk

    from kitsrt.runtime import measure
    from kitsrt.runtime.measure import distance_to_mm

    monkeypatch.setattr(measure, "PAIRWISE_DISTANCE_PAIRS", pairs)
    monkeypatch.setattr(measure, "NEAREST_SHIFTS", shifts)

    rng = np.random.default_rng(4)
    kidney = np.zeros(GRID.array_shape, bool)
    kidney[5:12, 8:20, 10:30] = True
    image = sitk.GetImageFromArray(kidney.astype(np.uint8))
    image.SetSpacing(GRID.spacing_mm)
    whole = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                                                useImageSpacing=True))
    grown = 0
    for _ in range(40):  # touching, inside, near and far (the window must grow several times) lesions
        k, j, i = rng.integers(0, np.array(GRID.array_shape) - 3)
        box = (slice(k, k + 3), slice(j, j + 3), slice(i, i + 3))
        component = rng.random((3, 3, 3)) < 0.6
        component[1, 1, 1] = True
        expected = max(float(whole[box][component].min()), 0.0)
        assert distance_to_mm(kidney, component, box, GRID) == pytest.approx(expected, abs=1e-4)
        grown += expected > 4 * max(GRID.spacing_mm)
    assert grown >= 5  # far lesions were among them
    assert distance_to_mm(np.zeros_like(kidney), component, box, GRID) is None


def test_distance_to_kidney_looks_past_the_first_window_that_holds_kidney():
    from kitsrt.runtime.measure import distance_to_mm

    kidney = np.zeros(GRID.array_shape, bool)  # (k, j, i); spacing i, j 1 mm, k 2 mm
    kidney[12, 14, 24] = True  # inside the first window (2 slices, 4 rows, 4 columns away): 6.9 mm
    kidney[10, 10, 25] = True  # along i, 5 columns away, just outside that window: 5.0 mm
    component = np.ones((1, 1, 1), bool)
    assert distance_to_mm(kidney, component, (slice(10, 11), slice(10, 11), slice(20, 21)), GRID) == 5.0


def test_a_region_lists_its_largest_lesions_and_counts_the_rest():
    import json

    import kitsrt
    from kitsrt.runtime.report import LISTED_LESIONS, region_entry

    grid = Geometry((40, 30, 20), (5.0, 5.0, 5.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))  # 0.125 mL voxels
    labels = np.zeros(grid.array_shape, np.uint8)
    labels[5:12, 8:20, 10:30] = 1  # kidney
    for n in range(40):  # 40 separate lesions of 1, 2 or 3 voxels along i, a voxel apart
        k, j, i = 14 + 2 * (n % 3), 2 + 4 * (n // 15), 2 + 4 * ((n // 3) % 5)
        labels[k, j, i:i + 1 + n % 3] = 2
    region = region_entry(labels, grid, np.zeros(grid.array_shape, np.float32), "right", 0.0)
    assert region["tumor_count"] == 40 and region["lesions_not_listed"] == 40 - LISTED_LESIONS == 30
    assert [lesion["volume_ml"] for lesion in region["lesions"]] == [0.38] * 10  # of the 13 of 3 voxels
    assert region["tumor_ml"] == pytest.approx((13 * 3 + 13 * 2 + 14) * 0.125, abs=0.01)
    schema = json.loads((Path(kitsrt.__file__).parent / "schemas" / "report.schema.json").read_text())
    assert schema["$defs"]["kidney"]["properties"]["lesions"]["maxItems"] == LISTED_LESIONS
    (too_many,) = [w for w in side_warnings(region, QUALITY) if w["code"] == "too_many_tumors"]
    assert too_many["values"]["tumor_count"] == 40


def test_a_far_lesion_on_a_large_anisotropic_grid_is_measured_without_a_huge_shift_search():
    import SimpleITK as sitk

    from kitsrt.runtime.measure import distance_to_mm

    grid = Geometry((300, 300, 60), (0.8, 0.8, 3.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    kidney = np.zeros(grid.array_shape, bool)
    kidney[2:12, 5:25, 5:25] = True  # 4,000 voxels: too many pairs with the lesion, so shifts, then a map
    box = (slice(45, 55), slice(260, 280), slice(260, 280))
    component = np.ones((10, 20, 20), bool)
    image = sitk.GetImageFromArray(kidney.astype(np.uint8))
    image.SetSpacing(grid.spacing_mm)
    whole = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                                                useImageSpacing=True))
    expected = float(whole[box].min())
    assert expected > 200  # mm: the window grows to hundreds of mm before it holds kidney
    assert distance_to_mm(kidney, component, box, grid) == pytest.approx(expected, abs=1e-3)
