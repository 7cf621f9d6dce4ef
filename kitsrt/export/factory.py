"""``kitsrt export --factory package.module:build_fn``: any PyTorch network kitsrt does not define.

The factory builds the module (``build_fn(**factory_kwargs)``), the checkpoint's weights are loaded
with ``torch.load(weights_only=True)`` and must fit it exactly, and the module is exported through
``kitsrt.export.module_export`` (ONNX, parity check, card). Example factories: MONAI's
``monai.networks.nets:UNet`` or ``monai.networks.nets:SegResNet`` with their keyword arguments.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError, ModelPackageError
from kitsrt.io import sha256_of

STATE_KEYS = ("state_dict", "model", "network_weights", "model_state_dict")


def resolve_factory(path: str):
    """``"package.module:callable"`` -> the callable; ModelPackageError (exit 4) when it does not import."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise InputError(f"--factory {path!r}: expected package.module:callable, e.g. monai.networks.nets:UNet")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error raised while importing it
        raise ModelPackageError(f"--factory {path}: module {module_name!r} does not import "
                                f"({type(exc).__name__}: {exc})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelPackageError(f"--factory {path}: {module_name} has no callable {attribute!r}")
    return factory


def parse_kwargs(text: str) -> dict:
    try:
        kwargs = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise InputError(f"--factory-kwargs: not valid JSON ({exc})") from None
    if not isinstance(kwargs, dict):
        raise InputError("--factory-kwargs: expected a JSON object of keyword arguments")
    return kwargs


def load_state_dict(path: Path) -> dict:
    """A bare state_dict, or one under a usual key (state_dict, model, network_weights, ...)."""
    import torch

    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelPackageError(f"{path}: not loadable with weights_only=True ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]})") from None
    for key in STATE_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    if not isinstance(state, dict):
        raise ModelPackageError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    return state


def build_module(factory_path: str, kwargs: dict, checkpoint: Path):
    """The factory's module with the checkpoint's weights, eval mode."""
    import torch

    from kitsrt.export.onnx_export import _state_dict_mismatch

    factory = resolve_factory(factory_path)
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise ModelPackageError(f"--factory {factory_path}: building it with {kwargs} failed "
                                f"({type(exc).__name__}: {exc})") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelPackageError(f"--factory {factory_path}: returned a {type(model).__name__}, not a torch.nn.Module")
    state = load_state_dict(checkpoint)
    mismatch = _state_dict_mismatch(model, state)
    if mismatch:
        raise ModelPackageError(f"{checkpoint}: does not fit {factory_path} ({mismatch})")
    model.load_state_dict(state)
    return model.eval()


def export_factory(factory_path: str, kwargs: dict, checkpoint: Path, output: Path,
                   input_shape: tuple[int, int, int, int], overwrite: bool = False) -> dict:
    """Build, load, export and parity-check; returns the card. ``input_shape`` is (C, D, H, W) of the
    example the graph is traced on (spatial axes stay dynamic)."""
    from kitsrt.export.module_export import export_module

    model = build_module(factory_path, kwargs, Path(checkpoint))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, *input_shape)).astype(np.float32),
              rng.standard_normal((2, *input_shape)).astype(np.float32)]
    card = {"stage": Path(output).stem, "source": "factory", "factory": factory_path, "factory_kwargs": kwargs,
            "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_of(checkpoint),
            "input": {"shape": ["N", input_shape[0], "D", "H", "W"], "dtype": "float32",
                      "example_shape": list(input_shape)}}
    return export_module(model, Path(output), inputs, card, overwrite)
