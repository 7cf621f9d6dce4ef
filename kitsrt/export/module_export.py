"""Any ``torch.nn.Module`` -> ONNX -> parity check -> model card (nnU-Net folds, factory networks).

The graph has one input ``image`` (N, C_in, D, H, W) float32 and one output ``logits``
(N, C, D, H, W), dynamic in N, D, H and W; opset 17. Files appear only once parity passed.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from kitsrt.errors import AccuracyGateError, InputError
from kitsrt.export.card import tool_versions
from kitsrt.io import sha256_of
from kitsrt.io.files import temporary_sibling

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
PARITY_TOLERANCE = 1e-4  # max |logit difference|, FP32 on CPU


def to_onnx(model, example: np.ndarray, path: Path) -> None:
    """Trace ``model`` on ``example`` (N, C, D, H, W) and write a checked ONNX file."""
    import onnx
    import torch

    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(example),), str(path), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def module_parity(model, onnx_path: Path, inputs: list[np.ndarray]) -> dict:
    """Max |logit difference| and argmax agreement between PyTorch and onnxruntime (CPU, FP32)."""
    from kitsrt.export.onnx_export import parity

    return parity(model, onnx_path, inputs)


def export_module(model, onnx_path: Path, inputs: list[np.ndarray], card: dict, overwrite: bool = False,
                  tolerance: float = PARITY_TOLERANCE) -> dict:
    """Export ``model`` (eval mode) to ``onnx_path``, check parity on ``inputs``, write the card
    (``.json`` beside it) with the parity, hashes, opset and tool versions added. Returns the card."""
    card_path = onnx_path.with_suffix(".json")
    for path in (onnx_path, card_path):
        if path.exists() and not overwrite:
            raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
    if not onnx_path.parent.is_dir():
        raise InputError(f"{onnx_path.parent}: output folder does not exist")
    with temporary_sibling(onnx_path) as tmp, temporary_sibling(card_path) as card_tmp:
        to_onnx(model, inputs[0], tmp)
        report = module_parity(model, tmp, inputs)
        report["tolerance"] = tolerance
        if report["max_abs_logit_diff"] > tolerance:
            raise AccuracyGateError(f"{onnx_path.name}: ONNX parity failed: max |Δlogit| "
                                    f"{report['max_abs_logit_diff']:.2e} > {tolerance:.0e} (argmax agreement "
                                    f"{report['argmax_agreement']:.5f}); nothing written")
        card = {"card_version": 1, "precision": "fp32", **card,
                "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "onnx_sha256": sha256_of(tmp),
                "opset": OPSET, "parity_vs_torch": report, "tools": tool_versions()}
        card_tmp.write_text(json.dumps(card, indent=2, default=str))
        os.replace(tmp, onnx_path)
        os.replace(card_tmp, card_path)
        return card
