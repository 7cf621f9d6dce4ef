"""Checkpoint -> ONNX -> parity check -> model card. Nothing is left on disk unless every step passes.

The ONNX graph has one input ``image`` (N, 1, D, H, W) float32 and one output ``logits``
(N, C, D, H, W), dynamic in N, D, H and W (D, H, W multiples of the card's divisibility); opset 17.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from kitsrt.errors import AccuracyGateError, InputError, ModelPackageError
from kitsrt.export.card import build_card
from kitsrt.export.weights import save_weights
from kitsrt.io import sha256_of
from kitsrt.io.files import temporary_sibling
from kitsrt.models import build_model, config_from_dict

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
PARITY_TOLERANCE = 1e-4  # max |logit difference|, FP32 on CPU


@dataclass(frozen=True)
class Checkpoint:
    model: torch.nn.Module
    config: object  # VBNetConfig or VNetConfig
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
        config = config_from_dict(raw.get("model", raw))
    except (ValueError, TypeError) as exc:
        raise ModelPackageError(f"{config_path or path.parent / 'config.json'}: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise ModelPackageError(f"{path}: not a loadable PyTorch checkpoint ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        if "model" in raw and isinstance(state.get("step"), int):
            raw = raw | {"trained_steps": state["step"]}  # where training stopped (--stop-at), not the schedule
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


def _fold_pair(conv: nn.Module, norm: nn.BatchNorm3d) -> nn.Module:
    """``conv`` followed by ``norm`` (eval statistics) as one convolution with a bias."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    folded = copy.deepcopy(conv)
    weight = folded.weight.detach().clone()
    out_axis = 1 if isinstance(conv, nn.ConvTranspose3d) else 0  # ConvTranspose: (in, out, k, k, k)
    shape = [1] * weight.dim()
    shape[out_axis] = -1
    folded.weight = nn.Parameter(weight * scale.reshape(shape))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(norm.running_mean)
    folded.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias.detach())
    return folded


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every BatchNorm3d that directly follows a Conv3d or
    ConvTranspose3d in an ``nn.Sequential`` folded into it. The ONNX exporter folds Conv + BN but
    leaves BN after a ConvTranspose as a separate node; this folds both. Returns (model, count)."""
    folded, count = copy.deepcopy(model).eval(), 0
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if isinstance(conv, (nn.Conv3d, nn.ConvTranspose3d)) and isinstance(norm, nn.BatchNorm3d):
                module[i], module[i + 1] = _fold_pair(conv, norm), nn.Identity()
                count += 1
    return folded, count


def _to_onnx(model: torch.nn.Module, divisibility: int, path: Path) -> None:
    model, _ = fold_batchnorm(model)
    dummy = torch.zeros(1, 1, *(divisibility * 4,) * 3)
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def _labels(logits: np.ndarray) -> np.ndarray:
    """Class per voxel: argmax over channels, or logit > 0 for a single sigmoid channel."""
    return logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1)


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
        agree += int((_labels(expected) == _labels(got)).sum())
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
    with temporary_sibling(onnx_path) as tmp, temporary_sibling(onnx_path, ".weights.npz") as weights_tmp:
        _to_onnx(checkpoint.model, checkpoint.config.divisibility, tmp)
        report = parity(checkpoint.model, tmp, parity_inputs(checkpoint.config.divisibility, phantom_volume))
        if report["max_abs_logit_diff"] > PARITY_TOLERANCE:
            raise AccuracyGateError(f"{checkpoint.path}: ONNX parity failed: max |Δlogit| "
                                    f"{report['max_abs_logit_diff']:.2e} > {PARITY_TOLERANCE:.0e} "
                                    f"(argmax agreement {report['argmax_agreement']:.5f}); nothing written")
        save_weights(checkpoint.model, weights_tmp)
        card = build_card(checkpoint, sha256_of(tmp), stage, report, OPSET)
        card["weights_sha256"] = sha256_of(weights_tmp)
        os.replace(weights_tmp, onnx_path.with_suffix(".weights.npz"))
        os.replace(tmp, onnx_path)
        card_path.write_text(json.dumps(card, indent=2))
        return card


def _preset_of(stage: str):
    from kitsrt.runtime.pipeline import seed002_preset, seed004_preset

    for spec in (seed002_preset(), seed004_preset()):
        if stage in spec.networks():
            return spec
    raise InputError(f"--stage {stage!r}: expected coarse or fine (seed 002), kidney or tumor (seed 004)")


STAGE_LABELS = {"kidney": {"0": "background", "1": "kidney (kidney and tumor as one structure)"},
                "tumor": {"0": "background", "1": "tumor (inside the kidney mask)"}}


def card_facts(stage: str, provenance: str = "", disclaimer: str = "") -> dict:
    """What a network's card says about its input, from its seed's preset: spacing, normalisation,
    labels."""
    network = _preset_of(stage).networks()[stage]
    normalization = network.normalization.model_dump(mode="json")
    facts = {"name": stage, "spacing_mm": list(network.spacing_mm), "normalization": normalization,
             "hu_window": normalization.get("hu_window", normalization.get("clip_hu")), "provenance": provenance,
             "disclaimer": disclaimer}
    if stage in STAGE_LABELS:
        facts["labels"] = STAGE_LABELS[stage]
    return facts


def parity_volume(stage: str) -> np.ndarray:
    """A phantom input of ``stage`` (procedural phantom, seed 11), cut as the runtime cuts it."""
    from kitsrt.phantom import procedural_label_map, synthesize_ct
    from kitsrt.training.data import case_volumes

    labels = procedural_label_map(seed=11)
    ct = synthesize_ct(labels, seed=11)
    return case_volumes(ct, labels, _preset_of(stage), "parity")[stage][0].image
