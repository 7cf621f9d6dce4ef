"""The `kitsrt` command. Parsing and printing only: the work lives in the library modules.

Every command turns a KitsrtError into a one-line message on stderr and its documented exit code
(see ``kitsrt.errors.EXIT_CODES``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from kitsrt.errors import EXIT_CODES, InputError, KitsrtError

EXIT_CODE_HELP = "Exit codes: " + "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items())

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="kitsrt: deploy kidney and kidney-tumor CT segmentation. " + EXIT_CODE_HELP)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _user_errors(command):
    """Run a command; a KitsrtError becomes 'error: ...' on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KitsrtError as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _triple(text: str, what: str, cast=float) -> tuple:
    try:
        values = tuple(cast(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v <= 0 for v in values):
        raise InputError(f"--{what} {text!r}: expected three positive numbers separated by commas, e.g. 2.5,2.5,5")
    return values


@app.command()
@_user_errors
def phantom(
    label: Optional[Path] = typer.Argument(None, help="Label map (0 background, 1 kidney, 2 tumor) to build the CT around."),
    output: Path = typer.Option(..., "-o", "--output", help="Synthetic CT to write (.nii.gz, .nrrd, .mha)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same phantom."),
    procedural: bool = typer.Option(False, help="Draw random kidneys and tumors instead of reading LABEL."),
    size: str = typer.Option("160,160,64", help="Procedural grid size i,j,k (voxels)."),
    spacing: str = typer.Option("2.5,2.5,5.0", help="Procedural spacing i,j,k (mm)."),
    label_out: Optional[Path] = typer.Option(None, help="Procedural mode: where to write the drawn label map."),
    preview: Optional[Path] = typer.Option(None, help="Also write a PNG with axial and coronal slices."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Synthesize a contrast-enhanced abdominal CT on exactly a label map's grid.

    Example: kitsrt phantom case_00021/segmentation.nii.gz -o case_00021_ct.nii.gz --seed 1
    """
    from kitsrt.io import check_output_path, read_label_map, write_image, write_label_map
    from kitsrt.phantom import procedural_label_map, synthesize_ct

    check_output_path(output, overwrite)
    if procedural == (label is not None):
        raise InputError("give a LABEL map or --procedural, not both and not neither")
    if label_out is not None:
        check_output_path(label_out, overwrite)
    if preview is not None:
        check_output_path(preview, overwrite, (".png",))
    labels = (procedural_label_map(_triple(size, "size", int), _triple(spacing, "spacing"), seed)
              if procedural else read_label_map(label))
    ct = synthesize_ct(labels, seed)
    write_image(ct.image, output, overwrite)
    if label_out is not None:
        write_label_map(labels.array, labels.geometry, label_out, overwrite)
    if preview is not None:
        _write_phantom_preview(ct, labels, preview, overwrite)
    err.print(f"wrote {output} ({'x'.join(map(str, ct.geometry.size))} voxels, seed {seed})")


def _write_phantom_preview(ct, labels, path: Path, overwrite: bool) -> None:
    from kitsrt.io.preview import render_views, volume_center_mm, write_png
    from kitsrt.masks import bounding_box

    box = bounding_box(labels.array > 0)
    if box is None:
        center = volume_center_mm(ct)
    else:
        center_kji = [(s.start + s.stop - 1) / 2.0 for s in box]
        center = tuple(ct.geometry.index_to_physical([list(reversed(center_kji))])[0])
    write_png(render_views(ct, None, [center]), path, overwrite)


@app.command("eval")
@_user_errors
def evaluate(
    prediction: Path = typer.Argument(..., help="Predicted label map, or a folder of them."),
    reference: Path = typer.Argument(..., help="Reference label map, or a folder of them (paired by case name)."),
    tolerance_mm: float = typer.Option(2.0, help="Surface-Dice tolerance in mm."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write per-case and mean scores as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-case scores as CSV."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Score predictions with the KiTS19 Dice (kidney = label>0, tumor = label>1, composite = mean)
    and a surface Dice at --tolerance-mm.

    Example: kitsrt eval seg.nii.gz case_00021/segmentation.nii.gz --json scores.json
    """
    from kitsrt.evaluate import evaluate_pairs, mean_scores, pair_cases, scores_csv, scores_json
    from kitsrt.io import write_text_atomic

    for path in (json_out, csv_out):
        if path is not None and path.exists() and not overwrite:
            raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
    for path in (prediction, reference):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    scores = evaluate_pairs(pair_cases(prediction, reference), tolerance_mm)
    table = Table(title=f"KiTS19 Dice (surface Dice at {tolerance_mm:g} mm)")
    for column in ("case", "kidney", "tumor", "composite", "kidney SD", "tumor SD"):
        table.add_column(column, justify="left" if column == "case" else "right")
    rows = [(s.case, s.kidney_dice, s.tumor_dice, s.composite_dice, s.kidney_surface_dice,
             s.tumor_surface_dice) for s in scores]
    if len(scores) > 1:
        m = mean_scores(scores)
        rows.append(("mean", m["kidney_dice"], m["tumor_dice"], m["composite_dice"],
                     m["kidney_surface_dice"], m["tumor_surface_dice"]))
    for case, *values in rows:
        table.add_row(case, *(f"{v:.4f}" for v in values))
    out.print(table)
    if json_out is not None:
        write_text_atomic(scores_json(scores), json_out, overwrite)
    if csv_out is not None:
        write_text_atomic(scores_csv(scores), csv_out, overwrite)


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
