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
        medians[kind] = (float(np.median(hu)), float(np.percentile(hu, 99.5)))
    assert medians["fat"][0] < medians["hyper"][0] - 100
    assert medians["fat"][0] < -10
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
        PhantomStyle(nephrectomy="both")


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
