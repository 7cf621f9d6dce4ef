"""The accuracy gate for a reduced-precision variant: it must not cost more than ``max_dice_drop``.

Two checks, both on the held-out split of a calibration set (never used for calibration):
* per stage, network outputs on the held-out inputs: argmax agreement with FP32, max |Δlogit|;
* full cascades of the held-out phantoms: composite Dice against the reference labels for FP32 and
  for the variant (the delta decides), and the variant's composite Dice against FP32's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kitsrt.calibration.dataset import stage_arrays
from kitsrt.engines import create_backend
from kitsrt.io import read_label_map
from kitsrt.eval.metrics import score_case
from kitsrt.phantom import synthesize_ct
from kitsrt.runtime.inference import run_network
from kitsrt.runtime.package import ModelPackage
from kitsrt.runtime.segmenter import Segmenter


def stage_agreement(package: ModelPackage, stage_name: str, variant: Path, arrays: list[np.ndarray],
                    threads: int = 0, backend: str = "onnxruntime", runtime_precision: str = "fp32") -> dict:
    """FP32 on onnxruntime vs ``variant`` on ``backend`` at ``runtime_precision`` (bf16: the FP32 file)."""
    stage = getattr(package.spec, stage_name)
    with create_backend("onnxruntime", str(package.model_path(stage)), threads) as fp32, \
            create_backend(backend, str(variant), threads, runtime_precision) as reduced:
        agree = total = 0
        worst = 0.0
        for volume in arrays:
            a, b = run_network(fp32, stage, volume), run_network(reduced, stage, volume)
            agree += int((a.argmax(0) == b.argmax(0)).sum())
            total += a[0].size
            worst = max(worst, float(np.abs(a - b).max()))
    return {"argmax_agreement": agree / max(total, 1), "max_abs_logit_diff": worst, "inputs": len(arrays)}


def cascade_dice(package: ModelPackage, variants: dict[str, Path], set_folder: Path, manifest: dict,
                 threads: int = 0, backend: str = "onnxruntime", runtime_precision: str = "fp32") -> dict:
    """Composite Dice of FP32 and of the variant cascade on each held-out phantom with labels."""
    held_out = [e for e in manifest["sources"] if e["split"] == "holdout" and "labels" in e]
    fp32 = Segmenter.load(package.folder, threads=threads)
    reduced = Segmenter.load(package.folder, backend=backend, threads=threads, precision=runtime_precision,
                             model_files=variants)
    rows = []
    try:
        for entry in held_out:
            labels = read_label_map(set_folder / entry["labels"])
            ct = synthesize_ct(labels, seed=entry["phantom_seed"])
            spacing = labels.geometry.array_spacing_mm
            a, b = fp32.segment(ct).labels, reduced.segment(ct).labels
            rows.append({"case": entry["case"],
                         "fp32_vs_truth": score_case(a, labels.array, spacing).composite_dice,
                         "variant_vs_truth": score_case(b, labels.array, spacing).composite_dice,
                         "variant_vs_fp32": score_case(b, a, spacing).composite_dice,
                         "voxel_agreement": float((a == b).mean())})
    finally:
        fp32.close()
        reduced.close()
    mean = {k: float(np.mean([r[k] for r in rows])) if rows else None
            for k in ("fp32_vs_truth", "variant_vs_truth", "variant_vs_fp32", "voxel_agreement")}
    return {"cases": rows, "mean": mean}


def run_gate(package: ModelPackage, variants: dict[str, Path], set_folder: Path, manifest: dict,
             precision: str, method: str, max_dice_drop: float, threads: int = 0, backend: str = "onnxruntime",
             runtime_precision: str = "fp32") -> dict:
    """The ``gate`` object recorded in each variant's card; ``passed`` says whether it may ship.
    ``backend`` and ``runtime_precision`` run the variant side (bf16: openvino on the FP32 files)."""
    stages = {name: stage_agreement(package, name, path, stage_arrays(set_folder, manifest, name, "holdout"), threads,
                                    backend, runtime_precision)
              for name, path in variants.items()}
    cascades = cascade_dice(package, variants, set_folder, manifest, threads, backend, runtime_precision)
    mean = cascades["mean"]
    delta = None if mean["fp32_vs_truth"] is None else mean["variant_vs_truth"] - mean["fp32_vs_truth"]
    agreement = float(np.mean([s["argmax_agreement"] for s in stages.values()]))
    return {
        "precision": precision,
        "backend": backend,
        "calibration_method": method if precision == "int8" else None,
        "heldout_cases": len(cascades["cases"]),
        "composite_dice_fp32": mean["fp32_vs_truth"],
        "composite_dice_variant": mean["variant_vs_truth"],
        "composite_dice_delta": delta,
        "composite_dice_vs_fp32": mean["variant_vs_fp32"],
        "argmax_agreement": agreement,
        "stages": stages,
        "cases": cascades["cases"],
        "max_dice_drop": max_dice_drop,
        "passed": delta is not None and delta >= -max_dice_drop,
    }
