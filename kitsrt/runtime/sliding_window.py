"""Sliding-window inference with Gaussian blending, for VOIs too large for one network call.

Like MONAI's ``sliding_window_inference`` it takes a plain callable (array in, array out), so it
knows nothing about backends. Tiles start at multiples of ``stride = patch * (1 - overlap)``, the
last tile is flush with the far edge; each tile's output is weighted by a Gaussian centred on it.
Example: a 200-voxel axis, patch 96, overlap 0.5 -> starts 0, 48, 96, 104.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def tile_starts(length: int, patch: int, overlap: float) -> list[int]:
    if length <= patch:
        return [0]
    stride = max(int(patch * (1 - overlap)), 1)
    starts = list(range(0, length - patch, stride))
    return starts + [length - patch]


def gaussian_weights(patch: tuple[int, int, int], sigma_scale: float) -> np.ndarray:
    axes = []
    for n in patch:
        x = np.arange(n, dtype=np.float32) - (n - 1) / 2.0
        axes.append(np.exp(-0.5 * (x / (sigma_scale * n)) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)


def sliding_window(volume: np.ndarray, patch: tuple[int, int, int], overlap: float, sigma_scale: float,
                   predict: Callable[[np.ndarray], np.ndarray], pad_value: float = -1.0) -> np.ndarray:
    """Blend ``predict`` over tiles of a (z, y, x) volume. ``predict`` maps (1, 1, *patch) to
    (1, C, *patch). Returns (C, z, y, x) float32 of blended outputs."""
    shape = np.asarray(volume.shape)
    padded_shape = np.maximum(shape, patch)
    padded = np.full(padded_shape, pad_value, np.float32)
    padded[tuple(slice(0, n) for n in shape)] = volume
    weights = gaussian_weights(patch, sigma_scale)
    total, norm = None, np.zeros(padded_shape, np.float32)
    for z in tile_starts(padded_shape[0], patch[0], overlap):
        for y in tile_starts(padded_shape[1], patch[1], overlap):
            for x in tile_starts(padded_shape[2], patch[2], overlap):
                region = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
                out = predict(np.ascontiguousarray(padded[region][None, None]))[0]
                if total is None:
                    total = np.zeros((out.shape[0], *padded_shape), np.float32)
                total[(slice(None), *region)] += out * weights
                norm[region] += weights
    total /= norm
    return total[(slice(None), *(slice(0, n) for n in shape))]
