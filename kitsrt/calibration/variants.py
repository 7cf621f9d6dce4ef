"""Build, gate and install the reduced-precision variants of every network of a package, by role.

Works the same on every pipeline kind (``cascade``: coarse, fine; ``nested``: kidney, tumor;
``sliding-window``: fold_0, fold_1, ...): variants are made under temporary names, gated on the whole
package, and only then renamed to ``<role>.<precision>.onnx`` with a card ``<role>.<precision>.json``
that records the gate.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import onnx

from kitsrt.calibration.dataset import check_set_matches, load_manifest, role_arrays
from kitsrt.calibration.gate import run_gate
from kitsrt.calibration.precision import (
    QUANTIZED_OPS,
    check_tensorrt_qdq,
    convert_fp16,
    quantizable_nodes,
    quantize_int8,
)
from kitsrt.calibration.sensitivity import label_agreement, search_float_nodes
from kitsrt.engines import create_backend
from kitsrt.errors import AccuracyGateError, ModelPackageError
from kitsrt.io import sha256_of, write_text_atomic
from kitsrt.io.files import discard_temporary, temporary_name
from kitsrt.runtime.inference import run_network
from kitsrt.runtime.kinds import Role, roles_of
from kitsrt.runtime.package import load_package, read_card


def _make(package, role: Role, precision: str, method: str, set_folder: Path, manifest: dict,
          op_types: list[str] | None = None, target_agreement: float = 0.0, probe_inputs: int = 4,
          threads: int = 0) -> tuple[Path, dict | None]:
    """A gated-to-be variant of ``role`` under a temporary name, and the mixed-precision search
    behind it (INT8)."""
    network = role.network
    fp32 = package.model_path(network)
    tmp = temporary_name(fp32.with_name(f"{fp32.stem}.{precision}"), ".onnx")
    if precision == "fp16":
        convert_fp16(fp32, tmp)
        return tmp, None
    arrays = role_arrays(set_folder, manifest, role.name, "calibration")
    if not arrays:
        raise ModelPackageError(f"{set_folder}: no {role.name} calibration inputs in the set (every case held "
                                "out?); rebuild it with more cases or a smaller --holdout")
    candidates = quantizable_nodes(onnx.load(str(fp32)), op_types)
    if not candidates:
        raise ModelPackageError(f"{fp32}: no {', '.join(op_types or QUANTIZED_OPS)} node to quantize besides the "
                                "first and last convolutions; use --precision fp16 for this network")
    calibration = {"patch": role.calibration_patch, "pad_value": role.pad_value}
    with tempfile.TemporaryDirectory(prefix="kitsrt-int8-") as scratch:
        ranges = Path(scratch) / "ranges.json"
        search, probes = None, []
        if target_agreement > 0:
            probes = arrays[::max(1, len(arrays) // probe_inputs)][:probe_inputs]
            search = _search(role, fp32, arrays, probes, method, op_types, candidates, ranges, Path(scratch),
                             target_agreement, threads)
            if len(search.float_nodes) == len(candidates):
                raise ModelPackageError(
                    f"{fp32}: no INT8 node keeps {role.name} label agreement >= {target_agreement} "
                    f"(all quantized: {search.agreement_all_quantized:.4f}); lower --target-agreement")
        keep_float = set(search.float_nodes) if search else set()
        quantize_int8(fp32, tmp, arrays, method, network.input_name, op_types,
                      [n for n in candidates if n not in keep_float], ranges, **calibration)
    problems = check_tensorrt_qdq(onnx.load(str(tmp)))
    if problems:
        discard_temporary(tmp)
        raise ModelPackageError(f"{fp32}: INT8 model is not TensorRT-ready: {'; '.join(problems[:3])}")
    mixed = None
    if search is not None:
        mixed = {**search.to_dict(), "probe_inputs": len(probes), "quantized_nodes": len(candidates) - len(keep_float),
                 "candidate_nodes": len(candidates)}
    return tmp, mixed


def _search(role: Role, fp32: Path, arrays, probes, method, op_types, candidates, ranges: Path, scratch: Path,
            target: float, threads: int):
    """Per-layer sensitivity search on calibration-split probes (see kitsrt.calibration.sensitivity),
    comparing the labels as the kind reads them (``role.decide``)."""
    network = role.network
    with create_backend("onnxruntime", str(fp32), threads) as backend:
        reference = [role.decide(run_network(backend, network, volume)) for volume in probes]
    trial = scratch / "trial.onnx"

    def agreement_of(nodes: list[str]) -> float:
        if not nodes:
            return 1.0
        quantize_int8(fp32, trial, arrays, method, network.input_name, op_types, nodes, ranges,
                      role.calibration_patch, role.pad_value)
        with create_backend("onnxruntime", str(trial), threads) as backend:
            labels = [role.decide(run_network(backend, network, volume)) for volume in probes]
        return label_agreement(reference, labels, role.classes)

    return search_float_nodes(candidates, agreement_of, target)


def make_variants(package_dir: Path | None, set_folder: Path, precision: str, method: str,
                  max_dice_drop: float, force: bool, threads: int = 0, op_types: list[str] | None = None,
                  target_agreement: float = 0.0, probe_inputs: int = 4) -> dict:
    """Make, gate and install ``precision`` variants of every network of the package (any kind):
    ``<role>.<precision>.onnx`` and its card; returns the gate object.

    ``target_agreement`` > 0 (INT8) keeps the most sensitive nodes in float until each role's label
    maps on ``probe_inputs`` calibration inputs agree with FP32 at least that much (worst
    foreground-class Dice).
    """
    package = load_package(package_dir)
    manifest = load_manifest(set_folder)
    check_set_matches(manifest, package, set_folder)
    made: dict[str, Path] = {}
    mixed: dict[str, dict | None] = {}
    try:
        for name, role in roles_of(package.spec).items():
            made[name], mixed[name] = _make(package, role, precision, method, set_folder, manifest,
                                            op_types, target_agreement, probe_inputs, threads)
        gate = run_gate(package, made, set_folder, manifest, precision, method, max_dice_drop, threads)
        gate["quantized_op_types"] = (op_types or QUANTIZED_OPS) if precision == "int8" else None
        gate["float_nodes"] = {name: m["float_nodes"] for name, m in mixed.items() if m is not None} or None
        if not gate["passed"] and not force:
            raise _refused(f"{precision} variant", gate, max_dice_drop, "Try another --method or --force")
        for name, tmp in made.items():
            _install(package, name, precision, tmp, gate, method, manifest, mixed[name])
        return gate
    finally:
        for tmp in made.values():
            discard_temporary(tmp)


def _install(package, role: str, precision: str, tmp: Path, gate: dict, method: str, manifest: dict,
             mixed_precision: dict | None) -> None:
    network = package.network(role)
    fp32 = package.model_path(network)
    final = fp32.with_name(f"{fp32.stem}.{precision}.onnx")
    card = read_card(fp32.with_suffix(".json"))
    card.update({"precision": precision, "onnx_sha256": sha256_of(tmp), "fp32_sha256": network.sha256,
                 "gate": gate, "mixed_precision": mixed_precision,
                 "calibration": None if precision == "fp16" else {
                     "method": method, "inputs": len([1 for e in manifest["sources"] if e["split"] == "calibration"
                                                       for _ in e["files"].get(role, [])]),
                     "set_seed": manifest["seed"], "set_sources": len(manifest["sources"])}})
    card.pop("weights_sha256", None)
    os.replace(tmp, final)
    write_text_atomic(json.dumps(card, indent=2) + "\n", final.with_suffix(".json"), overwrite=True)


def gate_runtime_precision(package_dir: Path | None, set_folder: Path, precision: str, max_dice_drop: float,
                           force: bool, threads: int = 0, backend: str = "openvino") -> dict:
    """Gate a runtime precision (bf16: OpenVINO computing the FP32 files in BF16) exactly like a
    file variant, and record the result in ``<model>.<precision>.json`` beside each FP32 file (no new
    ONNX file: the card names the FP32 file's SHA-256 and the backend). Returns the gate object."""
    package = load_package(package_dir)
    manifest = load_manifest(set_folder)
    check_set_matches(manifest, package, set_folder)
    files = {name: package.model_path(network) for name, network in package.spec.networks().items()}
    gate = run_gate(package, files, set_folder, manifest, precision, None, max_dice_drop, threads, backend, precision)
    if not gate["passed"] and not force:
        raise _refused(f"{precision} on {backend}", gate, max_dice_drop, "Use --precision fp32, or --force")
    for name, fp32 in files.items():
        card = read_card(fp32.with_suffix(".json"))
        card.update({"precision": precision, "onnx_sha256": sha256_of(fp32), "fp32_sha256": sha256_of(fp32),
                     "runtime_precision": {"backend": backend, "inference_precision": precision,
                                           "note": "no file of its own: the FP32 ONNX file, computed in this precision"},
                     "gate": gate, "mixed_precision": None, "calibration": None})
        card.pop("weights_sha256", None)
        write_text_atomic(json.dumps(card, indent=2) + "\n", fp32.with_name(f"{fp32.stem}.{precision}.json"),
                          overwrite=True)
    return gate


def _refused(what: str, gate: dict, max_dice_drop: float, advice: str) -> AccuracyGateError:
    """The one-line refusal of a variant whose gate failed (exit 5)."""
    return AccuracyGateError(
        f"{what} refused: composite Dice delta {gate['composite_dice_delta']} < -{max_dice_drop} on "
        f"{gate['heldout_cases']} held-out cases (argmax agreement {gate['argmax_agreement']:.4f}); "
        f"nothing written. {advice}")
