"""The per-case report (schema: ``kitsrt/schemas/report.schema.json``): per kidney its volume and
length, per lesion (the largest ``LISTED_LESIONS``) its volume, longest diameter and centre, the VOI
and how often it grew; the
models that ran (SHA-256 of the files the backends loaded), timings and quality warnings.

Points are LPS millimetres in the frame of the input's header (``COORDINATE_SYSTEM``).
"""

from __future__ import annotations

import numpy as np

from kitsrt._version import __version__
from kitsrt.io import Geometry, Scan
from kitsrt.runtime.measure import lesions, organ
from kitsrt.runtime.postprocess import KIDNEY, TUMOR
from kitsrt.runtime.voi import side_of

REPORT_VERSION = 3  # 3: lesions lists the largest LISTED_LESIONS per kidney, lesions_not_listed the rest
LISTED_LESIONS = 10  # per kidney, largest first; more are counted (tumor_count, tumor_ml), not measured
COORDINATE_SYSTEM = ("LPS, millimetres, in the frame of the input's header: x increases towards the patient's "
                     "left, y towards posterior, z towards superior (DICOM patient coordinates)")


def crop_geometry(geometry: Geometry, slices: tuple[slice, ...]) -> Geometry:
    """The grid of ``array[slices]`` (slices in (k, j, i) order) of an array on ``geometry``."""
    start_ijk = [slices[2].start, slices[1].start, slices[0].start]
    size = tuple(s.stop - s.start for s in reversed(slices))
    origin = geometry.index_to_physical([start_ijk])[0]
    return Geometry(size, geometry.spacing_mm, tuple(float(o) for o in origin), geometry.direction)


def region_entry(labels: np.ndarray, crop: Geometry, hu: np.ndarray, side: str, across_midline_mm: float) -> dict:
    """One kidney's facts from its region's labels and HU (both (k, j, i) on ``crop``)."""
    kidney = labels == KIDNEY
    found, count = lesions(labels, crop, TUMOR, near=kidney, limit=LISTED_LESIONS)
    return {
        "side": side,
        "crosses_midline_mm": round(max(across_midline_mm, 0.0), 1),
        "kidney": organ(kidney, crop),
        "kidney_median_hu": round(float(np.median(hu[kidney])), 1) if kidney.any() else None,
        "kidney_ml": round(float(np.count_nonzero(kidney)) * crop.voxel_volume_ml, 2),
        "tumor_ml": round(float(np.count_nonzero(labels == TUMOR)) * crop.voxel_volume_ml, 2),
        "tumor_count": count,
        "lesions": found,
        "lesions_not_listed": count - len(found),
    }


def voi_entry(voi, scan: Scan, body_mid_x_mm: float) -> dict:
    """One VOI of the cascade: ``voi`` has ``box`` (physical, mm), ``slices`` and ``labels`` (its
    crop of the scan) and ``growth_steps``."""
    side = side_of(voi.box, body_mid_x_mm)
    across = voi.box.high[0] - body_mid_x_mm if side == "right" else body_mid_x_mm - voi.box.low[0]
    entry = region_entry(voi.labels, crop_geometry(scan.geometry, voi.slices), scan.array[voi.slices], side, across)
    entry["voi_mm"] = {"low": [round(v, 1) for v in voi.box.low], "high": [round(v, 1) for v in voi.box.high],
                       "extent": [round(float(v), 1) for v in voi.box.extent_mm]}
    entry["growth_steps"] = int(getattr(voi, "growth_steps", 0))
    return entry


def body_midline_x_mm(scan: Scan, air_below_hu: float = -500.0) -> float:
    """LPS x of the centre of the body (voxels above ``air_below_hu``), from every 4th voxel."""
    g = scan.geometry
    k, j, i = np.nonzero(scan.array[::4, ::4, ::4] > air_below_hu)
    if k.size == 0:
        return float(g.index_to_physical([(np.asarray(g.size) - 1) / 2.0])[0][0])
    return float(g.index_to_physical([[4 * i.mean(), 4 * j.mean(), 4 * k.mean()]])[0][0])


def sided_regions(labels: np.ndarray, scan: Scan) -> list[dict]:
    """Per-side entries (``region_entry``) for a whole-scan segmentation without VOIs: foreground
    right of the body's midline (LPS x below it) is the right kidney's, the rest the left's."""
    from kitsrt.io.masks import bounding_box

    box = bounding_box(labels > 0)
    if box is None:
        return []
    crop = crop_geometry(scan.geometry, box)
    k, j, i = np.meshgrid(*[np.arange(s.stop - s.start, dtype=np.float32) for s in box], indexing="ij", sparse=True)
    d, spacing = crop.direction_matrix, crop.spacing_mm
    x_mm = crop.origin_mm[0] + sum(index * spacing[a] * d[0, a] for a, index in enumerate((i, j, k)) if d[0, a])
    middle, cropped, hu = body_midline_x_mm(scan), labels[box], scan.array[box]
    regions = []
    for side, here in (("right", x_mm < middle), ("left", x_mm >= middle)):
        side_labels = np.where(here, cropped, 0).astype(np.uint8)
        if side_labels.any():
            regions.append(region_entry(side_labels, crop, hu, side, 0.0))
    return regions


def build_report(scan: Scan, regions: list[dict], timings: dict, backend: str, package, models: list[dict],
                 warnings: list[dict], disclaimer: str) -> dict:
    """The report of one scan; ``regions`` are the kind's per-kidney entries (``voi_entry``)."""
    geometry = scan.geometry
    report = {
        "report_version": REPORT_VERSION,
        "coordinate_system": COORDINATE_SYSTEM,
        "input": scan.source,
        "grid": {"size": list(geometry.size), "spacing_mm": list(geometry.spacing_mm),
                 "origin_mm": list(geometry.origin_mm), "direction": list(geometry.direction)},
        "kidney_found": bool(regions),
        "kidneys": regions,
        "totals": {"kidney_ml": round(sum(r["kidney_ml"] for r in regions), 2),
                   "tumor_ml": round(sum(r["tumor_ml"] for r in regions), 2),
                   "tumor_count": sum(r["tumor_count"] for r in regions)},
        "warnings": warnings,
        "timings_s": timings,
        "backend": backend,
        "pipeline": package.spec.name,
        "kind": package.spec.kind,
        "models": models,
        "model_sha256": {m["file"]: m["sha256"] for m in models},
        "disclaimer": disclaimer,
        "kitsrt_version": __version__,
    }
    if scan.dicom is not None:
        report["dicom"] = scan.dicom.as_dict()
    return report
