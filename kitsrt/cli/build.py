"""`kitsrt build`: TensorRT engines for a package's networks (needs TensorRT and a GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kitsrt.cli.app import app, say, user_errors
from kitsrt.cli.options import finite


@app.command()
@user_errors
def build(
    model: Optional[Path] = typer.Option(None, "--model", help="Model package (default: demo); engines go beside the ONNX files."),
    precision: str = typer.Option("fp32", help="Which ONNX variant to compile: fp32, fp16 or int8 (precision lives in the file)."),
    workspace_gb: float = typer.Option(2.0, min=0.0, max=1024.0, help="Builder workspace limit in GiB."),
):
    """Compile TensorRT engines (<role>[.<precision>].plan + sidecar) for every network of a package
    (any kind), with an optimisation profile per role from the shapes its kind feeds it and a timing
    cache. Needs TensorRT and a GPU (exit 6 without).

    Example: kitsrt build --precision int8
    """
    from kitsrt.calibration.workflow import build_engines

    finite(workspace_gb, "workspace-gb", 0.01, 1024.0)
    build_engines(model, precision, int(workspace_gb * 2**30),
                  progress=lambda plan, sidecar: say(f"built {plan} (TensorRT {sidecar.tensorrt_version}, "
                                                     f"{sidecar.gpu_name}, sm {sidecar.compute_capability})"))
