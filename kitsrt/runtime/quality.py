"""Quality flags: results a reader must not trust blindly, as a list of warnings
``{"code", "message", "values"}`` for the report, the console and the preview.

Every threshold comes from the model package: plausibility limits from ``pipeline.json``'s
``quality`` section (``QualitySpec``), what the networks were trained on from the model card's
``training_data`` (contrast phase, spacing ranges) and its ``disclaimer``. Nothing here decides a
number on its own; a package without a ``quality`` section gets one warning saying so.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kitsrt.io import Geometry
from kitsrt.runtime.measure import slice_axis


class QualitySpec(BaseModel):
    """Plausibility limits for one pipeline's results (``pipeline.json`` → ``quality``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kidney_volume_ml: tuple[float, float] = Field(description="plausible volume of one kidney's tissue (label 1), mL")
    max_tumors_per_side: int = Field(ge=0, description="more lesions than this on one side is implausible")
    max_tumor_to_kidney_ratio: float = Field(gt=0, description="tumor volume / kidney tissue volume, per side")
    max_tumor_distance_mm: float = Field(ge=0, description="a lesion farther than this from its kidney")
    midline_tolerance_mm: float = Field(0.0, ge=0, description="a VOI reaching this far across the body's midline")
    enhanced_kidney_min_hu: float = Field(description="median HU of kidney tissue below this: no contrast enhancement")


def warning(code: str, message: str, **values) -> dict:
    return {"code": code, "message": message, "values": values}


def side_warnings(region: dict, quality: QualitySpec) -> list[dict]:
    """Warnings about one kidney's region: its ``side``, ``kidney`` {volume_ml}, ``tumor_count``,
    ``lesions`` (the largest, each with volume_ml and distance_to_kidney_mm), ``tumor_ml``, ``voi_mm``
    and ``crosses_midline_mm``."""
    side, kidney_ml = region["side"], region["kidney"]["volume_ml"]
    low, high = quality.kidney_volume_ml
    found = []
    if not low <= kidney_ml <= high:
        found.append(warning("kidney_volume_implausible",
                             f"{side} kidney: {kidney_ml:.0f} mL of kidney tissue, outside the plausible "
                             f"{low:.0f}-{high:.0f} mL; it may not be a kidney or may be cut off",
                             side=side, kidney_ml=kidney_ml, plausible_ml=[low, high]))
    tumor_ml = region["tumor_ml"]
    if tumor_ml > quality.max_tumor_to_kidney_ratio * max(kidney_ml, 1e-6) and tumor_ml > 0:
        found.append(warning("tumor_larger_than_kidney",
                             f"{side}: {tumor_ml:.0f} mL of tumor beside {kidney_ml:.0f} mL of kidney tissue; "
                             "check that the tumor is real and belongs to this kidney",
                             side=side, tumor_ml=tumor_ml, kidney_ml=kidney_ml,
                             max_ratio=quality.max_tumor_to_kidney_ratio))
    if region["tumor_count"] > quality.max_tumors_per_side:
        found.append(warning("too_many_tumors",
                             f"{side}: {region['tumor_count']} separate tumors, more than the plausible "
                             f"{quality.max_tumors_per_side}; many may be false positives",
                             side=side, tumor_count=region["tumor_count"], max_count=quality.max_tumors_per_side))
    far = [lesion for lesion in region["lesions"]
           if lesion["distance_to_kidney_mm"] is None or lesion["distance_to_kidney_mm"] > quality.max_tumor_distance_mm]
    if far:
        found.append(warning("tumor_far_from_kidney",
                             f"{side}: {len(far)} tumor(s) more than {quality.max_tumor_distance_mm:g} mm from "
                             "the kidney; a renal tumor touches its kidney",
                             side=side, distances_mm=[lesion["distance_to_kidney_mm"] for lesion in far]))
    if region["crosses_midline_mm"] > quality.midline_tolerance_mm:
        found.append(warning("voi_crosses_midline",
                             f"{side} VOI reaches {region['crosses_midline_mm']:.0f} mm across the body's "
                             "midline; kidneys lie on either side of the spine, so this region and its side "
                             "are doubtful", side=side, across_mm=region["crosses_midline_mm"]))
    return found


def scan_warnings(regions: list[dict], labels: np.ndarray, geometry: Geometry, quality: QualitySpec,
                  training: dict) -> list[dict]:
    """Warnings about the whole result: kidneys missing or doubled, a kidney cut by the scan's
    first or last slice, no contrast enhancement, spacing outside the training range."""
    found = []
    sides = [r["side"] for r in regions]
    if not regions:
        found.append(warning("no_kidney", "no kidney found; if the scan covers the abdomen, the model failed"))
    elif len(set(sides)) < 2:
        missing = sorted({"left", "right"} - set(sides))
        found.append(warning("kidney_missing",
                             f"no {' or '.join(missing)} kidney found (only {', '.join(sides)}); a missing "
                             "kidney is rare (nephrectomy, agenesis) and more often a failed segmentation",
                             found=sides, missing=missing))
    axis = slice_axis(geometry)  # index axis; the array axis is 2 - axis
    edges = [name for name, index in (("first", 0), ("last", -1))
             if np.take(labels, index, axis=2 - axis).any()]
    if edges:
        found.append(warning("kidney_cut_by_scan",
                             f"kidney or tumor reaches the scan's {' and '.join(edges)} slice: the scan does not "
                             "cover the whole kidney, so volumes and lengths are too small", slices=edges))
    if training.get("contrast_enhanced") and regions:
        hu = [r["kidney_median_hu"] for r in regions if r.get("kidney_median_hu") is not None]
        if hu and max(hu) < quality.enhanced_kidney_min_hu:
            found.append(warning("no_contrast_enhancement",
                                 f"kidney tissue has a median of {max(hu):.0f} HU (below "
                                 f"{quality.enhanced_kidney_min_hu:.0f} HU): the scan looks unenhanced, but the "
                                 "model was trained on contrast-enhanced CT", kidney_median_hu=hu,
                                 enhanced_min_hu=quality.enhanced_kidney_min_hu))
    found += spacing_warnings(geometry, training.get("spacing_mm", {}))
    return found


def header_warnings(dicom, training: dict) -> list[dict]:
    """What the DICOM header says against the training data: no Contrast/Bolus Agent (0018,0010)
    recorded for a model trained on contrast-enhanced CT (a hint; some exports drop the tag)."""
    if dicom is None or not training.get("contrast_enhanced") or dicom.contrast_agent:
        return []
    return [warning("no_contrast_agent_recorded",
                    "the DICOM header records no contrast agent (0018,0010), but the model was trained on "
                    "contrast-enhanced CT; an unenhanced scan gives unreliable results",
                    series_instance_uid=dicom.series_instance_uid)]


def spacing_warnings(geometry: Geometry, trained: dict) -> list[dict]:
    """Input spacing outside the card's ``training_data.spacing_mm`` {in_plane: [lo, hi], slice: [lo, hi]}."""
    axis = slice_axis(geometry)
    spacing = {"slice": [geometry.spacing_mm[axis]],
               "in_plane": [s for a, s in enumerate(geometry.spacing_mm) if a != axis]}
    found = []
    for name, values in spacing.items():
        if name not in trained:
            continue
        low, high = trained[name]
        outside = [round(v, 3) for v in values if not low - 1e-6 <= v <= high + 1e-6]
        if outside:
            found.append(warning("spacing_outside_training",
                                 f"{name.replace('_', '-')} spacing {', '.join(f'{v:g}' for v in outside)} mm is "
                                 f"outside the {low:g}-{high:g} mm the model was trained on",
                                 axis=name, spacing_mm=outside, trained_mm=[low, high]))
    return found


def package_warnings(quality: QualitySpec | None, disclaimer: str) -> list[dict]:
    """The card's disclaimer (a demo package) and a missing ``quality`` section."""
    found = []
    if disclaimer:
        found.append(warning("demo_model", disclaimer))
    if quality is None:
        found.append(warning("no_quality_limits", "the model package's pipeline.json has no quality section, so "
                                                  "implausible results are not flagged"))
    return found
