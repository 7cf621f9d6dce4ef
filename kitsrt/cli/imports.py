"""`kitsrt import nnunet`: an nnU-Net v2 model folder as a torch-free package."""

from __future__ import annotations

from pathlib import Path

import typer

from kitsrt.cli.app import import_app, say, user_errors
from kitsrt.cli.options import comma_list


@import_app.command("nnunet")
@user_errors
def import_nnunet(
    model_folder: Path = typer.Argument(..., help="nnU-Net v2 trained-model folder "
                                                  "(.../DatasetXXX_Name/<trainer>__<plans>__<configuration>)."),
    output: Path = typer.Option(..., "-o", "--output", help="Package folder to write."),
    folds: str = typer.Option("", help="Comma-separated folds to ensemble (default: every fold with a checkpoint)."),
    checkpoint: str = typer.Option("checkpoint_final.pth", help="Checkpoint file name inside each fold_N folder."),
    label_map: str = typer.Option("", help="nnU-Net label VALUE:kitsrt LABEL for values other than 0, 1, 2 (e.g. 3:1)."),
    mirroring: bool = typer.Option(True, help="Mirroring test-time augmentation, as nnU-Net does by default."),
    overwrite: bool = typer.Option(False, help="Replace an existing package folder."),
):
    """Import an nnU-Net v2 model folder as a torch-free `sliding-window` package: one ONNX file per
    fold (parity-checked, with a card) and a pipeline.json reproducing nnU-Net's predictor.

    Example:

        kitsrt import nnunet nnUNet_results/Dataset220_KiTS2019/nnUNetTrainer__nnUNetPlans__3d_fullres -o kits19_pkg

    Needs the nnunet extra (torch, nnunetv2) at import time only; `kitsrt infer --model kits19_pkg` runs
    without either.
    """
    from kitsrt.training import require_torch

    require_torch()
    from kitsrt.export.nnunet import import_nnunet as run_import
    from kitsrt.export.nnunet import parse_label_map

    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        from kitsrt.errors import BackendUnavailable

        raise BackendUnavailable("kitsrt import nnunet needs nnunetv2: pip install 'kitsrt[nnunet]'") from None
    chosen = comma_list(folds) or None
    spec = run_import(model_folder, output, chosen, checkpoint, parse_label_map(label_map), mirroring, overwrite)
    say(f"wrote {output}: {len(spec.folds)} fold(s), patch {list(spec.patch_size)} at "
              f"{list(spec.target_spacing_mm)} mm, {spec.normalization.scheme} normalisation, "
              f"{spec.outputs.mode} outputs, mirroring {'on' if spec.use_mirroring else 'off'}")
