"""Model cards: the JSON beside each ONNX file that says how to feed it and where it came from."""

from __future__ import annotations

import platform
from dataclasses import asdict
from importlib import metadata

DEMO_DISCLAIMER = ("Demo model trained on synthetic CT phantoms built around KiTS19 label maps; "
                   "NOT a clinical model and not validated on real CT.")


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("kitsrt", "torch", "onnx", "onnxruntime", "numpy", "SimpleITK"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


SCALING = {"window-symmetric": "clip HU to hu_window, then scale linearly to [-1, 1]",
           "window-unit": "clip HU to hu_window, then scale linearly to [0, 1]",
           "ct-zscore": "clip HU to clip_hu, subtract mean_hu, divide by std_hu"}


def build_card(checkpoint, onnx_sha256: str, stage: dict, parity: dict, opset: int) -> dict:
    """The card of one exported network. ``stage`` gives name, spacing_mm, hu_window and optionally
    ``normalization`` (the pipeline's tagged normalisation; default: window to [-1, 1]) and ``labels``."""
    config = checkpoint.config
    return {
        "card_version": 1,
        "stage": stage.get("name", ""),
        "precision": "fp32",
        "architecture": asdict(config),
        "input": {"name": "image", "shape": ["N", 1, "D", "H", "W"], "dtype": "float32",
                  "axes": "z, y, x of an LPS-aligned isotropic grid (kitsrt.runtime.preprocess)",
                  "divisibility": config.divisibility},
        "output": {"name": "logits", "shape": ["N", config.num_classes, "D", "H", "W"], "dtype": "float32"},
        "spacing_mm": stage["spacing_mm"],
        "hu_window": list(stage["hu_window"]),
        "normalization": stage.get("normalization", {"kind": "window-symmetric", "hu_window": list(stage["hu_window"])}),
        "scaling": SCALING[stage.get("normalization", {}).get("kind", "window-symmetric")],
        "labels": stage.get("labels", {"0": "background", "1": "kidney", "2": "tumor"}),
        "training": checkpoint.training,
        "provenance": stage.get("provenance", ""),
        "onnx_sha256": onnx_sha256,
        "opset": opset,
        "parity_vs_torch": parity,
        "tools": tool_versions(),
        "disclaimer": stage.get("disclaimer", ""),
        # What the network was trained on, for the runtime's quality warnings: contrast_enhanced
        # (bool) and spacing_mm {in_plane: [lo, hi], slice: [lo, hi]}.
        "training_data": stage.get("training_data", {}),
    }
