"""Read and check an nnU-Net v2 trained-model folder: plans, dataset.json, the folds' checkpoints.

The folder is the one ``nnUNetPredictor.initialize_from_trained_model_folder`` takes:
``.../DatasetXXX_Name/<trainer>__<plans>__<configuration>/`` with ``plans.json``, ``dataset.json``
and ``fold_N/<checkpoint>.pth``. Every problem is one ``ModelPackageError`` line (exit 4) naming
the file and what differs. Checkpoints are read with ``torch.load(weights_only=True)``; nnU-Net's
training log may hold NumPy scalars, so NumPy's scalar and dtype constructors (data only, no code)
are the one addition to torch's allowlist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kitsrt.errors import ModelPackageError

SUPPORTED_NORMALIZATION = ("CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization")
SUPPORTED_RESAMPLING = "resample_data_or_seg_to_shape"
SUPPORTED_READERS = ("SimpleITKIO",)
NETWORK_MODULE_PREFIX = "dynamic_network_architectures.architectures."
LAYER_MODULE_PREFIX = "torch.nn."


@dataclass(frozen=True)
class FoldCheckpoint:
    fold: str
    path: Path
    checkpoint: dict  # as torch.load returns it: network_weights, init_args, trainer_name, ...


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    plans: dict
    dataset: dict
    configuration_name: str
    configuration: dict  # resolved (inherits_from applied) by nnU-Net's PlansManager
    trainer_name: str
    folds: tuple[FoldCheckpoint, ...]


def _json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ModelPackageError(f"{path.parent}: not an nnU-Net v2 model folder (no {path.name}; expected "
                                f"plans.json, dataset.json and fold_N/checkpoint_final.pth)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelPackageError(f"{path}: {what} is not valid JSON ({exc})") from None


def load_checkpoint_safely(path: Path) -> dict:
    """``torch.load(path, weights_only=True)``; NumPy scalars in the training log are allowed."""
    import numpy as np
    import torch

    allowed = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64))]
    try:
        allowed.append(np._core.multiarray.scalar)
    except AttributeError:  # NumPy < 2
        allowed.append(np.core.multiarray.scalar)
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or unsafe file
        raise ModelPackageError(f"{path}: not loadable with weights_only=True ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise ModelPackageError(f"{path}: not an nnU-Net checkpoint (no 'network_weights' state_dict)")
    return checkpoint


def _fold_names(folder: Path, folds: list[str] | None, checkpoint_name: str) -> list[str]:
    present = sorted(p.parent.name.removeprefix("fold_") for p in folder.glob(f"fold_*/{checkpoint_name}"))
    if folds is None:
        if not present:
            raise ModelPackageError(f"{folder}: no fold_N/{checkpoint_name}; train a fold or pass --checkpoint")
        return present
    missing = [f for f in folds if f not in present]
    if missing:
        raise ModelPackageError(f"{folder}: fold {', '.join(missing)} has no {checkpoint_name} "
                                f"(folds present: {', '.join(present) or 'none'})")
    return folds


def _configuration(plans: dict, name: str, where: Path) -> dict:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if name not in plans.get("configurations", {}):
        raise ModelPackageError(f"{where}: configuration {name!r} not in plans.json (has: "
                                f"{', '.join(plans.get('configurations', {}))})")
    chain, current = [], name
    while current is not None and current not in chain:  # the configuration and what it inherits from
        chain.append(current)
        current = plans["configurations"].get(current, {}).get("inherits_from")
    if not any("architecture" in plans["configurations"].get(c, {}) for c in chain):
        raise ModelPackageError(f"{where}: plans from nnU-Net < 2.2 (configuration {name!r} has no 'architecture'); "
                                "re-plan with nnU-Net >= 2.2")
    try:
        return PlansManager(plans).get_configuration(name).configuration
    except Exception as exc:
        raise ModelPackageError(f"{where}: nnU-Net cannot read configuration {name!r} ({exc})") from None


def check_supported(model: ModelFolder) -> None:
    """Refuse what the sliding-window kind cannot reproduce exactly, naming it."""
    where, config, plans = model.path / "plans.json", model.configuration, model.plans
    name = model.configuration_name
    if len(config["patch_size"]) != 3:
        raise ModelPackageError(f"{where}: configuration {name!r} is 2D; kitsrt imports 3D configurations only "
                                "(3d_fullres, 3d_lowres)")
    if config.get("previous_stage"):
        raise ModelPackageError(f"{where}: configuration {name!r} is a cascade stage (needs "
                                f"{config['previous_stage']!r}); kitsrt imports single-stage configurations")
    if plans.get("image_reader_writer", "SimpleITKIO") not in SUPPORTED_READERS:
        raise ModelPackageError(f"{where}: image_reader_writer {plans['image_reader_writer']!r} is not supported "
                                f"(supported: {', '.join(SUPPORTED_READERS)})")
    channels = model.dataset.get("channel_names", model.dataset.get("modality", {}))
    if len(channels) != 1:
        raise ModelPackageError(f"{model.path / 'dataset.json'}: {len(channels)} input channels; kitsrt imports "
                                "single-channel (CT) models")
    scheme = config["normalization_schemes"][0]
    if scheme not in SUPPORTED_NORMALIZATION:
        raise ModelPackageError(f"{where}: normalization scheme {scheme!r} is not supported (supported: "
                                f"{', '.join(SUPPORTED_NORMALIZATION)})")
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if config.get(key) != SUPPORTED_RESAMPLING:
            raise ModelPackageError(f"{where}: {key} {config.get(key)!r} is not supported (supported: "
                                    f"{SUPPORTED_RESAMPLING})")
    arch = config["architecture"]
    if not arch["network_class_name"].startswith(NETWORK_MODULE_PREFIX):
        raise ModelPackageError(f"{where}: network class {arch['network_class_name']!r} is not from "
                                f"{NETWORK_MODULE_PREFIX}*; kitsrt rebuilds only nnU-Net's own architectures")
    for key in arch.get("_kw_requires_import", ()):
        value = arch["arch_kwargs"].get(key)
        if value is not None and not str(value).startswith(LAYER_MODULE_PREFIX):
            raise ModelPackageError(f"{where}: architecture {key} {value!r} is not a {LAYER_MODULE_PREFIX}* layer")


def read_model_folder(path: Path, folds: list[str] | None = None,
                      checkpoint_name: str = "checkpoint_final.pth") -> ModelFolder:
    """Read, load and check everything the import needs; nothing is written."""
    path = Path(path)
    if not path.is_dir():
        raise ModelPackageError(f"{path}: not a folder; pass an nnU-Net v2 trained-model folder "
                                "(.../DatasetXXX_Name/<trainer>__<plans>__<configuration>)")
    if (path / "plans.pkl").exists() and not (path / "plans.json").exists():
        raise ModelPackageError(f"{path}: nnU-Net v1 model folder (plans.pkl); kitsrt imports nnU-Net v2 folders")
    plans = _json(path / "plans.json", "plans.json")
    dataset = _json(path / "dataset.json", "dataset.json")
    if "configurations" not in plans or "transpose_forward" not in plans:
        raise ModelPackageError(f"{path / 'plans.json'}: not nnU-Net v2 plans (no 'configurations' / "
                                "'transpose_forward')")
    loaded = [FoldCheckpoint(f, path / f"fold_{f}" / checkpoint_name,
                             load_checkpoint_safely(path / f"fold_{f}" / checkpoint_name))
              for f in _fold_names(path, folds, checkpoint_name)]
    first = loaded[0].checkpoint
    configuration_name = first.get("init_args", {}).get("configuration")
    parts = path.name.split("__")
    folder_configuration = parts[2] if len(parts) == 3 else None
    for fold in loaded:
        got = fold.checkpoint.get("init_args", {}).get("configuration")
        expected = folder_configuration or configuration_name
        if got != expected:
            raise ModelPackageError(f"{fold.path}: checkpoint was trained for configuration {got!r}, the model "
                                    f"folder is {expected!r}")
    trainer = first.get("trainer_name", "")
    model = ModelFolder(path, plans, dataset, configuration_name,
                        _configuration(plans, configuration_name, path / "plans.json"), trainer, tuple(loaded))
    check_supported(model)
    return model


def build_network(model: ModelFolder, weights: dict, where: Path):
    """nnU-Net's own ``get_network_from_plans`` (deep supervision off), with ``weights`` loaded;
    eval mode. A state_dict that does not fit is one line naming the keys or shapes."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kitsrt.export.onnx_export import _state_dict_mismatch

    arch = model.configuration["architecture"]
    outputs = PlansManager(model.plans).get_label_manager(model.dataset).num_segmentation_heads
    try:
        network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                         arch.get("_kw_requires_import", ()), 1, outputs, allow_init=False,
                                         deep_supervision=False)
    except Exception as exc:
        raise ModelPackageError(f"{model.path / 'plans.json'}: cannot build {arch['network_class_name']} "
                                f"({type(exc).__name__}: {exc})") from None
    mismatch = _state_dict_mismatch(network, weights)
    if mismatch:
        raise ModelPackageError(f"{where}: weights do not fit the network the plans describe ({mismatch})")
    network.load_state_dict(weights)
    return network.eval()
