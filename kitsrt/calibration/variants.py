"""Build, gate and install the reduced-precision variants of a package's two networks.

Variants are made under temporary names, gated, and only then renamed to
``<stage>.<precision>.onnx`` with a card ``<stage>.<precision>.json`` that records the gate.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import onnx

from kitsrt.calibration.dataset import load_manifest, stage_arrays
from kitsrt.calibration.gate import run_gate
from kitsrt.calibration.precision import QUANTIZED_OPS, check_tensorrt_qdq, convert_fp16, quantize_int8
from kitsrt.errors import AccuracyGateError, ModelPackageError
from kitsrt.io import sha256_of, write_text_atomic
from kitsrt.runtime.package import load_package

STAGES = ("coarse", "fine")


def _make(package, stage_name: str, precision: str, method: str, set_folder: Path, manifest: dict,
          op_types: list[str] | None = None) -> Path:
    stage = getattr(package.spec, stage_name)
    fp32 = package.model_path(stage)
    tmp = fp32.with_name(f".{fp32.stem}.{precision}.partial-{uuid.uuid4().hex[:8]}.onnx")
    if precision == "fp16":
        convert_fp16(fp32, tmp)
        return tmp
    arrays = stage_arrays(set_folder, manifest, stage_name, "calibration")
    if not arrays:
        raise ModelPackageError(f"{set_folder}: no {stage_name} calibration inputs in the set")
    quantize_int8(fp32, tmp, arrays, method, stage.input_name, op_types)
    problems = check_tensorrt_qdq(onnx.load(str(tmp)))
    if problems:
        tmp.unlink(missing_ok=True)
        raise ModelPackageError(f"{fp32}: INT8 model is not TensorRT-ready: {'; '.join(problems[:3])}")
    return tmp


def make_variants(package_dir: Path | None, set_folder: Path, precision: str, method: str,
                  max_dice_drop: float, force: bool, threads: int = 0, op_types: list[str] | None = None) -> dict:
    package = load_package(package_dir)
    manifest = load_manifest(set_folder)
    if manifest.get("coarse_sha256") != package.spec.coarse.sha256:
        raise ModelPackageError(f"{set_folder}: calibration set's VOIs were placed by another coarse model "
                                f"({manifest.get('coarse_sha256')}); rebuild it with `kitsrt calibrate` for this package")
    made: dict[str, Path] = {}
    try:
        for stage_name in STAGES:
            made[stage_name] = _make(package, stage_name, precision, method, set_folder, manifest, op_types)
        gate = run_gate(package, made, set_folder, manifest, precision, method, max_dice_drop, threads)
        gate["quantized_op_types"] = (op_types or QUANTIZED_OPS) if precision == "int8" else None
        if not gate["passed"] and not force:
            raise AccuracyGateError(
                f"{precision} variant refused: composite Dice delta {gate['composite_dice_delta']} "
                f"< -{max_dice_drop} on {gate['heldout_cases']} held-out cases (argmax agreement "
                f"{gate['argmax_agreement']:.4f}); nothing written. Try another --method or --force")
        for stage_name, tmp in made.items():
            _install(package, stage_name, precision, tmp, gate, method, manifest)
        return gate
    finally:
        for tmp in made.values():
            tmp.unlink(missing_ok=True)


def _install(package, stage_name: str, precision: str, tmp: Path, gate: dict, method: str, manifest: dict) -> None:
    stage = getattr(package.spec, stage_name)
    fp32 = package.model_path(stage)
    final = fp32.with_name(f"{fp32.stem}.{precision}.onnx")
    card = json.loads(fp32.with_suffix(".json").read_text())
    card.update({"precision": precision, "onnx_sha256": sha256_of(tmp), "fp32_sha256": stage.sha256,
                 "gate": gate,
                 "calibration": None if precision == "fp16" else {
                     "method": method, "inputs": len([1 for e in manifest["sources"] if e["split"] == "calibration"
                                                       for _ in e["files"][stage_name]]),
                     "set_seed": manifest["seed"], "set_sources": len(manifest["sources"])}})
    card.pop("weights_sha256", None)
    os.replace(tmp, final)
    write_text_atomic(json.dumps(card, indent=2) + "\n", final.with_suffix(".json"), overwrite=True)
