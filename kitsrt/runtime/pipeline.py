"""Pipelines are data: ``pipeline.json`` in a model package declares every stage of a cascade.

The seed 002 VB-Net cascade is the first preset (``kitsrt/models/demo/pipeline.json``). The spec
names, per stage, the ONNX file, its isotropic spacing, HU window and divisibility; the ROI policy
that turns the coarse mask into VOIs; the fine stage's whole-VOI / sliding-window policy; and the
post-processing. Other seed systems differ only in these values (2 mm nested V-Net: spacing 2,
window [-100, 300]-like; 256x256 coarse stage: another coarse spacing and ROI policy).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kitsrt.errors import ModelPackageError

SPEC_VERSION = 1


@dataclass(frozen=True)
class StageSpec:
    """One network: its file, and how its input is prepared. Spacing in mm (isotropic), HU window
    [low, high] scaled to [-1, 1], spatial dims a multiple of ``divisibility``."""

    model: str
    spacing_mm: float
    hu_window: tuple[float, float] = (-200.0, 500.0)
    divisibility: int = 8
    input_name: str = "image"
    output_name: str = "logits"
    sha256: str = ""
    min_shape: tuple[int, int, int] = (16, 16, 16)
    max_shape: tuple[int, int, int] = (192, 192, 192)


@dataclass(frozen=True)
class RoiPolicy:
    """How the coarse mask becomes VOIs: keep up to ``components`` largest connected components of
    the coarse kidney mask (label > 0) of at least ``min_volume_ml``, each boxed with ``margin_mm``.
    When the fine stage finds kidney or tumor on a face of its VOI, that face moves out by
    ``grow_mm`` and the VOI runs again, at most ``grow_steps`` times (large exophytic tumors)."""

    components: int = 2
    min_volume_ml: float = 5.0
    margin_mm: float = 15.0
    grow_mm: float = 20.0
    grow_steps: int = 2


@dataclass(frozen=True)
class FinePolicy:
    """Whole-VOI inference when the VOI fits ``max_voxels``; else a sliding window of ``patch_size``
    with ``overlap`` and Gaussian blending (sigma = ``sigma_scale`` x patch size)."""

    max_voxels: int = 8_000_000
    patch_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.5
    sigma_scale: float = 0.125


@dataclass(frozen=True)
class PostprocessSpec:
    """Keep the largest kidney component inside each VOI; keep tumor only where it touches kidney."""

    largest_component_per_kidney: bool = True
    tumor_must_touch_kidney: bool = True


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    coarse: StageSpec
    fine: StageSpec
    roi: RoiPolicy = field(default_factory=RoiPolicy)
    fine_policy: FinePolicy = field(default_factory=FinePolicy)
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    labels: dict[str, str] = field(default_factory=lambda: {"0": "background", "1": "kidney", "2": "tumor"})
    description: str = ""
    version: int = SPEC_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict, where: str = "pipeline.json") -> PipelineSpec:
        try:
            return cls(
                name=data["name"],
                coarse=_stage(data["coarse"]),
                fine=_stage(data["fine"]),
                roi=RoiPolicy(**data.get("roi", {})),
                fine_policy=_tupled(FinePolicy, data.get("fine_policy", {}), ("patch_size",)),
                postprocess=PostprocessSpec(**data.get("postprocess", {})),
                labels=data.get("labels", {"0": "background", "1": "kidney", "2": "tumor"}),
                description=data.get("description", ""),
                version=data.get("version", SPEC_VERSION),
            )
        except (KeyError, TypeError) as exc:
            raise ModelPackageError(f"{where}: invalid pipeline spec ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load(cls, path: Path) -> PipelineSpec:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ModelPackageError(f"{path}: no pipeline.json; a model package needs one") from None
        except json.JSONDecodeError as exc:
            raise ModelPackageError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))


def _tupled(kind, data: dict, keys: tuple[str, ...]):
    values = dict(data)
    for key in keys:
        if key in values:
            values[key] = tuple(values[key])
    return kind(**values)


def _stage(data: dict) -> StageSpec:
    return _tupled(StageSpec, data, ("hu_window", "min_shape", "max_shape"))


def seed002_preset(coarse_model: str = "coarse.onnx", fine_model: str = "fine.onnx",
                   coarse_divisibility: int = 8, fine_divisibility: int = 8) -> PipelineSpec:
    """The multi-resolution VB-Net cascade of seed 002 (Mu et al.): 6 mm coarse, 1 mm fine,
    HU [-200, 500] scaled to [-1, 1], largest-component post-processing, whole-VOI inference."""
    return PipelineSpec(
        name="vbnet-cascade-seed002",
        description="Multi-resolution VB-Net cascade (Mu et al., KiTS19): coarse 6 mm localizes each "
                    "kidney, fine 1 mm segments kidney and tumor inside its VOI.",
        coarse=StageSpec(model=coarse_model, spacing_mm=6.0, divisibility=coarse_divisibility,
                         min_shape=(16, 16, 16), max_shape=(128, 128, 128)),
        fine=StageSpec(model=fine_model, spacing_mm=1.0, divisibility=fine_divisibility,
                       min_shape=(32, 32, 32), max_shape=(256, 256, 256)),
    )
