"""`kitsrt calibrate`: a calibration set drawn through a package's own runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kitsrt.cli.app import app, say, user_errors
from kitsrt.cli.options import finite


@app.command()
@user_errors
def calibrate(
    output: Path = typer.Option(..., "-o", "--output", help="New folder for the calibration set."),
    cases: Optional[Path] = typer.Option(None, "--cases", help="KiTS-layout folder (case_*/segmentation.nii.gz "
                                                               "[+ imaging.nii.gz]; phantoms where imaging is missing)."),
    procedural: int = typer.Option(0, min=0, max=10_000, help="Add N procedural phantom cases."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package (any kind) whose networks the set is for (default: demo)."),
    holdout: float = typer.Option(0.25, min=0.0, max=1.0, help="Share of cases held out for the accuracy gate."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed for the hold-out split and procedural cases."),
    threads: int = typer.Option(0, min=0, max=256, help="onnxruntime threads."),
    tiles_per_case: int = typer.Option(8, min=1, max=10_000, help="Sliding-window packages: patches kept per case, "
                                       "spread evenly over the window."),
):
    """Build a calibration set: every network's inputs, by role, drawn through the package's own
    runtime (cascade: coarse scans and the fine VOIs as finally grown; nested: the 168^3 kidney input
    and the kidney-masked tumor input; sliding-window: preprocessed patches), with a manifest.

    Example: kitsrt calibrate --cases ../shared/data/kits19 -o calib/ --holdout 0.25
    """
    from kitsrt.calibration.workflow import calibrate_package

    finite(holdout, "holdout", 0.0, 1.0)
    manifest = calibrate_package(model, output, cases, procedural, holdout, seed, threads,
                                 progress=lambda case: say(f"  drew {case}"), tiles_per_case=tiles_per_case)
    counts = {k: v["count"] for k, v in manifest["networks"].items()}
    held = sum(1 for e in manifest["sources"] if e["split"] == "holdout")
    say(f"wrote {output}: {len(manifest['sources'])} cases ({held} held out), inputs per role {counts}")
