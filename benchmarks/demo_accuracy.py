"""Accuracy of the bundled demo package on phantoms, and the cascade's guarantees on every case.

For each shared KiTS19 label map (phantom seed = case number, as in training) and a few procedural
cases: run the cascade, then record
* that the output grid equals the input grid exactly,
* the share of reference kidney+tumor voxels inside the VOIs (the coarse stage's recall),
* KiTS19 Dice of the cascade, and of the fine network alone on the reference VOIs (``fine_only``),
* that a second run gives the bitwise identical label map,
* whether the case was held out of the demo's training.

    python benchmarks/demo_accuracy.py [KITS19_DIR] [--out benchmarks/results/demo_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kitsrt.bench.latency import describe_machine
from kitsrt.io import Scan, read_label_map
from kitsrt.eval.metrics import score_case
from kitsrt.phantom import procedural_label_map, synthesize_ct
from kitsrt.runtime.kinds.cascade import fine_stage, paste
from kitsrt.runtime.restore import crop_grid
from kitsrt.runtime.segmenter import Segmenter
from kitsrt.runtime.timing import Timings
from kitsrt.runtime.voi import kidney_boxes

HELD_OUT = {"case_00021", "case_00043", "case_00055", "case_00063", "case_00142", "case_00188"}


def voi_recall(labels: Scan, boxes) -> float:
    inside = np.zeros(labels.array.shape, bool)
    for box in boxes:
        slices, _ = crop_grid(labels.geometry, box)
        inside[slices] = True
    reference = labels.array > 0
    return float((inside & reference).sum() / max(reference.sum(), 1))


def fine_only_labels(segmenter: Segmenter, ct: Scan, labels: Scan) -> np.ndarray:
    """The fine network alone, on VOIs boxed around the *reference* kidneys (no coarse stage)."""
    spec = segmenter.package.spec
    boxes = kidney_boxes(labels.array > 0, labels.geometry, spec.roi)
    timings = Timings()
    return paste([fine_stage(ct, box, spec, segmenter.backends["fine"], timings) for box in boxes], ct.geometry)


def evaluate(case: str, labels: Scan, seed: int, segmenter: Segmenter) -> dict:
    ct = synthesize_ct(labels, seed=seed)
    start = time.perf_counter()
    result = segmenter.segment(ct)
    seconds = time.perf_counter() - start
    repeatable = bool(np.array_equal(segmenter.segment(ct).labels, result.labels))
    boxes = result.vois
    spacing = labels.geometry.array_spacing_mm
    cascade = score_case(result.labels, labels.array, spacing, case=case)
    fine = score_case(fine_only_labels(segmenter, ct, labels), labels.array, spacing, case=case)
    return {"case": case, "held_out": case in HELD_OUT or case.startswith("procedural"),
            "size": list(labels.geometry.size), "spacing_mm": [round(s, 3) for s in labels.geometry.spacing_mm],
            "geometry_equal": result.geometry == labels.geometry, "repeatable": repeatable,
            "voi_recall": voi_recall(labels, boxes),
            "vois": len(boxes), "cascade": cascade.as_dict(), "fine_only": fine.as_dict(), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kits19", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/kits19"))
    parser.add_argument("--procedural", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results/demo_accuracy.json")
    args = parser.parse_args()
    rows = []
    with Segmenter.load(threads=2) as segmenter:
        for label in sorted(Path(args.kits19).glob("case_*/segmentation.nii.gz")):
            case = label.parent.name
            rows.append(evaluate(case, read_label_map(label), int(case.split("_")[1]), segmenter))
            print(json.dumps({k: rows[-1][k] for k in ("case", "geometry_equal", "repeatable", "voi_recall", "seconds")})
                  + f" composite {rows[-1]['cascade']['composite_dice']:.4f}", flush=True)
        for n in range(args.procedural):
            labels = procedural_label_map((256, 256, 96), (1.6, 1.6, 3.0), seed=1000 + n)
            rows.append(evaluate(f"procedural_{1000 + n}", labels, 1000 + n, segmenter))
            print(rows[-1]["case"], f"composite {rows[-1]['cascade']['composite_dice']:.4f}", flush=True)

    def mean(selection, part, key):
        values = [r[part][key] for r in selection]
        return float(np.mean(values)) if values else None

    groups = {"held_out": [r for r in rows if r["held_out"]], "trained_on": [r for r in rows if not r["held_out"]]}
    summary = {name: {f"{part}_{key}": mean(group, part, key) for part in ("cascade", "fine_only")
                      for key in ("kidney_dice", "tumor_dice", "composite_dice")} | {"cases": len(group)}
               for name, group in groups.items()}
    summary["all_geometry_equal"] = all(r["geometry_equal"] for r in rows)
    summary["all_repeatable"] = all(r["repeatable"] for r in rows)
    summary["min_voi_recall"] = min(r["voi_recall"] for r in rows)
    Path(args.out).write_text(json.dumps({"machine": describe_machine(), "summary": summary, "cases": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
