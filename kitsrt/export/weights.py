"""Network weights as a plain ``.npz`` (no pickle) beside the ONNX file, for the torch reference
backend: the same package then runs in PyTorch eager without a separate checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_weights(model, path: Path) -> None:
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def model_from_package(weights: Path, card: dict):
    """Rebuild the card's architecture and load ``weights`` into it (eval mode)."""
    import torch

    from kitsrt.models.vbnet import VBNetConfig, build_model

    model = build_model(VBNetConfig.from_dict(card["architecture"]))
    with np.load(weights, allow_pickle=False) as data:
        state = {name: torch.from_numpy(data[name]) for name in data.files}
    model.load_state_dict(state)
    return model.eval()
