"""Pipelines are data: ``pipeline.json`` in a model package, validated as a tagged union on ``kind``.

Kinds (version 2; one short orchestration function each in ``kitsrt.runtime.kinds``):

* ``cascade`` (seed 002, Mu et al.): a coarse network on the whole scan places one VOI per kidney,
  a fine network segments kidney and tumor inside each VOI.
* ``nested`` (seed 004, Zavala-Romero et al.): the whole scan at one spacing, centre crop/pad to a
  fixed shape; a kidney network, then a tumor network on the kidney-masked volume.

Shared pieces: a ``NetworkSpec`` per network role (file, SHA-256, tensor names, per-axis target
spacing, intensity normalisation as a tagged choice, divisibility, the shape range the network takes
and how to tile above it), post-processing as an ordered list of rules, and a back-projection mode.

A version-1 file (no ``kind``; one isotropic spacing and one HU window per stage, two
post-processing booleans) is upgraded to a version-2 cascade before validation. Every problem is a
one-line ``ModelPackageError`` (exit 4) naming the file, the key and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from kitsrt.errors import ModelPackageError
from kitsrt.io.validate import FOV_MAX_MM, MAX_VOXELS, SPACING_MAX_MM, SPACING_MIN_MM
from kitsrt.runtime.quality import QualitySpec
from kitsrt.runtime.sliding_window_spec import SlidingWindowSpec

SPEC_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
DEFAULT_LABELS = {"0": "background", "1": "kidney", "2": "tumor"}

# Field types with their ranges, as pydantic constraints. ``strict``: a string is never coerced into
# a number ("1.0" for a spacing, "2" for a count is an error); NaN and infinity are refused.
Real = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Hu = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-10_000, le=10_000)]
SpacingMm = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=SPACING_MIN_MM, le=SPACING_MAX_MM)]
NonNegativeMm = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=FOV_MAX_MM)]
Count = Annotated[int, Field(strict=True, ge=1, le=1_000)]
Label = Annotated[int, Field(strict=True, ge=0, le=255)]
Side = Annotated[int, Field(strict=True, ge=1, le=4096)]
Shape = tuple[Side, Side, Side]  # (z, y, x) voxels
Sha256 = Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]


class Strict(BaseModel):
    """Frozen, and unknown keys are errors (a misspelled key never silently takes a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- intensity normalisation: a tagged choice -------------------------------------------------------
def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] < value[1]:
        raise ValueError(f"expected [low, high] with low < high, got {list(value)}")
    return value


class _Window(Strict):
    kind: str
    hu_window: tuple[Hu, Hu]

    @field_validator("hu_window")
    @classmethod
    def _ordered_window(cls, value):
        return _ordered(value)


class WindowSymmetric(_Window):
    """Clip HU to ``hu_window`` [low, high] and scale linearly to [-1, 1] (seed 002)."""

    kind: Literal["window-symmetric"] = "window-symmetric"

    def apply(self, hu: np.ndarray) -> np.ndarray:
        low, high = self.hu_window
        out = np.clip(hu, low, high, dtype=np.float32)
        out -= (low + high) / 2.0
        out *= 2.0 / (high - low)
        return out


class WindowUnit(_Window):
    """Clip HU to ``hu_window`` [low, high] and scale linearly to [0, 1] (seed 004)."""

    kind: Literal["window-unit"] = "window-unit"

    def apply(self, hu: np.ndarray) -> np.ndarray:
        low, high = self.hu_window
        out = np.clip(hu, low, high, dtype=np.float32)
        out -= low
        out *= 1.0 / (high - low)
        return out


class CtZScore(Strict):
    """nnU-Net's CT normalisation: clip HU to ``clip_hu`` (the 0.5 / 99.5 percentiles of the training
    foreground), subtract ``mean_hu``, divide by ``std_hu``."""

    kind: Literal["ct-zscore"] = "ct-zscore"
    clip_hu: tuple[Hu, Hu]
    mean_hu: Hu
    std_hu: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]

    @field_validator("clip_hu")
    @classmethod
    def _ordered_clip(cls, value):
        return _ordered(value)

    def apply(self, hu: np.ndarray) -> np.ndarray:
        out = np.clip(hu, *self.clip_hu, dtype=np.float32)
        out -= self.mean_hu
        out *= 1.0 / self.std_hu
        return out


Normalization = Annotated[Union[WindowSymmetric, WindowUnit, CtZScore], Field(discriminator="kind")]


# -- one network ------------------------------------------------------------------------------------
class Tiling(Strict):
    """Whole-input inference while the input has at most ``max_voxels`` voxels and fits the network's
    ``max_shape``; above that, a sliding window of ``patch_size`` (z, y, x) with ``overlap`` and
    Gaussian blending (sigma = ``sigma_scale`` x patch size)."""

    max_voxels: int = Field(8_000_000, strict=True, gt=0, le=MAX_VOXELS)
    patch_size: Shape = (96, 96, 96)
    overlap: Real = Field(0.5, ge=0.0, le=0.9)
    sigma_scale: Real = Field(0.125, gt=0.0, le=10.0)


class NetworkSpec(Strict):
    """One network and how its input is prepared.

    ``spacing_mm`` is the target spacing per physical axis (x, y, z) of the LPS-aligned grid the
    network sees; arrays are (z, y, x). ``anti_alias`` block-averages the scan before resampling
    (for grids much coarser than the scan). ``min_shape`` / ``max_shape`` (z, y, x) are the input shapes
    the network (and a TensorRT profile) takes; each side of an input is a multiple of ``divisibility``.
    """

    model: str = Field(min_length=1)
    sha256: Sha256 = ""
    input_name: str = "image"
    output_name: str = "logits"
    spacing_mm: tuple[SpacingMm, SpacingMm, SpacingMm]
    normalization: Normalization
    anti_alias: bool = True
    divisibility: int = Field(8, strict=True, ge=1, le=256)
    min_shape: Shape = (16, 16, 16)
    max_shape: Shape = (192, 192, 192)
    tiling: Tiling = Tiling()

    @field_validator("spacing_mm", mode="before")
    @classmethod
    def _isotropic(cls, value):
        return (value,) * 3 if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _shapes(self) -> NetworkSpec:
        for name in ("min_shape", "max_shape", "tiling.patch_size"):
            shape = self.tiling.patch_size if name == "tiling.patch_size" else getattr(self, name)
            if any(s <= 0 or s % self.divisibility for s in shape):
                raise ValueError(f"{name} {list(shape)}: expected positive multiples of divisibility "
                                 f"{self.divisibility}")
        low, high, patch = map(np.asarray, (self.min_shape, self.max_shape, self.tiling.patch_size))
        if np.any(low > high):
            raise ValueError(f"min_shape {list(self.min_shape)} exceeds max_shape {list(self.max_shape)}")
        if np.any(patch < low) or np.any(patch > high):
            raise ValueError(f"tiling.patch_size {list(self.tiling.patch_size)} is outside the shape range "
                             f"{list(self.min_shape)}..{list(self.max_shape)} the network takes")
        return self


# -- post-processing rules, applied in order --------------------------------------------------------
class LargestComponents(Strict):
    """Keep the ``count`` largest connected components (26-connectivity) of the union of ``labels``
    that have at least ``min_volume_ml``; set the rest of that union to background."""

    rule: Literal["largest-components"] = "largest-components"
    labels: tuple[Label, ...]
    count: Count = 1
    min_volume_ml: Real = Field(0.0, ge=0.0)

    def label_ids(self) -> tuple[int, ...]:
        return self.labels


class DropUnlessTouching(Strict):
    """Set every connected component of ``label`` that does not touch ``touching`` to background."""

    rule: Literal["drop-unless-touching"] = "drop-unless-touching"
    label: Label
    touching: Label

    def label_ids(self) -> tuple[int, ...]:
        return (self.label, self.touching)


class FillHoles(Strict):
    """Fill background holes (not connected to the outside) inside the union of ``labels`` with
    ``fill_with``."""

    rule: Literal["fill-holes"] = "fill-holes"
    labels: tuple[Label, ...]
    fill_with: Label

    def label_ids(self) -> tuple[int, ...]:
        return (*self.labels, self.fill_with)


class KidneyAndNearbyTumor(Strict):
    """Anatomy per VOI: keep the largest connected component of kidney + tumor that holds kidney
    tissue (a tumor-only blob is not a kidney), plus every tumor component of the input that lies
    within ``margin_mm`` of that kidney's tissue (shortest centre-to-centre distance); everything
    else becomes background. Tumor specks under ``min_tumor_ml`` become kidney where they touch it
    (partial-volume noise at the kidney's edge), background elsewhere."""

    rule: Literal["kidney-and-nearby-tumor"] = "kidney-and-nearby-tumor"
    kidney: int = 1
    tumor: int = 2
    margin_mm: NonNegativeMm = 5.0
    min_tumor_ml: float = Field(0.0, strict=True, allow_inf_nan=False, ge=0.0)

    def label_ids(self) -> tuple[int, ...]:
        return (self.kidney, self.tumor)


Rule = Annotated[Union[LargestComponents, DropUnlessTouching, FillHoles, KidneyAndNearbyTumor],
                 Field(discriminator="rule")]
Restore = Literal["probabilities-linear", "labels-nearest"]

SEED002_RULES = (LargestComponents(labels=(1, 2), count=1), DropUnlessTouching(label=2, touching=1))


class _Pipeline(Strict):
    version: Literal[2] = 2
    kind: str
    name: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LABELS))
    postprocess: tuple[Rule, ...] = ()
    restore: Restore = "probabilities-linear"
    quality: QualitySpec | None = None  # plausibility limits for the report's warnings

    @model_validator(mode="after")
    def _known_labels(self):
        known = {int(k) for k in self.labels}
        for n, rule in enumerate(self.postprocess):
            unknown = sorted(set(rule.label_ids()) - known)
            if unknown:
                raise ValueError(f"postprocess[{n}] ({rule.rule}) names label(s) {unknown}; "
                                 f"labels defines {sorted(known)}")
        return self

    def networks(self) -> dict[str, NetworkSpec]:
        """Role -> network, in the order they run."""
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2)


class RoiPolicy(Strict):
    """How the coarse mask becomes VOIs: keep up to ``components`` largest connected components of
    the coarse kidney mask (label > 0) of at least ``min_volume_ml``, each boxed with ``margin_mm``.
    When the fine stage finds the VOI's own kidney tissue (not a stray tumor blob) on a face of its
    VOI, that face moves out by ``grow_mm`` and the VOI runs again, at most ``grow_steps`` times and
    never beyond ``max_extent_mm`` per axis (None: no limit)."""

    components: Count = 2
    min_volume_ml: Real = Field(5.0, ge=0.0)
    margin_mm: NonNegativeMm = 15.0
    grow_mm: NonNegativeMm = 20.0
    grow_steps: int = Field(2, strict=True, ge=0, le=10)
    max_extent_mm: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=FOV_MAX_MM)] | None = None


class CascadeSpec(_Pipeline):
    """Seed 002: coarse network on the whole scan -> one VOI per kidney -> fine network per VOI."""

    kind: Literal["cascade"] = "cascade"
    coarse: NetworkSpec
    fine: NetworkSpec
    roi: RoiPolicy = RoiPolicy()
    postprocess: tuple[Rule, ...] = SEED002_RULES

    def networks(self) -> dict[str, NetworkSpec]:
        return {"coarse": self.coarse, "fine": self.fine}


class NestedSpec(_Pipeline):
    """Seed 004: the whole scan on one grid, centre-cropped / zero-padded to ``crop_shape`` (z, y, x);
    the ``kidney`` network segments kidney, the ``tumor`` network runs on the kidney-masked volume and
    its tumor is kept only inside the kidney. Each network's output is one channel (sigmoid, > 0.5)
    or several (softmax argmax, foreground = channel > 0)."""

    kind: Literal["nested"] = "nested"
    kidney: NetworkSpec
    tumor: NetworkSpec
    crop_shape: Shape = (168, 168, 168)
    postprocess: tuple[Rule, ...] = (LargestComponents(labels=(1, 2), count=3, min_volume_ml=10.0),)
    restore: Literal["labels-nearest"] = "labels-nearest"

    def networks(self) -> dict[str, NetworkSpec]:
        return {"kidney": self.kidney, "tumor": self.tumor}


PipelineSpec = Annotated[Union[CascadeSpec, NestedSpec, SlidingWindowSpec], Field(discriminator="kind")]
_ADAPTER = TypeAdapter(PipelineSpec)


def upgrade_v1(data: dict) -> dict:
    """A version-1 pipeline (seed 002 cascade, no ``kind``) as the equivalent version-2 dict."""
    data = dict(data)
    data.pop("version", None)
    out = {"version": 2, "kind": "cascade"}
    policy = data.pop("fine_policy", None)
    post = data.pop("postprocess", None)
    for role in ("coarse", "fine"):
        if isinstance(data.get(role), dict):
            stage = dict(data.pop(role))
            if "hu_window" in stage:
                stage["normalization"] = {"kind": "window-symmetric", "hu_window": stage.pop("hu_window")}
            else:
                stage["normalization"] = {"kind": "window-symmetric", "hu_window": [-200.0, 500.0]}
            if role == "fine":
                stage["anti_alias"] = False
                if policy is not None:
                    stage["tiling"] = policy
            out[role] = stage
    if isinstance(post, dict):
        post = dict(post)
        rules = []
        if post.pop("largest_component_per_kidney", True):
            rules.append({"rule": "largest-components", "labels": [1, 2], "count": 1})
        if post.pop("tumor_must_touch_kidney", True):
            rules.append({"rule": "drop-unless-touching", "label": 2, "touching": 1})
        if post:
            raise ModelPackageError(f"postprocess.{next(iter(post))}: unknown version-1 key; expected "
                                    "largest_component_per_kidney, tumor_must_touch_kidney")
        out["postprocess"] = rules
    elif post is not None:
        out["postprocess"] = post
    out.update(data)
    return out


def _describe(error: dict) -> str:
    """One pydantic error as 'key.path: what was expected'."""
    loc = list(error["loc"])
    if loc and loc[0] in ("cascade", "nested", "sliding-window"):  # the union's tag
        loc = loc[1:]
    loc = [part for part in loc if part not in ("window-symmetric", "window-unit", "ct-zscore",
                                                "largest-components", "drop-unless-touching", "fill-holes",
                                                "ct", "zscore", "none", "rescale-0-1", "kidney-and-nearby-tumor")]
    if error["type"] == "union_tag_invalid":
        ctx = error["ctx"]
        loc.append(ctx["discriminator"].strip("'"))
        message = f"{ctx['tag']!r} is not one of {ctx['expected_tags']}"
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[") or "(top level)"
    if error["type"] == "union_tag_invalid":
        pass
    elif error["type"] == "extra_forbidden":
        message = "unknown key (misspelled?)"
    elif error["type"] == "missing" and loc and isinstance(loc[-1], int):
        message = f"too few values (item {loc[-1]} is missing)"
    elif error["type"] == "missing":
        message = "required key is missing"
    else:
        message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message}"


def parse_pipeline(data: dict, where: str = "pipeline.json") -> CascadeSpec | NestedSpec | SlidingWindowSpec:
    """Validate a pipeline dict (any supported version) into a spec; ModelPackageError naming
    ``where``, the key and the expectation otherwise."""
    if not isinstance(data, dict):
        raise ModelPackageError(f"{where}: expected a JSON object, got {type(data).__name__}")
    version = data.get("version", 1)
    if version not in SUPPORTED_VERSIONS:
        raise ModelPackageError(f"{where}: version: {version!r} is not supported; expected one of "
                                f"{list(SUPPORTED_VERSIONS)} (a newer kitsrt wrote it?)")
    try:
        if version == 1:
            if "kind" in data:
                raise ModelPackageError("kind: version-1 pipelines have no kind; set \"version\": 2")
            data = upgrade_v1(data)
        return _ADAPTER.validate_python(data)
    except ModelPackageError as exc:
        raise ModelPackageError(f"{where}: {exc}") from None
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ModelPackageError(f"{where}: {_describe(errors[0])}{more}") from None


def load_pipeline(path: Path) -> CascadeSpec | NestedSpec | SlidingWindowSpec:
    """Read and validate ``pipeline.json``."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelPackageError(f"{path}: no pipeline.json; a model package needs one") from None
    except json.JSONDecodeError as exc:
        raise ModelPackageError(f"{path}: not valid JSON ({exc})") from None
    return parse_pipeline(data, str(path))


def window_network(model: str, spacing_mm: float, hu_window: tuple[float, float], divisibility: int,
                   min_shape: Shape, max_shape: Shape, symmetric: bool = True, **extra) -> NetworkSpec:
    """A network fed windowed HU at an isotropic spacing (the seed 002 and 004 presets)."""
    normalization = (WindowSymmetric(hu_window=hu_window) if symmetric else WindowUnit(hu_window=hu_window))
    return NetworkSpec(model=model, spacing_mm=(spacing_mm,) * 3, normalization=normalization,
                       divisibility=divisibility, min_shape=min_shape, max_shape=max_shape, **extra)


def seed002_preset(coarse_model: str = "coarse.onnx", fine_model: str = "fine.onnx",
                   coarse_divisibility: int = 8, fine_divisibility: int = 8) -> CascadeSpec:
    """The multi-resolution VB-Net cascade of seed 002 (Mu et al.): 6 mm coarse, 1 mm fine,
    HU [-200, 500] scaled to [-1, 1], largest-component post-processing, whole-VOI inference."""
    return CascadeSpec(
        name="vbnet-cascade-seed002",
        description="Multi-resolution VB-Net cascade (Mu et al., KiTS19): coarse 6 mm localizes each "
                    "kidney, fine 1 mm segments kidney and tumor inside its VOI.",
        coarse=window_network(coarse_model, 6.0, (-200.0, 500.0), coarse_divisibility, (16, 16, 16), (128, 128, 128)),
        fine=window_network(fine_model, 1.0, (-200.0, 500.0), fine_divisibility, (32, 32, 32), (256, 256, 256),
                            anti_alias=False),
    )


def seed004_preset(kidney_model: str = "kidney.onnx", tumor_model: str = "tumor.onnx",
                   divisibility: int = 8) -> NestedSpec:
    """The nested 3D V-Net of seed 004 (Zavala-Romero et al.): 2 mm isotropic, centre crop / zero
    pad to 168^3, intensities to [0, 1] (here a fixed HU window [-200, 500], not the paper's per-image
    min-max), kidney network then tumor network on the kidney-masked volume, the three largest
    structures over 10 mL, tumor masked by kidney, nearest neighbour back to the original grid."""
    crop = (168, 168, 168)

    def network(model: str) -> NetworkSpec:
        return window_network(model, 2.0, (-200.0, 500.0), divisibility, crop, crop, symmetric=False,
                              tiling=Tiling(patch_size=crop))

    return NestedSpec(
        name="vnet-nested-seed004",
        description="Nested 3D V-Net (Zavala-Romero et al., KiTS19): 2 mm, centre crop 168^3, kidney V-Net, "
                    "then tumor V-Net on the kidney-masked volume.",
        kidney=network(kidney_model), tumor=network(tumor_model), crop_shape=crop,
    )
