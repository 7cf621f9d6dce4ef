"""Synthetic contrast-enhanced abdominal CT built around a kidney/tumor label map.

Real KiTS19 label maps carry real anatomy at real scan geometry but no imaging; a phantom fills in
the CT around them so tests and benchmarks run on realistic sizes, spacings and kidney shapes.
The phantom lies on exactly the label map's grid (size, spacing, origin, direction).

Anatomy is placed in physical LPS space (x to the patient's left, y posterior, z superior), anchored
on the kidneys, so it is right whatever the file's axis order. It holds a body outline with skin fat
and an abdominal wall, visceral fat, spine (cortical shell, cancellous bone, canal), ribs, psoas and
back muscles, aorta and IVC, liver, spleen and bowel (some with positive oral contrast, some with
gas) as distractors whose HU overlap the kidney's; kidneys get an enhanced cortex and a darker
medulla, tumors a per-lesion enhancement, texture and a necrotic core. A Gaussian blur whose width
follows the voxel spacing models partial volume, then quantum noise is added; values are int16 HU
with a -1024 background outside the reconstruction circle. Everything is deterministic per seed.

The body is drawn on a 1.5 mm grid and resampled onto the scan grid; the kidneys are drawn at the
scan's own resolution. A 512x512x987 case stays within a few GB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from kitsrt.errors import InputError
from kitsrt.io import Geometry, Scan
from kitsrt.io.validate import check_geometry, check_voxel_budget
from kitsrt.io.masks import bounding_box
from kitsrt.io.resample import resample_onto

AIR_HU = -1000.0
OUTSIDE_FOV_HU = -1024
SLAB_PLANES = 16
BODY_GRID_MM = 1.5
FOV_RADIUS_MM = 250.0


@dataclass(frozen=True)
class Landmarks:
    """Where the anatomy sits, in LPS mm, drawn once per phantom from the kidneys and the seed."""

    mid_x: float
    kidney_y: float
    kidney_z: float
    body_radii: tuple[float, float]
    body_center_y: float
    fat_mm: float
    cortex_hu: float
    medulla_hu: float
    liver_hu: float
    spleen_hu: float
    aorta_hu: float
    noise_hu: float
    bowel: tuple[tuple[float, ...], ...]  # (x, y, z, rx, ry, rz, wall_hu, content_hu) per loop


def _kidney_centroids(labels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Physical centroids (N, 3) of the kidney components (label > 0), largest first, up to two."""
    image = Scan.from_array((labels > 0).astype(np.uint8), geometry).image
    components = sitk.RelabelComponent(sitk.ConnectedComponent(image), minimumObjectSize=100)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(components)
    return np.array([stats.GetCentroid(label) for label in stats.GetLabels()[:2]]).reshape(-1, 3)


def _grid_center(geometry: Geometry) -> np.ndarray:
    return geometry.index_to_physical((np.asarray(geometry.size) - 1) / 2.0)[None][0]


def draw_landmarks(labels: np.ndarray, geometry: Geometry, rng: np.random.Generator) -> Landmarks:
    centroids = _kidney_centroids(labels, geometry)
    if len(centroids) == 0:
        center = _grid_center(geometry)
        centroids = np.array([center + [-70.0, 40.0, 0.0], center + [70.0, 40.0, 0.0]])
    mid = centroids.mean(axis=0)
    separation = np.ptp(centroids[:, 0]) if len(centroids) > 1 else 140.0
    bowel = []
    for _ in range(int(rng.integers(8, 14))):
        content = rng.choice([rng.uniform(10, 40), rng.uniform(150, 350), AIR_HU])
        bowel.append((mid[0] + rng.uniform(-110, 110), mid[1] - rng.uniform(50, 110),
                      mid[2] + rng.uniform(-120, 120), rng.uniform(12, 25), rng.uniform(10, 20),
                      rng.uniform(15, 45), rng.uniform(40, 90), float(content)))
    return Landmarks(
        mid_x=float(mid[0]), kidney_y=float(mid[1]), kidney_z=float(mid[2]),
        body_radii=(max(150.0, 0.95 * separation + 20) + rng.uniform(-10, 20), 120.0 + rng.uniform(-10, 15)),
        body_center_y=float(mid[1]) - 45.0 + rng.uniform(-5, 5), fat_mm=rng.uniform(12, 30),
        cortex_hu=rng.uniform(150, 220), medulla_hu=rng.uniform(80, 120), liver_hu=rng.uniform(90, 120),
        spleen_hu=rng.uniform(100, 130), aorta_hu=rng.uniform(160, 260), noise_hu=rng.uniform(8, 16),
        bowel=tuple(bowel),
    )


def _ellipse(dx, dy, rx, ry):
    return (dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0


def _ellipsoid(dx, dy, dz, rx, ry, rz):
    return (dx / rx) ** 2 + (dy / ry) ** 2 + (dz / rz) ** 2 <= 1.0


def _body_hu(x: np.ndarray, y: np.ndarray, z: np.ndarray, lm: Landmarks) -> np.ndarray:
    """HU of everything but the kidneys, for physical coordinate arrays x, y, z (mm, LPS)."""
    rx, ry = lm.body_radii
    dx, dy = x - lm.mid_x, y - lm.body_center_y
    hu = np.full(x.shape, AIR_HU, dtype=np.float32)
    hu[_ellipse(dx, dy, rx, ry)] = -100.0  # subcutaneous fat
    hu[_ellipse(dx, dy, rx - lm.fat_mm, ry - lm.fat_mm)] = 45.0  # abdominal wall muscle
    hu[_ellipse(dx, dy, rx - lm.fat_mm - 10, ry - lm.fat_mm - 10)] = -90.0  # visceral fat
    above = z - lm.kidney_z
    z_low, z_high = float(z.min()), float(z.max())

    def spans(center_z: float, radius_z: float) -> bool:  # skip organs this slab does not reach
        return z_low <= center_z + radius_z and z_high >= center_z - radius_z

    if spans(lm.kidney_z + 70, 95):
        liver = _ellipsoid(x - (lm.mid_x - 85), y - (lm.kidney_y - 45), above - 70, 90, 80, 95)
        hu[liver] = lm.liver_hu
    if spans(lm.kidney_z + 55, 55):
        hu[_ellipsoid(x - (lm.mid_x + 85), y - (lm.kidney_y + 5), above - 55, 40, 32, 55)] = lm.spleen_hu
    for bx, by, bz, brx, bry, brz, wall, content in lm.bowel:
        if not spans(bz, brz):
            continue
        loop = _ellipsoid(x - bx, y - by, z - bz, brx, bry, brz)
        hu[loop] = wall
        hu[loop & _ellipsoid(x - bx, y - by, z - bz, brx - 4, bry - 4, brz - 4)] = content
    psoas_r = np.clip(8 - above / 12, 6, 22)
    for side in (-1, 1):
        hu[_ellipse(x - (lm.mid_x + side * 32), y - (lm.kidney_y + 5), psoas_r, psoas_r)] = 50.0
        hu[_ellipse(x - (lm.mid_x + side * 30), y - (lm.kidney_y + 55), 26, 20)] = 55.0
    spine_y = lm.kidney_y + 8
    hu[_ellipse(x - lm.mid_x, y - spine_y, 21, 17)] = 650.0  # cortical shell
    hu[_ellipse(x - lm.mid_x, y - spine_y, 18, 14)] = 220.0  # cancellous bone
    hu[_ellipse(x - lm.mid_x, y - spine_y, 21, 17) & (np.sin(z * (2 * np.pi / 34.0)) > 0.8)] = 85.0  # discs
    hu[_ellipse(x - lm.mid_x, y - (spine_y + 42), 7, 14)] = 600.0  # spinous process
    hu[_ellipse(x - lm.mid_x, y - (spine_y + 25), 8, 7)] = 15.0  # spinal canal
    hu[_ellipse(x - (lm.mid_x + 14), y - (spine_y - 28), 11, 11)] = lm.aorta_hu
    hu[_ellipse(x - (lm.mid_x - 22), y - (spine_y - 26), 13, 10)] = lm.aorta_hu * 0.6
    angle = np.arctan2(dy / ry, dx / rx)
    rib_band = _ellipse(dx, dy, rx - lm.fat_mm + 2, ry - lm.fat_mm + 2) & ~_ellipse(
        dx, dy, rx - lm.fat_mm - 8, ry - lm.fat_mm - 8)
    ribs = rib_band & (above > -40) & (np.sin(above / 9.0 + 3 * angle) > 0.55) & (np.abs(dx) > 40)
    hu[ribs] = 700.0
    return hu


def body_grid(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The LPS-aligned grid of BODY_GRID_MM voxels covering ``geometry``, one voxel beyond it:
    (origin mm (x, y, z), size (x, y, z), the voxel centres along x, y and z in mm, float32)."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
    points = geometry.index_to_physical(corners * (np.asarray(geometry.size) - 1))
    low = points.min(axis=0) - BODY_GRID_MM
    size = np.ceil((points.max(axis=0) + BODY_GRID_MM - low) / BODY_GRID_MM).astype(int) + 1
    return low, size, tuple(low[a] + BODY_GRID_MM * np.arange(size[a], dtype=np.float32) for a in range(3))


def body_grid_image(hu: np.ndarray, low: np.ndarray) -> sitk.Image:
    """``hu`` (z, y, x) as an image on the body grid whose origin is ``low``."""
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((BODY_GRID_MM,) * 3)
    image.SetOrigin(tuple(low))
    return image


def _body_image(geometry: Geometry, lm: Landmarks) -> sitk.Image:
    """The body (everything but the kidneys) on an LPS-aligned grid of BODY_GRID_MM voxels covering
    ``geometry``; much smaller than a fine scan grid, and resampled onto it afterwards."""
    low, size, (x, y, z) = body_grid(geometry)
    hu = np.empty((size[2], size[1], size[0]), dtype=np.float32)
    for z0 in range(0, size[2], SLAB_PLANES):
        zs = z[z0:z0 + SLAB_PLANES, None, None]
        hu[z0:z0 + SLAB_PLANES] = _body_hu(*np.broadcast_arrays(x[None, None, :], y[None, :, None], zs), lm)
    return body_grid_image(hu, low)


def _on_grid(image: sitk.Image, geometry: Geometry) -> np.ndarray:
    """``image`` resampled (linear) onto ``geometry``, as a float32 array (k, j, i)."""
    return sitk.GetArrayFromImage(resample_onto(image, geometry, sitk.sitkLinear, AIR_HU, sitk.sitkFloat32))


def _in_plane_xy(geometry: Geometry, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """Physical x and y (mm) of array planes k0..k1 (axes (k, j, i))."""
    ni, nj, _ = geometry.size
    si, sj, sk = geometry.spacing_mm
    d = geometry.direction_matrix
    i = (np.arange(ni, dtype=np.float32) * si)[None, None, :]
    j = (np.arange(nj, dtype=np.float32) * sj)[None, :, None]
    k = (np.arange(k0, k1, dtype=np.float32) * sk)[:, None, None]
    x, y = (np.float32(geometry.origin_mm[a]) + np.float32(d[a, 0]) * i + np.float32(d[a, 1]) * j
            + np.float32(d[a, 2]) * k for a in range(2))
    return np.broadcast_arrays(x, y)


def _smooth_noise(shape, spacing_kji, sigma_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std random texture with correlation length ``sigma_mm``."""
    image = sitk.GetImageFromArray(rng.standard_normal(shape, dtype=np.float32))
    image.SetSpacing(tuple(reversed(spacing_kji)))
    field = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, sigma_mm))
    return field / max(float(field.std()), 1e-6)


def _depth_mm(mask: np.ndarray, spacing_kji) -> np.ndarray:
    """Distance in mm from each voxel inside ``mask`` to the mask's outside (0 outside)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(reversed(spacing_kji)))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=True, squaredDistance=False,
                                            useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(distance), 0.0)


def _kidney_hu(labels: np.ndarray, spacing_kji, lm: Landmarks, rng: np.random.Generator) -> np.ndarray:
    """HU inside a crop holding the labelled kidneys and tumors; NaN where the label is background."""
    hu = np.full(labels.shape, np.nan, dtype=np.float32)
    texture = _smooth_noise(labels.shape, spacing_kji, 2.5, rng)
    depth = _depth_mm(labels > 0, spacing_kji)
    kidney = labels == 1
    medulla_level = lm.medulla_hu + 25 * np.sin(texture * 2.0)
    hu[kidney] = np.where(depth[kidney] < 4.5, lm.cortex_hu, medulla_level[kidney]) + 8 * texture[kidney]
    tumors = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray((labels == 2).astype(np.uint8))))
    for lesion in range(1, int(tumors.max()) + 1):
        inside = tumors == lesion
        base = rng.uniform(35, 140)
        hu[inside] = base + rng.uniform(10, 30) * texture[inside]
        lesion_depth = _depth_mm(inside, spacing_kji)
        deepest = float(lesion_depth.max())
        if deepest > 8:
            core = inside & (lesion_depth > rng.uniform(0.45, 0.7) * deepest)
            hu[core] = rng.uniform(5, 30) + 6 * texture[core]
    return hu


def _partial_volume_blur(hu: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Blur with sigma = 0.4 x spacing per axis (FWHM about one voxel): the scanner's slice profile."""
    image = geometry.apply_to(sitk.GetImageFromArray(hu))
    sigma = [max(0.4 * s, 0.3) for s in geometry.spacing_mm]
    return sitk.SmoothingRecursiveGaussian(image, sigma)


def synthesize_ct(label_map: Scan, seed: int = 0, style=None, randomized: bool = False) -> Scan:
    """A synthetic CT (int16 HU) on exactly ``label_map``'s grid. Deterministic for a given seed.

    ``style`` (a ``kitsrt.phantom.style.PhantomStyle``) or ``randomized=True`` (the style
    ``random_style(seed)``) draws a domain-randomised phantom instead of the default one; a style that
    removes a kidney or the tumors draws that edited anatomy (``styled_labels`` gives its label map)."""
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"phantom seed {seed!r}: expected a whole number from 0 to 2**32-1")
    if style is not None or randomized:
        from kitsrt.phantom.style import random_style, synthesize_styled

        return synthesize_styled(label_map, seed, style if style is not None else random_style(seed))
    geometry = label_map.geometry
    labels = label_map.array
    rng = np.random.default_rng(seed)
    lm = draw_landmarks(labels, geometry, rng)
    hu = _on_grid(_body_image(geometry, lm), geometry)
    box = bounding_box(labels > 0, margin=4)
    if box is not None:
        crop = np.asarray(labels[box])
        kidney = _kidney_hu(crop, geometry.array_spacing_mm, lm, rng)
        hu[box] = np.where(np.isnan(kidney), hu[box], kidney)
    blurred_image = _partial_volume_blur(hu, geometry)
    del hu
    blurred = sitk.GetArrayViewFromImage(blurred_image)  # a view: blurred_image must outlive it
    out = np.empty(geometry.array_shape, dtype=np.int16)
    center = _grid_center(geometry)
    for k0 in range(0, out.shape[0], SLAB_PLANES):
        k1 = min(k0 + SLAB_PLANES, out.shape[0])
        x, y = _in_plane_xy(geometry, k0, k1)
        noisy = blurred[k0:k1] + lm.noise_hu * rng.standard_normal(x.shape, dtype=np.float32)
        outside = (x - center[0]) ** 2 + (y - center[1]) ** 2 > FOV_RADIUS_MM ** 2
        out[k0:k1] = np.where(outside, OUTSIDE_FOV_HU, np.clip(np.rint(noisy), -1024, 3071))
    return Scan.from_array(out, geometry, source=f"phantom(seed={seed}) of {label_map.source}")


PHANTOM_BYTES_PER_VOXEL = 64  # coordinate grids (3 x float64), label map, HU volume and blur buffers


def check_phantom_grid(size_ijk, spacing_mm, seed) -> None:
    """Refuse a procedural grid before allocating it: at least 2 voxels per axis, a sane grid (see
    ``kitsrt.io.validate``), within the voxel and memory budget; a seed from 0 to 2**32-1."""
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"phantom seed {seed!r}: expected a whole number from 0 to 2**32-1")
    size = tuple(size_ijk)
    if len(size) != 3 or not all(isinstance(s, (int, np.integer)) and s >= 2 for s in size):
        raise InputError(f"phantom size {size}: expected three whole numbers of at least 2 voxels")
    check_geometry(size, spacing_mm, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "phantom grid")
    check_voxel_budget(size, PHANTOM_BYTES_PER_VOXEL, "phantom grid")


def procedural_label_map(size_ijk: tuple[int, int, int] = (256, 256, 96),
                         spacing_mm: tuple[float, float, float] = (1.6, 1.6, 3.0),
                         seed: int = 0) -> Scan:
    """Random plausible kidneys and tumors on a chosen grid (identity direction), for quick tests.

    Two bean-shaped kidneys about 11 cm long sit either side of the spine, posterior; each gets 0-2
    tumors (spheres of 1-6 cm diameter centred on its surface, so some grow outside the kidney).
    """
    check_phantom_grid(size_ijk, spacing_mm, seed)
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    origin = -(np.asarray(size_ijk) - 1) * spacing / 2.0
    geometry = Geometry(tuple(int(s) for s in size_ijk), tuple(float(s) for s in spacing),
                        tuple(float(o) for o in origin), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    z, y, x = np.meshgrid(*(origin[a] + spacing[a] * np.arange(size_ijk[a]) for a in (2, 1, 0)),
                          indexing="ij")
    labels = np.zeros(geometry.array_shape, dtype=np.uint8)
    for side in (-1, 1):
        center = np.array([side * rng.uniform(60, 85), rng.uniform(25, 45), rng.uniform(-20, 20)])
        radii = np.array([rng.uniform(22, 30), rng.uniform(20, 27), rng.uniform(45, 60)])
        kidney = _ellipsoid(x - center[0], y - center[1], z - center[2], *radii)
        hilum = center + [-side * radii[0], -0.3 * radii[1], 0]
        kidney &= ~_ellipsoid(x - hilum[0], y - hilum[1], z - hilum[2], 12, 12, 18)
        labels[kidney] = 1
        for _ in range(int(rng.integers(0, 3))):
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            spot = center + direction * radii * rng.uniform(0.6, 1.0)
            radius = rng.uniform(5, 30)
            labels[_ellipsoid(x - spot[0], y - spot[1], z - spot[2], radius, radius, radius)] = 2
    return Scan.from_array(labels, geometry, source=f"procedural(seed={seed})")
