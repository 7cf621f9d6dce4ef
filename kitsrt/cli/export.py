"""`kitsrt export`: a checkpoint to ONNX with the parity check and a model card (needs torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kitsrt.cli.app import app, say, user_errors
from kitsrt.cli.options import json_object, shape_with_channels
from kitsrt.errors import InputError


@app.command()
@user_errors
def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.pt) written by `kitsrt train` (or a bare state_dict)."),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write; its model card goes beside it (.json)."),
    stage: Optional[str] = typer.Option(None, help="coarse or fine (seed 002), kidney or tumor (seed 004): sets the "
                                                   "card's spacing, normalisation and labels from the seed's preset."),
    config: Optional[Path] = typer.Option(None, help="config.json of the checkpoint (default: beside it)."),
    factory: Optional[str] = typer.Option(None, help="package.module:callable building a network kitsrt does not "
                                                     "define (e.g. monai.networks.nets:UNet); replaces --stage."),
    factory_kwargs: str = typer.Option("{}", help="--factory: keyword arguments as a JSON object."),
    input_shape: str = typer.Option("1,64,64,64", help="--factory: example input C,D,H,W to trace on."),
    provenance: str = typer.Option("", help="Free text for the card: data, command, duration."),
    demo: bool = typer.Option(False, help="Mark the card as a demo model trained on synthetic phantoms."),
    training_data: Optional[Path] = typer.Option(None, help="JSON for the card's training_data (contrast_enhanced, "
                                                            "spacing_mm {in_plane, slice}): the runtime warns outside it."),
    overwrite: bool = typer.Option(False, help="Replace an existing ONNX file and card."),
):
    """Export a checkpoint to ONNX (opset 17, dynamic spatial axes), check parity against PyTorch
    through onnxruntime on random and phantom inputs, and write a model card beside it.

    Example:

        kitsrt export work/fine/checkpoint.pt --stage fine -o models/fine.onnx

    Writes models/fine.onnx and models/fine.json; fails (exit 5, nothing written) when the largest
    |logit difference| exceeds 1e-4. Any other PyTorch network:

        kitsrt export unet.pt --factory monai.networks.nets:UNet --factory-kwargs '{"spatial_dims": 3,
        "in_channels": 1, "out_channels": 3, "channels": [8, 16, 32], "strides": [2, 2]}' -o unet.onnx
    """
    from kitsrt.training import require_torch

    require_torch()
    if factory is not None:
        from kitsrt.export.factory import export_factory, parse_kwargs

        shape = shape_with_channels(input_shape)
        card = export_factory(factory, parse_kwargs(factory_kwargs), checkpoint, output, shape, overwrite)
        parity = card["parity_vs_torch"]
        say(f"wrote {output} and {output.with_suffix('.json')}: parity max |Δlogit| "
                  f"{parity['max_abs_logit_diff']:.2e} on {parity['inputs']} inputs")
        return
    if stage is None:
        raise InputError("kitsrt export: pass --stage coarse|fine|kidney|tumor (a kitsrt VB-Net or V-Net) or "
                         "--factory module:callable")
    from kitsrt.export.card import DEMO_DISCLAIMER
    from kitsrt.export.onnx_export import card_facts, export as run_export, load_checkpoint, parity_volume

    loaded = load_checkpoint(checkpoint, config)
    facts = card_facts(stage, provenance, DEMO_DISCLAIMER if demo else "")
    facts["training_data"] = json_object(training_data)
    card = run_export(loaded, output, facts, parity_volume(stage), overwrite)
    parity = card["parity_vs_torch"]
    say(f"wrote {output} and {output.with_suffix('.json')}: parity max |Δlogit| "
              f"{parity['max_abs_logit_diff']:.2e}, argmax agreement {parity['argmax_agreement']:.6f} "
              f"on {parity['inputs']} inputs")
