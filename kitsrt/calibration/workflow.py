"""``kitsrt calibrate`` and ``kitsrt build`` as library calls, for a package of any kind: a
calibration set drawn through the package's own runtime, and one TensorRT engine per network role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kitsrt.calibration.dataset import TILES_PER_CASE, build_set, phantom_sources
from kitsrt.engines.tensorrt_backend import plan_path
from kitsrt.errors import InputError
from kitsrt.runtime.kinds import roles_of
from kitsrt.runtime.package import ModelPackage, load_package
from kitsrt.runtime.segmenter import Segmenter, variant_path

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")


def calibrate_package(model: Path | None, output: Path, cases: Path | None, procedural: int, holdout: float,
                      seed: int, threads: int, progress: Callable[[str], None] | None = None,
                      tiles_per_case: int = TILES_PER_CASE) -> dict:
    """Write a calibration set for the package ``model`` (None: the bundled demo; any kind) into the
    new folder ``output``, from the KiTS-layout ``cases`` and ``procedural`` phantoms; returns its
    manifest. ``tiles_per_case`` bounds the patches kept per case for a sliding-window package."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output}: folder exists and is not empty; choose a new folder")
    package = load_package(model)
    sources = phantom_sources(cases, procedural, seed)
    with Segmenter.load(model, backend="onnxruntime", threads=threads) as segmenter:
        return build_set(sources, package, segmenter, output, holdout, seed, progress=progress,
                         tiles_per_case=tiles_per_case)


@dataclass(frozen=True)
class EnginePlan:
    """One TensorRT engine to build: the ONNX file of ``role`` at ``precision``, its ``.plan`` beside
    it, the input tensor's name and the optimisation profile (N, C, z, y, x shapes)."""

    role: str
    onnx_path: Path
    plan_path: Path
    input_name: str
    shapes: dict[str, tuple[int, ...]]


def check_engine_precision(precision: str) -> None:
    """InputError (exit 2) unless ``precision`` is one an engine can be built from."""
    if precision not in ENGINE_PRECISIONS:
        raise InputError(f"--precision {precision!r}: expected one of {', '.join(ENGINE_PRECISIONS)} (TensorRT "
                         "builds the precision stored in the ONNX file)")


def engine_plans(package: ModelPackage, precision: str) -> list[EnginePlan]:
    """The engines ``build_engines`` compiles for a package of any kind: one per network role, from
    the ONNX file of ``precision`` (fp32, or a variant ``kitsrt quantize`` made), with the profile of
    the shapes the kind feeds that role (cascade, nested: batch 1 over the network's min..max shape;
    sliding-window: the fixed patch, batch 1 up to the tile and its mirrored copies)."""
    check_engine_precision(precision)
    plans = []
    for name, role in roles_of(package.spec).items():
        onnx_path = (package.model_path(role.network) if precision == "fp32"
                     else variant_path(package, name, precision))
        shapes = {"min": role.shapes.min, "opt": role.shapes.opt, "max": role.shapes.max}
        plans.append(EnginePlan(name, onnx_path, plan_path(onnx_path), role.network.input_name, shapes))
    return plans


def build_engines(model: Path | None, precision: str, workspace_bytes: int,
                  progress: Callable[[Path, object], None] | None = None) -> list[Path]:
    """Compile one TensorRT engine per network role of the package (any kind; ``engine_plans``),
    sharing one timing cache in the package folder. Needs TensorRT and a GPU: without TensorRT,
    BackendUnavailable (exit 6) saying so, before anything is read or written."""
    from kitsrt.engines.tensorrt_build import build_engine, import_tensorrt

    check_engine_precision(precision)
    import_tensorrt()
    package = load_package(model)
    built = []
    for plan in engine_plans(package, precision):
        sidecar = build_engine(plan.onnx_path, plan.plan_path, plan.input_name, plan.shapes, precision,
                               package.folder / "timing.cache", workspace_bytes)
        built.append(plan.plan_path)
        if progress is not None:
            progress(plan.plan_path, sidecar)
    return built
