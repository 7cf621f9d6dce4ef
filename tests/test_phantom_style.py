"""Domain-randomised phantoms: determinism, exact geometry, and styles that really change the image."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kitsrt.errors import InputError
from kitsrt.phantom import PhantomStyle, procedural_label_map, random_style, styled_labels, synthesize_case, synthesize_ct
from kitsrt.phantom.ct import AIR_HU, _depth_mm, draw_landmarks
from kitsrt.phantom.style import (KIDNEY_HALF_WIDTH_MM, PHASES, _draw_mimics, _draw_packed_bowel, _kidney_centroids,
                                  _room_for_anatomy,
                                  _styled_body_hu)


@pytest.fixture(scope="module")
def labels():
    return procedural_label_map((112, 112, 40), (3.0, 3.0, 5.0), seed=5)


def _kidney_median(ct, labels) -> float:
    return float(np.median(ct.array[labels.array == 1]))


def test_styled_phantom_is_deterministic_and_on_the_label_grid(labels):
    ct = synthesize_ct(labels, seed=3, randomized=True)
    assert ct.geometry == labels.geometry and ct.array.dtype == np.int16
    np.testing.assert_array_equal(synthesize_ct(labels, seed=3, randomized=True).array, ct.array)
    np.testing.assert_array_equal(synthesize_ct(labels, seed=3, style=random_style(3)).array, ct.array)
    assert not np.array_equal(synthesize_ct(labels, seed=4, randomized=True).array, ct.array)
    assert not np.array_equal(synthesize_ct(labels, seed=3).array, ct.array)  # the default phantom is another


def test_random_styles_cover_every_phase_and_edit():
    styles = [random_style(seed) for seed in range(200)]
    assert {s.phase for s in styles} == set(PHASES)
    assert any(s.nephrectomy == "left" for s in styles) and any(s.nephrectomy == "right" for s in styles)
    assert any(s.tumor_free for s in styles)
    assert min(s.slice_mm for s in styles) < 1.0 and max(s.slice_mm for s in styles) > 4.5
    assert max(s.noise_hu for s in styles) > 30  # low dose
    assert random_style(7) == random_style(7)


def test_contrast_phase_sets_kidney_hu_and_corticomedullary_contrast(labels):
    depth_mm = _depth_mm(labels.array > 0, labels.geometry.array_spacing_mm)
    rim = (labels.array == 1) & (depth_mm < 1.0)
    deep = (labels.array == 1) & (depth_mm > 9.0)
    medians, gaps = {}, {}
    for phase, cortex, medulla in (("non-contrast", 35.0, 32.0), ("corticomedullary", 230.0, 60.0),
                                   ("nephrographic", 160.0, 155.0)):
        style = PhantomStyle(phase=phase, cortex_hu=cortex, medulla_hu=medulla, noise_hu=5.0, slice_mm=1.0,
                             kernel_mm=0.3, mimics=0)
        hu = synthesize_ct(labels, seed=1, style=style).array
        medians[phase] = float(np.median(hu[labels.array == 1]))
        gaps[phase] = float(np.median(hu[rim]) - np.median(hu[deep]))
    assert 20 < medians["non-contrast"] < 55
    assert medians["nephrographic"] - medians["non-contrast"] > 100
    assert gaps["corticomedullary"] > 50
    assert abs(gaps["nephrographic"]) < 25 and abs(gaps["non-contrast"]) < 15
    cortex = [random_style(seed).cortex_hu for seed in range(200)]
    assert min(cortex) < 40 and max(cortex) > 200


def test_noise_level_and_slice_thickness_are_measurable():
    thin = procedural_label_map((96, 96, 96), (3.0, 3.0, 1.0), seed=2)
    base = PhantomStyle(noise_hu=0.0, mimics=0, slice_mm=0.5, kernel_mm=0.3)
    sharp = synthesize_ct(thin, seed=1, style=base).array.astype(np.float32)
    thick = synthesize_ct(thin, seed=1, style=replace(base, slice_mm=5.0)).array.astype(np.float32)
    inside = sharp > -900
    edges_z = lambda hu: float(np.percentile(np.abs(np.diff(hu, axis=0))[inside[1:] & inside[:-1]], 99.5))
    assert edges_z(thick) < 0.5 * edges_z(sharp)  # the slice profile blurs edges across slices
    edges_x = lambda hu: float(np.percentile(np.abs(np.diff(hu, axis=2))[inside[..., 1:] & inside[..., :-1]], 99.5))
    assert edges_x(thick) > 0.7 * edges_x(sharp)  # and not within them
    loud = synthesize_ct(thin, seed=1, style=replace(base, noise_hu=40.0)).array.astype(np.float32)
    assert 30 < np.std((loud - sharp)[inside]) < 50


def test_tumor_kinds_span_fat_to_calcium(labels):
    assert (labels.array == 2).any()
    medians = {}
    for kind in ("fat", "hyper", "calcified"):
        style = PhantomStyle(tumor_kinds=(kind,), noise_hu=5.0, mimics=0, slice_mm=1.0)
        hu = synthesize_ct(labels, seed=2, style=style).array[labels.array == 2]
        medians[kind] = (float(np.median(hu)), float(np.percentile(hu, 99.5)), float(np.percentile(hu, 20)))
    assert medians["fat"][0] < medians["hyper"][0] - 100
    assert medians["fat"][2] < -30  # a fifth of a fat-containing tumor or more is fat
    assert medians["calcified"][1] > 250


def test_label_edits_remove_one_kidney_or_the_tumors(labels):
    right = styled_labels(labels, PhantomStyle(nephrectomy="left"))
    assert right.geometry == labels.geometry
    centroids = _kidney_centroids(right.array, right.geometry)
    assert len(centroids) == 1
    assert centroids[0][0] < _kidney_centroids(labels.array, labels.geometry)[:, 0].max()  # the left (+x) one went
    free = styled_labels(labels, PhantomStyle(tumor_free=True))
    assert not (free.array == 2).any() and (free.array == 1).sum() == (labels.array == 1).sum()
    assert styled_labels(labels, PhantomStyle()) is labels
    ct, edited = synthesize_case(labels, 4, PhantomStyle(nephrectomy="right", noise_hu=5.0))
    gone = (labels.array > 0) & (edited.array == 0)
    assert gone.any() and ct.geometry == labels.geometry
    assert abs(float(np.median(ct.array[gone])) - _kidney_median(ct, edited)) > 50


def test_bad_styles_are_refused():
    with pytest.raises(InputError, match="phase"):
        PhantomStyle(phase="venous-ish")
    with pytest.raises(InputError, match="tumor_kinds"):
        PhantomStyle(tumor_kinds=("glowing",))
    with pytest.raises(InputError, match="nephrectomy"):
        PhantomStyle(nephrectomy="middle")
    with pytest.raises(InputError, match="scan_range"):
        PhantomStyle(scan_range="chest")


def test_trunk_muscles_and_packed_bowel_surround_the_kidneys_with_kidney_like_tissue(labels):
    """In a non-contrast scan the kidney's HU is the muscles' and the bowel wall's: the styled body
    must offer that tissue in bulk (paraspinal, psoas, quadratus lumborum, bowel loops), and mottled
    gas in the colon, so that HU alone cannot tell a kidney."""
    lean = PhantomStyle(phase="non-contrast", cortex_hu=35.0, medulla_hu=32.0, muscle_hu=45.0, bowel_wall_hu=40.0,
                        noise_hu=0.0, mimics=0, muscle_scale=1.0, bowel_loops=0)
    bulky = replace(lean, muscle_scale=1.6, bowel_loops=120)
    outside = labels.array == 0

    def kidney_like_and_gas(style):
        hu = synthesize_ct(labels, seed=6, style=style).array[outside]
        return int(((hu > 20) & (hu < 70)).sum()), int(((hu > -900) & (hu < -300)).sum())

    lean_tissue, lean_gas = kidney_like_and_gas(lean)
    bulky_tissue, bulky_gas = kidney_like_and_gas(bulky)
    kidney_voxels = int((labels.array > 0).sum())
    assert lean_tissue > 3 * kidney_voxels
    assert bulky_tissue - lean_tissue > 2 * kidney_voxels
    assert bulky_gas > lean_gas


def _small_fat_body(labels, style):
    lm = draw_landmarks(labels.array, labels.geometry, np.random.default_rng(0))
    centroids = _kidney_centroids(labels.array, labels.geometry)
    lm = _room_for_anatomy(replace(lm, body_radii=(0.8 * lm.body_radii[0], 0.8 * lm.body_radii[1]),
                                   fat_mm=style.fat_mm), style, centroids)
    return lm, centroids


def test_styled_organs_stay_inside_the_body_and_the_kidneys_inside_its_wall(labels):
    """Liver, spleen, bowel, masses and pelvis are clipped to the body, and the body is widened until
    the kidneys lie inside the abdominal wall, even in a small body under thick fat."""
    style = PhantomStyle(body_scale=0.8, fat_mm=45.0, wall_mm=18.0, bowel_loops=120, mimics=6, muscle_scale=1.6,
                         arms_down=False)
    lm, centroids = _small_fat_body(labels, style)
    rng = np.random.default_rng(1)
    loops, mimics = _draw_packed_bowel(centroids, lm, style, rng), _draw_mimics(centroids, lm, style, rng)
    x, y = np.meshgrid(lm.mid_x + np.arange(-250.0, 250.0, 2.0), lm.body_center_y + np.arange(-250.0, 250.0, 2.0))
    rx, ry = lm.body_radii
    outside = ((x - lm.mid_x) / rx) ** 2 + ((y - lm.body_center_y) / ry) ** 2 > 1.0
    for above in (-220.0, -150.0, -60.0, 0.0, 60.0, 120.0):
        hu, _ = _styled_body_hu(x, y, np.full_like(x, lm.kidney_z + above), lm, style, mimics, loops)
        assert (hu[outside] == AIR_HU).all(), f"tissue drawn outside the body {above} mm above the kidneys"
    wall = lm.fat_mm + style.wall_mm
    for cx in centroids[:, 0]:
        edge = cx + np.sign(cx - lm.mid_x) * KIDNEY_HALF_WIDTH_MM
        assert ((edge - lm.mid_x) / (rx - wall)) ** 2 + ((lm.kidney_y - lm.body_center_y) / (ry - wall)) ** 2 <= 1.0


def test_bulky_trunk_muscles_leave_the_pelvic_bones(labels):
    """The iliac wings (lateral to the spine's processes) keep every bone voxel under the bulkiest muscles."""
    x, y = np.meshgrid(np.arange(-250.0, 250.0, 2.0), np.arange(-250.0, 250.0, 2.0))
    lm, _ = _small_fat_body(labels, PhantomStyle(muscle_scale=1.6))
    lateral = np.abs(x) > 52
    bone = {}
    for scale in (1.0, 1.6):
        style = PhantomStyle(muscle_scale=scale, arms_down=False)
        hu, _ = _styled_body_hu(x + lm.mid_x, y + lm.body_center_y, np.full_like(x, lm.kidney_z - 200.0), lm, style, ())
        bone[scale] = int(((hu >= 500) & lateral).sum())
    assert bone[1.0] > 50 and bone[1.6] == bone[1.0]


def test_renal_sinus_puts_urine_vessels_and_contrast_at_the_hilum(labels):
    from kitsrt.phantom.style import _hilum_mm

    hilum_mm = _hilum_mm(labels.array, labels.geometry.array_spacing_mm)
    at_hilum = (labels.array == 1) & (hilum_mm < 1.5)
    away = (labels.array == 1) & (hilum_mm > 12)
    assert at_hilum.sum() > 30 and away.sum() > 200
    base = PhantomStyle(cortex_hu=160.0, medulla_hu=155.0, aorta_hu=170.0, noise_hu=3.0, slice_mm=0.5,
                        kernel_mm=0.3, mimics=0, renal_sinus=False)
    plain = synthesize_ct(labels, seed=1, style=base).array
    sinus = synthesize_ct(labels, seed=1, style=replace(base, renal_sinus=True)).array
    assert np.median(plain[at_hilum]) > 130  # without a sinus the hilum is parenchyma
    assert np.median(sinus[at_hilum]) < np.median(plain[at_hilum]) - 30
    assert abs(float(np.median(sinus[away])) - float(np.median(plain[away]))) < 10
    excreted = synthesize_ct(labels, seed=1, style=replace(base, renal_sinus=True, phase="excretory",
                                                           collecting_hu=700.0)).array
    assert np.percentile(excreted[at_hilum], 95) > 300 and np.percentile(excreted[away], 99) < 300


def test_hilum_is_found_in_concavities_not_on_convex_kidneys():
    from kitsrt.phantom.style import _hilum_mm

    spacing = (3.0, 0.8, 0.8)
    z, y, x = np.meshgrid(*[np.arange(int(90 / s)) * s - 45 for s in spacing], indexing="ij")
    bean = (z / 35) ** 2 + (y / 25) ** 2 + (x / 20) ** 2 < 1
    assert np.isinf(_hilum_mm(bean, spacing)).all()
    notched = bean & ~((np.abs(z) < 12) & (x > 5) & (np.abs(y) < 6))  # a hilum opening medially
    hilum_mm = _hilum_mm(notched, spacing)
    near = notched & (hilum_mm < 3)
    assert near.any() and x[near].min() > 0  # next to the notch only
    beside_tumor = notched.astype(np.uint8) + ((x > 14) & (np.abs(z) < 15) & (y > 4) & (y < 12) & notched)
    assert np.isinf(_hilum_mm(beside_tumor, spacing)).all()  # a notch beside a tumor is not a hilum


def test_horseshoe_joins_the_lower_poles_in_front_of_the_aorta(labels):
    horseshoe = styled_labels(labels, PhantomStyle(horseshoe=True))
    added = (horseshoe.array == 1) & (labels.array == 0)
    assert added.any() and not (horseshoe.array[labels.array > 0] != labels.array[labels.array > 0]).any()
    assert len(_kidney_centroids(horseshoe.array, horseshoe.geometry)) == 1  # one joined kidney
    centroids = _kidney_centroids(labels.array, labels.geometry)
    xyz = labels.geometry.index_to_physical(np.argwhere(added)[:, ::-1])
    mid_x, kidney_y = centroids[:, 0].mean(), centroids[:, 1].mean()
    spine_y = kidney_y + 8  # as the phantom draws them: aorta, IVC, vertebral body
    aorta = (xyz[:, 0] - (mid_x + 14)) ** 2 + (xyz[:, 1] - (spine_y - 28)) ** 2 < 11 ** 2
    ivc = ((xyz[:, 0] - (mid_x - 22)) / 13) ** 2 + ((xyz[:, 1] - (spine_y - 26)) / 10) ** 2 < 1
    spine = ((xyz[:, 0] - mid_x) / 21) ** 2 + ((xyz[:, 1] - spine_y) / 17) ** 2 < 1
    assert not (aorta | ivc | spine).any()
    crossing = np.abs(xyz[:, 0] - mid_x) < 5
    assert crossing.any() and xyz[crossing, 1].mean() < spine_y - 28  # across the midline, in front
    assert xyz[:, 2].mean() < centroids[:, 2].mean()  # low: the lower poles
    ct, edited = synthesize_case(labels, 2, PhantomStyle(horseshoe=True, noise_hu=3.0, mimics=0))
    assert np.array_equal(edited.array, horseshoe.array)
    assert np.median(ct.array[added]) > 100  # drawn as kidney, not left as fat


def test_both_kidneys_removed_leaves_no_kidney_tissue_or_renal_vessels(labels):
    ct, edited = synthesize_case(labels, 4, PhantomStyle(nephrectomy="both", noise_hu=3.0, mimics=0))
    assert not edited.array.any() and ct.geometry == labels.geometry
    assert float(np.median(ct.array[labels.array > 0])) < 100  # what is drawn there is not kidney
    styles = [random_style(seed) for seed in range(400)]
    assert any(s.nephrectomy == "both" for s in styles) and any(s.horseshoe for s in styles)
    assert {s.scan_range for s in styles} == {"full", "pelvis", "upper"}


def test_scan_range_cuts_a_slab_of_the_grid_the_same_way_whatever_the_slice_order():
    import SimpleITK as sitk

    from kitsrt.io import Scan
    from kitsrt.phantom.style import scan_range_planes

    tall = procedural_label_map((48, 48, 120), (6.0, 6.0, 3.0), seed=5)
    flipped_image = sitk.GetImageFromArray(np.ascontiguousarray(tall.array[::-1]))
    geometry = tall.geometry
    flipped_image.SetSpacing(geometry.spacing_mm)
    flipped_image.SetOrigin(tuple(geometry.index_to_physical(np.array([[0, 0, geometry.size[2] - 1]]))[0]))
    flipped_image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))  # slices from head to feet
    flipped = Scan(flipped_image)
    kits_image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(tall.array, (2, 1, 0))[:, :, ::-1]))
    kits_image.SetSpacing((3.0, 6.0, 6.0))
    kits_image.SetOrigin(tuple(geometry.index_to_physical(np.array([[0, 0, geometry.size[2] - 1]]))[0]))
    kits_image.SetDirection((0.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0))  # as KiTS19 stores its files
    kits = Scan(kits_image)
    corners = lambda g: g.index_to_physical(np.array([[i, j, k] for i in (0, g.size[0] - 1)
                                                      for j in (0, g.size[1] - 1) for k in (0, g.size[2] - 1)]))
    slabs = []
    kidney_z = lambda scan: scan.geometry.index_to_physical(np.argwhere(scan.array > 0)[:, ::-1])[:, 2]
    for scan in (tall, flipped, kits):
        pelvis_style = PhantomStyle(scan_range="pelvis", cut_fraction=0.0, noise_hu=3.0, mimics=0)
        ct, cut = synthesize_case(scan, 3, pelvis_style)
        axis, start, stop = scan_range_planes(scan, pelvis_style)
        full = synthesize_ct(scan, seed=3, style=pelvis_style)
        slab = tuple(slice(start, stop) if a == 2 - axis else slice(None) for a in range(3))
        np.testing.assert_array_equal(ct.array, full.array[slab])  # the same voxels, nothing resampled
        assert ct.geometry.spacing_mm == scan.geometry.spacing_mm
        assert ct.geometry.direction == scan.geometry.direction and cut.geometry == ct.geometry
        first = np.zeros((1, 3))
        first[0, axis] = start
        np.testing.assert_allclose(ct.geometry.index_to_physical(np.zeros((1, 3))), scan.geometry.index_to_physical(first))
        assert corners(ct.geometry)[:, 2].max() < kidney_z(scan).min() and not cut.array.any()
        slabs.append(np.sort(corners(ct.geometry), axis=0))
        upper_style = replace(pelvis_style, scan_range="upper", cut_fraction=0.5)
        _, upper = synthesize_case(scan, 3, upper_style)
        z = kidney_z(upper)
        assert z.min() >= np.percentile(kidney_z(scan), 20) and 0 < (upper.array > 0).sum() < (scan.array > 0).sum()
    np.testing.assert_allclose(slabs[1], slabs[0])  # the same physical slab, whatever the slice order
    np.testing.assert_allclose(slabs[2], slabs[0])
    short = procedural_label_map((48, 48, 60), (6.0, 6.0, 3.0), seed=5)  # 180 mm: kidneys and little else
    assert scan_range_planes(short, replace(pelvis_style, cut_fraction=0.0)) is None  # under MIN_CUT_SCAN_MM
    assert scan_range_planes(short, replace(pelvis_style, scan_range="full")) is None


def test_renal_arteries_run_from_each_kidney_to_the_aorta(labels):
    style = PhantomStyle(phase="corticomedullary", aorta_hu=400.0, noise_hu=3.0, slice_mm=1.0, kernel_mm=0.3,
                         mimics=0, bowel_loops=0)
    centroids = _kidney_centroids(labels.array, labels.geometry)
    kji = np.argwhere(labels.array == 0)
    xyz = labels.geometry.index_to_physical(kji[:, ::-1])
    mid_x, kidney_y = centroids[:, 0].mean(), centroids[:, 1].mean()
    bright = {}
    for side in (None, "both", "left"):
        hu = synthesize_ct(labels, seed=1, style=replace(style, nephrectomy=side)).array[tuple(kji.T)]
        for cx, cy, cz in centroids:  # 40% of the way from the kidney's centre to the aorta's, at its height
            way = np.array([cx, cy, cz]) + 0.4 * (np.array([mid_x + 14, kidney_y - 20, cz]) - [cx, cy, cz])
            near = np.linalg.norm(xyz - way, axis=1) < 5
            bright[side, cx] = float(np.max(hu[near]))
    assert all(bright[None, cx] > 170 and bright["both", cx] < 120 for cx in centroids[:, 0])  # 5 mm slices blur it
    left, right = centroids[:, 0].max(), centroids[:, 0].min()  # patient left = +x
    assert bright["left", left] < 120 and bright["left", right] > 170
