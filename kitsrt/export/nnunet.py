"""``kitsrt import nnunet``: an nnU-Net v2 model folder -> a torch-free ``sliding-window`` package.

One ONNX file per fold (``fold_<N>.onnx`` + card, parity-checked against the network nnU-Net's own
``get_network_from_plans`` rebuilds) and a ``pipeline.json`` that carries every preprocessing and
inference setting nnU-Net's predictor would use. The package folder appears whole or not at all.
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError, ModelPackageError
from kitsrt.export.nnunet_folder import ModelFolder, build_network, read_model_folder
from kitsrt.runtime.sliding_window_spec import SlidingWindowSpec

KITSRT_LABELS = (0, 1, 2)


def _normalization(model: ModelFolder) -> dict:
    config = model.configuration
    scheme = config["normalization_schemes"][0]
    if scheme == "CTNormalization":
        props = model.plans["foreground_intensity_properties_per_channel"]["0"]
        return {"scheme": "ct", "clip": [props["percentile_00_5"], props["percentile_99_5"]],
                "mean": props["mean"], "std": props["std"]}
    if scheme == "ZScoreNormalization":
        return {"scheme": "zscore", "use_mask": bool(config["use_mask_for_norm"][0])}
    return {"scheme": "none"} if scheme == "NoNormalization" else {"scheme": "rescale-0-1"}


def _resampling(kwargs: dict) -> dict:
    return {"order": kwargs.get("order", 3), "order_z": kwargs.get("order_z", 0),
            "force_separate_z": kwargs.get("force_separate_z")}


def output_values(model: ModelFolder) -> tuple[str, int, list[int], list[int]]:
    """(mode, channels, regions_class_order, label values nnU-Net can write) from dataset.json."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(model.plans).get_label_manager(model.dataset)
    if manager.has_regions:
        order = [int(v) for v in model.dataset["regions_class_order"]]
        return "regions", manager.num_segmentation_heads, order, sorted({0, *order})
    labels = [int(v) for v in manager.all_labels if v != manager.ignore_label]
    return "softmax", manager.num_segmentation_heads, [], labels


def label_map(values: list[int], overrides: dict[int, int], where: Path) -> dict[str, int]:
    """nnU-Net label value -> kitsrt label: identity for 0, 1, 2 unless overridden; any other value
    must be given (``--label-map 3:1``)."""
    unknown = [v for v in values if v not in KITSRT_LABELS and v not in overrides]
    if unknown:
        raise ModelPackageError(f"{where}: nnU-Net label value(s) {unknown} have no kitsrt label (0 background, "
                                "1 kidney, 2 tumor); pass --label-map VALUE:LABEL, e.g. --label-map 3:1")
    return {str(v): int(overrides.get(v, v)) for v in values}


def pipeline_spec(model: ModelFolder, fold_files: list[tuple[str, str]], label_overrides: dict[int, int],
                  mirroring: bool) -> SlidingWindowSpec:
    config, plans = model.configuration, model.plans
    mode, channels, order, values = output_values(model)
    mirror_axes = model.folds[0].checkpoint.get("inference_allowed_mirroring_axes") or ()
    data = {
        "name": f"nnunet-{plans.get('dataset_name', 'dataset')}-{model.configuration_name}",
        "description": f"Imported from the nnU-Net v2 model folder {model.path.name} "
                       f"({len(fold_files)} fold(s): {', '.join(f for f, _ in fold_files)}).",
        "folds": [{"model": name, "sha256": sha} for name, sha in fold_files],
        "transpose_forward": plans["transpose_forward"], "transpose_backward": plans["transpose_backward"],
        "target_spacing_mm": config["spacing"], "normalization": _normalization(model),
        "resampling_data": _resampling(config.get("resampling_fn_data_kwargs", {})),
        "resampling_probabilities": _resampling(config.get("resampling_fn_probabilities_kwargs", {})),
        "patch_size": config["patch_size"], "mirror_axes": list(mirror_axes), "use_mirroring": mirroring,
        "outputs": {"mode": mode, "channels": channels, "regions_class_order": order,
                    "label_map": label_map(values, label_overrides, model.path / "dataset.json")},
        "source": {"model_folder": str(model.path.resolve()), "trainer": model.trainer_name,
                   "plans": plans.get("plans_name", ""), "configuration": model.configuration_name,
                   "nnunetv2": _version("nnunetv2"), "dataset_labels": model.dataset.get("labels", {})},
    }
    return SlidingWindowSpec.model_validate(data)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def parity_inputs(patch: list[int], seed: int = 0) -> list[np.ndarray]:
    """Two patch-sized inputs (z-scored intensities are roughly standard normal) and a batch of two."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 1, *patch)).astype(np.float32),
            rng.standard_normal((2, 1, *patch)).astype(np.float32) * 2.0]


def _fold_card(model: ModelFolder, fold, checkpoint_sha: str) -> dict:
    arch = model.configuration["architecture"]
    return {"stage": f"fold_{fold.fold}", "source": "nnU-Net v2", "trainer": model.trainer_name,
            "configuration": model.configuration_name, "fold": fold.fold, "checkpoint": fold.path.name,
            "checkpoint_sha256": checkpoint_sha, "architecture": arch,
            "input": {"shape": ["N", 1, *model.configuration["patch_size"]], "dtype": "float32",
                      "axes": "nnU-Net's transposed array order (see pipeline.json transpose_forward)"},
            "loading": "torch.load(weights_only=True); NumPy scalar/dtype constructors allowed for the training log"}


def import_nnunet(model_folder: Path, package: Path, folds: list[str] | None = None,
                  checkpoint: str = "checkpoint_final.pth", label_overrides: dict[int, int] | None = None,
                  mirroring: bool = True, overwrite: bool = False) -> SlidingWindowSpec:
    """Build the package folder ``package``; returns its validated spec."""
    from kitsrt.export.module_export import export_module
    from kitsrt.io import sha256_of, write_text_atomic
    from kitsrt.io.files import temporary_sibling

    package = Path(package)
    if package.exists() and not overwrite:
        raise InputError(f"{package}: output already exists; pass --overwrite to replace it")
    model = read_model_folder(Path(model_folder), folds, checkpoint)
    package.parent.mkdir(parents=True, exist_ok=True)
    with temporary_sibling(package) as staging:
        staging.mkdir()
        files = []
        for fold in model.folds:
            network = build_network(model, fold.checkpoint["network_weights"], fold.path)
            name = f"fold_{fold.fold}.onnx"
            export_module(network, staging / name, parity_inputs(model.configuration["patch_size"]),
                          _fold_card(model, fold, sha256_of(fold.path)))
            files.append((fold.fold, name))
        spec = pipeline_spec(model, [(n, sha256_of(staging / n)) for _, n in files], label_overrides or {},
                             mirroring)
        write_text_atomic(spec.model_dump_json(indent=2) + "\n", staging / "pipeline.json", overwrite=True)
        if package.exists():
            shutil.rmtree(package)
        os.replace(staging, package)
    return spec


def parse_label_map(text: str) -> dict[int, int]:
    """``"3:1,4:2"`` -> {3: 1, 4: 2}."""
    if not text:
        return {}
    try:
        pairs = [item.split(":") for item in text.split(",")]
        return {int(a): int(b) for a, b in pairs}
    except ValueError:
        raise InputError(f"--label-map {text!r}: expected VALUE:LABEL pairs separated by commas, e.g. 3:1") from None

