"""nnU-Net v2's preprocessing and tiling arithmetic, in NumPy and ``scipy.ndimage`` only.

Each function reproduces one nnU-Net v2 (2.x) function, named in its docstring, so that a package
imported from an nnU-Net model folder prepares its input exactly as ``nnUNetPredictor`` does.
Arrays are channel-first (c, a0, a1, a2) in nnU-Net's own axis order: SimpleITK's array order
(k, j, i), transposed by the plans' ``transpose_forward``. Spacings are in mm in the same order.

Worked example of the tiling (``sliding_window_steps``): an axis of 110 voxels, a patch of 64 and a
step of 0.5 give ceil((110 - 64) / 32) + 1 = 3 tiles starting at 0, 23 and 46.
"""

from __future__ import annotations

import itertools

import numpy as np

ANISOTROPY_THRESHOLD = 3.0  # nnunetv2.configuration.ANISO_THRESHOLD


def _ndimage():
    try:
        from scipy import ndimage
    except ImportError:  # pragma: no cover - depends on the environment
        from kitsrt.errors import BackendUnavailable

        raise BackendUnavailable("the sliding-window kind needs scipy: pip install 'kitsrt[sliding-window]'") from None
    return ndimage


# -- cropping -----------------------------------------------------------------------------------------
def nonzero_bbox(image: np.ndarray) -> tuple[tuple[int, int], ...]:
    """``crop_to_nonzero``'s box: [low, high) per spatial axis of the voxels where any channel is
    non-zero. nnU-Net fills holes in that mask first; a filled hole lies inside the mask's box, so
    the box is the same. An all-zero image keeps its whole extent."""
    mask = np.any(image != 0, axis=0)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other))
        box.append((int(hits[0]), int(hits[-1]) + 1) if hits.size else (0, mask.shape[axis]))
    return tuple(box)


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """``create_nonzero_mask``: voxels where any channel is non-zero, holes filled (bool, spatial)."""
    return _ndimage().binary_fill_holes(np.any(image != 0, axis=0))


# -- resampling ---------------------------------------------------------------------------------------
def new_shape(shape: tuple[int, ...], spacing_mm, target_spacing_mm) -> tuple[int, ...]:
    """``compute_new_shape``: round(old spacing / new spacing * old shape) per axis."""
    return tuple(int(round(s / t * n)) for s, t, n in zip(spacing_mm, target_spacing_mm, shape))


def _lowres_axis(spacing_mm) -> np.ndarray:
    spacing = np.asarray(spacing_mm, dtype=float)
    return np.where(max(spacing) / spacing == 1)[0]


def separate_z_axis(current_spacing_mm, new_spacing_mm, force_separate_z: bool | None = None,
                    threshold: float = ANISOTROPY_THRESHOLD) -> int | None:
    """``determine_do_sep_z_and_axis``: the axis resampled on its own (order ``order_z``) when the
    current or else the new spacing is anisotropic (max / min > threshold); None otherwise."""
    def anisotropic(spacing) -> bool:
        return max(spacing) / min(spacing) > threshold

    if force_separate_z is not None:
        axis = _lowres_axis(current_spacing_mm) if force_separate_z else None
    elif anisotropic(current_spacing_mm):
        axis = _lowres_axis(current_spacing_mm)
    elif anisotropic(new_spacing_mm):
        axis = _lowres_axis(new_spacing_mm)
    else:
        axis = None
    if axis is None or len(axis) != 1:
        return None
    return int(axis[0])


def skimage_resize(image: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """``skimage.transform.resize(image.astype(float64), shape, order, mode='edge', anti_aliasing=False)``:
    ``ndimage.zoom`` with ``grid_mode=True`` into float64, then clipped to the input's range.
    ``image`` is float32 or float64; ``zoom`` computes in float64 either way (its spline prefilter
    writes float64), so a float32 image needs no float64 copy of its own."""
    zoom = [n / s for n, s in zip(shape, image.shape)]
    out = _ndimage().zoom(image, zoom, output=np.float64, order=order, mode="nearest", grid_mode=True)
    if order > 0:
        np.clip(out, image.min(), image.max(), out=out)
    return out


def _nearest_along(volume: np.ndarray, axis: int, length: int, order_z: int) -> np.ndarray:
    """The z step of a separate-z resampling: nnU-Net's ``map_coordinates`` over the whole volume,
    where only ``axis`` is rescaled (align_corners=False). Done on the axis alone: identical."""
    ndimage = _ndimage()
    old = volume.shape[axis]
    coordinates = (old / length) * (np.arange(length) + 0.5) - 0.5
    if order_z == 0:
        picked = ndimage.map_coordinates(np.arange(old, dtype=np.float64), coordinates[None], order=0,
                                         mode="nearest").astype(np.intp)
        return np.take(volume, picked, axis=axis)
    moved = np.moveaxis(volume, axis, 0)
    grid = np.meshgrid(coordinates, *(np.arange(n, dtype=np.float64) for n in moved.shape[1:]), indexing="ij")
    out = ndimage.map_coordinates(moved, np.stack(grid), order=order_z, mode="nearest")
    return np.moveaxis(out, 0, axis)


def resample(data: np.ndarray, shape: tuple[int, ...], current_spacing_mm, new_spacing_mm, order: int,
             order_z: int = 0, force_separate_z: bool | None = None) -> np.ndarray:
    """``resample_data_or_seg_to_shape(is_seg=False)``: (c, a0, a1, a2) -> (c, *shape), same dtype.

    Each channel is resized with order ``order``; when one axis is anisotropic each slice across it
    is resized in 2-D and that axis is then resampled with ``order_z`` (nnU-Net's "separate z")."""
    if tuple(data.shape[1:]) == tuple(shape):
        return data
    axis = separate_z_axis(current_spacing_mm, new_spacing_mm, force_separate_z)
    out = np.zeros((data.shape[0], *shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        # nnU-Net casts to float64 first; the float32 values are the same, and a full scan's float64
        # copy (2 GB at 259 M voxels) is saved. float16 (logits) has no ndimage kernel: cast.
        channel = data[c] if data.dtype in (np.float32, np.float64) else data[c].astype(np.float64)
        if axis is None:
            out[c] = skimage_resize(channel, shape, order)
            continue
        in_plane = tuple(n for a, n in enumerate(shape) if a != axis)
        slices = [skimage_resize(np.take(channel, s, axis=axis), in_plane, order)
                  for s in range(channel.shape[axis])]
        stacked = np.stack(slices, axis=axis)
        out[c] = stacked if stacked.shape[axis] == shape[axis] else _nearest_along(stacked, axis, shape[axis],
                                                                                    order_z)
    return out


def _axis_weights(old: int, new: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``low``, ``high`` and weight ``w`` of each of ``new`` voxels resized from ``old``
    along one axis: value = (1 - w) * src[low] + w * src[high]. Voxel centres aligned
    (in = (out + 0.5) * old / new - 0.5), edges clamped: ``zoom(grid_mode=True, mode='nearest')``
    for order 1, ``_nearest_along``'s rounding for order 0."""
    if order == 0:
        low = _ndimage().map_coordinates(np.arange(old, dtype=np.float64),
                                         ((old / new) * (np.arange(new) + 0.5) - 0.5)[None], order=0,
                                         mode="nearest").astype(np.intp)
        return low, low, np.zeros(new, np.float32)
    position = np.clip((np.arange(new) + 0.5) * (old / new) - 0.5, 0, old - 1)
    low = np.floor(position).astype(np.intp)
    return low, np.minimum(low + 1, old - 1), (position - low).astype(np.float32)


def _resize_axis(data: np.ndarray, axis: int, new: int, order: int) -> np.ndarray:
    """``data`` (float32) resized along ``axis`` to ``new`` voxels (see ``_axis_weights``)."""
    if data.shape[axis] == new:
        return data
    low, high, w = _axis_weights(data.shape[axis], new, order)
    shape = [1] * data.ndim
    shape[axis] = new
    w = w.reshape(shape)
    return np.take(data, low, axis=axis) * (1 - w) + np.take(data, high, axis=axis) * w


def resampled_slabs(data: np.ndarray, shape: tuple[int, ...], current_spacing_mm, new_spacing_mm, order: int,
                    order_z: int = 0, force_separate_z: bool | None = None, slab_voxels: int = 1 << 22):
    """``resample`` of (c, a0, a1, a2) logits to (c, *shape), yielded as (a0 slice, float32 slab
    (c, rows, *shape[1:])) of about ``slab_voxels`` voxels, so the output is never held whole in
    float. Orders 0 and 1 (nnU-Net's for probabilities) are separable, done in float32 (nnU-Net:
    float64, then the logits' dtype): when a0 grows, a1 and a2 are resized once and a0 slab by
    slab; when it shrinks, a0 first, then a1 and a2 slab by slab (no intermediate larger than the
    input or the output's slabs). Values differ from ``resample``'s by float32 rounding, so a label
    can change only where logits are that close to a decision. Other orders resample the whole
    array with ``resample``."""
    axis = separate_z_axis(current_spacing_mm, new_spacing_mm, force_separate_z)
    orders = [order_z if a == axis else order for a in range(3)]
    rows = max(1, slab_voxels // max(1, int(np.prod(shape[1:]))))
    if max(orders) > 1:
        whole = resample(data, shape, current_spacing_mm, new_spacing_mm, order, order_z, force_separate_z)
        for start in range(0, shape[0], rows):
            yield slice(start, start + rows), whole[:, start:start + rows].astype(np.float32)
        return
    if shape[0] < data.shape[1]:
        thinned = _resize_axis(data.astype(np.float32), 1, shape[0], orders[0])
        for start in range(0, shape[0], rows):
            slab = thinned[:, start:start + rows]
            for a in (2, 1):
                slab = _resize_axis(slab, a + 1, shape[a], orders[a])
            yield slice(start, start + rows), slab
        return
    planes = data.astype(np.float32)
    for a in (2, 1):
        planes = _resize_axis(planes, a + 1, shape[a], orders[a])
    low, high, w = _axis_weights(data.shape[1], shape[0], orders[0])
    for start in range(0, shape[0], rows):
        part = slice(start, min(start + rows, shape[0]))
        weight = w[part].reshape(1, -1, 1, 1)
        yield part, planes[:, low[part]] * (1 - weight) + planes[:, high[part]] * weight


# -- tiling -------------------------------------------------------------------------------------------
def pad_to_patch(data: np.ndarray, patch: tuple[int, ...]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """``pad_nd_image(data, patch, 'constant', value 0)``: pad spatial axes shorter than the patch,
    the extra voxel of an odd padding above. Returns the padded array and the slices undoing it."""
    spatial = np.asarray(data.shape[1:])
    target = np.maximum(spatial, patch)
    below = (target - spatial) // 2
    above = target - spatial - below
    if not np.any(target - spatial):
        return data, tuple(slice(0, n) for n in spatial)
    padded = np.pad(data, [(0, 0)] + [(int(b), int(a)) for b, a in zip(below, above)])
    return padded, tuple(slice(int(b), int(b + n)) for b, n in zip(below, spatial))


def sliding_window_steps(shape: tuple[int, ...], patch: tuple[int, ...], step: float) -> list[list[int]]:
    """``compute_steps_for_sliding_window``: tile starts per axis, evenly spread, at most
    ``step * patch`` apart, the last flush with the far edge."""
    steps = []
    for size, tile in zip(shape, patch):
        count = int(np.ceil((size - tile) / (tile * step))) + 1
        stride = (size - tile) / (count - 1) if count > 1 else 99999999999
        steps.append([int(np.round(stride * i)) for i in range(count)])
    return steps


def gaussian_importance(patch: tuple[int, ...], sigma_scale: float = 1.0 / 8, value_scaling: float = 10.0,
                        dtype=np.float32) -> np.ndarray:
    """``compute_gaussian``: a Gaussian (sigma = ``sigma_scale`` x patch) centred on voxel
    ``patch // 2``, scaled so that its peak is ``value_scaling``, cast to ``dtype`` (nnU-Net: float16);
    zeros replaced by the smallest non-zero weight. Shape ``patch``."""
    delta = np.zeros(patch)
    delta[tuple(n // 2 for n in patch)] = 1
    weights = _ndimage().gaussian_filter(delta, [n * sigma_scale for n in patch], 0, mode="constant", cval=0)
    weights /= weights.max() / value_scaling
    weights = weights.astype(dtype)
    weights[weights == 0] = weights[weights != 0].min()
    return weights


def mirror_combinations(mirror_axes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every non-empty combination of the spatial mirror axes, in nnU-Net's order."""
    return [c for i in range(len(mirror_axes)) for c in itertools.combinations(mirror_axes, i + 1)]
