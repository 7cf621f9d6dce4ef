"""The accuracy gate for a reduced-precision variant: it must not cost more than ``max_dice_drop``.

Two checks, both on the held-out split of a calibration set (never used for calibration), for any
pipeline kind:
* per network role, outputs on the held-out inputs: label agreement with FP32 (the labels as the kind
  reads them: argmax, sigmoid > 0.5 or nnU-Net regions; recorded as ``argmax_agreement``), max |Δlogit|;
* the whole package through ``Segmenter`` on the held-out cases: composite Dice against the reference
  labels for FP32 and for the variant (the delta decides), and the variant's composite Dice against FP32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kitsrt.calibration.dataset import role_arrays
from kitsrt.engines import create_backend
from kitsrt.eval.metrics import score_case
from kitsrt.errors import InputError
from kitsrt.io import read_ct, read_label_map, sha256_of
from kitsrt.phantom import synthesize_ct
from kitsrt.runtime.inference import run_network
from kitsrt.runtime.kinds import Role, roles_of
from kitsrt.runtime.package import ModelPackage
from kitsrt.runtime.segmenter import Segmenter


def role_agreement(package: ModelPackage, role: Role, variant: Path, arrays: list[np.ndarray],
                   threads: int = 0, backend: str = "onnxruntime", runtime_precision: str = "fp32") -> dict:
    """FP32 on onnxruntime vs ``variant`` on ``backend`` at ``runtime_precision`` (bf16: the FP32 file)."""
    network = role.network
    with create_backend("onnxruntime", str(package.model_path(network)), threads) as fp32, \
            create_backend(backend, str(variant), threads, runtime_precision) as reduced:
        agree = total = 0
        worst = 0.0
        for volume in arrays:
            a, b = run_network(fp32, network, volume), run_network(reduced, network, volume)
            agree += int((role.decide(a) == role.decide(b)).sum())
            total += a[0].size
            worst = max(worst, float(np.abs(a - b).max()))
    return {"argmax_agreement": agree / max(total, 1), "max_abs_logit_diff": worst, "inputs": len(arrays)}


def heldout_ct(set_folder: Path, entry: dict, labels):
    """The CT of a held-out case: its phantom re-synthesised from the stored labels and seed, or the
    source file when it was real imaging."""
    if entry.get("phantom_seed") is not None:
        return synthesize_ct(labels, seed=entry["phantom_seed"])
    path = Path(entry["path"])
    if not path.is_file() or (entry.get("sha256") and sha256_of(path) != entry["sha256"]):
        raise InputError(f"{set_folder}: held-out case {entry['case']}'s scan {path} is missing or changed since "
                         "the calibration set was made; rebuild the set with `kitsrt calibrate`")
    return read_ct(path)


def package_dice(package: ModelPackage, variants: dict[str, Path], set_folder: Path, manifest: dict,
                 threads: int = 0, backend: str = "onnxruntime", runtime_precision: str = "fp32") -> dict:
    """Composite Dice of the FP32 package and of the package with ``variants`` (role -> file) on each
    held-out case with labels, whatever the package's kind."""
    held_out = [e for e in manifest["sources"] if e["split"] == "holdout" and "labels" in e]
    fp32 = Segmenter.load(package.folder, threads=threads)
    try:
        reduced = Segmenter.load(package.folder, backend=backend, threads=threads, precision=runtime_precision,
                                 model_files=variants)
    except BaseException:
        fp32.close()
        raise
    rows = []
    try:
        for entry in held_out:
            labels = read_label_map(set_folder / entry["labels"])
            ct = heldout_ct(set_folder, entry, labels)
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


cascade_dice = package_dice  # the name before pipeline kinds


def run_gate(package: ModelPackage, variants: dict[str, Path], set_folder: Path, manifest: dict,
             precision: str, method: str | None, max_dice_drop: float, threads: int = 0,
             backend: str = "onnxruntime", runtime_precision: str = "fp32") -> dict:
    """The ``gate`` object recorded in each variant's card; ``passed`` says whether it may ship.
    ``variants`` maps role -> file; ``backend`` and ``runtime_precision`` run the variant side (bf16:
    openvino on the FP32 files)."""
    roles = roles_of(package.spec)
    stages = {name: role_agreement(package, roles[name], path, role_arrays(set_folder, manifest, name, "holdout"),
                                   threads, backend, runtime_precision)
              for name, path in variants.items()}
    runs = package_dice(package, variants, set_folder, manifest, threads, backend, runtime_precision)
    mean = runs["mean"]
    delta = None if mean["fp32_vs_truth"] is None else mean["variant_vs_truth"] - mean["fp32_vs_truth"]
    agreement = float(np.mean([s["argmax_agreement"] for s in stages.values()]))
    return {
        "precision": precision,
        "backend": backend,
        "kind": package.spec.kind,
        "calibration_method": method if precision == "int8" else None,
        "heldout_cases": len(runs["cases"]),
        "composite_dice_fp32": mean["fp32_vs_truth"],
        "composite_dice_variant": mean["variant_vs_truth"],
        "composite_dice_delta": delta,
        "composite_dice_vs_fp32": mean["variant_vs_fp32"],
        "voxel_agreement": mean["voxel_agreement"],
        "argmax_agreement": agreement,
        "stages": stages,
        "cases": runs["cases"],
        "max_dice_drop": max_dice_drop,
        "passed": delta is not None and delta >= -max_dice_drop,
    }
