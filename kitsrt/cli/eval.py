"""`kitsrt eval`: KiTS19 Dice and surface Dice of predictions against references."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from kitsrt.cli.app import app, out, user_errors


@app.command("eval")
@user_errors
def evaluate(
    prediction: Path = typer.Argument(..., help="Predicted label map, or a folder of them."),
    reference: Path = typer.Argument(..., help="Reference label map, or a folder of them (paired by case name)."),
    tolerance_mm: float = typer.Option(2.0, min=0.0, help="Surface-Dice tolerance in mm (finite, above 0)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write per-case and mean scores as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-case scores as CSV."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Score predictions with the KiTS19 Dice (kidney = label>0, tumor = label>1, composite = mean)
    and a surface Dice at --tolerance-mm.

    Example: kitsrt eval seg.nii.gz case_00021/segmentation.nii.gz --json scores.json
    """
    from kitsrt.eval.evaluate import check_eval_request, evaluate_pairs, mean_scores, pair_cases, write_scores

    check_eval_request(prediction, reference, tolerance_mm, json_out, csv_out, overwrite)
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
    write_scores(scores, json_out, csv_out, overwrite)
