"""``pipeline.json`` of kind ``sliding-window``: the settings of nnU-Net v2's predictor as data.

Kept beside ``kitsrt.runtime.pipeline`` (which puts it in the tagged union of pipeline kinds);
``kitsrt.runtime.kinds.sliding_window`` runs it. Axis-ordered fields are in nnU-Net's transposed
array order: SimpleITK's (k, j, i) permuted by ``transpose_forward``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kitsrt.io.validate import SPACING_MAX_MM, SPACING_MIN_MM

# Ranges as pydantic constraints, strict (no string coercion) and finite, as in kitsrt.runtime.pipeline.
Axis = Annotated[int, Field(strict=True, ge=0, le=2)]
Side = Annotated[int, Field(strict=True, ge=1, le=4096)]
SpacingMm = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=SPACING_MIN_MM, le=SPACING_MAX_MM)]
Hu = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-10_000, le=10_000)]
Triple = tuple[Axis, Axis, Axis]
TripleMm = tuple[SpacingMm, SpacingMm, SpacingMm]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CtNormalization(_Strict):
    """nnU-Net's ``CTNormalization``: clip to the training foreground's 0.5 / 99.5 percentiles,
    subtract its mean, divide by its standard deviation (all from the dataset fingerprint)."""

    scheme: Literal["ct"] = "ct"
    clip: tuple[Hu, Hu]
    mean: Hu
    std: float = Field(strict=True, allow_inf_nan=False, gt=0)


class ZScoreNormalization(_Strict):
    """nnU-Net's ``ZScoreNormalization``: the scan's own mean and std, inside the non-zero mask
    when ``use_mask`` (pixels outside stay 0)."""

    scheme: Literal["zscore"] = "zscore"
    use_mask: bool = False


class NoNormalization(_Strict):
    scheme: Literal["none"] = "none"


class RescaleTo01(_Strict):
    scheme: Literal["rescale-0-1"] = "rescale-0-1"


Normalization = Annotated[Union[CtNormalization, ZScoreNormalization, NoNormalization, RescaleTo01],
                          Field(discriminator="scheme")]


class Resampling(_Strict):
    """``resample_data_or_seg_to_shape`` settings: spline ``order``, ``order_z`` across an
    anisotropic axis, ``force_separate_z`` (None: decide from the spacings)."""

    order: int = Field(strict=True, ge=0, le=5)
    order_z: int = Field(0, strict=True, ge=0, le=5)
    force_separate_z: bool | None = None


class Fold(_Strict):
    """One fold's network: ONNX file (input (N, 1, *patch) float32 -> logits (N, C, *patch))."""

    model: str
    sha256: str = ""
    input_name: str = "image"
    output_name: str = "logits"


class Outputs(_Strict):
    """How the network's channels become nnU-Net label values: ``softmax`` (channel c is label c,
    argmax) or ``regions`` (channel i is region i, sigmoid > 0.5 paints ``regions_class_order[i]``,
    in order). ``label_map`` takes nnU-Net label values to kitsrt's (0, 1 kidney, 2 tumor)."""

    mode: Literal["softmax", "regions"]
    channels: int = Field(strict=True, ge=1, le=256)
    regions_class_order: tuple[int, ...] = ()
    label_map: dict[str, int]

    @model_validator(mode="after")
    def _consistent(self) -> Outputs:
        if self.mode == "regions" and len(self.regions_class_order) != self.channels:
            raise ValueError(f"regions_class_order has {len(self.regions_class_order)} entries for "
                             f"{self.channels} channels")
        if any(v not in (0, 1, 2) for v in self.label_map.values()):
            raise ValueError("label_map values must be kitsrt labels 0, 1 or 2")
        return self


class SlidingWindowSpec(_Strict):
    """``pipeline.json`` of kind ``sliding-window``. Axis-ordered fields (``target_spacing_mm``,
    ``patch_size``, ``mirror_axes``) are in nnU-Net's transposed array order."""

    version: Literal[2] = 2
    kind: Literal["sliding-window"] = "sliding-window"
    name: str
    description: str = ""
    folds: tuple[Fold, ...] = Field(min_length=1)
    transpose_forward: Triple
    transpose_backward: Triple
    target_spacing_mm: TripleMm
    crop_to_nonzero: bool = True
    normalization: Normalization
    resampling_data: Resampling = Resampling(order=3)
    resampling_probabilities: Resampling = Resampling(order=1)
    patch_size: tuple[Side, Side, Side]
    tile_step: float = Field(0.5, strict=True, allow_inf_nan=False, gt=0, le=1)
    sigma_scale: float = Field(0.125, strict=True, allow_inf_nan=False, gt=0, le=10)
    mirror_axes: tuple[int, ...] = ()
    use_mirroring: bool = True
    logits_dtype: Literal["float16", "float32"] = "float16"
    outputs: Outputs
    labels: dict[str, str] = {"0": "background", "1": "kidney", "2": "tumor"}
    source: dict = {}

    @field_validator("transpose_forward", "transpose_backward")
    @classmethod
    def _permutation(cls, value):
        if sorted(value) != [0, 1, 2]:
            raise ValueError(f"expected a permutation of 0, 1, 2, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _inverse(self) -> SlidingWindowSpec:
        if [self.transpose_forward[i] for i in self.transpose_backward] != [0, 1, 2]:
            raise ValueError("transpose_backward is not the inverse of transpose_forward")
        if any(a not in (0, 1, 2) for a in self.mirror_axes):
            raise ValueError(f"mirror_axes {list(self.mirror_axes)}: expected spatial axes 0, 1, 2")
        return self

    def networks(self) -> dict[str, Fold]:
        """Role -> network: one role per fold (``fold_0``, ...)."""
        return {f"fold_{n}": fold for n, fold in enumerate(self.folds)}
