"""Running one network on one prepared volume: whole input or tiled, decided by the spec's limits.

``infer_volume`` feeds the whole (z, y, x) volume when it fits the network's ``max_shape`` and
``tiling.max_voxels`` (and is at least ``min_shape``), so a TensorRT profile built from that range
always holds; otherwise a Gaussian-blended sliding window of ``tiling.patch_size`` takes over.
"""

from __future__ import annotations

import numpy as np

from kitsrt.engines.base import Backend
from kitsrt.runtime.pipeline import NetworkSpec
from kitsrt.runtime.preprocess import network_input
from kitsrt.runtime.regions import air_value
from kitsrt.runtime.sliding_window import sliding_window


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax over ``axis``, in place on a float32 copy-free buffer when possible."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def run_network(backend: Backend, network: NetworkSpec, volume: np.ndarray) -> np.ndarray:
    """(z, y, x) prepared input -> (C, z, y, x) raw outputs of one whole-input call."""
    return backend.infer({network.input_name: network_input(volume)})[network.output_name][0]


def fits_whole(shape: tuple[int, ...], network: NetworkSpec) -> bool:
    """Whether a (z, y, x) input of ``shape`` runs as one call (else tiled)."""
    size = np.asarray(shape)
    return (int(np.prod(size)) <= network.tiling.max_voxels and bool(np.all(size <= network.max_shape))
            and bool(np.all(size >= network.min_shape)))


def infer_volume(volume: np.ndarray, network: NetworkSpec, backend: Backend) -> np.ndarray:
    """(z, y, x) prepared input -> (C, z, y, x) outputs: whole input when it fits, else a sliding
    window padded with the normalised value of air."""
    if fits_whole(volume.shape, network):
        return run_network(backend, network, volume)
    tiling = network.tiling
    return sliding_window(volume, tiling.patch_size, tiling.overlap, tiling.sigma_scale,
                          lambda tile: backend.infer({network.input_name: tile})[network.output_name],
                          pad_value=air_value(network))
