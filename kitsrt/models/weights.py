"""Rebuild a network from its model card and the pickle-free ``.npz`` weights beside its ONNX file
(the torch reference backend and the benchmark's torch baseline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def model_from_package(weights: Path, card: dict):
    """Rebuild the card's architecture and load ``weights`` into it (eval mode)."""
    import torch

    from kitsrt.models import build_model, config_from_dict

    model = build_model(config_from_dict(card["architecture"]))
    with np.load(weights, allow_pickle=False) as data:
        state = {name: torch.from_numpy(data[name]) for name in data.files}
    model.load_state_dict(state)
    return model.eval()
