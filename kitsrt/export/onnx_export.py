"""Checkpoint -> ONNX -> parity check -> model card. Nothing is left on disk unless every step passes.

The ONNX graph has one input ``image`` (N, 1, D, H, W) float32 and one output ``logits``
(N, C, D, H, W), dynamic in N, D, H and W (D, H, W multiples of the card's divisibility); opset 17.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from kitsrt.errors import AccuracyGateError, InputError, ModelPackageError
from kitsrt.export.card import build_card
from kitsrt.export.weights import save_weights
from kitsrt.io import sha256_of
from kitsrt.models.vbnet import VBNet, VBNetConfig, build_model

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
PARITY_TOLERANCE = 1e-4  # max |logit difference|, FP32 on CPU


@dataclass(frozen=True)
class Checkpoint:
    model: VBNet
    config: VBNetConfig
    training: dict  # the trainer's config.json (stage, steps, seed, ...), or {} when absent
    path: Path


def _read_config(checkpoint: Path, config_path: Path | None) -> dict:
    path = config_path or checkpoint.parent / "config.json"
    if not path.exists():
        raise ModelPackageError(f"{path}: no config.json next to the checkpoint; pass --config")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelPackageError(f"{path}: not valid JSON ({exc})") from None


def _state_dict_mismatch(model: torch.nn.Module, state: dict) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {'; '.join(shapes[:2])}")
    return "; ".join(parts)


def load_checkpoint(path: Path, config_path: Path | None = None) -> Checkpoint:
    """Load a trainer checkpoint (or a bare state_dict) safely: ``weights_only=True``, so an
    untrusted file cannot run code."""
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint")
    raw = _read_config(path, config_path)
    if not isinstance(raw, dict) or not isinstance(raw.get("model", raw), dict):
        raise ModelPackageError(f"{config_path or path.parent / 'config.json'}: expected a JSON object "
                                "(the config.json `kitsrt train` writes)")
    try:
        config = VBNetConfig.from_dict(raw.get("model", raw))
    except (ValueError, TypeError) as exc:
        raise ModelPackageError(f"{config_path or path.parent / 'config.json'}: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise ModelPackageError(f"{path}: not a loadable PyTorch checkpoint ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelPackageError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    model = build_model(config)
    mismatch = _state_dict_mismatch(model, state)
    if mismatch:
        raise ModelPackageError(f"{path}: checkpoint does not match its config ({mismatch})")
    model.load_state_dict(state)
    model.eval()
    return Checkpoint(model, config, raw if "model" in raw else {}, path)


def _to_onnx(model: torch.nn.Module, divisibility: int, path: Path) -> None:
    dummy = torch.zeros(1, 1, *(divisibility * 4,) * 3)
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def parity(model: torch.nn.Module, onnx_path: Path, inputs: list[np.ndarray]) -> dict:
    """Run PyTorch and onnxruntime (CPU, FP32) on the same inputs: max |logit difference| and the
    fraction of voxels whose argmax class agrees."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst, agree, total = 0.0, 0, 0
    for x in inputs:
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
        agree += int((expected.argmax(1) == got.argmax(1)).sum())
        total += expected[:, 0].size
    return {"max_abs_logit_diff": worst, "argmax_agreement": agree / total, "inputs": len(inputs),
            "shapes": [list(x.shape) for x in inputs], "tolerance": PARITY_TOLERANCE}


def parity_inputs(divisibility: int, phantom_volume: np.ndarray | None, seed: int = 0) -> list[np.ndarray]:
    """Random inputs of two shapes (uniform in the scaled range [-1, 1]) plus a phantom crop."""
    rng = np.random.default_rng(seed)
    d = divisibility
    inputs = [rng.uniform(-1, 1, (1, 1, 4 * d, 3 * d, 5 * d)).astype(np.float32),
              rng.uniform(-1, 1, (1, 1, 2 * d, 6 * d, 4 * d)).astype(np.float32)]
    if phantom_volume is not None:
        shape = [max(d, (n // d) * d) for n in phantom_volume.shape]
        crop = np.full(shape, -1.0, np.float32)
        region = tuple(slice(0, min(a, b)) for a, b in zip(shape, phantom_volume.shape))
        crop[region] = phantom_volume[region]
        inputs.append(crop[None, None])
    return inputs


def export(checkpoint: Checkpoint, onnx_path: Path, stage: dict, phantom_volume: np.ndarray | None = None,
           overwrite: bool = False) -> dict:
    """Export, check parity, write ``onnx_path`` and its card (``.json`` beside it). Returns the card.

    ``stage`` holds the preprocessing facts for the card: spacing_mm, hu_window, stage name.
    """
    card_path = onnx_path.with_suffix(".json")
    for path in (onnx_path, card_path):
        if path.exists() and not overwrite:
            raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
    if not onnx_path.parent.exists():
        raise InputError(f"{onnx_path.parent}: output folder does not exist")
    tmp = onnx_path.with_name(f".{onnx_path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        _to_onnx(checkpoint.model, checkpoint.config.divisibility, tmp)
        report = parity(checkpoint.model, tmp, parity_inputs(checkpoint.config.divisibility, phantom_volume))
        if report["max_abs_logit_diff"] > PARITY_TOLERANCE:
            raise AccuracyGateError(f"{checkpoint.path}: ONNX parity failed: max |Δlogit| "
                                    f"{report['max_abs_logit_diff']:.2e} > {PARITY_TOLERANCE:.0e} "
                                    f"(argmax agreement {report['argmax_agreement']:.5f}); nothing written")
        weights_tmp = tmp.with_suffix(".weights.npz")
        save_weights(checkpoint.model, weights_tmp)
        card = build_card(checkpoint, sha256_of(tmp), stage, report, OPSET)
        card["weights_sha256"] = sha256_of(weights_tmp)
        os.replace(weights_tmp, onnx_path.with_suffix(".weights.npz"))
        os.replace(tmp, onnx_path)
        card_path.write_text(json.dumps(card, indent=2))
        return card
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".weights.npz").unlink(missing_ok=True)
