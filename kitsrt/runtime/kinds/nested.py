"""Seed 004, the nested 3D V-Net (Zavala-Romero et al.), as one short orchestration function.

scan -> whole scan at 2 mm, centre crop / pad to 168^3, [0, 1] -> kidney network -> post-processing
rules on the kidney map (the three largest structures over 10 mL) -> tumor network on the
kidney-masked volume -> tumor kept only inside the kidney -> nearest neighbour back onto the scan.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from kitsrt.engines.base import Backend
from kitsrt.io import Scan
from kitsrt.runtime.inference import infer_volume
from kitsrt.runtime.kinds.base import KindResult
from kitsrt.runtime.pipeline import NestedSpec
from kitsrt.runtime.postprocess import KIDNEY, TUMOR, apply_rules
from kitsrt.runtime.preprocess import scan_box
from kitsrt.runtime.regions import crop_grid, mask_volume, region_hu
from kitsrt.runtime.report import body_midline_x_mm, voi_entry
from kitsrt.runtime.restore import labels_to_scan
from kitsrt.runtime.timing import Timings
from kitsrt.runtime.voi import components


def foreground(outputs: np.ndarray) -> np.ndarray:
    """(C, z, y, x) network outputs -> bool (z, y, x): logit > 0 (sigmoid > 0.5) for one channel,
    else argmax > 0."""
    return outputs[0] > 0 if outputs.shape[0] == 1 else outputs.argmax(axis=0) > 0


def kidney_regions(labels: np.ndarray, scan: Scan, body_mid_x: float) -> tuple[list[dict], tuple]:
    """One report entry per connected kidney(+tumor) structure on the scan's grid, right to left,
    and the structures' physical boxes."""
    found = sorted(components(labels > 0, scan.geometry), key=lambda c: c.centroid_mm[0])
    entries = []
    for component in found:
        slices, _ = crop_grid(scan.geometry, component.box)
        entries.append(voi_entry(SimpleNamespace(box=component.box, slices=slices, labels=labels[slices]), scan,
                                 body_mid_x))
    return entries, tuple(c.box for c in found)


def run(scan: Scan, spec: NestedSpec, backends: dict[str, Backend], timings: Timings) -> KindResult:
    """Seed 004 on one scan -> labels on the scan's exact grid."""
    with timings.timer("preprocess"):
        hu, plan = region_hu(scan, scan_box(scan.geometry), spec.kidney, spec.crop_shape)
        kidney_input = spec.kidney.normalization.apply(hu)
        tumor_input = spec.tumor.normalization.apply(hu)
        del hu
    with timings.timer("kidney_net"):
        kidney = foreground(infer_volume(kidney_input, spec.kidney, backends["kidney"]))
    with timings.timer("postprocess"):
        voxel_ml = float(np.prod(plan.grid.spacing_mm)) / 1000.0
        labels = apply_rules(kidney.astype(np.uint8) * KIDNEY, spec.postprocess, voxel_ml, plan.grid.spacing_mm)
    with timings.timer("tumor_net"):
        inside = labels > 0
        tumor = foreground(infer_volume(mask_volume(tumor_input, inside, spec.tumor), spec.tumor, backends["tumor"]))
    with timings.timer("postprocess"):
        labels[inside & tumor] = TUMOR  # tumor masked by kidney
        full = labels_to_scan(labels, plan)
        regions, boxes = kidney_regions(full, scan, body_midline_x_mm(scan))
    return KindResult(full, regions, {"boxes": boxes})
