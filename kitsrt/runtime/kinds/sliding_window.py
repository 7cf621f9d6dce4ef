"""The ``sliding-window`` kind: one network (or an ensemble of folds) tiled over the whole scan at a
per-axis target spacing, reproducing nnU-Net v2's ``nnUNetPredictor`` step by step:

1. the scan as nnU-Net's SimpleITK reader sees it, (1, k, j, i) float32, spacing (k, j, i);
   ``transpose_forward``; crop to the box of non-zero voxels;
2. intensity normalisation (before resampling, as nnU-Net does), then resampling to the target
   spacing (cubic, "separate z" with order 0 across an anisotropic axis);
3. padding to the patch, tiles at step 0.5 of the patch, each tile's logits (averaged over the
   mirrored copies when mirroring is on) weighted by a Gaussian (sigma 1/8 of the patch), summed
   and divided by the summed weights; folds averaged (mean logits, as nnU-Net v2 does);
4. logits resampled back to the cropped shape (linear), argmax (labels) or sigmoid > 0.5 in
   ``regions_class_order`` (regions), pasted into the uncropped grid, ``transpose_backward``;
   nnU-Net's label values mapped to kitsrt's (0 background, 1 kidney, 2 tumor).

nnU-Net keeps the blended logits in float16 (its buffer is ``torch.half`` on every device) and
resamples them as float16; ``logits_dtype: float16`` (the default for imported models) does the
same, so the result matches nnU-Net's voxel for voxel; ``float32`` is the more precise option.
"""

from __future__ import annotations

import numpy as np

from kitsrt.runtime import nnunet_ops as ops
from kitsrt.runtime.kinds.base import KindResult, Role, ShapeRange
from kitsrt.runtime.report import sided_regions
from kitsrt.runtime.sliding_window_spec import (
    CtNormalization,
    Fold,
    Normalization,
    Outputs,
    RescaleTo01,
    SlidingWindowSpec,
    TripleMm,
    ZScoreNormalization,
)

# -- the steps ----------------------------------------------------------------------------------------
def normalize(data: np.ndarray, spec: Normalization) -> np.ndarray:
    """nnU-Net's normalisation schemes on (1, a0, a1, a2) float32, in place where nnU-Net is."""
    if isinstance(spec, CtNormalization):
        np.clip(data, spec.clip[0], spec.clip[1], out=data)
        data -= spec.mean
        data /= max(spec.std, 1e-8)
    elif isinstance(spec, ZScoreNormalization):
        if spec.use_mask:
            mask = ops.nonzero_mask(data)
            values = data[0][mask]
            data[0][mask] = (values - values.mean()) / max(values.std(), 1e-8)
        else:
            mean, std = data.mean(), data.std()
            data -= mean
            data /= max(std, 1e-8)
    elif isinstance(spec, RescaleTo01):
        data -= data.min()
        data /= np.clip(data.max(), 1e-8, None)
    return data


def preprocess(array_kji: np.ndarray, spacing_kji_mm: TripleMm, spec: SlidingWindowSpec
               ) -> tuple[np.ndarray, dict]:
    """Scan array (k, j, i) -> network-ready (1, a0, a1, a2) float32, plus the record needed to
    undo it (shapes, crop box, spacing), like nnU-Net's properties dict."""
    data = array_kji.astype(np.float32)[None].transpose(0, *(a + 1 for a in spec.transpose_forward))
    spacing = tuple(spacing_kji_mm[a] for a in spec.transpose_forward)
    record = {"shape_before_cropping": data.shape[1:], "spacing_mm": spacing}
    box = ops.nonzero_bbox(data) if spec.crop_to_nonzero else tuple((0, n) for n in data.shape[1:])
    data = np.ascontiguousarray(data[(slice(None), *(slice(a, b) for a, b in box))])
    record.update(bbox=box, shape_after_cropping=data.shape[1:])
    data = normalize(data, spec.normalization)
    shape = ops.new_shape(data.shape[1:], spacing, spec.target_spacing_mm)
    r = spec.resampling_data
    data = ops.resample(data, shape, spacing, spec.target_spacing_mm, r.order, r.order_z, r.force_separate_z)
    return data, record


def tile_regions(shape: tuple[int, ...], spec: SlidingWindowSpec) -> list[tuple[slice, slice, slice]]:
    """The patches nnU-Net's sliding window cuts from a padded (a0, a1, a2) volume, in its order."""
    starts = ops.sliding_window_steps(shape, spec.patch_size, spec.tile_step)
    return [tuple(slice(int(s), int(s) + p) for s, p in zip(corner, spec.patch_size))
            for corner in np.array(np.meshgrid(*starts, indexing="ij")).reshape(3, -1).T]


def predict_tiles(volume: np.ndarray, spec: SlidingWindowSpec, predict) -> np.ndarray:
    """Gaussian-weighted sliding window over (1, a0, a1, a2). ``predict`` maps a batch (N, 1, *patch)
    to logits (N, C, *patch). Returns (C, a0, a1, a2) float32 logits."""
    padded, unpad = ops.pad_to_patch(volume, spec.patch_size)
    dtype = np.dtype(spec.logits_dtype)
    weights = ops.gaussian_importance(spec.patch_size, spec.sigma_scale, dtype=dtype)
    flips = ops.mirror_combinations(spec.mirror_axes) if spec.use_mirroring else []
    logits = np.zeros((spec.outputs.channels, *padded.shape[1:]), dtype)
    norm = np.zeros(padded.shape[1:], dtype)
    for region in tile_regions(padded.shape[1:], spec):
        tile = padded[(slice(None), *region)][None]
        batch = np.concatenate([tile] + [np.flip(tile, [a + 2 for a in axes]) for axes in flips])
        out = predict(np.ascontiguousarray(batch, dtype=np.float32))
        summed = out[0].copy()
        for n, axes in enumerate(flips, start=1):
            summed += np.flip(out[n], [a + 1 for a in axes])
        summed /= len(flips) + 1
        summed *= weights  # float32, as nnU-Net multiplies its float32 tile by the weights
        logits[(slice(None), *region)] += summed  # float32 sum, rounded to the buffer's dtype
        norm[region] += weights
    logits /= norm
    return logits[(slice(None), *unpad)]


def to_labels(logits: np.ndarray, outputs: Outputs, slab_voxels: int = 1 << 22) -> np.ndarray:
    """(C, a0, a1, a2) logits -> nnU-Net label values (uint8, (a0, a1, a2)): argmax, or regions
    painted in order. Done in slabs along a0 of about ``slab_voxels`` voxels, so the float32 and
    int64 temporaries stay small on a full-size scan (every step is per voxel: same result)."""
    labels = np.zeros(logits.shape[1:], np.uint8)
    rows = max(1, slab_voxels // max(1, int(np.prod(logits.shape[2:]))))
    for start in range(0, logits.shape[1], rows):
        slab = logits[:, start:start + rows]
        if outputs.mode == "softmax":
            labels[start:start + rows] = slab.argmax(0)
            continue
        for channel, value in enumerate(outputs.regions_class_order):
            probability = 1.0 / (1.0 + np.exp(-slab[channel].astype(np.float32)))
            labels[start:start + rows][probability > 0.5] = value
    return labels


def restore(logits: np.ndarray, record: dict, spec: SlidingWindowSpec) -> np.ndarray:
    """Undo ``preprocess`` on the logits: resample to the cropped shape, labels, uncrop, transpose
    back. Returns kitsrt labels (k, j, i) uint8 on the scan's grid."""
    r = spec.resampling_probabilities
    shape = tuple(record["shape_after_cropping"])
    cropped = np.zeros(shape, np.uint8)
    for rows, slab in ops.resampled_slabs(logits, shape, spec.target_spacing_mm, record["spacing_mm"], r.order,
                                          r.order_z, r.force_separate_z):
        cropped[rows] = to_labels(slab, spec.outputs)
    full = np.zeros(record["shape_before_cropping"], np.uint8)
    full[tuple(slice(a, b) for a, b in record["bbox"])] = cropped
    lookup = np.zeros(256, np.uint8)
    for value, label in spec.outputs.label_map.items():
        lookup[int(value)] = label
    return np.ascontiguousarray(lookup[full].transpose(spec.transpose_backward))


def segment_array(array_kji: np.ndarray, spacing_kji_mm: TripleMm, spec: SlidingWindowSpec,
                  predictors: list, timings=None) -> np.ndarray:
    """The whole pipeline on one array; ``predictors`` holds one ``predict`` callable per fold."""
    from contextlib import nullcontext

    def timer(stage):
        return timings.timer(stage) if timings is not None else nullcontext()

    with timer("preprocess"):
        volume, record = preprocess(array_kji, spacing_kji_mm, spec)
    with timer("network"):
        logits = predict_tiles(volume, spec, predictors[0])
        for predict in predictors[1:]:
            logits += predict_tiles(volume, spec, predict)
        if len(predictors) > 1:
            logits /= len(predictors)
    with timer("postprocess"):
        return restore(logits, record, spec)


def backend_predictor(backend, fold: Fold):
    """A ``predict`` callable over one loaded backend."""
    def predict(batch: np.ndarray) -> np.ndarray:
        return backend.infer({fold.input_name: batch})[fold.output_name]

    return predict


def run(scan, spec: SlidingWindowSpec, backends: dict, timings):
    """The kind's entry point: ``run(scan, spec, backends, timings) -> KindResult``. ``backends``
    maps each role of ``spec.networks()`` to a loaded backend."""
    predictors = [backend_predictor(backends[role], fold) for role, fold in spec.networks().items()]
    labels = segment_array(scan.array, scan.geometry.array_spacing_mm, spec, predictors, timings)
    with timings.timer("measure"):
        regions = sided_regions(labels, scan)
    return KindResult(labels=labels, regions=regions,
                      extra={"folds": len(predictors), "mirroring": spec.use_mirroring})


def batch_size(spec: SlidingWindowSpec) -> int:
    """Tiles per network call: the tile and its mirrored copies (mirroring TTA), else 1."""
    return 1 + (len(ops.mirror_combinations(spec.mirror_axes)) if spec.use_mirroring else 0)


def roles(spec: SlidingWindowSpec) -> dict[str, Role]:
    """One role per fold, each fed (batch_size, 1, *patch_size); padding is 0 (as nnU-Net pads the
    normalised volume); labels are nnU-Net's (argmax, or regions painted in order)."""
    batch, patch = batch_size(spec), tuple(spec.patch_size)
    shapes = ShapeRange((1, 1, *patch), (batch, 1, *patch), (batch, 1, *patch))
    outputs = spec.outputs
    classes = (tuple(sorted(set(outputs.regions_class_order) - {0})) if outputs.mode == "regions"
               else tuple(range(1, outputs.channels)))
    return {name: Role(name, fold, shapes, 0.0, patch, lambda logits: to_labels(logits, outputs), classes)
            for name, fold in spec.networks().items()}


def network_inputs(scan, spec: SlidingWindowSpec, backends: dict, tiles_per_case: int | None = 8
                   ) -> dict[str, list[np.ndarray]]:
    """The patches ``run`` feeds every fold for ``scan`` (preprocessed and padded exactly as ``run``
    does, unmirrored): ``tiles_per_case`` of them spread evenly over the window's order (all when
    None). The same arrays for every fold. (z, y, x) float32 each, of ``patch_size``."""
    volume, _ = preprocess(scan.array, scan.geometry.array_spacing_mm, spec)
    padded, _ = ops.pad_to_patch(volume, spec.patch_size)
    regions = tile_regions(padded.shape[1:], spec)
    if tiles_per_case is not None and len(regions) > tiles_per_case:
        picks = np.unique(np.linspace(0, len(regions) - 1, tiles_per_case).round().astype(int))
        regions = [regions[i] for i in picks]
    tiles = [np.ascontiguousarray(padded[(0, *region)], np.float32) for region in regions]
    return {name: tiles for name in spec.networks()}
