"""The per-case report: volumes per side in mL, tumor count, VOIs in mm, timings, provenance."""

from __future__ import annotations

import numpy as np

from kitsrt._version import __version__
from kitsrt.io import Geometry
from kitsrt.runtime.postprocess import KIDNEY, TUMOR, count_components
from kitsrt.runtime.voi import side_of


def voi_entry(voi, geometry: Geometry, body_mid_x_mm: float) -> dict:
    """One kidney's facts: ``voi`` has ``box`` (physical, mm) and ``labels`` (its crop of the scan)."""
    voxel_ml = geometry.voxel_volume_ml
    return {
        "side": side_of(voi.box, body_mid_x_mm),
        "voi_mm": {"low": [round(v, 1) for v in voi.box.low], "high": [round(v, 1) for v in voi.box.high],
                   "extent": [round(float(v), 1) for v in voi.box.extent_mm]},
        "kidney_ml": round(float(np.count_nonzero(voi.labels == KIDNEY)) * voxel_ml, 2),
        "tumor_ml": round(float(np.count_nonzero(voi.labels == TUMOR)) * voxel_ml, 2),
        "tumor_count": count_components(voi.labels == TUMOR),
    }


def build_report(source: str, geometry: Geometry, regions: list[dict], timings: dict, backend: str,
                 package) -> dict:
    """The report of one scan; ``regions`` are the kind's per-kidney entries (``voi_entry``)."""
    sides = regions
    return {
        "input": source,
        "grid": {"size": list(geometry.size), "spacing_mm": list(geometry.spacing_mm),
                 "origin_mm": list(geometry.origin_mm), "direction": list(geometry.direction)},
        "kidney_found": bool(sides),
        "kidneys": sides,
        "totals": {"kidney_ml": round(sum(s["kidney_ml"] for s in sides), 2),
                   "tumor_ml": round(sum(s["tumor_ml"] for s in sides), 2),
                   "tumor_count": sum(s["tumor_count"] for s in sides)},
        "timings_s": timings,
        "backend": backend,
        "pipeline": package.spec.name,
        "kind": package.spec.kind,
        "model_sha256": package.hashes,
        "kitsrt_version": __version__,
    }
