"""Network weights as a plain ``.npz`` (no pickle) beside the ONNX file, for the torch reference
backend: the same package then runs in PyTorch eager without a separate checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_weights(model, path: Path) -> None:
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
