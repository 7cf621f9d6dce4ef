"""`kitsrt train`: a seed's training recipe on KiTS-layout label maps (needs torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kitsrt.cli.app import app, err, say, user_errors
from kitsrt.cli.options import comma_list, finite, triple


@app.command()
@user_errors
def train(
    data: Path = typer.Argument(..., help="KiTS-layout folder: case_*/segmentation.nii.gz (+ imaging.nii.gz; "
                                          "a phantom is synthesized where imaging is missing)."),
    stage: Optional[str] = typer.Option(None, help="coarse (6 mm, whole scan) or fine (1 mm, kidney VOIs); with "
                                                   "--preset seed004: kidney or tumor (default: both)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for checkpoint.pt and config.json "
                                                            "(seed004: one subfolder per network)."),
    exclude: str = typer.Option("", help="Comma-separated cases to hold out (never trained on)."),
    steps: int = typer.Option(300, min=1, help="Optimizer steps."),
    batch_size: int = typer.Option(2, min=1, max=1024, help="Crops per step."),
    crop: str = typer.Option("64,64,64", help="Training crop z,y,x in voxels (multiple of the divisibility)."),
    preset: Optional[str] = typer.Option(None, help="seed004 (nested V-Nets), demo-v2 (larger VB-Nets with "
                                                    "augmentation), or a seed 002 VB-Net size (coarse, fine, tiny; "
                                                    "default: the stage's)."),
    learning_rate: float = typer.Option(2e-3, help="Adam learning rate (cosine-decayed)."),
    tumor_weight: float = typer.Option(1.0, help="Weight of the tumor class (label 2) in the cross-entropy of the "
                                                 "VB-Nets' loss (tumor is about 1% of the fine voxels)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Random seed."),
    threads: int = typer.Option(2, min=1, max=256, help="CPU threads for torch."),
    cache: Optional[Path] = typer.Option(None, help="Folder caching the preprocessed volumes between runs."),
    resume: bool = typer.Option(False, help="Continue from output/checkpoint.pt."),
    stop_at: Optional[int] = typer.Option(None, min=1, help="Stop at this step, keeping the --steps schedule "
                                                            "(the learning rate's decay); go on later with --resume."),
    styles: int = typer.Option(0, min=0, max=100, help="Domain-randomised phantoms per label map (0: the default "
                                                       "phantom, seed = case number)."),
    procedural: int = typer.Option(0, min=0, max=10000, help="Procedural label maps added, each with a random "
                                                             "phantom style."),
):
    """Train with a seed's recipe (needs the export extra: torch): a seed 002 VB-Net stage, or the
    seed 004 nested V-Nets (--preset seed004: kidney, then tumor on the kidney-masked volume).

    Example: kitsrt train ../shared/data/kits19 --stage fine -o work/fine --exclude case_00021 --steps 400

    Example: kitsrt train ../shared/data/kits19 --preset seed004 -o work/seed004 --steps 400

    Example: kitsrt train ../shared/data/kits19 --preset demo-v2 --stage fine --styles 3 --procedural 24 -o work/fine
    """
    from rich.progress import Progress

    from kitsrt.training import require_torch

    require_torch()
    from kitsrt.training.run import train_recipe

    finite(learning_rate, "learning-rate", 1e-8, 10.0)
    finite(tumor_weight, "tumor-weight", 0.01, 1000.0)
    with Progress(console=err, transient=False) as bar:
        preparing = bar.add_task("preparing cases", total=None)
        tasks = {}

        def on_step(role: str, step: int, loss: float) -> None:
            if role not in tasks:
                bar.update(preparing, total=1, completed=1)
                tasks[role] = bar.add_task(f"training {role}", total=steps)
            bar.update(tasks[role], completed=step, description=f"training {role} loss {loss:.3f}")

        def on_trained(role: str, summary: dict, folder: Path, volumes: int) -> None:
            if summary["final_loss"] is None:
                say(f"{role}: nothing to train, {folder / 'checkpoint.pt'} is already at step {summary['steps']}")
                return
            say(f"{role}: trained {summary['steps']} steps in {summary['seconds']:.0f} s "
                f"({summary['cpu_seconds']:.0f} s CPU) on {volumes} volumes; "
                f"final loss {summary['final_loss']:.3f}; wrote {folder / 'checkpoint.pt'}")

        train_recipe(data, output, preset, stage, set(comma_list(exclude)), cache, resume,
                     on_prepared=lambda case: bar.update(preparing, description=f"prepared {case}"),
                     on_step=on_step, on_trained=on_trained, steps=steps, batch_size=batch_size,
                     crop=triple(crop, "crop", int), learning_rate=learning_rate, seed=seed, threads=threads,
                     tumor_ce_weight=tumor_weight, styles=styles, procedural=procedural, stop_at=stop_at)
