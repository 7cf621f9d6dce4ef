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
from kitsrt.runtime.kinds.base import KindResult, Role, network_role
from kitsrt.runtime.pipeline import NestedSpec
from kitsrt.runtime.postprocess import KIDNEY, TUMOR, apply_rules
from kitsrt.runtime.preprocess import scan_box
from kitsrt.runtime.regions import RegionPlan, air_value, crop_grid, mask_volume, region_hu
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


def prepared_inputs(scan: Scan, spec: NestedSpec) -> tuple[np.ndarray, np.ndarray, RegionPlan]:
    """The whole scan on the kidney network's grid, centre cropped / padded to ``crop_shape``, as
    each network's (z, y, x) float32 input (the tumor one not yet masked), and the plan."""
    hu, plan = region_hu(scan, scan_box(scan.geometry), spec.kidney, spec.crop_shape)
    return spec.kidney.normalization.apply(hu), spec.tumor.normalization.apply(hu), plan


def kidney_labels(kidney_input: np.ndarray, spec: NestedSpec, backend: Backend, plan: RegionPlan,
                  timings: Timings) -> np.ndarray:
    """The kidney network's foreground, cleaned by the pipeline's rules: (z, y, x) uint8 on the
    crop grid (KIDNEY or 0)."""
    with timings.timer("kidney_net"):
        kidney = foreground(infer_volume(kidney_input, spec.kidney, backend))
    with timings.timer("postprocess"):
        voxel_ml = float(np.prod(plan.grid.spacing_mm)) / 1000.0
        return apply_rules(kidney.astype(np.uint8) * KIDNEY, spec.postprocess, voxel_ml, plan.grid.spacing_mm)


def tumor_input(unmasked: np.ndarray, labels: np.ndarray, spec: NestedSpec) -> np.ndarray:
    """Seed 004's kidney-masked volume: the tumor network's input, air outside the kidney."""
    return mask_volume(unmasked, labels > 0, spec.tumor)


def run(scan: Scan, spec: NestedSpec, backends: dict[str, Backend], timings: Timings) -> KindResult:
    """Seed 004 on one scan -> labels on the scan's exact grid."""
    with timings.timer("preprocess"):
        kidney_in, tumor_in, plan = prepared_inputs(scan, spec)
    labels = kidney_labels(kidney_in, spec, backends["kidney"], plan, timings)
    del kidney_in
    with timings.timer("tumor_net"):
        inside = labels > 0
        tumor = foreground(infer_volume(tumor_input(tumor_in, labels, spec), spec.tumor, backends["tumor"]))
    with timings.timer("postprocess"):
        labels[inside & tumor] = TUMOR  # tumor masked by kidney
        full = labels_to_scan(labels, plan)
    with timings.timer("measure"):
        regions, boxes = kidney_regions(full, scan, body_midline_x_mm(scan))
    return KindResult(full, regions, {"boxes": boxes})


def foreground_labels(outputs: np.ndarray) -> np.ndarray:
    """(C, z, y, x) outputs -> (z, y, x) uint8: 1 where ``foreground``."""
    return foreground(outputs).astype(np.uint8)


def roles(spec: NestedSpec) -> dict[str, Role]:
    """``kidney`` and ``tumor``, each fed batch 1 of ``crop_shape``; labels are their foreground."""
    return {name: network_role(name, net, spec.labels, air_value(net), foreground_labels, (1,))
            for name, net in spec.networks().items()}


def network_inputs(scan: Scan, spec: NestedSpec, backends: dict[str, Backend],
                   tiles_per_case: int | None = None) -> dict[str, list[np.ndarray]]:
    """The inputs ``run`` feeds each network for ``scan``: the cropped whole scan for ``kidney``,
    and for ``tumor`` the kidney-masked volume, masked by the kidney the (FP32) kidney backend finds."""
    kidney_in, tumor_in, plan = prepared_inputs(scan, spec)
    labels = kidney_labels(kidney_in, spec, backends["kidney"], plan, Timings())
    return {"kidney": [kidney_in], "tumor": [tumor_input(tumor_in, labels, spec)]}
