"""Domain-randomised phantoms: a ``PhantomStyle`` drawn from a seed changes everything a network could
key on, so that it has to learn what a kidney and a renal tumor are rather than phantom shortcuts.

A style sets the contrast phase (non-contrast, corticomedullary, nephrographic, excretory: kidney HU
from about 30 to 250, cortex/medulla contrast present or absent, contrast in the collecting system),
the tumor appearances (hypo-, iso-, hyper-enhancing, cystic, fat-containing, calcified), muscle,
fat, liver, spleen and vessel HU with a textured spread, noise level (low dose included) and grain,
slice thickness 0.5-5 mm with a matching blur along the superior-inferior axis, in-plane kernel
sharpness up to that of 3 mm pixels, body size and fat, trunk muscle bulk (paraspinal, psoas,
quadratus lumborum, abdominal wall) and vertebral bone density, packed bowel loops with mottled
content around the kidneys, arms up or down, the reconstruction circle (cropping a large body),
soft-tissue "mimic" masses away from the kidneys (labelled background), a renal sinus in every
kidney (fat, vessels and a renal pelvis of urine density, or of contrast in the excretory phase,
labelled kidney, where the label map's hilum opens), renal arteries and veins from each hilum to the
aorta and IVC, label edits (one or both kidneys removed, the tumors removed, a horseshoe kidney: the
lower poles joined in front of the aorta) and a field of view cut to the pelvis below the kidneys or
to the scan above a cut through them. The pelvis (iliac wings, femoral heads, bladder) and gluteal
muscles are drawn wherever the scan reaches below the kidneys.

``synthesize_ct(labels, seed, style=...)`` draws a styled phantom; the default phantom (no style) is
unchanged. ``styled_labels`` gives the label map that matches a style's edits; ``synthesize_case``
returns both, cut to the style's field of view. Everything is deterministic per seed; a styled
phantom lies on the label map's exact grid, a cut case on a slab of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from kitsrt.errors import InputError
from kitsrt.io import Geometry, Scan
from kitsrt.io.masks import bounding_box
from kitsrt.phantom.ct import (
    AIR_HU,
    BODY_GRID_MM,
    OUTSIDE_FOV_HU,
    SLAB_PLANES,
    Landmarks,
    body_grid,
    body_grid_image,
    _depth_mm,
    _ellipse,
    _ellipsoid,
    _grid_center,
    _in_plane_xy,
    _kidney_centroids,
    _on_grid,
    _smooth_noise,
    draw_landmarks,
)

PHASES = ("non-contrast", "corticomedullary", "nephrographic", "excretory")
PHASE_WEIGHTS = (0.3, 0.2, 0.3, 0.2)
TUMOR_KINDS = ("hypo", "iso", "hyper", "cystic", "fat", "calcified")
TUMOR_WEIGHTS = (0.3, 0.2, 0.15, 0.15, 0.1, 0.1)
NEPHRECTOMY_SIDES = ("left", "right", "both")
SCAN_RANGES = ("full", "pelvis", "upper")
MIN_CUT_SCAN_MM = 100.0  # a cut field of view shorter than this is not cut
ISTHMUS_RADIUS_MM = 8.0
HILUM_CLOSING_MM = 10.0  # a closing by this fills the hilum: concavities up to about twice as wide
HILUM_MIN_ML = 0.3
HILUM_TUMOR_CLEARANCE_MM = 5.0  # a concavity this close to a tumor is the tumor's notch, not the hilum
SINUS_STREAM = 16  # the sinus draws its own random stream: a seed's other draws stay what they were
KIDNEY_HALF_WIDTH_MM = 45.0  # from a kidney's centroid to its lateral edge, with a margin
STYLE_VERSION = 4  # the styled phantoms' generation: raise it whenever a seed's phantom is drawn differently
STYLE_STREAM = 15  # a second seed word, so a style never repeats the phantom's own random stream


@dataclass(frozen=True)
class PhantomStyle:
    """How a phantom looks (HU, mm). ``tumor_kinds``: appearances drawn per lesion, from TUMOR_KINDS.
    ``nephrectomy``: "left" or "right" kidney (patient side) or "both" removed, or None.
    ``collecting_hu``: contrast in the collecting system (excretory phase) or None.
    ``renal_sinus``: sinus fat, vessels and renal pelvis drawn inside each kidney label at its hilum.
    ``renal_vessels``: renal arteries and veins from each kidney to the aorta and IVC. With both
    False a style draws what it drew before they existed (commit 8920dcb).
    ``horseshoe``: the two kidneys' lower poles joined by a band of kidney in front of the aorta.
    ``scan_range``: "full", "pelvis" (keep what lies below ``cut_fraction`` of the kidneys' height,
    0 = their lowest point, 1 = their highest) or "upper" (keep what lies above it)."""

    phase: str = "nephrographic"
    cortex_hu: float = 170.0
    medulla_hu: float = 160.0
    collecting_hu: float | None = None
    liver_hu: float = 105.0
    spleen_hu: float = 110.0
    aorta_hu: float = 160.0
    muscle_hu: float = 55.0
    fat_hu: float = -100.0
    bowel_wall_hu: float = 60.0
    texture_hu: float = 8.0
    tumor_kinds: tuple[str, ...] = ("hypo",)
    noise_hu: float = 12.0
    noise_grain_mm: float = 0.0
    slice_mm: float = 2.0
    kernel_mm: float = 0.5
    body_scale: float = 1.0
    fat_mm: float = 20.0
    arms_down: bool = False
    fov_radius_mm: float = 250.0
    mimics: int = 3
    muscle_scale: float = 1.0
    wall_mm: float = 10.0
    bowel_loops: int = 0
    bone_hu: float = 220.0
    nephrectomy: str | None = None
    tumor_free: bool = False
    renal_sinus: bool = True
    renal_vessels: bool = True
    horseshoe: bool = False
    scan_range: str = "full"
    cut_fraction: float = 0.5

    def __post_init__(self):
        if self.phase not in PHASES:
            raise InputError(f"phantom style phase {self.phase!r}: expected one of {', '.join(PHASES)}")
        unknown = set(self.tumor_kinds) - set(TUMOR_KINDS)
        if not self.tumor_kinds or unknown:
            raise InputError(f"phantom style tumor_kinds {self.tumor_kinds!r}: expected some of {', '.join(TUMOR_KINDS)}")
        if self.nephrectomy not in (None, *NEPHRECTOMY_SIDES):
            raise InputError(f"phantom style nephrectomy {self.nephrectomy!r}: expected left, right, both or None")
        if self.horseshoe and self.nephrectomy is not None:
            raise InputError("phantom style: a horseshoe kidney needs both kidneys; set nephrectomy=None")
        if not np.isfinite(self.cut_fraction):
            raise InputError(f"phantom style cut_fraction {self.cut_fraction!r}: expected a finite number")
        if self.scan_range not in SCAN_RANGES:
            raise InputError(f"phantom style scan_range {self.scan_range!r}: expected one of {', '.join(SCAN_RANGES)}")


def _phase_hu(phase: str, rng: np.random.Generator) -> dict:
    """Organ HU typical of a contrast phase (ranges overlap on purpose)."""
    u = rng.uniform
    if phase == "non-contrast":
        cortex = u(25, 45)
        return dict(cortex_hu=cortex, medulla_hu=cortex - u(0, 8), collecting_hu=None, liver_hu=u(45, 70),
                    spleen_hu=u(38, 55), aorta_hu=u(30, 50), muscle_hu=u(35, 55), bowel_wall_hu=u(30, 50))
    if phase == "corticomedullary":
        return dict(cortex_hu=u(140, 260), medulla_hu=u(45, 100), collecting_hu=None, liver_hu=u(60, 95),
                    spleen_hu=u(80, 150), aorta_hu=u(220, 400), muscle_hu=u(45, 65), bowel_wall_hu=u(60, 110))
    if phase == "nephrographic":
        cortex = u(110, 200)
        return dict(cortex_hu=cortex, medulla_hu=cortex - u(0, 25), collecting_hu=None, liver_hu=u(85, 130),
                    spleen_hu=u(95, 135), aorta_hu=u(130, 210), muscle_hu=u(45, 70), bowel_wall_hu=u(50, 100))
    cortex = u(90, 170)
    return dict(cortex_hu=cortex, medulla_hu=cortex - u(0, 15), collecting_hu=u(300, 900), liver_hu=u(75, 115),
                spleen_hu=u(85, 120), aorta_hu=u(100, 170), muscle_hu=u(45, 65), bowel_wall_hu=u(45, 90))


def random_style(seed: int) -> PhantomStyle:
    """A style drawn from ``seed`` (deterministic): phase, organ HU, tumors, noise, blur, body, edits
    (about: one kidney removed 11%, both 4%, tumors 20%, horseshoe 4%) and field of view (pelvis 6%,
    upper 6%; a pelvis cut below the kidneys' lowest point leaves no kidney in the scan)."""
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"phantom seed {seed!r}: expected a whole number from 0 to 2**32-1")
    rng = np.random.default_rng([int(seed), STYLE_STREAM])
    style = _random_base_style(rng)
    no_kidneys, horseshoe, cut = rng.random(), rng.random(), rng.random()  # drawn after: base styles stay
    scan_range = "pelvis" if cut < 0.06 else "upper" if cut < 0.12 else "full"
    return replace(
        style, nephrectomy="both" if no_kidneys < 0.04 else style.nephrectomy,
        horseshoe=bool(horseshoe < 0.05 and no_kidneys >= 0.04 and style.nephrectomy is None),
        scan_range=scan_range, cut_fraction=rng.uniform(-0.2, 0.3) if scan_range == "pelvis" else rng.uniform(0.3, 0.7),
    )


def _random_base_style(rng: np.random.Generator) -> PhantomStyle:
    """Everything but the anatomy edits added since: a seed's draws stay what they were."""
    phase = str(rng.choice(PHASES, p=PHASE_WEIGHTS))
    organs = _phase_hu(phase, rng)
    kinds = rng.choice(TUMOR_KINDS, size=int(rng.integers(1, 4)), replace=False, p=TUMOR_WEIGHTS)
    low_dose = rng.random() < 0.25
    edit = rng.random()
    return PhantomStyle(
        phase=phase, **organs, fat_hu=rng.uniform(-120, -80), texture_hu=rng.uniform(3, 15),
        tumor_kinds=tuple(str(k) for k in kinds),
        noise_hu=rng.uniform(25, 45) if low_dose else rng.uniform(5, 20), noise_grain_mm=rng.uniform(0, 0.9),
        slice_mm=rng.uniform(0.5, 5.0), kernel_mm=rng.uniform(0.3, 1.2), body_scale=rng.uniform(0.8, 1.2),
        fat_mm=rng.uniform(5, 45), arms_down=bool(rng.random() < 0.4), fov_radius_mm=rng.uniform(190, 260),
        mimics=int(rng.integers(1, 7)), muscle_scale=rng.uniform(1.0, 1.6), wall_mm=rng.uniform(7, 18),
        bowel_loops=int(rng.integers(60, 140)), bone_hu=rng.uniform(130, 300),
        nephrectomy=("left" if rng.random() < 0.5 else "right") if edit < 0.12 else None,
        tumor_free=bool(0.12 <= edit < 0.32),
    )


def styled_labels(label_map: Scan, style: PhantomStyle) -> Scan:
    """``label_map`` edited as ``style`` says, on the same grid: tumors set to background when
    ``tumor_free``; the kidney component on the ``nephrectomy`` side (patient left = +x in LPS)
    removed, when there are two, or every kidney and tumor when it is "both"; a horseshoe isthmus
    (label 1) added. Unedited styles return ``label_map`` itself."""
    if not style.tumor_free and style.nephrectomy is None and not style.horseshoe:
        return label_map
    labels = np.array(label_map.array, copy=True)
    geometry = label_map.geometry
    if style.nephrectomy == "both":
        labels[:] = 0
    elif style.nephrectomy is not None:
        components = _kidney_components(labels, geometry)
        if components.max() >= 2:
            centroids = _kidney_centroids(labels, geometry)
            left = int(np.argmax(centroids[:, 0])) + 1  # components are numbered largest first, like centroids
            labels[components == (left if style.nephrectomy == "left" else 3 - left)] = 0
    elif style.horseshoe:
        labels[(labels == 0) & _isthmus(labels, geometry)] = 1
    if style.tumor_free:
        labels[labels == 2] = 0
    return Scan.from_array(labels, geometry, source=f"{label_map.source} (styled)")


def _kidney_components(labels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Kidney(+tumor) components (k, j, i) of at least 100 voxels, numbered 1.. largest first."""
    image = Scan.from_array((labels > 0).astype(np.uint8), geometry).image
    return sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(image), minimumObjectSize=100))


def _isthmus(labels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Bool (k, j, i): a band of kidney, 2 x ISTHMUS_RADIUS_MM thick, from each kidney's lower pole
    forward, then straight across the midline in front of the aorta and IVC, less any voxel of them
    or of the spine (a horseshoe kidney). All False unless there are two kidneys."""
    components = _kidney_components(labels, geometry)
    band = np.zeros(labels.shape, dtype=bool)
    if components.max() < 2:
        return band
    ends = []
    for number in (1, 2):
        xyz = geometry.index_to_physical(np.argwhere(components == number)[::7, ::-1])
        low = xyz[xyz[:, 2] < xyz[:, 2].min() + 0.25 * np.ptp(xyz[:, 2])]
        ends.append(low)
    centroids = _kidney_centroids(labels, geometry)
    mid_x, kidney_y = float(centroids[:, 0].mean()), float(centroids[:, 1].mean())
    ends = [low[np.argmin(np.abs(low[:, 0] - mid_x))] for low in ends]  # each lower pole's medial point
    front_y = kidney_y - 33.0 - ISTHMUS_RADIUS_MM  # clear of the aorta, whose front is 31 mm ahead
    z = 0.5 * (ends[0][2] + ends[1][2])
    path = [ends[0], [ends[0][0], front_y, z], [ends[1][0], front_y, z], ends[1]]
    points = np.concatenate([np.linspace(a, b, 200) for a, b in zip(path[:-1], path[1:])])
    seeds = np.zeros(labels.shape, dtype=np.uint8)
    index = np.rint(geometry.physical_to_index(points)[:, ::-1]).astype(int)
    inside = np.all((index >= 0) & (index < np.array(labels.shape)), axis=1)
    seeds[tuple(index[inside].T)] = 1
    box = bounding_box(seeds > 0, margin=int(np.ceil(ISTHMUS_RADIUS_MM / min(geometry.spacing_mm))) + 1)
    if box is None:
        return band
    kji = np.stack(np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij"), axis=-1)
    xyz = geometry.index_to_physical(kji.reshape(-1, 3)[:, ::-1]).reshape(*kji.shape)
    behind = _prevertebral(xyz[..., 0], xyz[..., 1], mid_x, kidney_y, margin_mm=1.5)
    band[box] = (_depth_mm(seeds[box] == 0, geometry.array_spacing_mm) < ISTHMUS_RADIUS_MM) & ~behind
    return band


def _midline_structures(mid_x: float, kidney_y: float) -> dict[str, tuple[float, float, float, float]]:
    """Cross-sections (x, y, rx, ry; LPS mm) of the aorta, the IVC and the vertebral body, as the
    styled phantoms draw them."""
    spine_y = kidney_y + 8
    return {"aorta": (mid_x + 14, spine_y - 28, 11, 11), "ivc": (mid_x - 22, spine_y - 26, 13, 10),
            "vertebra": (mid_x, spine_y, 21, 17)}


def _prevertebral(x, y, mid_x: float, kidney_y: float, margin_mm: float = 0.0) -> np.ndarray:
    """Bool: the aorta, IVC and vertebral body, grown by ``margin_mm``."""
    inside = [_ellipse(x - cx, y - cy, rx + margin_mm, ry + margin_mm)
              for cx, cy, rx, ry in _midline_structures(mid_x, kidney_y).values()]
    return inside[0] | inside[1] | inside[2]


def _arms(x, y, lm: Landmarks) -> list[tuple[np.ndarray, float, str]]:
    """Arms at the sides (muscle around a humerus), outside the body ellipse."""
    rx, _ = lm.body_radii
    parts = []
    for side in (-1, 1):
        cx, cy = lm.mid_x + side * (rx + 50), lm.body_center_y
        parts.append((_ellipse(x - cx, y - cy, 42, 48), "fat"))
        parts.append((_ellipse(x - cx, y - cy, 36, 42), "muscle"))
        parts.append((_ellipse(x - cx, y - cy, 12, 12), "bone"))
    return parts


def _trunk_muscles(x, y, above, lm: Landmarks, style: PhantomStyle) -> list[tuple[np.ndarray, float]]:
    """(mask, HU) of the muscles around the spine at ``style.muscle_scale`` bulk: psoas (growing
    towards the pelvis), quadratus lumborum behind each kidney, and the paraspinal muscles, which
    reach the back's wall; all at muscle HU, as the kidney is in a non-contrast scan."""
    k, muscle, parts = style.muscle_scale, style.muscle_hu, []
    psoas_r = k * np.clip(9 - above / 10, 7, 24)
    for side in (-1, 1):
        parts.append((_ellipse(x - (lm.mid_x + side * (26 + psoas_r)), y - (lm.kidney_y + 2), psoas_r, 0.9 * psoas_r),
                      muscle - 3))
        parts.append((_ellipse(x - (lm.mid_x + side * (58 + 8 * k)), y - (lm.kidney_y + 38), 15 * k, 8 * k)
                      & (above < 40) & (above > -100), muscle))
        parts.append((_ellipse(x - (lm.mid_x + side * (12 + 22 * k)), y - (lm.kidney_y + 48), 24 * k, 22 * k),
                      muscle + 2))
    return parts


def _pelvis(x, y, above, lm: Landmarks, style: PhantomStyle) -> list[tuple[np.ndarray, float, float]]:
    """(mask, HU, texture HU) of the pelvis below the kidneys (``above``: mm above the kidneys' centre):
    gluteal muscles, iliac wings, femoral heads (cortex and cancellous bone), bladder."""
    t, parts = style.texture_hu, []
    for side in (-1, 1):
        parts.append(((above < -100) & _ellipse(x - (lm.mid_x + side * 75), y - (lm.kidney_y + 55), 55, 38),
                      style.muscle_hu, t))
        wing_x = lm.mid_x + side * (65 + 0.15 * np.clip(-above - 100, 0, 120))
        wing = _ellipse(x - wing_x, y - (lm.kidney_y + 15), 14, 42) & (above < -90) & (above > -210)
        parts += [(wing, 550.0, 60.0), (wing & _ellipse(x - wing_x, y - (lm.kidney_y + 15), 9, 36), 200.0, 40.0)]
        head_x, head_y = x - (lm.mid_x + side * 95), y - (lm.kidney_y - 15)
        head = _ellipsoid(head_x, head_y, above + 265, 24, 24, 24)
        parts += [(head, 600.0, 60.0), (head & _ellipsoid(head_x, head_y, above + 265, 20, 20, 20), 250.0, 40.0)]
    bladder_hu = 10.0 if style.collecting_hu is None else 0.5 * style.collecting_hu
    parts.append((_ellipsoid(x - lm.mid_x, y - (lm.kidney_y - 60), above + 245, 45, 35, 35), bladder_hu, 0.3 * t))
    return parts


def _styled_body_hu(x, y, z, lm: Landmarks, style: PhantomStyle, mimics, packed_bowel=(),
                    vessels=()) -> tuple[np.ndarray, np.ndarray]:
    """(HU, texture amplitude in HU) of everything but the kidneys, for physical x, y, z (mm, LPS)."""
    rx, ry = lm.body_radii
    dx, dy = x - lm.mid_x, y - lm.body_center_y
    hu = np.full(x.shape, AIR_HU, dtype=np.float32)
    amp = np.zeros(x.shape, dtype=np.float32)
    t = style.texture_hu
    muscle = style.muscle_hu

    def put(mask, value, texture):
        hu[mask] = value
        amp[mask] = texture

    if style.arms_down:
        for mask, tissue in _arms(x, y, lm):
            put(mask, {"fat": style.fat_hu, "muscle": muscle, "bone": 700.0}[tissue],
                {"fat": 0.5 * t, "muscle": t, "bone": 60.0}[tissue])
    put(_ellipse(dx, dy, rx, ry), style.fat_hu, 0.5 * t)
    put(_ellipse(dx, dy, rx - lm.fat_mm, ry - lm.fat_mm), muscle, t)
    wall = lm.fat_mm + style.wall_mm
    inner = _ellipse(dx, dy, rx - lm.fat_mm - 2, ry - lm.fat_mm - 2)  # inside the skin fat
    cavity = _ellipse(dx, dy, rx - wall, ry - wall)  # inside the abdominal wall
    put(cavity, style.fat_hu + 10, 0.7 * t)
    above = z - lm.kidney_z
    z_low, z_high = float(z.min()), float(z.max())

    def spans(center_z: float, radius_z: float) -> bool:
        return z_low <= center_z + radius_z and z_high >= center_z - radius_z

    if spans(lm.kidney_z + 70, 95):
        put(_ellipsoid(x - (lm.mid_x - 85), y - (lm.kidney_y - 45), above - 70, 90, 80, 95) & cavity,
            style.liver_hu, t)
    if spans(lm.kidney_z + 55, 55):
        put(_ellipsoid(x - (lm.mid_x + 85), y - (lm.kidney_y + 5), above - 55, 40, 32, 55) & cavity,
            style.spleen_hu, 1.5 * t)
    for bx, by, bz, brx, bry, brz, _, content in lm.bowel:
        if not spans(bz, brz):
            continue
        loop = _ellipsoid(x - bx, y - by, z - bz, brx, bry, brz) & cavity
        put(loop, style.bowel_wall_hu, t)
        put(loop & _ellipsoid(x - bx, y - by, z - bz, brx - 4, bry - 4, brz - 4), content, 2 * t)
    for bx, by, bz, br, content, mottle in packed_bowel:
        if spans(bz, 1.3 * br):
            loop = _ellipsoid(x - bx, y - by, z - bz, br, 0.8 * br, 1.3 * br) & cavity
            put(loop, style.bowel_wall_hu, t)
            put(loop & _ellipsoid(x - bx, y - by, z - bz, br - 3, 0.8 * br - 3, 1.3 * br - 3), content, mottle)
    for mx, my, mz, mr, mhu, mtex in mimics:
        if spans(mz, mr):
            put(_ellipsoid(x - mx, y - my, z - mz, mr, 0.85 * mr, 1.2 * mr) & cavity, mhu, mtex)
    for x0, y0, z0, x1, y1, z1, radius, value in vessels:
        if spans(z0, radius + abs(z1 - z0)):
            put(_near_segment(x, y, z, np.array([x0, y0, z0]), np.array([x1, y1, z1]), radius) & cavity, value, 0.5 * t)
    for mask, value in _trunk_muscles(x, y, above, lm, style):
        put(mask & inner, value, t)
    if spans(lm.kidney_z - 220, 120):  # after the muscles: pelvic bone is never painted over
        for mask, value, texture in _pelvis(x, y, above, lm, style):
            put(mask & inner, value, texture)
    spine_y = lm.kidney_y + 8
    put(_ellipse(x - lm.mid_x, y - spine_y, 21, 17), 650.0, 60.0)
    put(_ellipse(x - lm.mid_x, y - spine_y, 18, 14), style.bone_hu, 40.0)
    for side in (-1, 1):  # transverse processes, once per vertebra
        process = _ellipse(x - (lm.mid_x + side * 34), y - (spine_y + 14), 16, 5)
        put(process & (np.sin(z * (2 * np.pi / 34.0) + 1.6) > 0.5), 600.0, 60.0)
    put(_ellipse(x - lm.mid_x, y - spine_y, 21, 17) & (np.sin(z * (2 * np.pi / 34.0)) > 0.8), 85.0, t)
    put(_ellipse(x - lm.mid_x, y - (spine_y + 42), 7, 14), 600.0, 60.0)
    put(_ellipse(x - lm.mid_x, y - (spine_y + 25), 8, 7), 15.0, 0.5 * t)
    midline = _midline_structures(lm.mid_x, lm.kidney_y)
    for name, value in (("aorta", style.aorta_hu), ("ivc", 0.6 * style.aorta_hu + 0.4 * muscle)):
        vx, vy, vrx, vry = midline[name]
        put(_ellipse(x - vx, y - vy, vrx, vry), value, 0.5 * t)
    angle = np.arctan2(dy / ry, dx / rx)
    rib_band = _ellipse(dx, dy, rx - lm.fat_mm + 2, ry - lm.fat_mm + 2) & ~_ellipse(
        dx, dy, rx - lm.fat_mm - 8, ry - lm.fat_mm - 8)
    put(rib_band & (above > -40) & (np.sin(above / 9.0 + 3 * angle) > 0.55) & (np.abs(dx) > 40), 700.0, 60.0)
    return hu, amp


def _draw_mimics(centroids: np.ndarray, lm: Landmarks, style: PhantomStyle, rng: np.random.Generator):
    """Soft-tissue masses (x, y, z, radius, HU, texture) in the abdomen, clear of the kidneys: tumor-like
    blobs the network must learn are not tumors because they do not belong to a kidney."""
    mimics = []
    for _ in range(50):
        if len(mimics) == style.mimics:
            break
        r = rng.uniform(8, 30)
        p = np.array([lm.mid_x + rng.uniform(-130, 130), lm.kidney_y + rng.uniform(-100, 40),
                      lm.kidney_z + rng.uniform(-180, 120)])
        clear = all(((p - c) / (np.array([50.0, 45.0, 75.0]) + r + 10)) @ ((p - c) / (np.array([50.0, 45.0, 75.0]) + r + 10)) > 1
                    for c in centroids)
        if clear:
            mimics.append((*p, r, rng.uniform(15, 170), rng.uniform(5, 25)))
    return tuple(mimics)


def _near_segment(x, y, z, a: np.ndarray, b: np.ndarray, radius_mm: float) -> np.ndarray:
    """Bool: the points (x, y, z, mm) within ``radius_mm`` of the segment from ``a`` to ``b``."""
    along = b - a
    t = np.clip(((x - a[0]) * along[0] + (y - a[1]) * along[1] + (z - a[2]) * along[2]) / max(along @ along, 1e-6), 0, 1)
    return (x - a[0] - t * along[0]) ** 2 + (y - a[1] - t * along[1]) ** 2 + (z - a[2] - t * along[2]) ** 2 <= radius_mm ** 2


def _remaining(centroids: np.ndarray, style: PhantomStyle) -> np.ndarray:
    """The kidney centroids (N, 3; LPS mm) that ``style.nephrectomy`` leaves."""
    if style.nephrectomy == "both":
        return centroids[:0]
    if style.nephrectomy is None or len(centroids) < 2:
        return centroids
    left = int(np.argmax(centroids[:, 0]))  # patient left = +x
    return np.delete(centroids, left if style.nephrectomy == "left" else 1 - left, axis=0)


def _renal_vessels(centroids: np.ndarray, lm: Landmarks, style: PhantomStyle):
    """Segments (x0, y0, z0, x1, y1, z1, radius mm, HU) of each kidney's renal artery (to the aorta)
    and renal vein (to the IVC), from the kidney's centre, which its own voxels then cover."""
    midline = _midline_structures(lm.mid_x, lm.kidney_y)
    (ax, ay, *_), (vx, vy, *_) = midline["aorta"], midline["ivc"]
    vein_hu = 0.6 * style.aorta_hu + 0.4 * style.muscle_hu
    segments = []
    for cx, cy, cz in centroids:
        segments.append((cx, cy, cz, ax, ay, cz, 3.0, style.aorta_hu))
        segments.append((cx, cy - 6, cz - 8, vx, vy, cz - 8, 5.0, vein_hu))
    return tuple(tuple(float(v) for v in segment) for segment in segments)


def _draw_packed_bowel(centroids: np.ndarray, lm: Landmarks, style: PhantomStyle, rng: np.random.Generator):
    """``style.bowel_loops`` bowel loops (x, y, z, radius, content HU, content texture HU) packed in
    front of and beside the kidneys, clear of them: fluid-filled small bowel, or colon whose mottled
    content mixes gas and stool."""
    loops = []
    for _ in range(4 * style.bowel_loops):
        if len(loops) == style.bowel_loops:
            break
        r = rng.uniform(9, 22)
        p = np.array([lm.mid_x + rng.uniform(-120, 120), lm.kidney_y + rng.uniform(-130, 10),
                      lm.kidney_z + rng.uniform(-160, 90)])
        clear = all(np.sum(((p - c) / (np.array([32.0, 28.0, 60.0]) + r)) ** 2) > 1 for c in centroids)
        prevertebral = abs(p[0] - lm.mid_x) < 50 and p[1] > lm.kidney_y - 20 - r  # aorta, IVC, spine
        if clear and not prevertebral:
            colon = rng.random() < 0.4
            content = rng.uniform(-250, 0) if colon else rng.choice([rng.uniform(0, 40), rng.uniform(150, 350)])
            loops.append((*p, r, float(content), rng.uniform(150, 300) if colon else rng.uniform(5, 20)))
    return tuple(loops)


def _room_for_anatomy(lm: Landmarks, style: PhantomStyle, centroids: np.ndarray) -> Landmarks:
    """``lm`` with the body widened until the kidneys lie inside the abdominal wall, and its back
    wall moved back until the paraspinal muscles fit inside the skin fat (the front stays put)."""
    rx, ry = lm.body_radii
    back = lm.body_center_y + ry - lm.fat_mm
    grow = max(lm.kidney_y + 52 + 22 * style.muscle_scale - back, 0.0)
    center_y, ry = lm.body_center_y + grow / 2, ry + grow / 2
    wall = lm.fat_mm + style.wall_mm
    reach_mm = float(np.abs(centroids[:, 0] - lm.mid_x).max()) if len(centroids) else 70.0
    depth = min(((lm.kidney_y - center_y) / (ry - wall)) ** 2, 0.7)  # the ellipse is narrower off its centre
    rx = max(rx, (reach_mm + KIDNEY_HALF_WIDTH_MM) / np.sqrt(1 - depth) + wall)
    return replace(lm, body_center_y=center_y, body_radii=(float(rx), ry))


def _styled_body_image(geometry: Geometry, lm: Landmarks, style: PhantomStyle, mimics,
                       rng: np.random.Generator, packed_bowel=(), vessels=()) -> sitk.Image:
    """The styled body on a BODY_GRID_MM grid covering ``geometry``, textured (2 mm grain)."""
    low, size, (x, y, z) = body_grid(geometry)
    hu = np.empty((size[2], size[1], size[0]), dtype=np.float32)
    amp = np.empty_like(hu)
    for z0 in range(0, size[2], SLAB_PLANES):
        zs = z[z0:z0 + SLAB_PLANES, None, None]
        hu[z0:z0 + SLAB_PLANES], amp[z0:z0 + SLAB_PLANES] = _styled_body_hu(
            *np.broadcast_arrays(x[None, None, :], y[None, :, None], zs), lm, style, mimics, packed_bowel, vessels)
    hu += amp * _smooth_noise(hu.shape, (BODY_GRID_MM,) * 3, 2.0, rng)
    del amp
    return body_grid_image(hu, low)


def _tumor_hu(kind: str, kidney_hu: float, style: PhantomStyle, texture: np.ndarray, depth_mm: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """HU of one lesion's voxels (``texture``: unit-std field, ``depth_mm``: depth inside the lesion)."""
    u = rng.uniform
    contrast = style.phase != "non-contrast"
    grain = u(5, 25) * texture
    if kind == "hypo":
        return max(kidney_hu - (u(30, 110) if contrast else u(5, 20)), 10.0) + grain
    if kind == "iso":
        return kidney_hu + u(-15, 15) + grain
    if kind == "hyper":
        return (kidney_hu + u(20, 80) if contrast else u(50, 75)) + grain
    if kind == "cystic":
        wall = depth_mm < u(1.0, 2.5)
        return np.where(wall, kidney_hu - u(0, 30), u(-5, 20) + 3 * texture)
    if kind == "fat":
        return np.where(texture > u(-0.8, 0.2), u(-110, -40) + 10 * texture, u(20, 60) + grain)
    soft = kidney_hu + (u(-60, 10) if contrast else u(-10, 10)) + grain
    return np.where(texture > u(1.3, 2.0), u(300, 900), soft)  # calcified


def _hilum_mm(labels: np.ndarray, spacing_kji) -> np.ndarray:
    """Distance (mm) from each voxel of a (k, j, i) label crop to the kidneys' hilum: the background
    in the concavities of kidney+tumor that a closing by HILUM_CLOSING_MM fills, in pieces of
    HILUM_MIN_ML or more and HILUM_TUMOR_CLEARANCE_MM or more from any tumor (where sinus fat and
    vessels enter, not the notch beside a tumor); infinite where there is none."""
    pad = [int(np.ceil(HILUM_CLOSING_MM / s)) + 2 for s in spacing_kji]
    inner = tuple(slice(p, -p) for p in pad)
    padded = np.pad(labels, [(p, p) for p in pad])
    mask = padded > 0
    grown = mask | (_depth_mm(~mask, spacing_kji) <= HILUM_CLOSING_MM)
    hilum = (_depth_mm(grown, spacing_kji) > HILUM_CLOSING_MM) & ~mask
    pieces = sitk.GetArrayFromImage(sitk.RelabelComponent(  # not the steps of a label drawn slice by slice
        sitk.ConnectedComponent(sitk.GetImageFromArray(hilum.astype(np.uint8))),
        minimumObjectSize=int(np.ceil(HILUM_MIN_ML * 1000 / np.prod(spacing_kji)))))
    if (padded == 2).any():
        near_tumor = _depth_mm(padded != 2, spacing_kji) < HILUM_TUMOR_CLEARANCE_MM
        pieces[np.isin(pieces, np.unique(pieces[near_tumor]))] = 0
    if not pieces.any():
        return np.full(labels.shape, np.inf, dtype=np.float32)
    return _depth_mm(pieces == 0, spacing_kji)[inner]


def _sinus_hu(style: PhantomStyle, texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HU of the kidney-labelled tissue at the hilum from a unit-std ``texture``: a renal pelvis and
    calyces of urine (or of excreted contrast), vessels (enhancing after contrast) and some fat."""
    u = rng.uniform
    urine = style.collecting_hu if style.collecting_hu is not None else u(0, 20)
    vessel = u(0.6, 0.9) * style.aorta_hu if style.phase != "non-contrast" else style.muscle_hu
    fat_above = u(0.5, 1.2)  # most sinus fat lies in the hilum, outside the kidney label
    urine_below = u(-0.5, 0.3)
    return np.where(texture > fat_above, style.fat_hu + u(20, 60),
                    np.where(texture < urine_below, urine, vessel)).astype(np.float32)


def _styled_kidney_hu(labels: np.ndarray, spacing_kji, style: PhantomStyle, rng: np.random.Generator,
                      sinus_rng: np.random.Generator) -> np.ndarray:
    """HU inside a crop holding the kidneys and tumors; NaN where the label is background."""
    hu = np.full(labels.shape, np.nan, dtype=np.float32)
    texture = _smooth_noise(labels.shape, spacing_kji, 2.5, rng)
    depth = _depth_mm(labels > 0, spacing_kji)
    kidney = labels == 1
    cortex_mm = rng.uniform(3.0, 6.0)
    medulla = style.medulla_hu + 0.15 * abs(style.cortex_hu - style.medulla_hu) * np.sin(texture * 2.0)
    level = np.where(depth < cortex_mm, style.cortex_hu, medulla) + style.texture_hu * texture
    if style.renal_sinus:
        sinus = kidney & (_hilum_mm(labels, spacing_kji) < sinus_rng.uniform(2.0, 6.0))
        sinus_texture = _smooth_noise(labels.shape, spacing_kji, 1.5, sinus_rng)
        level = np.where(sinus, _sinus_hu(style, sinus_texture, sinus_rng), level)
    elif style.collecting_hu is not None:
        deepest = float(depth[kidney].max()) if kidney.any() else 0.0
        collecting = depth > rng.uniform(0.6, 0.8) * deepest
        level = np.where(collecting & (texture > -0.5), style.collecting_hu, level)
    hu[kidney] = level[kidney]
    kidney_hu = 0.5 * (style.cortex_hu + style.medulla_hu)
    tumors = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray((labels == 2).astype(np.uint8))))
    for lesion in range(1, int(tumors.max()) + 1):
        inside = tumors == lesion
        kind = str(rng.choice(style.tumor_kinds))
        lesion_depth = _depth_mm(inside, spacing_kji)
        hu[inside] = _tumor_hu(kind, kidney_hu, style, texture[inside], lesion_depth[inside], rng)
        deepest = float(lesion_depth.max())
        if kind in ("hypo", "iso", "hyper") and deepest > 8 and rng.random() < 0.5:
            core = inside & (lesion_depth > rng.uniform(0.45, 0.7) * deepest)
            hu[core] = rng.uniform(5, 30) + 6 * texture[core]
    return hu


def _superior_axis(geometry: Geometry) -> int:
    """The image axis (i, j, k order) closest to the patient's superior-inferior direction."""
    return int(np.argmax(np.abs(geometry.direction_matrix[2])))


def _styled_blur(hu: np.ndarray, geometry: Geometry, style: PhantomStyle) -> sitk.Image:
    """Partial volume and reconstruction: sigma max(0.4 x spacing, kernel) in-plane and the slice
    profile (FWHM = slice thickness) along the superior-inferior axis, in mm."""
    image = geometry.apply_to(sitk.GetImageFromArray(hu))
    sigma = [max(0.4 * s, style.kernel_mm) for s in geometry.spacing_mm]
    axis = _superior_axis(geometry)
    sigma[axis] = max(0.4 * geometry.spacing_mm[axis], style.slice_mm / 2.355)
    return sitk.SmoothingRecursiveGaussian(image, sigma)


def _noise(shape, spacing_kji, style: PhantomStyle, rng: np.random.Generator) -> np.ndarray:
    """Unit-std noise of a slab (k, j, i), with a grain of ``noise_grain_mm`` across each plane."""
    white = rng.standard_normal(shape, dtype=np.float32)
    if style.noise_grain_mm <= 0.2:
        return white
    image = sitk.GetImageFromArray(white)
    image.SetSpacing(tuple(reversed(spacing_kji)))
    variance = [style.noise_grain_mm ** 2] * 3
    variance[2] = 0.0  # no grain across array planes
    field = sitk.GetArrayFromImage(sitk.DiscreteGaussian(image, variance, 16, 0.01, True))
    return field / max(float(field.std()), 1e-6)


def synthesize_styled(label_map: Scan, seed: int, style: PhantomStyle) -> Scan:
    """A styled phantom (int16 HU) on exactly ``label_map``'s grid; the anatomy follows
    ``styled_labels(label_map, style)``. Deterministic for a seed and style."""
    geometry = label_map.geometry
    labels = styled_labels(label_map, style).array
    rng = np.random.default_rng(seed)
    lm = draw_landmarks(np.asarray(label_map.array), geometry, rng)
    rx, ry = lm.body_radii
    lm = replace(lm, body_radii=(rx * style.body_scale, ry * style.body_scale), fat_mm=style.fat_mm)
    centroids = _kidney_centroids(np.asarray(label_map.array), geometry)
    lm = _room_for_anatomy(lm, style, centroids)
    mimics = _draw_mimics(centroids, lm, style, rng)
    packed_bowel = _draw_packed_bowel(centroids, lm, style, rng)
    vessels = _renal_vessels(_remaining(centroids, style), lm, style) if style.renal_vessels else ()
    hu = _on_grid(_styled_body_image(geometry, lm, style, mimics, rng, packed_bowel, vessels), geometry)
    box = bounding_box(labels > 0, margin=4)
    if box is not None:
        kidney = _styled_kidney_hu(np.asarray(labels[box]), geometry.array_spacing_mm, style, rng,
                                   np.random.default_rng([seed, SINUS_STREAM]))
        hu[box] = np.where(np.isnan(kidney), hu[box], kidney)
    blurred_image = _styled_blur(hu, geometry, style)
    del hu
    blurred = sitk.GetArrayViewFromImage(blurred_image)
    out = np.empty(geometry.array_shape, dtype=np.int16)
    center = _grid_center(geometry)
    for k0 in range(0, out.shape[0], SLAB_PLANES):
        k1 = min(k0 + SLAB_PLANES, out.shape[0])
        x, y = _in_plane_xy(geometry, k0, k1)
        noisy = blurred[k0:k1] + style.noise_hu * _noise(x.shape, geometry.array_spacing_mm, style, rng)
        outside = (x - center[0]) ** 2 + (y - center[1]) ** 2 > style.fov_radius_mm ** 2
        out[k0:k1] = np.where(outside, OUTSIDE_FOV_HU, np.clip(np.rint(noisy), -1024, 3071))
    return Scan.from_array(out, geometry, source=f"phantom(seed={seed}, {style.phase}) of {label_map.source}")


def synthesize_case(label_map: Scan, seed: int, style: PhantomStyle) -> tuple[Scan, Scan]:
    """(styled CT, the label map it shows): the label map edited as the style says (nephrectomy,
    tumor-free, horseshoe), both on ``label_map``'s grid, or both on the slab of it that
    ``style.scan_range`` keeps (``scan_range_planes``)."""
    from kitsrt.phantom.ct import synthesize_ct

    ct, labels = synthesize_ct(label_map, seed=seed, style=style), styled_labels(label_map, style)
    planes = scan_range_planes(label_map, style)
    if planes is None:
        return ct, labels
    axis, start, stop = planes
    slab = tuple(slice(start, stop) if a == axis else slice(None) for a in range(3))
    return Scan(ct.image[slab], ct.source), Scan(labels.image[slab], labels.source)


def scan_range_planes(label_map: Scan, style: PhantomStyle) -> tuple[int, int, int] | None:
    """(index axis (i, j, k order), first plane, stop plane) of the slab that ``style.scan_range``
    keeps: the planes whose centres lie below ("pelvis") or above ("upper") a cut across the
    superior-inferior axis at ``style.cut_fraction`` of the kidneys' height (LPS z, mm); None for
    the whole grid: a "full" range, no kidneys, or a slab under MIN_CUT_SCAN_MM."""
    if style.scan_range == "full":
        return None
    geometry = label_map.geometry
    axis = _superior_axis(geometry)
    array_axis = 2 - axis
    planes = np.flatnonzero((np.asarray(label_map.array) > 0).any(axis=tuple(a for a in range(3) if a != array_axis)))
    if len(planes) == 0:
        return None
    index = np.zeros((geometry.size[axis], 3))
    index[:, axis] = np.arange(geometry.size[axis])
    plane_z = geometry.index_to_physical(index)[:, 2]  # monotonic along the axis
    low, high = float(plane_z[planes].min()), float(plane_z[planes].max())
    cut_z = low + style.cut_fraction * (high - low)
    kept = np.flatnonzero(plane_z < cut_z if style.scan_range == "pelvis" else plane_z > cut_z)
    if len(kept) * geometry.spacing_mm[axis] < MIN_CUT_SCAN_MM:
        return None
    return axis, int(kept[0]), int(kept[-1]) + 1
