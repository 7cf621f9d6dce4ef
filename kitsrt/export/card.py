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


def build_card(checkpoint, onnx_sha256: str, stage: dict, parity: dict, opset: int) -> dict:
    """The card of one exported network. ``stage`` gives name, spacing_mm and hu_window."""
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
        "scaling": "clip HU to hu_window, then scale linearly to [-1, 1]",
        "labels": {"0": "background", "1": "kidney", "2": "tumor"},
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
