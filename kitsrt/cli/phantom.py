"""`kitsrt phantom`: a synthetic CT on exactly a label map's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kitsrt.cli.app import app, say, user_errors
from kitsrt.cli.options import triple
from kitsrt.errors import InputError


@app.command()
@user_errors
def phantom(
    label: Optional[Path] = typer.Argument(None, help="Label map (0 background, 1 kidney, 2 tumor) to build the CT around."),
    output: Path = typer.Option(..., "-o", "--output", help="Synthetic CT to write (.nii.gz, .nrrd, .mha), or a "
                                                            "folder with --format dicom."),
    output_format: str = typer.Option("image", "--format", help="image (by the output's suffix) or dicom "
                                                                "(a CT series folder; needs the dicom extra)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Random seed; the same seed gives the same phantom."),
    procedural: bool = typer.Option(False, help="Draw random kidneys and tumors instead of reading LABEL."),
    size: str = typer.Option("256,256,96", help="Procedural grid size i,j,k (voxels)."),
    spacing: str = typer.Option("1.6,1.6,3.0", help="Procedural spacing i,j,k (mm)."),
    label_out: Optional[Path] = typer.Option(None, help="Procedural mode: where to write the drawn label map."),
    preview: Optional[Path] = typer.Option(None, help="Also write a PNG with axial and coronal slices."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Synthesize a contrast-enhanced abdominal CT on exactly a label map's grid.

    Example: kitsrt phantom case_00021/segmentation.nii.gz -o case_00021_ct.nii.gz --seed 1
    """
    from kitsrt.io import read_label_map
    from kitsrt.phantom.files import check_phantom_outputs, make_phantom

    check_phantom_outputs(output, output_format, label_out, preview, [label] if label is not None else [], overwrite)
    if procedural == (label is not None):
        raise InputError("give a LABEL map or --procedural, not both and not neither")
    grid = (triple(size, "size", int), triple(spacing, "spacing")) if procedural else None
    ct = make_phantom(None if procedural else read_label_map(label), output, output_format, seed, grid, label_out,
                      preview, overwrite)
    say(f"wrote {output} ({'x'.join(map(str, ct.geometry.size))} voxels, seed {seed})")
