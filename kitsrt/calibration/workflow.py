"""``kitsrt calibrate`` and ``kitsrt build`` as library calls: a calibration set drawn through a
package's own runtime, and TensorRT engines for a package's networks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kitsrt.calibration.dataset import build_set, phantom_sources
from kitsrt.errors import InputError
from kitsrt.runtime.package import load_package
from kitsrt.runtime.segmenter import Segmenter, variant_path


def calibrate_package(model: Path | None, output: Path, cases: Path | None, procedural: int, holdout: float,
                      seed: int, threads: int, progress: Callable[[str], None] | None = None) -> dict:
    """Write a calibration set for the package ``model`` (None: the bundled demo) into the new folder
    ``output``, from the KiTS-layout ``cases`` and ``procedural`` phantoms; returns its manifest."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output}: folder exists and is not empty; choose a new folder")
    package = load_package(model)
    sources = phantom_sources(cases, procedural, seed)
    with Segmenter.load(model, backend="onnxruntime", threads=threads) as segmenter:
        return build_set(sources, package, segmenter, output, holdout, seed, progress=progress)


def build_engines(model: Path | None, precision: str, workspace_bytes: int,
                  progress: Callable[[Path, object], None] | None = None) -> list[Path]:
    """Compile one TensorRT engine per network of the package (the ONNX variant of ``precision``),
    with optimisation profiles from the pipeline spec and a shared timing cache. Needs TensorRT."""
    from kitsrt.engines.tensorrt_backend import plan_path
    from kitsrt.engines.tensorrt_build import build_engine, import_tensorrt, profile_shapes

    import_tensorrt()
    package = load_package(model)
    plans = []
    for name in ("coarse", "fine"):
        stage = getattr(package.spec, name)
        onnx_path = package.model_path(stage) if precision == "fp32" else variant_path(package, name, precision)
        sidecar = build_engine(onnx_path, plan_path(onnx_path), stage.input_name,
                               profile_shapes(stage.min_shape, stage.max_shape), precision,
                               package.folder / "timing.cache", workspace_bytes)
        plans.append(plan_path(onnx_path))
        if progress is not None:
            progress(plans[-1], sidecar)
    return plans
