"""PyTorch eager reference backend: rebuilds the VB-Net from the model card and loads the weights
saved beside the ONNX file (``<name>.weights.npz``). Optional: it needs the export extra (torch),
which the runtime itself never imports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kitsrt.engines.base import Backend, TensorInfo
from kitsrt.errors import ModelPackageError


class TorchBackend(Backend):
    """The network rebuilt in PyTorch eager; tensor names and class count come from the model card."""

    name = "torch"

    def __init__(self, model_path: str, threads: int = 0, device: str = "cpu"):
        super().__init__(model_path)
        self.threads = threads
        self.device = device
        self._model = None
        self._card: dict = {}

    def loaded_file(self) -> str:
        return str(Path(self.model_path).with_suffix(".weights.npz"))

    def _load(self) -> None:
        from kitsrt.models.weights import model_from_package
        from kitsrt.models import require_torch

        torch = require_torch()

        card_path = Path(self.model_path).with_suffix(".json")
        weights = Path(self.model_path).with_suffix(".weights.npz")
        for needed in (card_path, weights):
            if not needed.exists():
                raise ModelPackageError(f"{needed}: the torch backend needs the card and weights beside the ONNX file")
        if self.threads:
            torch.set_num_threads(self.threads)
        self._card = json.loads(card_path.read_text())
        model = model_from_package(weights, self._card)
        self._model = model.to(self.device).eval()
        self._torch = torch

    def _infer(self, feed):
        torch = self._torch
        (x,) = feed.values()
        with torch.inference_mode():
            logits = self._model(torch.from_numpy(x).to(self.device))
        return {self._card["output"]["name"]: logits.float().cpu().numpy()}

    def _tensor(self, which: str) -> TensorInfo:
        info = self._card[which]
        return TensorInfo(info["name"], np.dtype(info.get("dtype", "float32")), tuple(info["shape"]))

    def inputs(self) -> list[TensorInfo]:
        return [self._tensor("input")]

    def outputs(self) -> list[TensorInfo]:
        return [self._tensor("output")]

    def describe(self) -> str:
        return f"torch-eager ({self.device}, {self.threads or 'all'} threads)"
