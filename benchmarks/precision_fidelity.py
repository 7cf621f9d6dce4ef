"""Reduced-precision variants of the bundled demo package beyond their gate: full cascades in FP32,
FP16 and INT8 on phantoms of every shared KiTS19 label map that is NOT in the calibration set
(neither calibrated on, nor probed by the INT8 sensitivity search, nor judged by the gate).

For each case: composite Dice against the reference labels per precision, and each variant's
composite Dice and voxel agreement against FP32's output.

    python benchmarks/precision_fidelity.py [KITS19_DIR] --calibration work/calib_kits \
        [--out benchmarks/results/precision_fidelity.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kitsrt.bench.latency import describe_machine
from kitsrt.calibration.dataset import load_manifest
from kitsrt.io import read_label_map
from kitsrt.eval.metrics import score_case
from kitsrt.phantom import synthesize_ct
from kitsrt.runtime.segmenter import Segmenter

PRECISIONS = ("fp32", "fp16", "int8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kits19", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/kits19"))
    parser.add_argument("--calibration", required=True, help="The calibration set the variants were made from.")
    parser.add_argument("--out", default="benchmarks/results/precision_fidelity.json")
    args = parser.parse_args()
    excluded = {entry["case"] for entry in load_manifest(Path(args.calibration))["sources"]}
    segmenters = {p: Segmenter.load(threads=2, precision=p) for p in PRECISIONS}
    rows = []
    try:
        for label_path in sorted(Path(args.kits19).glob("case_*/segmentation.nii.gz")):
            case = label_path.parent.name
            if case in excluded:
                continue
            labels = read_label_map(label_path)
            ct = synthesize_ct(labels, seed=int(case.split("_")[1]))
            spacing = labels.geometry.array_spacing_mm
            out = {p: s.segment(ct).labels for p, s in segmenters.items()}
            row = {"case": case}
            for p in PRECISIONS:
                row[f"{p}_vs_truth"] = score_case(out[p], labels.array, spacing).composite_dice
            for p in PRECISIONS[1:]:
                row[f"{p}_vs_fp32"] = score_case(out[p], out["fp32"], spacing).composite_dice
                row[f"{p}_voxel_agreement"] = float((out[p] == out["fp32"]).mean())
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    finally:
        for s in segmenters.values():
            s.close()
    summary = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "case"}
    for p in PRECISIONS[1:]:
        summary[f"{p}_delta_vs_truth"] = summary[f"{p}_vs_truth"] - summary["fp32_vs_truth"]
        summary[f"{p}_min_vs_fp32"] = min(r[f"{p}_vs_fp32"] for r in rows)
    summary["cases"] = len(rows)
    Path(args.out).write_text(json.dumps({"machine": describe_machine(), "calibration_set_cases": sorted(excluded),
                                          "summary": summary, "cases": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
